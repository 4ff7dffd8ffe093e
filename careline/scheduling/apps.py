from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "careline.scheduling"
