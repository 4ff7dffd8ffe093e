from django.contrib import admin

from careline.audit.access import record_patient_access
from careline.clinics.admin_scoping import ScopedAdmin
from careline.patients.models import Patient, PatientIdentifier
from careline.patients.records import save_patient


class IdentifierInline(admin.TabularInline):
    """Who the EHRs say this is: shown, not edited (feeds and FHIR write identifiers
    through patients.records; a change here could merge two people)."""

    model = PatientIdentifier
    fields = ["system", "value", "type_code", "type_text", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(ScopedAdmin):
    inlines = [IdentifierInline]
    list_display = ["family_name", "given_name", "mrn", "preferred_language", "home_practice"]
    search_fields = ["family_name", "given_name", "mrn"]
    list_select_related = ["home_practice"]
    show_full_result_count = False
    # Numbers come from the feeds; the admin edits the one texted (mobile_phone). The MRN
    # shown is a copy of an identifier; patients are found by their identifiers.
    readonly_fields = ["mrn", "merged_into", "version", "last_updated", "phones"]

    def save_model(self, request, obj, form, change) -> None:
        # Through the owner, so the change is a new version FHIR clients pull.
        save_patient(obj)

    def record_lookup(self, request, obj, what: str) -> None:
        """A patient named by a raw-id label or an autocomplete answer is audited like a page."""
        record_patient_access(request, obj.pk, what)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if object_id and str(object_id).isdigit():
            if self.get_queryset(request).filter(pk=int(object_id)).exists():
                record_patient_access(request, int(object_id), "admin patient page")
        return super().change_view(request, object_id, form_url, extra_context)
