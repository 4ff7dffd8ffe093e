from django.apps import AppConfig


class SelfServiceConfig(AppConfig):
    name = "careline.selfservice"
    verbose_name = "Self-service and waitlist"

    def ready(self) -> None:
        from careline.scheduling import changes
        from careline.selfservice.waitlist import process_freed_slots

        changes.on_slot_freed(process_freed_slots)
