from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "careline.analytics"
