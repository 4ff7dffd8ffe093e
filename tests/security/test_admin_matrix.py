"""Every registered admin model × every admin view × every role, against another
organization's objects (issue 18): nothing of organization B reaches organization A.

The matrix walks `admin.site._registry`, so a model registered tomorrow is covered the day
it is registered — and fails loudly until BUILDERS below says how to make one of it for an
organization. For each model it tries the changelist, add, change, delete and history
pages, a forged delete and every admin action on B's row, add pages pre-filled with B's
rows (the raw-id and select labels), changelist filters on B's rows, and every
autocomplete a field of the model offers; B's row must come out unchanged.

Roles: front desk, practice manager, organization admin (all of organization A) and an
anonymous visitor. Only organization admins (and superusers) may use the admin at all; the
others are refused everywhere. Organization B's rows all carry the word "Bzork" (names,
usernames, settings, texts) or its phone numbers, none of which may appear in any answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from careline.audit.models import AuditEvent
from careline.broadcasts.models import Broadcast
from careline.clinics.admin_scoping import ScopedAdmin
from careline.clinics.models import StaffMembership, StaffRole
from careline.conversations.models import CannedReply, Conversation, InboundMessage
from careline.integrations.models import ApiKey, Hl7Feed, Hl7Message, Hl7OutboundMessage
from careline.messaging.models import MessageTemplate, OutboundMessage, ReminderRule
from careline.scheduling.appointments import book_appointment
from careline.scheduling.models import BlockedPeriod, Holiday, RecurringBreak, WorkingHours
from careline.waitlist.models import SlotOpening, WaitlistEntry

SECRET = "bzork"  # in every organization B name, lower-cased for the search
SENDERS = {"Alfa": "+15125550411", "Bzork": "+13035550422"}
PATIENT_PHONES = {"Alfa": "+15125550433", "Bzork": "+13035550444"}
DAY = date(2026, 12, 2)
ROLES = ["front_desk", "manager", "org_admin", "anonymous"]
REFUSED = (302, 403)


def _base(build, tag: str) -> SimpleNamespace:
    low = tag.lower()
    org = build.organization(
        name=f"{tag} Health", slug=f"{low}-health", default_sender_number=SENDERS[tag]
    )
    practice = build.practice(org, name=f"{tag} Clinic", code=f"{tag[:3]}1")
    provider = build.provider(practice, display_name=f"Dr. {tag}doc", family_name=f"{tag}doc")
    kind = build.appointment_type(org, name=f"{tag} visit", patient_facing_name=f"{tag} check")
    patient = build.patient(
        org,
        home_practice=practice,
        family_name=f"{tag}patient",
        given_name=f"{tag}given",
        mrn=f"{tag}MRN",
        mobile_phone=PATIENT_PHONES[tag],
    )
    appointment = book_appointment(
        patient=patient,
        provider=provider,
        practice=practice,
        appointment_type=kind,
        start=datetime.combine(DAY, time(9), tzinfo=practice.zone),
    )
    feed = Hl7Feed.objects.create(organization=org, name=f"{tag}Feed", time_zone="America/Chicago")
    return SimpleNamespace(
        tag=tag,
        org=org,
        practice=practice,
        provider=provider,
        kind=kind,
        patient=patient,
        appointment=appointment,
        feed=feed,
        admin=build.staff(org, StaffRole.ORGANIZATION_ADMIN, username=f"{low}_admin"),
        manager=build.staff(org, StaffRole.PRACTICE_MANAGER, practices=[practice]),
        desk=build.staff(org, StaffRole.FRONT_DESK, practices=[practice]),
    )


def _now() -> datetime:
    return timezone.now()


# How to make one row of each registered model for an organization (its base objects `o`).
BUILDERS: dict[str, Callable[[SimpleNamespace], models.Model]] = {
    "auth.Group": lambda o: Group.objects.create(name=f"{o.tag} group"),
    "auth.User": lambda o: o.admin,
    "clinics.Organization": lambda o: o.org,
    "clinics.Practice": lambda o: o.practice,
    "clinics.Provider": lambda o: o.provider,
    "clinics.AppointmentType": lambda o: o.kind,
    "clinics.StaffMembership": lambda o: StaffMembership.objects.get(user=o.admin),
    "patients.Patient": lambda o: o.patient,
    "scheduling.Appointment": lambda o: o.appointment,
    "scheduling.WorkingHours": lambda o: WorkingHours.objects.filter(provider=o.provider).first(),
    "scheduling.RecurringBreak": lambda o: RecurringBreak.objects.create(
        provider=o.provider,
        practice=o.practice,
        weekday=0,
        start_time=time(12),
        end_time=time(13),
        label=f"{o.tag} lunch",
    ),
    "scheduling.BlockedPeriod": lambda o: BlockedPeriod.objects.create(
        practice=o.practice,
        provider=o.provider,
        start=_now() + timedelta(days=3),
        end=_now() + timedelta(days=3, hours=2),
        reason=f"{o.tag} offsite",
    ),
    "scheduling.Holiday": lambda o: Holiday.objects.create(
        practice=o.practice, date=date(2026, 12, 25), name=f"{o.tag} holiday"
    ),
    "integrations.Hl7Feed": lambda o: o.feed,
    "integrations.Hl7Message": lambda o: Hl7Message.objects.create(
        feed=o.feed,
        control_id=f"{o.tag}CTL",
        raw=f"MSH|^~\\&|EHR\rPID|1||{o.tag}MRN||{o.tag}patient^{o.tag}given",
        received_at=_now(),
        appointment=o.appointment,
    ),
    "integrations.Hl7OutboundMessage": lambda o: Hl7OutboundMessage.objects.create(
        feed=o.feed,
        appointment=o.appointment,
        patient=o.patient,
        stream=f"appointment:{o.appointment.pk}",
        sequence=1,
        message_type="S14",
        control_id=f"{o.tag}OUT",
        raw=f"MSH|^~\\&|CARELINE\rPID|1||{o.tag}MRN||{o.tag}patient",
        next_attempt_at=_now(),
        created_at=_now(),
    ),
    "integrations.ApiKey": lambda o: ApiKey.objects.create(
        organization=o.org, name=f"{o.tag} key", prefix=f"{o.tag[:4]}pfx", secret_hash="0" * 64
    ),
    "messaging.OutboundMessage": lambda o: OutboundMessage.objects.create(
        organization=o.org,
        practice=o.practice,
        patient=o.patient,
        appointment=o.appointment,
        kind="reminder",
        to_address=o.patient.mobile_phone,
        sender=SENDERS[o.tag],
        body=f"Hi {o.tag}given, see you soon",
        due_at=_now(),
        created_at=_now(),
    ),
    # Organization-wide settings: no practice.
    "messaging.MessageTemplate": lambda o: MessageTemplate.objects.create(
        organization=o.org, kind="reminder", language="en", body=f"{o.tag} wording {{date}}"
    ),
    "messaging.ReminderRule": lambda o: ReminderRule.objects.create(
        organization=o.org, offsets_minutes=[1440]
    ),
    "conversations.InboundMessage": lambda o: InboundMessage.objects.create(
        provider_message_id=f"{o.tag}SM1",
        from_phone=o.patient.mobile_phone,
        to_phone=SENDERS[o.tag],
        body=f"{o.tag} says yes",
        received_at=_now(),
        organization=o.org,
        practice=o.practice,
        appointment=o.appointment,
    ),
    "conversations.CannedReply": lambda o: CannedReply.objects.create(
        organization=o.org, title=f"{o.tag} canned", body=f"{o.tag} canned body"
    ),
    "conversations.Conversation": lambda o: Conversation.objects.create(
        organization=o.org,
        practice=o.practice,
        patient=o.patient,
        phone=o.patient.mobile_phone,
        created_at=_now(),
        last_patient_message_at=_now(),
    ),
    "audit.AuditEvent": lambda o: AuditEvent.objects.create(
        user=o.admin,
        patient=o.patient,
        practice=o.practice,
        action=AuditEvent.Action.VIEW,
        what=f"{o.tag} lookup",
    ),
    "broadcasts.Broadcast": lambda o: _broadcast(o),
    "waitlist.WaitlistEntry": lambda o: WaitlistEntry.objects.create(
        organization=o.org,
        practice=o.practice,
        patient=o.patient,
        appointment_type=o.kind,
        appointment=o.appointment,
        earliest_date=DAY,
        latest_date=DAY + timedelta(days=7),
        source="staff",
        created_at=_now(),
    ),
    "waitlist.SlotOpening": lambda o: SlotOpening.objects.create(
        organization=o.org,
        practice=o.practice,
        provider=o.provider,
        start=_now() + timedelta(days=2),
        end=_now() + timedelta(days=2, minutes=20),
        created_at=_now(),
    ),
}


def _broadcast(o: SimpleNamespace) -> Broadcast:
    broadcast = Broadcast.objects.create(
        organization=o.org, name=f"{o.tag} closure", body_en=f"{o.tag} closed", send_at=_now()
    )
    broadcast.practices.set([o.practice])
    return broadcast


def _label(model) -> str:
    return model._meta.label


def _build_rows(o: SimpleNamespace) -> dict[str, models.Model]:
    rows = {}
    for model in admin.site._registry:
        builder = BUILDERS.get(_label(model))
        if builder is None:
            pytest.fail(
                f"{_label(model)} is registered in the admin but tests/security/"
                "test_admin_matrix.py does not know how to build one for an organization: "
                "add it to BUILDERS so the cross-organization matrix covers it"
            )
        row = builder(o)
        assert row is not None and row.pk, f"BUILDERS made no row of {_label(model)}"
        rows[_label(model)] = row
    return rows


@pytest.fixture
def world(build):
    a, b = _base(build, "Alfa"), _base(build, "Bzork")
    return {"A": a, "B": b, "rows_a": _build_rows(a), "rows_b": _build_rows(b)}


def _login(client, world, role: str) -> None:
    a = world["A"]
    user = {"front_desk": a.desk, "manager": a.manager, "org_admin": a.admin}.get(role)
    if user is not None:
        client.force_login(user)


def _assert_no_b(response, what: str) -> None:
    assert response.status_code != 500, f"{what} gave 500"
    body = response.content.decode(errors="replace")
    lowered = body.lower()
    assert SECRET not in lowered, f"organization B's name leaked at {what}"
    for number in (SENDERS["Bzork"], PATIENT_PHONES["Bzork"]):
        assert number not in body, f"organization B's number leaked at {what}"


def _assert_refused(response, what: str) -> None:
    assert response.status_code in REFUSED, f"{what} gave {response.status_code}"
    if response.status_code == 302:
        assert response["Location"].startswith(reverse("admin:login")), what
    _assert_no_b(response, what)


def _url(model, view: str, *args) -> str | None:
    meta = model._meta
    try:
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)
    except NoReverseMatch:
        return None


def _relations(model):
    """Foreign keys and many-to-many fields of `model` to a registered model."""
    for field in model._meta.get_fields():
        if (
            (field.many_to_one or field.many_to_many)
            and not field.auto_created
            and field.related_model in admin.site._registry
        ):
            yield field


def _autocomplete_requests(model):
    for field in _relations(model):
        target_admin = admin.site._registry[field.related_model]
        if target_admin.get_search_fields(None):
            yield {
                "app_label": model._meta.app_label,
                "model_name": model._meta.model_name,
                "field_name": field.name,
            }


def _requests(model, rows_a, rows_b):
    """(method, url, data, what) for one model: every door of the admin into B's rows."""
    label = _label(model)
    theirs = rows_b[label]
    for view in ("changelist", "add"):
        url = _url(model, view)
        if url:
            yield "get", url, None, f"GET {url}"
    for view in ("change", "delete", "history"):
        url = _url(model, view, theirs.pk)
        if url:
            yield "get", url, None, f"GET {url} (B's {label})"
    delete = _url(model, "delete", theirs.pk)
    if delete:
        yield "post", delete, {"post": "yes"}, f"POST {delete} (B's {label})"
    change = _url(model, "change", theirs.pk)
    if change:
        yield "post", change, {}, f"POST {change} (B's {label})"
    add, changelist = _url(model, "add"), _url(model, "changelist")
    model_admin = admin.site._registry[model]
    for action in ["delete_selected", *(model_admin.actions or [])]:
        name = action if isinstance(action, str) else action.__name__
        data = {"action": name, "_selected_action": [theirs.pk], "post": "yes"}
        yield "post", changelist, data, f"action {name} on B's {label}"
    for field in _relations(model):
        target = rows_b[_label(field.related_model)]
        if add:
            url = f"{add}?{field.name}={target.pk}"
            yield "get", url, None, f"GET {url} (label of B's {_label(field.related_model)})"
        if changelist and field.many_to_one:
            url = f"{changelist}?{field.name}__id__exact={target.pk}"
            yield "get", url, None, f"GET {url}"
    autocomplete = reverse("admin:autocomplete")
    for params in _autocomplete_requests(model):
        for term in ("", "Bzork", rows_b["patients.Patient"].family_name[:4]):
            query = {**params, "term": term}
            yield "get", autocomplete, query, f"autocomplete {query}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("model", list(admin.site._registry), ids=_label)
def test_nothing_of_organization_b_through_the_admin(client, world, model, role):
    _login(client, world, role)
    theirs = world["rows_b"][_label(model)]
    rows = type(theirs)._default_manager.filter(pk=theirs.pk)
    before = rows.values().get()
    checked = 0
    for method, url, data, what in _requests(model, world["rows_a"], world["rows_b"]):
        response = getattr(client, method)(url, data or {})
        what = f"{role} of A: {what}"
        if role == "org_admin":
            _assert_no_b(response, what)
            if "autocomplete" in what and response.status_code == 200:
                assert not any(
                    SECRET in r["text"].lower() for r in json.loads(response.content)["results"]
                ), what
        else:
            _assert_refused(response, what)
        checked += 1
    assert checked >= 6
    # Forged deletes, actions and posts changed nothing of B's row.
    assert rows.values().get() == before, _label(model)


@pytest.mark.parametrize("model", list(admin.site._registry), ids=_label)
def test_organization_admin_still_opens_own_rows(client, world, model):
    """The matrix is not vacuous: A's admin opens A's rows where its role allows."""
    _login(client, world, "org_admin")
    model_admin = admin.site._registry[model]
    mine = world["rows_a"][_label(model)]
    response = client.get(_url(model, "change", mine.pk))
    if isinstance(model_admin, ScopedAdmin):
        assert response.status_code == 200, _label(model)
    else:
        assert response.status_code == 403, _label(model)  # superusers' models: users, keys
    _assert_no_b(response, f"A's own {_label(model)}")


@pytest.mark.parametrize("role", ROLES)
def test_admin_index_and_app_pages(client, world, role):
    _login(client, world, role)
    app_labels = sorted({m._meta.app_label for m in admin.site._registry})
    for url in [reverse("admin:index")] + [
        reverse("admin:app_list", args=[label]) for label in app_labels
    ]:
        response = client.get(url)
        if role == "org_admin":
            assert response.status_code in (200, 404), url  # 404: an app it has no model of
            _assert_no_b(response, url)
        else:
            _assert_refused(response, url)
