from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "careline.integrations"
    verbose_name = "EHR integrations"
