from django.contrib import admin

from careline.audit.models import AuditEvent
from careline.clinics.admin_scoping import ScopedAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ScopedAdmin):
    list_display = ["occurred_at", "user", "action", "what", "patient_id", "practice"]
    list_filter = ["action"]
    date_hierarchy = "occurred_at"

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
