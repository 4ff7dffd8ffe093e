from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "careline.conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        from careline.conversations.inbound import asked_to_move
        from careline.scheduling import dayview

        # The day view shows who asked to move their visit, for the front desk to call.
        dayview.on_read_asked_to_move(asked_to_move)
