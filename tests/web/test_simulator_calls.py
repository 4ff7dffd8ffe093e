"""The simulator's calls without a browser: voicemail, silence, and who may answer."""

from __future__ import annotations

from careline.messaging.models import CallOutcome, VoiceCall


def test_the_simulator_can_answer_as_voicemail(client, build, ringing):
    client.force_login(build.staff(ringing.organization, practices=[ringing.practice]))
    token = VoiceCall.objects.get().token

    page = client.post(f"/simulator/call/{token}/answer", {"as": "voicemail"})

    html = page.content.decode()
    assert page.status_code == 200
    assert "this message is for Rosa" in html and "Lakeside Family Medicine" in html
    assert 'aria-label="Keypad"' not in html
    call = VoiceCall.objects.get()
    assert (call.status, call.outcome) == ("completed", CallOutcome.VOICEMAIL)
    assert call.duration_seconds is not None


def test_staying_silent_replays_the_menu_then_says_goodbye(client, build, ringing):
    client.force_login(build.staff(ringing.organization, practices=[ringing.practice]))
    token = VoiceCall.objects.get().token
    client.post(f"/simulator/call/{token}/answer", {"as": "person"})

    again = client.post(f"/simulator/call/{token}/key", {"digits": ""}).content.decode()
    done = client.post(f"/simulator/call/{token}/key", {"digits": ""}).content.decode()

    assert "did not get that" in again and 'aria-label="Keypad"' in again
    assert "Goodbye" in done and 'aria-label="Keypad"' not in done


def test_another_organizations_staff_cannot_answer(client, build, ringing):
    client.force_login(build.staff(build.organization()))
    token = VoiceCall.objects.get().token

    assert client.post(f"/simulator/call/{token}/answer", {"as": "person"}).status_code == 403
    assert VoiceCall.objects.get().status == ""
