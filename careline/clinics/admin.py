from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from careline.clinics.admin_scoping import ScopedAdmin
from careline.clinics.models import (
    AppointmentType,
    Organization,
    Practice,
    Provider,
    StaffMembership,
)
from careline.clinics.numbers import check_sender_number, claim_sender_number, release_unused
from careline.clinics.validators import normalize_phone


def _checked_number(form: forms.ModelForm, field: str, organization_id: int | None) -> None:
    """A form error naming the conflict when another organization texts from the number."""
    value = form.cleaned_data.get(field)
    if not value:
        return
    try:
        value = normalize_phone(value)
        check_sender_number(organization_id, value)
    except ValidationError as exc:
        form.add_error(field, exc)
    else:
        form.cleaned_data[field] = value


class OrganizationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "slug", "default_sender_number"]

    def clean(self):
        cleaned = super().clean()
        _checked_number(self, "default_sender_number", self.instance.pk)
        return cleaned


class PracticeForm(forms.ModelForm):
    class Meta:
        model = Practice
        fields = [
            "organization",
            "name",
            "code",
            "phone",
            "address",
            "time_zone",
            "sender_number",
            "go_live_date",
        ]

    def clean(self):
        cleaned = super().clean()
        organization = cleaned.get("organization")
        if organization is not None:
            _checked_number(self, "sender_number", organization.pk)
        return cleaned


@admin.register(Organization)
class OrganizationAdmin(ScopedAdmin):
    form = OrganizationForm
    list_display = ["name", "slug", "default_sender_number"]
    search_fields = ["name", "slug"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        claim_sender_number(obj.pk, obj.default_sender_number)
        release_unused(obj.pk)


@admin.register(Practice)
class PracticeAdmin(ScopedAdmin):
    form = PracticeForm
    list_display = ["name", "code", "organization", "time_zone", "sender_number"]
    list_filter = ["time_zone"]
    search_fields = ["name", "code"]

    def save_model(self, request, obj, form, change):
        claim_sender_number(obj.organization_id, obj.sender_number)
        super().save_model(request, obj, form, change)
        release_unused(obj.organization_id)


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
