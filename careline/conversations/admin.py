from django.contrib import admin

from careline.clinics.admin_scoping import ScopedAdmin
from careline.conversations.models import CannedReply, Conversation, InboundMessage


@admin.register(InboundMessage)
class InboundMessageAdmin(ScopedAdmin):
    """Read-only: an inbound text is a record of what the patient sent and what followed."""

    list_display = ["received_at", "practice", "intent", "action_taken", "confidence"]
    list_filter = ["intent", "action_taken"]
    list_select_related = ["practice"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    readonly_fields = [f.name for f in InboundMessage._meta.fields] + ["patients"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CannedReply)
class CannedReplyAdmin(ScopedAdmin):
    list_display = ["title", "practice"]


@admin.register(Conversation)
class ConversationAdmin(ScopedAdmin):
    list_display = ["id", "practice", "queue", "state", "assigned_to", "last_patient_message_at"]
    list_filter = ["queue", "state"]
    list_select_related = ["practice", "assigned_to"]
    raw_id_fields = ["patient"]
