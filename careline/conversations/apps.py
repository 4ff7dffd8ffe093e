from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "careline.conversations"
    verbose_name = "Conversations"
