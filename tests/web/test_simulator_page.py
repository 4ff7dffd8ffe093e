from django.core.checks import run_checks
from django.utils import timezone

from careline.clinics.models import StaffRole
from careline.conversations.models import InboundMessage
from careline.messaging.dispatch import Dispatcher
from careline.messaging.gateways.base import get_gateway
from careline.messaging.gateways.simulator import SimulatorGateway
from careline.messaging.outbox import queue_reply


def test_patient_phones_page_shows_each_phones_texts_newest_last(client, build):
    org = build.organization()
    for body in ["first text", "second text"]:
        queue_reply(organization_id=org.id, to_phone="+15125550123", body=body)
        Dispatcher(SimulatorGateway(), clock=timezone.now).run_once()
    client.force_login(build.staff(org))
    page = client.get("/simulator/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "+15125550123" in html
    assert html.index("first text") < html.index("second text")


def test_the_page_is_off_with_a_real_gateway(client, db, settings):
    settings.CARELINE_SMS_GATEWAY = "twilio"
    assert client.get("/simulator/").status_code == 404
    assert client.post("/simulator/reply", {"body": "C"}).status_code == 404


def test_a_bad_reply_gets_a_message_not_an_error(client, build):
    client.force_login(build.staff(build.organization()))
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


def _texts_from_org_a(build):
    a = build.organization(name="Alpha Health", default_sender_number="+15125550111")
    b = build.organization(name="Beta Health", default_sender_number="+13035550100")
    build.practice(a)
    queue_reply(
        organization_id=a.id,
        to_phone="+15125550123",
        body="alpha secret text",
        sender="+15125550111",
    )
    Dispatcher(SimulatorGateway(), clock=timezone.now).run_once()
    return a, b


def test_anonymous_visitors_are_sent_to_sign_in(client, build):
    _texts_from_org_a(build)
    for response in [
        client.get("/simulator/"),
        client.post(
            "/simulator/reply",
            {"from_phone": "+15125550123", "to_phone": "+15125550111", "body": "C"},
        ),
    ]:
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
    assert not InboundMessage.objects.exists()


def test_another_organizations_staff_sees_none_of_its_texts_nor_replies(client, build):
    a, b = _texts_from_org_a(build)
    client.force_login(build.staff(b, StaffRole.ORGANIZATION_ADMIN))
    html = client.get("/simulator/").content.decode()
    assert "alpha secret text" not in html and "+15125550123" not in html
    response = client.post(
        "/simulator/reply",
        {"from_phone": "+15125550123", "to_phone": "+15125550111", "body": "STOP"},
    )
    assert response.status_code == 403
    assert not InboundMessage.objects.exists()

    client.force_login(build.staff(a))
    assert "alpha secret text" in client.get("/simulator/").content.decode()
    response = client.post(
        "/simulator/reply",
        {"from_phone": "+15125550123", "to_phone": "+15125550111", "body": "hello"},
    )
    assert response.status_code == 302
    assert InboundMessage.objects.get().organization == a


def test_check_deploy_warns_while_the_simulator_gateway_is_on(settings):
    settings.CARELINE_SMS_GATEWAY = "simulator"
    warnings = run_checks(include_deployment_checks=True)
    assert "careline.W001" in {w.id for w in warnings}
    settings.CARELINE_SMS_GATEWAY = "twilio"
    assert "careline.W001" not in {w.id for w in run_checks(include_deployment_checks=True)}
    assert "careline.W001" not in {w.id for w in run_checks()}


def test_production_settings_do_not_fall_back_to_the_simulator(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DEBUG": "0", "CARELINE_DATA_DIR": str(tmp_path)}
    env.pop("CARELINE_SMS_GATEWAY", None)
    env.pop("DATABASE_URL", None)
    code = "from django.conf import settings; print(repr(settings.CARELINE_SMS_GATEWAY))"
    shell = [sys.executable, "-m", "careline", "shell", "-c", code]
    production = subprocess.run(shell, env=env, capture_output=True, text=True, timeout=120)
    assert production.stdout.split()[-1] == "''", production.stderr
    serve = subprocess.run(
        [sys.executable, "-m", "careline", "serve", "--no-worker"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert serve.returncode != 0 and "No SMS gateway chosen" in serve.stderr
    explicit = {**env, "CARELINE_SMS_GATEWAY": "simulator"}
    chosen = subprocess.run(shell, env=explicit, capture_output=True, text=True, timeout=120)
    assert chosen.stdout.split()[-1] == "'simulator'", chosen.stderr
    demo = subprocess.run(shell, env={**env, "DEBUG": "1"}, capture_output=True, text=True)
    assert demo.stdout.split()[-1] == "'simulator'", demo.stderr
