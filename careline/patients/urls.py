from django.urls import path

from careline.patients import views

app_name = "patients"
urlpatterns = [
    path("patients/<int:patient_id>/", views.patient_detail, name="detail"),
]
