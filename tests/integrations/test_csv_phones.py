"""The CSV importer reads mobile numbers with clinics.validators.normalize_phone.

It had its own copy (`_e164`): the same numbers came out, but a refused number got a
vaguer reason ("is not a valid phone number" where the validator says the digits are too
few or too many). These cases pin the shared behaviour."""

import pytest
from django.core.exceptions import ValidationError

from careline.clinics.validators import normalize_phone
from careline.integrations.csv import importer

CASES = {
    "(518) 555-0122": "+15185550122",
    "+1 518 555 0122": "+15185550122",
    "518.555.0122 ext 7": "+15185550122",
    "+44 20 7946 0958": "+442079460958",
    "1-800-FLOWERS": "+18003569377",
    "555-0122": "is not a valid phone number in any numbering plan",
    "+1 555 555 5555": "is not a valid phone number in any numbering plan",
    "12345": "has the wrong number of digits",
    "5185550122000": "has the wrong number of digits",
    "not a phone": "is not a phone number",
}


def outcome(read, raw: str) -> str:
    try:
        return read(raw)
    except (ValueError, ValidationError) as exc:
        return " ".join(getattr(exc, "messages", [str(exc)]))


@pytest.mark.parametrize("raw", CASES)
def test_csv_reads_numbers_like_the_validator(raw, settings):
    settings.CARELINE_DEFAULT_REGION = "US"
    validator = importer._Validator.__new__(importer._Validator)
    validator.region = "US"
    from_csv = outcome(validator._phone, raw)
    from_validator = outcome(normalize_phone, raw)
    assert CASES[raw] in from_validator
    if from_validator.startswith("+"):
        assert from_csv == from_validator
    else:
        assert from_csv == f"mobile_phone {from_validator}"
