from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "careline.messaging"
    verbose_name = "Messaging"
