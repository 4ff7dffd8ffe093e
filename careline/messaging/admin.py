from django.contrib import admin

from careline.clinics.admin_scoping import ScopedAdmin
from careline.messaging import rules
from careline.messaging.models import MessageTemplate, OutboundMessage, ReminderRule


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ScopedAdmin):
    """The outbox, read-only: states, reasons and provider codes, for troubleshooting."""

    list_display = ["id", "kind", "channel", "state", "reason", "due_at", "sent_at", "error_code"]
    list_filter = ["state", "kind", "channel", "reason"]
    date_hierarchy = "due_at"
    show_full_result_count = False
    readonly_fields = [f.name for f in OutboundMessage._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MessageTemplate)
class MessageTemplateAdmin(ScopedAdmin):
    list_display = ["kind", "language", "organization", "practice", "appointment_type", "active"]
    list_filter = ["kind", "language", "active"]


@admin.register(ReminderRule)
class ReminderRuleAdmin(ScopedAdmin):
    list_display = ["organization", "practice", "appointment_type", "offsets_minutes", "active"]

    # Through careline.messaging.rules, like every other door: the upcoming visits the rule
    # applies to are re-planned at once.
    def save_model(self, request, obj, form, change) -> None:
        rules.save_rule(obj)

    def delete_model(self, request, obj) -> None:
        rules.delete_rule(obj)

    def delete_queryset(self, request, queryset) -> None:
        for rule in queryset:
            rules.delete_rule(rule)
