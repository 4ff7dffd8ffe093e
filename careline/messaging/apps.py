from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "careline.messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from careline.messaging import checks  # noqa: F401  (registers the system checks)
        from careline.messaging.outbox import texted_visits, withdraw_untold_move_notice
        from careline.messaging.planning import sync_reminders
        from careline.messaging.touches import not_to_touch
        from careline.scheduling import changes, dayview

        # Every change to an appointment re-plans its reminders in the same transaction.
        changes.on_appointments_changed(sync_reminders)
        changes.on_move_taken_back(withdraw_untold_move_notice)
        # The day view tells "not texted yet" from "texted, no answer".
        dayview.on_read_texted(texted_visits)
        # High-risk visits in the extra touch's no-touch arm are not phoned for their risk.
        dayview.on_read_not_to_touch(not_to_touch)
