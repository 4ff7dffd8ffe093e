"""Settings pages for managers: templates with live preview, reminder cadence, numbers."""

from __future__ import annotations

import math

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
)
from django.shortcuts import get_object_or_404, redirect, render

from careline.clinics.models import Organization, Practice, StaffMembership, StaffRole
from careline.clinics.numbers import (
    NumberTaken,
    check_sender_number,
    claim_sender_number,
    release_unused,
)
from careline.clinics.office_hours import (
    WEEKDAYS,
    format_span,
    practice_week,
    save_office_hours,
    use_default_hours,
)
from careline.clinics.validators import normalize_phone, parse_id
from careline.conversations import response_limits
from careline.conversations.inbox import InboxError, delete_canned_reply, save_canned_reply
from careline.conversations.inbox import office_hours as inbox_hours
from careline.conversations.models import CannedReply
from careline.messaging.models import (
    MAX_OFFSET_MINUTES,
    MessageKind,
    MessageTemplate,
    ReminderRule,
)
from careline.messaging.rendering import local_date, local_time, render_body
from careline.messaging.rules import (
    default_rule,
    practice_rule,
    save_default_rule,
    save_practice_rule,
)
from careline.messaging.segments import count_segments
from careline.messaging.template_syntax import VARIABLES
from careline.messaging.texts import DEFAULTS, default_body, has_default
from careline.patients.models import Language
from careline.scheduling.holidays import add_holiday, remove_holiday
from careline.scheduling.models import Holiday

MANAGER_ROLES = {StaffRole.ORGANIZATION_ADMIN, StaffRole.PRACTICE_MANAGER}


def _organizations(user) -> list[Organization]:
    """Organizations in which the user may change settings."""
    if user.is_superuser:
        return list(Organization.objects.all())
    return list(
        Organization.objects.filter(staff__user=user, staff__role__in=MANAGER_ROLES).distinct()
    )


def _require_manager(request: HttpRequest) -> list[Organization]:
    orgs = _organizations(request.user)
    if not orgs:
        raise PermissionDenied("Settings are for practice managers and organization admins.")
    return orgs


ORGANIZATION_WIDE_ONLY = (
    "Settings that apply to the whole organization are for organization admins; "
    "practice managers change their own practices' settings."
)


def _is_org_admin(user, organization_id: int) -> bool:
    return (
        user.is_superuser
        or StaffMembership.objects.filter(
            user=user, organization_id=organization_id, role=StaffRole.ORGANIZATION_ADMIN
        ).exists()
    )


def sample_preview(body: str, language: str, practice: Practice | None) -> dict:
    """The template as a patient would read it, with a sample visit, and its segment cost."""
    from datetime import datetime, time, timedelta

    from django.utils import timezone

    zone = practice.zone if practice else timezone.get_current_timezone()
    visit = datetime.combine(timezone.now().date() + timedelta(days=3), time(14, 40), tzinfo=zone)
    variables = {
        "first_name": "María" if language == Language.SPANISH else "Alexandra",
        "practice": practice.name if practice else "Your Practice",
        "date": local_date(visit, zone, language),
        "time": local_time(visit, zone, language),
        "address": practice.address if practice else "100 Main St",
        "practice_phone": "(512) 555-0199",
        "link": f"{settings.CARELINE_BASE_URL}/a/Xy7Kp2Qm9Rt4Wz8B",
    }
    try:
        text = render_body(body, variables)
    except ValidationError as exc:
        return {"error": " ".join(exc.messages)}
    return {"text": text, "count": count_segments(text)}


class TemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ["practice", "kind", "language", "body", "active"]
        widgets = {"body": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args, user=None, organization=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        practices = Practice.objects.visible_to(user).filter(organization=organization)
        self.fields["practice"].queryset = practices
        self.fields["practice"].required = not _is_org_admin(user, organization.id)
        self.fields["practice"].help_text = "Blank: every practice of the organization."
        self.instance.organization = organization


def _catalog_defaults() -> list[MessageTemplate]:
    """Careline's default texts (the gettext catalog), unsaved, for managers to read and
    customize."""
    return [
        MessageTemplate(kind=kind, language=language, body=body)
        for (kind, language), body in DEFAULTS.items()
        if has_default(kind, language)
    ]


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    orgs = _require_manager(request)
    org_ids = [o.id for o in orgs]
    practices = Practice.objects.visible_to(request.user).filter(organization_id__in=org_ids)
    context = {
        "organizations": [o for o in orgs if _is_org_admin(request.user, o.id)],
        "practices": practices,
        "templates": MessageTemplate.objects.filter(organization_id__in=org_ids)
        .filter(Q(practice__isnull=True) | Q(practice__in=practices))
        .select_related("organization", "practice"),
        "defaults": _catalog_defaults(),
        "rules": ReminderRule.objects.filter(organization_id__in=org_ids)
        .filter(Q(practice__isnull=True) | Q(practice__in=practices))
        .select_related("practice", "appointment_type"),
        "sending_hours": (
            settings.CARELINE_SENDING_HOURS_START,
            settings.CARELINE_SENDING_HOURS_END,
        ),
        "office_hours": getattr(settings, "CARELINE_OFFICE_HOURS", ""),
        "response_limits": [
            (o, response_limits.limits_of(o)) for o in orgs if _is_org_admin(request.user, o.id)
        ],
        "staff": StaffMembership.objects.filter(organization_id__in=org_ids).select_related("user"),
    }
    return render(request, "web/settings/overview.html", context)


@login_required
def edit_template(request: HttpRequest, template_id: int | None = None) -> HttpResponse:
    orgs = _require_manager(request)
    organization = orgs[0]
    instance = None
    kind, language = request.GET.get("kind"), request.GET.get("language")
    if template_id is None and (kind, language) in DEFAULTS:
        # "Customize" on one of Careline's defaults: start from its wording.
        instance = MessageTemplate(kind=kind, language=language, body=default_body(kind, language))
    if template_id is not None:
        template = get_object_or_404(MessageTemplate, pk=template_id)
        if template.organization_id is None:
            # A row migration 0002 made for Careline's default: editing makes the
            # organization's own copy of the default as the catalog now words it.
            instance = MessageTemplate(
                kind=template.kind,
                language=template.language,
                body=default_body(template.kind, template.language) or template.body,
            )
        else:
            if template.organization_id not in {o.id for o in orgs}:
                raise PermissionDenied
            if template.practice_id is None and not _is_org_admin(
                request.user, template.organization_id
            ):
                raise PermissionDenied(ORGANIZATION_WIDE_ONLY)
            if (
                template.practice_id
                and not Practice.objects.visible_to(request.user)
                .filter(pk=template.practice_id)
                .exists()
            ):
                raise PermissionDenied
            instance, organization = template, template.organization
    if (
        request.method == "POST"
        and request.POST.get("action") != "preview"
        and not request.POST.get("practice")
        and not _is_org_admin(request.user, organization.id)
    ):
        raise PermissionDenied(ORGANIZATION_WIDE_ONLY)
    form = TemplateForm(
        request.POST or None, instance=instance, user=request.user, organization=organization
    )
    if request.method == "POST" and request.POST.get("action") != "preview" and form.is_valid():
        form.save()
        messages.success(
            request, "Template saved. Every text not sent yet, planned reminders included, uses it."
        )
        return redirect("messaging_settings:overview")
    body = (
        request.POST.get("body")
        if request.method == "POST"
        else (instance.body if instance else "")
    )
    language = request.POST.get("language") or (instance.language if instance else "en")
    practice_id = (
        parse_id(request.POST.get("practice"))
        if request.method == "POST"
        else (instance.practice_id if instance else None)
    )
    practice = Practice.objects.visible_to(request.user).filter(pk=practice_id or 0).first()
    context = {
        "form": form,
        "preview": sample_preview(body or "", language, practice),
        "variables": VARIABLES,
        "kinds": MessageKind.choices,
    }
    if request.htmx:
        return render(request, "web/settings/_template_preview.html", context)
    return render(request, "web/settings/template.html", context)


class CadenceForm(forms.Form):
    hours_before = forms.CharField(
        label="Reminders, hours before the visit",
        help_text="Comma-separated, e.g. 72, 24 (add 2 for a same-day reminder). Blank: none.",
        required=False,
    )
    stop_when_confirmed = forms.BooleanField(required=False)
    send_event_messages = forms.BooleanField(
        required=False, label="Text when a visit is booked, moved or cancelled"
    )

    def clean_hours_before(self) -> list[int]:
        text = self.cleaned_data["hours_before"].replace(";", ",")
        if not text.isascii():  # float() would read "٣" as 3
            raise ValidationError("Write numbers of hours with the digits 0-9.")
        try:
            hours = [float(h) for h in text.split(",") if h.strip()]
        except ValueError as exc:
            raise ValidationError("Write numbers of hours, separated by commas.") from exc
        # float() also reads "inf", "nan", "1e308" and "٣"; the rule's own check
        # (1 minute to 60 days) names the range, these would not reach it.
        if not all(math.isfinite(h) and 0 < h <= MAX_OFFSET_MINUTES / 60 for h in hours):
            raise ValidationError(
                f"Each reminder must be between 1 minute and {MAX_OFFSET_MINUTES // 1440} days "
                "before the visit."
            )
        return sorted({int(h * 60) for h in hours}, reverse=True)


@login_required
def edit_cadence(request: HttpRequest, organization_id: int) -> HttpResponse:
    orgs = _require_manager(request)
    organization = next((o for o in orgs if o.id == organization_id), None)
    if organization is None or not _is_org_admin(request.user, organization_id):
        raise PermissionDenied("Only organization admins change the organization's cadence.")
    return _cadence_page(
        request,
        default_rule(organization),
        lambda **fields: save_default_rule(organization, **fields),
        organization,
        "Reminder cadence saved; the planned reminders of upcoming visits follow it now.",
    )


def _cadence_page(request, rule, save, subject, saved: str) -> HttpResponse:
    """The cadence form for one rule (the organization's or a practice's own)."""
    initial = {
        "hours_before": ", ".join(f"{m / 60:g}" for m in rule.offsets_minutes),
        "stop_when_confirmed": rule.stop_when_confirmed,
        "send_event_messages": rule.send_event_messages,
    }
    form = CadenceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            save(
                offsets_minutes=form.cleaned_data["hours_before"],
                stop_when_confirmed=form.cleaned_data["stop_when_confirmed"],
                send_event_messages=form.cleaned_data["send_event_messages"],
            )
        except ValidationError as exc:
            form.add_error("hours_before", " ".join(exc.messages))
        else:
            messages.success(request, saved)
            return redirect("messaging_settings:overview")
    return render(request, "web/settings/cadence.html", {"form": form, "subject": subject})


class PracticeNumbersForm(forms.ModelForm):
    class Meta:
        model = Practice
        fields = ["phone", "sender_number", "address"]

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"]) if self.cleaned_data["phone"] else ""

    def clean_sender_number(self) -> str:
        value = self.cleaned_data["sender_number"]
        value = normalize_phone(value) if value else ""
        check_sender_number(self.instance.organization_id, value)
        return value


def _managed_practice(request: HttpRequest, practice_id: int) -> Practice:
    """A practice whose settings the user may change: one of theirs, as its manager (or an
    admin of its organization); not a practice they only work the front desk of."""
    _require_manager(request)
    practice = get_object_or_404(Practice.objects.visible_to(request.user), pk=practice_id)
    if (
        not request.user.is_superuser
        and not StaffMembership.objects.filter(
            user=request.user, organization_id=practice.organization_id, role__in=MANAGER_ROLES
        ).exists()
    ):
        raise PermissionDenied("Practice settings are for the practice's managers.")
    return practice


@login_required
def edit_practice_cadence(request: HttpRequest, practice_id: int) -> HttpResponse:
    practice = _managed_practice(request, practice_id)
    return _cadence_page(
        request,
        practice_rule(practice),
        lambda **fields: save_practice_rule(practice, **fields),
        practice,
        f"{practice.name}'s reminder cadence saved; its upcoming visits' reminders follow it.",
    )


@login_required
def edit_practice(request: HttpRequest, practice_id: int) -> HttpResponse:
    practice = _managed_practice(request, practice_id)
    form = PracticeNumbersForm(request.POST or None, instance=practice)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                claim_sender_number(practice.organization_id, form.cleaned_data["sender_number"])
                form.save()
                release_unused(practice.organization_id)
        except NumberTaken as exc:
            form.add_error("sender_number", exc)
        else:
            messages.success(request, f"{practice.name} saved.")
            return redirect("messaging_settings:overview")
    return render(request, "web/settings/practice.html", {"form": form, "practice": practice})


class OfficeHoursForm(forms.Form):
    """A practice's week: each day "08:00-18:00" or empty for closed."""

    use_default = forms.BooleanField(
        required=False,
        label="Use Careline's default hours",
        help_text="The installation's hours (CARELINE_OFFICE_HOURS) instead of the ones below.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for day in WEEKDAYS:
            self.fields[day] = forms.CharField(
                required=False, max_length=20, label=day.capitalize(), help_text="e.g. 08:00-18:00"
            )


class HolidayForm(forms.Form):
    date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    name = forms.CharField(max_length=120, help_text="e.g. Thanksgiving")


def _practice_for_hours(request: HttpRequest, practice_id: int) -> tuple[Practice, bool]:
    """A practice the user works in (404 for any other), and whether they may change its
    hours: its managers and its organization's admins; the front desk only reads them."""
    practice = get_object_or_404(Practice.objects.visible_to(request.user), pk=practice_id)
    may_edit = (
        request.user.is_superuser
        or StaffMembership.objects.filter(
            user=request.user, organization_id=practice.organization_id, role__in=MANAGER_ROLES
        ).exists()
    )
    return practice, may_edit


@login_required
def office_hours(request: HttpRequest, practice_id: int) -> HttpResponse:
    practice, may_edit = _practice_for_hours(request, practice_id)
    if request.method == "POST" and not may_edit:
        raise PermissionDenied("Office hours are changed by the practice's managers.")
    week = practice_week(practice)
    initial = {"use_default": week is None}
    shown = week or inbox_hours(None).days
    initial.update({day: format_span(span) for day, span in zip(WEEKDAYS, shown, strict=True)})
    hours_form = OfficeHoursForm(initial=initial)
    holiday_form = HolidayForm()
    action = request.POST.get("action", "")
    if request.method == "POST" and action == "hours":
        hours_form = OfficeHoursForm(request.POST)
        if hours_form.is_valid():
            data = hours_form.cleaned_data
            try:
                if data["use_default"]:
                    use_default_hours(practice)
                else:
                    save_office_hours(practice, {day: data[day] for day in WEEKDAYS})
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    hours_form.add_error(field, errors)
            else:
                messages.success(request, f"{practice.name}'s office hours saved.")
                return redirect("messaging_settings:office_hours", practice.pk)
    elif request.method == "POST" and action == "add_holiday":
        holiday_form = HolidayForm(request.POST)
        if holiday_form.is_valid():
            try:
                add_holiday(
                    practice, holiday_form.cleaned_data["date"], holiday_form.cleaned_data["name"]
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    holiday_form.add_error(field, errors)
            else:
                messages.success(request, f"{practice.name} is closed on that day.")
                return redirect("messaging_settings:office_hours", practice.pk)
    elif request.method == "POST" and action == "remove_holiday":
        try:
            holiday_id = int(request.POST.get("holiday", ""))
        except ValueError:
            holiday_id = 0
        if not remove_holiday(practice, holiday_id):
            raise Http404("No such holiday at this practice.")
        messages.success(request, "Holiday removed.")
        return redirect("messaging_settings:office_hours", practice.pk)
    elif request.method == "POST":
        return HttpResponseBadRequest("Unknown action.")
    context = {
        "practice": practice,
        "may_edit": may_edit,
        "uses_default": week is None,
        "default_hours": settings.CARELINE_OFFICE_HOURS,
        "hours_form": hours_form,
        "week": list(zip(WEEKDAYS, shown, strict=True)),
        "holiday_form": holiday_form,
        "holidays": Holiday.objects.filter(practice=practice).order_by("date"),
    }
    return render(request, "web/settings/office_hours.html", context)


# --- response-time limits per inbox queue ----------------------------------------------------


class ResponseLimitsForm(forms.Form):
    """One field per queue: whole minutes, or blank to take the organization's (for a
    practice) or Careline's default (for the organization)."""

    def __init__(self, *args, limits: list[response_limits.QueueLimit], inherit_from: str, **kw):
        super().__init__(*args, **kw)
        for limit in limits:
            self.fields[limit.queue] = forms.CharField(
                required=False,
                max_length=10,
                label=f"{limit.label}, minutes",
                initial="" if limit.own is None else str(limit.own),
                help_text=f"Blank: {inherit_from} ({limit.inherited} min).",
                widget=forms.TextInput(attrs={"inputmode": "numeric", "size": 6}),
            )


def _response_limits_page(request, organization, practice) -> HttpResponse:
    limits = response_limits.limits_of(organization, practice)
    inherit_from = "the organization's limit" if practice else "Careline's default"
    form = ResponseLimitsForm(request.POST or None, limits=limits, inherit_from=inherit_from)
    if request.method == "POST" and form.is_valid():
        try:
            response_limits.save_limits(organization, practice, form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            subject = practice.name if practice else organization.name
            messages.success(
                request, f"{subject}'s response times saved; the inbox clocks follow them now."
            )
            return redirect("messaging_settings:overview")
    context = {
        "form": form,
        "subject": practice or organization,
        "limits": limits,
        "practice": practice,
    }
    return render(
        request,
        "web/settings/response_limits.html",
        context,
        status=422 if request.method == "POST" else 200,
    )


@login_required
def edit_response_limits(request: HttpRequest, organization_id: int) -> HttpResponse:
    orgs = _require_manager(request)
    organization = next((o for o in orgs if o.id == organization_id), None)
    if organization is None or not _is_org_admin(request.user, organization_id):
        raise PermissionDenied(ORGANIZATION_WIDE_ONLY)
    return _response_limits_page(request, organization, None)


@login_required
def edit_practice_response_limits(request: HttpRequest, practice_id: int) -> HttpResponse:
    practice = _managed_practice(request, practice_id)
    return _response_limits_page(request, practice.organization, practice)


# --- canned replies: per practice (its managers) or organization-wide (its admins) -----------


def _managed_practices(request: HttpRequest):
    """Practices whose settings the user may change (see `_managed_practice`)."""
    practices = Practice.objects.visible_to(request.user)
    if request.user.is_superuser:
        return practices
    return practices.filter(
        organization_id__in=StaffMembership.objects.filter(
            user=request.user, role__in=MANAGER_ROLES
        ).values("organization_id")
    )


def _editable_canned_reply(request: HttpRequest, reply_id: int) -> CannedReply:
    """A canned reply the user may change: one of their practices' (404 for another
    practice's), or an organization-wide one if they are its organization's admin."""
    orgs = _require_manager(request)
    reply = get_object_or_404(
        CannedReply.objects.filter(organization_id__in=[o.id for o in orgs]).filter(
            Q(practice__isnull=True) | Q(practice__in=_managed_practices(request))
        ),
        pk=reply_id,
    )
    if reply.practice_id is None and not _is_org_admin(request.user, reply.organization_id):
        raise PermissionDenied(ORGANIZATION_WIDE_ONLY)
    return reply


@login_required
def canned_replies(request: HttpRequest, canned_reply_id: int | None = None) -> HttpResponse:
    """The list of canned replies the user keeps, and the form to add or change one.
    "For" is a practice's id, or "org:<id>" for every practice of the organization, which
    only its admins may choose (403 for anyone else, as for the organization's templates)."""
    orgs = _require_manager(request)
    practices = _managed_practices(request).select_related("organization")
    admin_of = [o for o in orgs if _is_org_admin(request.user, o.id)]
    reply = _editable_canned_reply(request, canned_reply_id) if canned_reply_id else None
    errors: list[str] = []
    if request.method == "POST":
        chosen = request.POST.get("practice", "")
        practice = None
        if chosen.startswith("org:"):
            if not admin_of:
                raise PermissionDenied(ORGANIZATION_WIDE_ONLY)
            organization = next((o for o in admin_of if o.id == parse_id(chosen[4:])), None)
        else:
            practice = practices.filter(pk=parse_id(chosen) or 0).first()
            organization = practice.organization if practice else None
        if organization is None:
            errors.append("practice: choose one of your practices.")
        else:
            try:
                save_canned_reply(
                    organization.id,
                    practice,
                    title=request.POST.get("title", ""),
                    body=request.POST.get("body", ""),
                    language=request.POST.get("language", ""),
                    reply=reply,
                )
            except InboxError as exc:
                errors.append(str(exc))
            else:
                messages.success(request, "Canned reply saved.")
                return redirect("messaging_settings:canned_replies")
    if errors:
        form = request.POST
    elif reply is not None:
        form = {
            "practice": str(reply.practice_id)
            if reply.practice_id
            else f"org:{reply.organization_id}",
            "language": reply.language,
            "title": reply.title,
            "body": reply.body,
        }
    else:
        form = {}
    replies = (
        CannedReply.objects.filter(organization_id__in=[o.id for o in orgs])
        .filter(Q(practice__isnull=True) | Q(practice__in=practices))
        .select_related("organization", "practice")
        .order_by("organization__name", "practice__name", "language", "title")
    )
    admin_ids = {o.id for o in admin_of}
    context = {
        "replies": [
            (r, r.practice_id is not None or r.organization_id in admin_ids) for r in replies
        ],
        "choices": [(f"org:{o.id}", f"Every practice of {o.name}") for o in admin_of]
        + [(str(p.id), p.name) for p in practices],
        "languages": Language.choices,
        "errors": errors,
        "form": form,
        "editing": reply,
    }
    return render(
        request, "web/settings/canned_replies.html", context, status=422 if errors else 200
    )


@login_required
def remove_canned_reply(request: HttpRequest, canned_reply_id: int) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    delete_canned_reply(_editable_canned_reply(request, canned_reply_id))
    messages.success(request, "Canned reply deleted.")
    return redirect("messaging_settings:canned_replies")
