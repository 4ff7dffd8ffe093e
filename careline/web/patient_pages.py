"""The staff page of one patient: their visits, consent history and shared number.

A composition page: it shows scheduling's visits beside the patient, which the patients
app (below scheduling) cannot import."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from careline.audit.access import record_patient_access
from careline.messaging.models import MessageState, OutboundMessage
from careline.patients.models import ConsentEvent, Patient, email_key
from careline.scheduling.models import Appointment


@login_required
def patient_detail(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=patient_id)
    record_patient_access(request, patient.id, "patient page", practice_id=patient.home_practice_id)
    appointments = (
        Appointment.objects.visible_to(request.user)
        .filter(patient=patient)
        .select_related("practice", "provider", "appointment_type", "patient")
        .order_by("-start")[:50]
    )
    # The number's entries and the email address's (an email's unsubscribe link).
    addresses = [a for a in (patient.mobile_phone, email_key(patient.email)) if a]
    consent = ConsentEvent.objects.filter(
        organization_id=patient.organization_id, phone__in=addresses
    )
    shared = (
        Patient.objects.visible_to(request.user)
        .filter(organization_id=patient.organization_id, mobile_phone=patient.mobile_phone)
        .exclude(pk=patient.pk)
        if patient.mobile_phone
        else Patient.objects.none()
    )
    # What is planned and not sent yet, with its due time: a rule change moves these at once.
    planned = (
        OutboundMessage.objects.filter(
            patient=patient,
            state=MessageState.SCHEDULED,
            appointment__in=[a.pk for a in appointments],
        )
        .select_related("practice")
        .order_by("due_at", "id")
    )
    context = {
        "patient": patient,
        "planned": planned,
        "appointments": appointments,
        "consent_events": consent[:20],
        "current_consent": patient.sms_consent,
        "email_consent": patient.email_consent,
        "sharing_number": shared,
    }
    return render(request, "patients/detail.html", context)
