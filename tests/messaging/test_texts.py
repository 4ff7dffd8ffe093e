"""Where a planned text's wording comes from: the organization's own templates over
Careline's default in the gettext catalog, in the patient's language (not the staff's)."""

from __future__ import annotations

from django.utils import translation

from careline.messaging.models import MessageTemplate
from careline.messaging.texts import default_body, find_template


def _pick(org, language, practice=None):
    return find_template(
        organization_id=org.id,
        practice_id=practice.id if practice else None,
        appointment_type_id=None,
        kind="reminder",
        language=language,
    )


def test_the_catalog_default_in_the_patients_language(build):
    org = build.organization()
    with translation.override("es"):  # the staff member's language does not matter
        english = _pick(org, "en")
    assert english.pk is None and english.body.startswith("{first_name}: reminder of your visit")
    with translation.override("en"):
        spanish = _pick(org, "es")
    assert spanish.body.startswith("{first_name}: le recordamos su cita")
    # A language without a translation gets the English text.
    assert default_body("reminder", "fr") == english.body


def test_organization_and_practice_overrides_win_over_the_catalog(build):
    org = build.organization()
    practice = build.practice(org)
    MessageTemplate.objects.create(organization=org, kind="reminder", body="org {first_name}")
    MessageTemplate.objects.create(
        organization=org, practice=practice, kind="reminder", body="practice {first_name}"
    )
    assert _pick(org, "en").body == "org {first_name}"
    assert _pick(org, "en", practice).body == "practice {first_name}"
    # No Spanish override: Careline's Spanish default beats the English override.
    assert _pick(org, "es", practice).body.startswith("{first_name}: le recordamos")
    # Another organization's override is not this one's.
    assert "reminder of your visit" in _pick(build.organization(), "en").body


def test_a_careline_wide_row_does_not_shadow_the_catalog(build):
    """Rows without an organization were Careline's defaults in the database (migration
    0002); the catalog is their home now, so such a row changes nothing."""
    org = build.organization()
    MessageTemplate.objects.create(organization=None, kind="reminder", body="stale {first_name}")
    assert _pick(org, "en").body == default_body("reminder", "en")


def test_replies_have_no_default(build):
    assert default_body("reply", "en") is None
    assert (
        find_template(
            organization_id=build.organization().id,
            practice_id=None,
            appointment_type_id=None,
            kind="reply",
            language="en",
        )
        is None
    )
