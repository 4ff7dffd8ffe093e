from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "careline.messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from careline.messaging import checks  # noqa: F401  (registers the system checks)
        from careline.messaging.planning import sync_reminders
        from careline.scheduling import changes

        # Every change to an appointment re-plans its reminders in the same transaction.
        changes.on_appointments_changed(sync_reminders)
