"""Beside the thread the front desk sees who is writing: next visits, texting consent,
language, and every text sent to and received from the number."""

from __future__ import annotations

import json

from django.test import Client
from django.urls import reverse

from careline.clinics.models import StaffRole
from careline.integrations.api_keys import issue_api_key
from careline.patients.models import Language, Patient


def _desk(build, twoway):
    user = build.staff(twoway.org, StaffRole.FRONT_DESK, practices=[twoway.practice])
    client = Client()
    client.force_login(user)
    return client


def test_next_visits_language_consent_and_every_text_beside_the_thread(build, twoway):
    patient = twoway.patient(given_name="Rosa", preferred_language=Language.SPANISH)
    visit = twoway.visit(patient, twoway.local(2, 10))
    reminders = twoway.send_reminders(visit)
    assert reminders
    earlier = twoway.visit(patient, twoway.local(-3, 9))  # past: not a "next visit"
    someone_else = twoway.visit(twoway.patient(), twoway.local(3, 11))
    conversation = twoway.text(patient.mobile_phone, "¿Puedo llevar a mi hija?").conversation
    client = _desk(build, twoway)

    page = client.get(reverse("conversations:detail", args=[conversation.id]))
    context = page.context["context"]
    assert [v.id for v in context.next_visits] == [visit.id]
    assert earlier.id not in [v.id for v in context.next_visits]
    assert someone_else.id not in [v.id for v in context.next_visits]
    assert context.language == "Spanish"
    bodies = [(e.direction, e.body) for e in context.timeline]
    assert ("in", "¿Puedo llevar a mi hija?") in bodies
    assert all(("out", r.body) in bodies for r in reminders)  # the reminder texts, too
    html = page.content.decode()
    assert 'id="patient-context"' in html and "Spanish" in html
    assert reminders[0].body.split()[0] in html

    # A staff reply shows up in the timeline; a STOP shows in the consent.
    client.post(reverse("conversations:reply", args=[conversation.id]), {"body": "Sí, claro."})
    twoway.text(patient.mobile_phone, "STOP")
    page = client.get(reverse("conversations:detail", args=[conversation.id]))
    context = page.context["context"]
    assert context.consent is not None and context.consent.opted_out
    assert "Opted out" in page.content.decode()
    assert ("out", "Sí, claro.") in [(e.direction, e.body) for e in context.timeline]
    assert context.timeline[0].at >= context.timeline[-1].at  # newest first


def test_an_unknown_number_has_no_patient_and_no_other_numbers_texts(build, twoway):
    known = twoway.patient()
    twoway.text(known.mobile_phone, "Is the office open Saturday?")
    conversation = twoway.text(twoway.new_phone(), "who is this?").conversation
    client = _desk(build, twoway)
    page = client.get(reverse("conversations:detail", args=[conversation.id]))
    context = page.context["context"]
    assert context.patient is None and context.next_visits == []
    assert [e.body for e in context.timeline if e.direction == "in"] == ["who is this?"]
    assert "No patient record matches" in page.content.decode()


def test_a_language_careline_does_not_text_in_is_shown_as_received(build, twoway):
    phone = twoway.new_phone()
    key = issue_api_key(organization_slug=twoway.org.slug, name="ehr").plaintext
    created = Client().post(
        "/fhir/R4/Patient",
        json.dumps(
            {
                "resourceType": "Patient",
                "name": [{"family": "Santos", "given": ["Maria"]}],
                "telecom": [{"system": "sms", "value": phone}],
                "communication": [{"language": {"coding": [{"code": "tl", "display": "Tagalog"}]}}],
            }
        ),
        "application/fhir+json",
        headers={"Authorization": f"Bearer {key}", "Accept": "application/fhir+json"},
    )
    assert created.status_code == 201, created.content
    twoway.visit(Patient.objects.get(pk=created.json()["id"]))  # seen at the desk's practice
    conversation = twoway.text(phone, "Can I bring my daughter?").conversation
    page = _desk(build, twoway).get(reverse("conversations:detail", args=[conversation.id]))
    assert "Language received: Tagalog (tl) — texts in English" in page.content.decode()
