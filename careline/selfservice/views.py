"""Patient pages: online booking (/book/...), visit and offer links (/a/<token>).

No patient data ever goes into a URL: the booking steps keep their state in the server-side
session, and a link carries only its random token."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from careline.clientaddress import client_address
from careline.clinics.models import Practice
from careline.clinics.validators import calendar_date, parse_id
from careline.messaging.email import calendar_invite
from careline.messaging.rendering import local_date, local_time
from careline.patients.models import Patient
from careline.scheduling.appointments import SlotUnavailable, VisitTimeError, check_visit_times
from careline.scheduling.models import UPCOMING_STATUSES, Appointment, ChangeSource
from careline.selfservice import booking, email_unsubscribe, links, ratelimit, visit_actions
from careline.selfservice.forms import (
    BirthDateForm,
    CodeForm,
    IdentityForm,
    SlotSearchForm,
    WaitlistForm,
)
from careline.selfservice.models import LinkPurpose, PatientLink
from careline.waitlist import entries, offers
from careline.waitlist.models import WaitlistEntry, WaitlistOffer, WaitlistSource

SESSION_KEY = "selfservice"
# A verified number may book again (e.g. after "that time was just taken") this long.
VERIFIED_FOR = timedelta(minutes=30)


def _address(request: HttpRequest) -> str:
    return client_address(request)


def _language() -> str:
    return (translation.get_language() or "en")[:2]


def _slot_choices(slots, practice: Practice) -> list[dict]:
    names = dict(practice.providers.values_list("id", "display_name"))
    language = _language()
    return [
        {
            "start": s.start.isoformat(),
            "provider_id": s.provider_id,
            "provider": names.get(s.provider_id, ""),
            "date": local_date(s.start, practice.zone, language),
            "time": local_time(s.start, practice.zone, language),
        }
        for s in slots
    ]


def _visit(appointment: Appointment) -> dict:
    practice, language = appointment.practice, _language()
    return {
        "date": local_date(appointment.start, practice.zone, language),
        "time": local_time(appointment.start, practice.zone, language),
        "practice": practice,
        "directions": visit_actions.directions_url(practice.address) if practice.address else "",
    }


def _too_many(request: HttpRequest, exc: ratelimit.RateLimited) -> HttpResponse:
    response = render(request, "selfservice/too_many.html", {"minutes": exc.minutes}, status=429)
    response["Retry-After"] = str(int(exc.retry_after.total_seconds()) + 1)
    return response


def _not_found(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "selfservice/not_found.html", {"message": message}, status=404)


def _parse_start(value: str) -> datetime | None:
    """The chosen slot's time as the page wrote it (ISO 8601 with its offset), or None when
    the form was tampered with (no offset, year 9999, odd digits)."""
    try:
        moment = datetime.fromisoformat(value or "")
    except ValueError:
        return None
    try:
        check_visit_times(moment)
    except VisitTimeError:
        return None
    return moment


def _ics(appointment: Appointment) -> HttpResponse:
    response = HttpResponse(calendar_invite(appointment), content_type="text/calendar")
    response["Content-Disposition"] = 'attachment; filename="visit.ics"'
    return response


# --- online booking --------------------------------------------------------------------------


def booking_page(view):
    """Resolve the practice from the URL; answer a friendly 404 for an unknown one."""

    @wraps(view)
    def wrapper(request: HttpRequest, org: str, code: str, *args, **kwargs):
        practice = (
            Practice.objects.select_related("organization")
            .filter(organization__slug=org, code=code)
            .first()
        )
        if practice is None:
            return _not_found(request, _("We could not find that practice."))
        return view(request, practice, *args, **kwargs)

    return never_cache(wrapper)


def _state(request: HttpRequest, practice: Practice) -> dict:
    state = request.session.get(SESSION_KEY) or {}
    return state if state.get("practice") == practice.pk else {"practice": practice.pk}


def _save(request: HttpRequest, state: dict) -> None:
    request.session[SESSION_KEY] = state


def _verified_patient(request: HttpRequest, practice: Practice) -> Patient | None:
    state = _state(request, practice)
    verified_at = state.get("verified_at")
    if not verified_at or datetime.fromisoformat(verified_at) + VERIFIED_FOR < timezone.now():
        return None
    return Patient.objects.filter(
        pk=state.get("patient"), organization_id=practice.organization_id
    ).first()


def _url(name: str, practice: Practice) -> str:
    return reverse(name, args=[practice.organization.slug, practice.code])


@never_cache
def practice_by_code(request: HttpRequest, code: str) -> HttpResponse:
    """The short public URL /book/<practice code>/ ."""
    matches = list(Practice.objects.filter(code=code).select_related("organization")[:20])
    if not matches:
        return _not_found(request, _("We could not find that practice."))
    if len(matches) == 1:
        return redirect(_url("selfservice:book", matches[0]))
    return render(request, "selfservice/choose_practice.html", {"practices": matches})


@booking_page
def book(request: HttpRequest, practice: Practice) -> HttpResponse:
    form = SlotSearchForm(practice, request.GET or None)
    context = {"practice": practice, "form": form, "searched": False}
    if form.is_valid():
        data = form.cleaned_data
        visit_type = booking.bookable_type(practice, data["visit_type"])
        provider = booking.bookable_provider(practice, data["provider"])
        slots = booking.slots_on_day(practice, visit_type, provider, data["day"])
        context.update(searched=True, slots=_slot_choices(slots, practice), visit_type=visit_type)
        if not slots:
            after = datetime.combine(data["day"], datetime.min.time(), tzinfo=practice.zone)
            later = booking.next_slots(
                practice, visit_type, provider, after=max(after, timezone.now()), count=3
            )
            context["later"] = _slot_choices(later, practice)
        context["waitlist_query"] = {
            "visit_type": visit_type.pk,
            "provider": data["provider"],
        }
    return render(request, "selfservice/book.html", context)


@require_POST
@booking_page
def choose(request: HttpRequest, practice: Practice) -> HttpResponse:
    try:
        visit_type = booking.bookable_type(practice, request.POST.get("visit_type"))
        provider = booking.bookable_provider(practice, request.POST.get("provider"))
    except booking.NotBookable as exc:
        return _not_found(request, str(exc))
    start = _parse_start(request.POST.get("start", ""))
    if start is None or provider is None:
        return redirect(_url("selfservice:book", practice))
    state = _state(request, practice)
    state.update(
        intent="book", visit_type=visit_type.pk, provider=provider.pk, start=start.isoformat()
    )
    _save(request, state)
    patient = _verified_patient(request, practice)
    if patient is not None:
        return _finish(request, practice, patient)
    return redirect(_url("selfservice:details", practice))


@booking_page
def join_waitlist(request: HttpRequest, practice: Practice) -> HttpResponse:
    form = WaitlistForm(practice, request.POST or None, initial=request.GET.dict())
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        state = _state(request, practice)
        state.update(
            intent="waitlist",
            visit_type=int(data["visit_type"]),
            provider=None if data["provider"] == "any" else int(data["provider"]),
            earliest=data["earliest"].isoformat(),
            latest=data["latest"].isoformat(),
        )
        _save(request, state)
        patient = _verified_patient(request, practice)
        if patient is not None:
            return _finish(request, practice, patient)
        return redirect(_url("selfservice:details", practice))
    return render(request, "selfservice/waitlist.html", {"practice": practice, "form": form})


@booking_page
def details(request: HttpRequest, practice: Practice) -> HttpResponse:
    state = _state(request, practice)
    if not state.get("intent"):
        return redirect(_url("selfservice:book", practice))
    form = IdentityForm(request.POST or None, initial={"language": _language()})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            code = booking.send_code(
                practice,
                data["mobile"],
                client_address=_address(request),
                language=data["language"],
            )
        except ratelimit.RateLimited as exc:
            return _too_many(request, exc)
        state.update(
            identity={
                "given_name": data["given_name"],
                "family_name": data["family_name"],
                "birth_date": data["birth_date"].isoformat(),
                "phone": data["mobile"],
                "language": data["language"],
            },
            code=code.pk,
        )
        _save(request, state)
        return redirect(_url("selfservice:verify", practice))
    return render(request, "selfservice/details.html", {"practice": practice, "form": form})


@booking_page
def verify(request: HttpRequest, practice: Practice) -> HttpResponse:
    state = _state(request, practice)
    identity = state.get("identity")
    if not identity or not state.get("intent"):
        return redirect(_url("selfservice:book", practice))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and "resend" in request.POST:
        try:
            code = booking.send_code(
                practice,
                identity["phone"],
                client_address=_address(request),
                language=identity["language"],
            )
        except ratelimit.RateLimited as exc:
            return _too_many(request, exc)
        state["code"] = code.pk
        _save(request, state)
        form = CodeForm()
        form.sent_again = True
    elif request.method == "POST" and form.is_valid():
        try:
            booking.verify_code(
                state["code"], form.cleaned_data["code"], client_address=_address(request)
            )
        except ratelimit.RateLimited as exc:
            return _too_many(request, exc)
        except booking.CodeRejected as exc:
            form.add_error("code", str(exc))
        else:
            patient = booking.find_or_create_patient(
                practice,
                booking.Identity(
                    given_name=identity["given_name"],
                    family_name=identity["family_name"],
                    birth_date=datetime.fromisoformat(identity["birth_date"]).date(),
                    phone=identity["phone"],
                    language=identity["language"],
                ),
            )
            state.update(patient=patient.pk, verified_at=timezone.now().isoformat(), code=None)
            _save(request, state)
            return _finish(request, practice, patient)
    return render(request, "selfservice/verify.html", {"practice": practice, "form": form})


def _finish(request: HttpRequest, practice: Practice, patient: Patient) -> HttpResponse:
    """Do what the verified patient asked for: book the chosen time or join the waitlist."""
    state = _state(request, practice)
    try:
        visit_type = booking.bookable_type(practice, state.get("visit_type"))
    except booking.NotBookable as exc:
        return _not_found(request, str(exc))
    if state.get("intent") == "waitlist":
        try:
            entry = entries.join_waitlist(
                patient=patient,
                practice=practice,
                appointment_type=visit_type,
                earliest=datetime.fromisoformat(state["earliest"]).date(),
                latest=datetime.fromisoformat(state["latest"]).date(),
                provider=booking.bookable_provider(practice, state.get("provider")),
                source=WaitlistSource.ONLINE,
            )
        except (entries.WaitlistError, booking.NotBookable) as exc:
            form = WaitlistForm(practice, initial={"visit_type": visit_type.pk})
            form.add_error(None, str(exc))
            return render(
                request, "selfservice/waitlist.html", {"practice": practice, "form": form}
            )
        state.update(intent=None, done_waitlist=entry.pk, done_appointment=None)
        _save(request, state)
        return redirect(_url("selfservice:done", practice))
    start = _parse_start(state.get("start", ""))
    try:
        appointment = booking.book_online(
            practice,
            patient,
            visit_type,
            state.get("provider"),
            start,
            client_address=_address(request),
        )
    except ratelimit.RateLimited as exc:
        return _too_many(request, exc)
    except booking.NotBookable as exc:
        return _not_found(request, str(exc))
    except SlotUnavailable:
        later = booking.next_slots(practice, visit_type, None, after=max(start, timezone.now()))
        context = {
            "practice": practice,
            "visit_type": visit_type,
            "later": _slot_choices(later, practice),
        }
        return render(request, "selfservice/taken.html", context, status=409)
    state.update(intent=None, done_appointment=appointment.pk, done_waitlist=None)
    _save(request, state)
    return redirect(_url("selfservice:done", practice))


def _done_appointment(request: HttpRequest, practice: Practice) -> Appointment | None:
    state = _state(request, practice)
    return (
        Appointment.objects.select_related("practice", "provider", "patient")
        .filter(pk=state.get("done_appointment"), patient_id=state.get("patient"))
        .first()
    )


@booking_page
def done(request: HttpRequest, practice: Practice) -> HttpResponse:
    appointment = _done_appointment(request, practice)
    state = _state(request, practice)
    context = {"practice": practice, "appointment": appointment}
    if appointment is not None:
        context["visit"] = _visit(appointment)
    elif state.get("done_waitlist"):
        context["entry"] = WaitlistEntry.objects.filter(
            pk=state["done_waitlist"], patient_id=state.get("patient")
        ).first()
    else:
        return redirect(_url("selfservice:book", practice))
    return render(request, "selfservice/done.html", context)


@booking_page
def done_calendar(request: HttpRequest, practice: Practice) -> HttpResponse:
    appointment = _done_appointment(request, practice)
    if appointment is None:
        return _not_found(request, _("There is no booked visit to add to your calendar."))
    return _ics(appointment)


# --- links -----------------------------------------------------------------------------------


def _refused(request: HttpRequest, exc: links.LinkRefused) -> HttpResponse:
    if exc.reason == "unknown":
        try:
            ratelimit.hit(ratelimit.BAD_LINKS_PER_ADDRESS, _address(request))
        except ratelimit.RateLimited as limited:
            return _too_many(request, limited)
    return render(
        request, "selfservice/link_refused.html", {"reason": exc.reason}, status=exc.http_status
    )


def _speak_to(request: HttpRequest, language: str) -> None:
    if settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
        translation.activate(language)
        request.LANGUAGE_CODE = language


def patient_link(*purposes: str):
    """Resolve the token (or show the friendly refusal page) and speak the patient's language."""

    def decorate(view):
        @wraps(view)
        def wrapper(request: HttpRequest, token: str, *args, **kwargs):
            try:
                link = links.resolve(token)
            except links.LinkRefused as exc:
                return _refused(request, exc)
            if link.purpose not in purposes:
                return render(
                    request, "selfservice/link_refused.html", {"reason": "unknown"}, status=404
                )
            patient = link.appointment.patient if link.appointment_id else link.offer.patient
            _speak_to(request, patient.preferred_language)
            response = view(request, link, token, *args, **kwargs)
            response["X-Robots-Tag"] = "noindex"
            return response

        return never_cache(wrapper)

    return decorate


def link_page(request: HttpRequest, token: str) -> HttpResponse:
    """/a/<token>: a visit link or a waitlist offer link."""
    purpose = (
        PatientLink.objects.filter(token_hash=links.hash_token(token))
        .values_list("purpose", flat=True)
        .first()
    )
    if purpose == LinkPurpose.OFFER:
        return offer_page(request, token)
    # An email's buttons: each opens the page that asks once more (mail scanners open
    # links by themselves; only the patient's POST changes the visit).
    if purpose == LinkPurpose.CONFIRM:
        return confirm_page(request, token)
    if purpose == LinkPurpose.CANCEL:
        return link_cancel(request, token)
    if purpose == LinkPurpose.MOVE:
        return link_reschedule(request, token)
    if purpose == LinkPurpose.STOP_EMAIL:
        return unsubscribe(request, token)
    return manage_page(request, token)


def _manage_context(link: PatientLink, token: str, **extra) -> dict:
    appointment = link.appointment
    return {
        "token": token,
        "appointment": appointment,
        "visit": _visit(appointment),
        "upcoming": appointment.status in UPCOMING_STATUSES,
        **extra,
    }


@patient_link(LinkPurpose.MANAGE)
def manage_page(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    context = _manage_context(link, token, moved=request.GET.get("moved") == "1")
    return render(request, "selfservice/manage.html", context)


@patient_link(LinkPurpose.CONFIRM)
def confirm_page(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    return render(request, "selfservice/confirm.html", _manage_context(link, token))


@require_POST
@patient_link(LinkPurpose.MANAGE, LinkPurpose.CONFIRM)
def link_confirm(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    single = link.purpose == LinkPurpose.CONFIRM
    try:
        visit_actions.confirm(link)
    except visit_actions.LinkActionRefused as exc:
        template = "selfservice/confirm.html" if single else "selfservice/manage.html"
        return render(request, template, _manage_context(link, token, error=str(exc)))
    except links.LinkRefused:
        return render(request, "selfservice/link_refused.html", {"reason": "used"}, status=410)
    link.appointment.refresh_from_db()
    if single:
        return render(request, "selfservice/confirmed.html", _manage_context(link, token))
    return render(request, "selfservice/manage.html", _manage_context(link, token, confirmed=True))


@patient_link(LinkPurpose.MANAGE, LinkPurpose.CANCEL)
def link_cancel(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    if request.method != "POST":
        # An email's cancel link has no visit page to go back to.
        context = _manage_context(link, token, single=link.purpose == LinkPurpose.CANCEL)
        return render(request, "selfservice/cancel.html", context)
    try:
        appointment = visit_actions.cancel(link)
    except visit_actions.LinkActionRefused as exc:
        return render(
            request, "selfservice/manage.html", _manage_context(link, token, error=str(exc))
        )
    except links.LinkRefused:
        return render(request, "selfservice/link_refused.html", {"reason": "used"}, status=410)
    return render(
        request,
        "selfservice/cancelled.html",
        {"visit": _visit(appointment), "practice": appointment.practice},
    )


@patient_link(LinkPurpose.MANAGE, LinkPurpose.MOVE)
def link_reschedule(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    appointment = link.appointment
    practice = appointment.practice
    if request.method == "POST":
        start = _parse_start(request.POST.get("start", ""))
        provider_id = parse_id(request.POST.get("provider", ""))
        if start is not None and provider_id:
            try:
                # Not "_, new_token": a local "_" would shadow gettext in this whole view.
                new_token = visit_actions.reschedule(link, start, provider_id)[1]
            except SlotUnavailable:
                error = _("Sorry, that time was just taken. Please pick another.")
            except visit_actions.LinkActionRefused as exc:
                error = str(exc)
            except links.LinkRefused:
                return render(
                    request, "selfservice/link_refused.html", {"reason": "used"}, status=410
                )
            else:
                return redirect(reverse("selfservice:link", args=[new_token]) + "?moved=1")
        else:
            error = _("Choose one of the times shown.")
    else:
        error = ""
    day = (
        calendar_date(request.GET.get("day", "")) or timezone.now().astimezone(practice.zone).date()
    )
    slots = booking.slots_on_day(practice, appointment.appointment_type, appointment.provider, day)
    later = []
    if not slots:
        after = datetime.combine(day, datetime.min.time(), tzinfo=practice.zone)
        later = booking.next_slots(
            practice,
            appointment.appointment_type,
            appointment.provider,
            after=max(after, timezone.now()),
        )
    context = _manage_context(
        link,
        token,
        error=error,
        day=day,
        slots=_slot_choices(slots, practice),
        later=_slot_choices(later, practice),
        single=link.purpose == LinkPurpose.MOVE,
    )
    return render(request, "selfservice/reschedule.html", context, status=409 if error else 200)


@patient_link(LinkPurpose.MANAGE)
def link_calendar(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    return _ics(link.appointment)


@require_POST
@patient_link(LinkPurpose.MANAGE)
def link_details(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    form = BirthDateForm(request.POST)
    entered = form.cleaned_data["birth_date"] if form.is_valid() else None
    if visit_actions.check_birth_date(link, entered):
        return render(
            request, "selfservice/manage.html", _manage_context(link, token, personal=True)
        )
    if link.used_at is not None:
        return render(request, "selfservice/link_refused.html", {"reason": "used"}, status=410)
    error = _("That date of birth does not match our records.")
    return render(
        request,
        "selfservice/manage.html",
        _manage_context(link, token, details_error=error),
        status=403,
    )


@patient_link(LinkPurpose.OFFER)
def offer_page(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    offer = link.offer
    opening = offer.opening
    language = _language()
    context = {
        "token": token,
        "offer": offer,
        "practice": opening.practice,
        "provider": opening.provider,
        "date": local_date(opening.start, opening.practice.zone, language),
        "time": local_time(opening.start, opening.practice.zone, language),
        "open": offer.state == WaitlistOffer.State.PENDING,
    }
    return render(request, "selfservice/offer.html", context)


@require_POST
@patient_link(LinkPurpose.OFFER)
def offer_answer(request: HttpRequest, link: PatientLink, token: str) -> HttpResponse:
    if request.POST.get("answer") == "take":
        outcome = offers.accept_offer(link.offer_id, source=ChangeSource.PATIENT_LINK)
    else:
        outcome = offers.decline_offer(link.offer_id)
    context = {"outcome": outcome, "practice": link.offer.opening.practice}
    if outcome.appointment is not None:
        context["visit"] = _visit(outcome.appointment)
        context["manage_token"] = links.issue_manage_link(outcome.appointment.pk)
    return render(
        request, "selfservice/offer_result.html", context, status=200 if outcome.won else 409
    )


# RFC 8058: a mail provider's one-click unsubscribe is a POST of
# "List-Unsubscribe=One-Click" with no page and no cookie, so no CSRF token. Nothing else
# can be done with it than what the token itself allows: stop email to one address.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """/a/<token>/unsubscribe: GET asks, POST (the page's button or the one-click POST)
    stops email to the address the email went to."""
    try:
        link = links.resolve(token)
    except links.LinkRefused as exc:
        return _refused(request, exc)
    if link.purpose != LinkPurpose.STOP_EMAIL:
        return render(request, "selfservice/link_refused.html", {"reason": "unknown"}, status=404)
    recipient = email_unsubscribe.recipient(link)
    if recipient is None:
        return render(request, "selfservice/link_refused.html", {"reason": "unknown"}, status=404)
    _speak_to(request, recipient.language)
    context = {"practice": recipient.practice, "token": token}
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        email_unsubscribe.stop_email(recipient, one_click=one_click)
        response = render(request, "selfservice/unsubscribed.html", context)
    else:
        response = render(request, "selfservice/unsubscribe.html", context)
    response["X-Robots-Tag"] = "noindex"
    return response
