from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ClinicsConfig(AppConfig):
    name = "careline.clinics"
    verbose_name = "Clinics"


class CarelineAdminConfig(admin_apps.AdminConfig):
    """The Django admin, on Careline's site: organization admins only, scoped to their rows."""

    default = False
    default_site = "careline.clinics.admin_scoping.CarelineAdminSite"
