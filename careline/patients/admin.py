from django.contrib import admin

from careline.clinics.admin_scoping import ScopedAdmin
from careline.patients.models import Patient


@admin.register(Patient)
class PatientAdmin(ScopedAdmin):
    front_desk_may_edit = True
    list_display = ["family_name", "given_name", "mrn", "preferred_language", "home_practice"]
    search_fields = ["family_name", "given_name", "mrn"]
    list_select_related = ["home_practice"]
    show_full_result_count = False
