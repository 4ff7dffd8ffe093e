from django.contrib import admin

from careline.audit.access import record_patient_access
from careline.clinics.admin_scoping import ScopedAdmin
from careline.patients.models import Patient
from careline.patients.records import save_patient


@admin.register(Patient)
class PatientAdmin(ScopedAdmin):
    list_display = ["family_name", "given_name", "mrn", "preferred_language", "home_practice"]
    search_fields = ["family_name", "given_name", "mrn"]
    list_select_related = ["home_practice"]
    show_full_result_count = False
    # Numbers come from the feeds; the admin edits the one texted (mobile_phone).
    readonly_fields = ["version", "last_updated", "phones"]

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
