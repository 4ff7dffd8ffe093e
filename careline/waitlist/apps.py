from django.apps import AppConfig


class WaitlistConfig(AppConfig):
    name = "careline.waitlist"
    verbose_name = "Waitlist"

    def ready(self) -> None:
        from careline.conversations import replies
        from careline.scheduling import changes
        from careline.waitlist.offers import handle_reply, process_freed_slots

        # A freed time is offered as soon as its change commits (the periodic sweep
        # catches what this misses), and a YES/NO texted back answers an open offer.
        changes.on_slot_freed(process_freed_slots)
        replies.answer_waitlist_offers_with(handle_reply)
