from django.contrib import admin

from careline.clinics.admin_scoping import ScopedAdmin, ScopedInline
from careline.scheduling.models import (
    Appointment,
    AppointmentEvent,
    BlockedPeriod,
    Holiday,
    RecurringBreak,
    WorkingHours,
)


class AppointmentEventInline(ScopedInline):
    model = AppointmentEvent
    extra = 0
    can_delete = False
    readonly_fields = [
        "from_status",
        "to_status",
        "old_start",
        "new_start",
        "source",
        "changed_by",
        "note",
        "occurred_at",
    ]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Appointment)
class AppointmentAdmin(ScopedAdmin):
    list_display = ["start", "practice", "provider", "appointment_type", "status", "status_source"]
    list_filter = ["status"]
    list_select_related = ["practice", "provider", "appointment_type"]
    raw_id_fields = ["patient"]
    date_hierarchy = "start"
    show_full_result_count = False
    inlines = [AppointmentEventInline]

    # Visits change through the app (day view, patient page), replies, links and the
    # EHR's feeds, which all go through scheduling.appointments so that texts, re-planning,
    # the EHR write-back and FHIR versions follow; the admin only shows them.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WorkingHours)
class WorkingHoursAdmin(ScopedAdmin):
    list_display = ["provider", "practice", "weekday", "start_time", "end_time"]


@admin.register(RecurringBreak)
class RecurringBreakAdmin(ScopedAdmin):
    list_display = ["provider", "practice", "weekday", "start_time", "end_time", "label"]


@admin.register(BlockedPeriod)
class BlockedPeriodAdmin(ScopedAdmin):
    list_display = ["practice", "provider", "start", "end", "reason"]


@admin.register(Holiday)
class HolidayAdmin(ScopedAdmin):
    list_display = ["practice", "date", "name"]
