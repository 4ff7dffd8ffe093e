"""One reading of language names for every feed.

CSV, HL7 and FHIR each had their own map and disagreed: CSV refused "sp", "espanol" and
regional tags (es-MX), HL7 ignored regional tags, FHIR read "spa" and "Spanish" as
English. Now all three read through patients.languages.language_code."""

import pytest
from fhir.resources.R4B.patient import PatientCommunication

from careline.integrations.csv import importer
from careline.integrations.fhir.resources import patient as fhir_patient
from careline.integrations.hl7 import receiving
from careline.patients.languages import coded_language, language_code

CASES = {
    "en": "en",
    "ENG": "en",
    "English": "en",
    "en-US": "en",
    "es": "es",
    "spa": "es",
    "sp": "es",
    "Spanish": "es",
    "espanol": "es",
    "Español": "es",
    "es-MX": "es",
    "es_US": "es",
    " es ": "es",
    "S": "es",
    "E": "en",
    "SPA-MX": "es",
    "Spanish; Castilian": "es",
    "English (United States)": "en",
    "ESPAÑOL": "es",
    "fr": None,
    "Vietnamese": None,
    "Spanglish": None,
    "": None,
}


@pytest.mark.parametrize("raw", CASES)
def test_language_code(raw):
    assert language_code(raw) == CASES[raw]


def test_csv_and_hl7_read_languages_the_same_way():
    assert importer.language_code is language_code
    assert receiving.coded_language is coded_language


@pytest.mark.parametrize(
    ("code", "text", "system", "expected"),
    [
        ("SPA", "Spanish", "HL70296", "es"),
        ("S", "", "HL70296", "es"),
        ("es-MX", "Spanish (Mexico)", "urn:ietf:bcp:47", "es"),
        ("", "Español", "", "es"),
        ("99", "Spanish", "LOCAL", "es"),  # a local code: the text decides
        ("VIE", "Vietnamese", "HL70296", None),
    ],
)
def test_coded_languages(code, text, system, expected):
    assert coded_language(code, text, system) == expected


# FHIR codes carry no surrounding spaces (the model refuses them).
@pytest.mark.parametrize("raw", [raw for raw in CASES if raw == raw.strip()])
def test_fhir_reads_languages_the_same_way_with_english_as_the_fallback(raw):
    communication = PatientCommunication(language={"coding": [{"code": raw or "x"}]})
    assert fhir_patient._language([communication]) == (CASES[raw] or "en")
