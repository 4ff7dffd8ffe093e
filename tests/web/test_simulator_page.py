from django.utils import timezone

from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.base import get_gateway
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.outbox import queue_reply


def test_patient_phones_page_shows_each_phones_texts_newest_last(client, build):
    org = build.organization()
    for body in ["first text", "second text"]:
        queue_reply(organization_id=org.id, to_phone="+15125550123", body=body)
        Dispatcher(SimulatorGateway(), clock=timezone.now).run_once()
    page = client.get("/simulator/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "+15125550123" in html
    assert html.index("first text") < html.index("second text")


def test_the_page_is_off_with_a_real_gateway(client, db, settings):
    settings.CARELINE_SMS_GATEWAY = "twilio"
    assert client.get("/simulator/").status_code == 404
    assert client.post("/simulator/reply", {"body": "C"}).status_code == 404


def test_a_bad_reply_gets_a_message_not_an_error(client, db):
    response = client.post(
        "/simulator/reply", {"from_phone": "12", "to_phone": "+15125550100", "body": "C"},
        follow=True,
    )  # fmt: skip
    assert response.status_code == 200
    assert "phone number" in response.content.decode()


def test_unknown_gateway_name_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="Unknown SMS gateway 'carrier-pigeon'"):
        get_gateway("carrier-pigeon")
    assert get_gateway("simulator").name == "simulator"
