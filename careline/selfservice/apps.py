from django.apps import AppConfig


class SelfServiceConfig(AppConfig):
    name = "careline.selfservice"
    verbose_name = "Self-service and waitlist"
