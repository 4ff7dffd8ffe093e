import pytest
from django.core.exceptions import ValidationError

from careline.clinics.validators import normalize_phone


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("(512) 555-0123", "+15125550123"),
        ("512.555.0123", "+15125550123"),
        ("+1 512 555 0123", "+15125550123"),
        ("1-512-555-0123", "+15125550123"),
        ("+52 55 1234 5678", "+525512345678"),
        ("  512 555 0123 ", "+15125550123"),
    ],
)
def test_numbers_are_normalized_to_e164(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("", "required"),
        ("hello", "not a phone number"),
        ("555-01", "wrong number of digits"),
        ("+1 099 555 0123", "not a valid phone number"),
        ("12345678901234567", "wrong number of digits"),
    ],
)
def test_bad_numbers_are_rejected_with_a_reason(raw, fragment):
    with pytest.raises(ValidationError) as info:
        normalize_phone(raw)
    assert fragment in info.value.messages[0]


def test_patient_clean_normalizes_and_reports_field(build):
    org = build.organization()
    patient = build.patient(org, mobile_phone="")
    patient.mobile_phone = "(512) 555-0142"
    patient.full_clean()
    assert patient.mobile_phone == "+15125550142"
    patient.mobile_phone = "not-a-number"
    with pytest.raises(ValidationError) as info:
        patient.full_clean()
    assert "mobile_phone" in info.value.message_dict
