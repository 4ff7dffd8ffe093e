"""/patients/...: the staff patient page, under its old URL names (patients:detail)."""

from django.urls import path

from careline.web import patient_pages

app_name = "patients"
urlpatterns = [
    path("patients/<int:patient_id>/", patient_pages.patient_detail, name="detail"),
]
