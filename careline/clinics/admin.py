from django.contrib import admin

from careline.clinics.admin_scoping import ScopedAdmin
from careline.clinics.models import (
    AppointmentType,
    Organization,
    Practice,
    Provider,
    StaffMembership,
)


@admin.register(Organization)
class OrganizationAdmin(ScopedAdmin):
    list_display = ["name", "slug", "default_sender_number"]
    search_fields = ["name", "slug"]


@admin.register(Practice)
class PracticeAdmin(ScopedAdmin):
    list_display = ["name", "code", "organization", "time_zone", "sender_number"]
    list_filter = ["time_zone"]
    search_fields = ["name", "code"]


@admin.register(Provider)
class ProviderAdmin(ScopedAdmin):
    list_display = ["display_name", "npi", "active"]
    search_fields = ["display_name", "family_name", "npi"]
    filter_horizontal = ["practices"]


@admin.register(AppointmentType)
class AppointmentTypeAdmin(ScopedAdmin):
    list_display = ["name", "patient_facing_name", "duration_minutes", "bookable_online"]


@admin.register(StaffMembership)
class StaffMembershipAdmin(ScopedAdmin):
    list_display = ["user", "organization", "role"]
    filter_horizontal = ["practices"]

    def has_view_permission(self, request, obj=None):
        return self._may_edit(request)

    has_module_permission = has_view_permission
