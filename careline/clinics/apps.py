from django.apps import AppConfig


class ClinicsConfig(AppConfig):
    name = "careline.clinics"
    verbose_name = "Clinics"
