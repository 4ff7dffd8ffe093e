from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from careline.clinics.admin_scoping import ScopedAdmin
from careline.clinics.directory import save_provider
from careline.clinics.models import (
    AppointmentType,
    Organization,
    Practice,
    Provider,
    StaffMembership,
    StaffRole,
)
from careline.clinics.numbers import check_sender_number, claim_sender_number, release_unused
from careline.clinics.scoping import ROLE_RANK, administered_organization_ids
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
    """Organization-wide settings: its own admins edit it; only superusers add or remove one."""

    form = OrganizationForm
    list_display = ["name", "slug", "default_sender_number"]
    search_fields = ["name", "slug"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

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

    def save_model(self, request, obj, form, change):
        # Its next version (FHIR's change feed), like every other door's edit; a change of
        # practices alone is saved in the same transaction, so it shares the version.
        save_provider(obj)


@admin.register(AppointmentType)
class AppointmentTypeAdmin(ScopedAdmin):
    list_display = ["name", "patient_facing_name", "duration_minutes", "bookable_online"]


def granting_rank(user, organization_id: int | None) -> int:
    """The highest role `user` may grant in the organization (None: in any of theirs)."""
    if user.is_superuser:
        return max(ROLE_RANK.values())
    roles = StaffMembership.objects.filter(user=user)
    if organization_id is not None:
        roles = roles.filter(organization_id=organization_id)
    return max((ROLE_RANK[r] for r in roles.values_list("role", flat=True)), default=0)


class StaffMembershipForm(forms.ModelForm):
    """Nobody grants a role above their own, nor a membership outside their organizations."""

    granted_by = None  # set per request by StaffMembershipAdmin.get_form

    class Meta:
        model = StaffMembership
        fields = ["user", "organization", "role", "practices"]

    def clean(self):
        data = super().clean()
        user, organization, role = self.granted_by, data.get("organization"), data.get("role")
        allowed = administered_organization_ids(user)
        if organization is not None and allowed is not None and organization.pk not in allowed:
            self.add_error("organization", "You can only grant memberships in your organization.")
        org_id = organization.pk if organization is not None else None
        rank = granting_rank(user, org_id)
        if role and ROLE_RANK.get(role, 99) > rank:
            self.add_error("role", "You cannot grant a role above your own.")
        if self.instance.pk and ROLE_RANK.get(self.instance.role, 99) > granting_rank(
            user, self.instance.organization_id
        ):
            self.add_error(None, "You cannot change a membership above your own role.")
        practices = data.get("practices") or []
        if organization is not None and any(p.organization_id != org_id for p in practices):
            self.add_error("practices", "Practices must belong to the membership's organization.")
        return data


@admin.register(StaffMembership)
class StaffMembershipAdmin(ScopedAdmin):
    form = StaffMembershipForm
    list_display = ["user", "organization", "role"]
    filter_horizontal = ["practices"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"granted_by": request.user})

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "role" and not request.user.is_superuser:
            own = granting_rank(request.user, None)
            kwargs["choices"] = [(v, name) for v, name in StaffRole.choices if ROLE_RANK[v] <= own]
        return super().formfield_for_choice_field(db_field, request, **kwargs)
