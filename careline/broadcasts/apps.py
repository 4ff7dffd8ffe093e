from django.apps import AppConfig


class BroadcastsConfig(AppConfig):
    name = "careline.broadcasts"
