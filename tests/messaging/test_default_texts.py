import re

from careline.messaging.models import MessageTemplate
from careline.messaging.texts import DEFAULTS, find_template


def test_shipped_texts_are_used_even_when_the_table_lost_them(build):
    org = build.organization()
    MessageTemplate.objects.all().delete()
    spanish = find_template(
        organization_id=org.id,
        practice_id=None,
        appointment_type_id=None,
        kind="reminder",
        language="es",
    )
    assert spanish.body == DEFAULTS[("reminder", "es")]
    assert "Responda C para confirmar, X para cancelar" in spanish.body
    custom = MessageTemplate.objects.create(
        organization=org, kind="reminder", language="es", body="Hola {first_name}"
    )
    assert (
        find_template(
            organization_id=org.id,
            practice_id=None,
            appointment_type_id=None,
            kind="reminder",
            language="es",
        )
        == custom
    )


def test_no_default_asks_for_a_carrier_keyword_or_names_a_visit_reason():
    for body in DEFAULTS.values():
        # "Reply X to cancel" is fine; "Reply CANCEL" would be an opt-out keyword.
        assert not re.search(r"\b(reply|responda)\s+(stop|cancel|cancelar|end|quit)\b", body, re.I)
        assert "{reason}" not in body and "{diagnosis}" not in body
