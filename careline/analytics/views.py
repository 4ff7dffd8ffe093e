from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from careline import spreadsheets
from careline.analytics import experiments, glossary, metrics, ranking
from careline.clinics.models import Organization, Practice, StaffMembership, StaffRole
from careline.clinics.scoping import administered_organization_ids
from careline.clinics.validators import query_date, query_id
from careline.messaging.experiments import (
    SHARE_PERCENT_RANGE,
    check_withheld_step,
    end_experiment,
    start_experiment,
)
from careline.messaging.models import Experiment, RiskTouchPolicy
from careline.messaging.touches import start_policy, stop_policy
from careline.scheduling.models import Appointment

COLUMNS = [
    ("label", "Group"),
    ("appointments", "Appointments"),
    ("due", "Due"),
    ("no_shows", "No-shows"),
    ("no_show_rate", "No-show rate"),
    ("cancellations", "Cancellations"),
    ("cancellation_rate", "Cancellation rate"),
    ("late_cancellations", "Late cancellations"),
    ("late_cancellation_rate", "Late-cancellation rate"),
    ("confirmed", "Confirmed"),
    ("confirmation_rate", "Confirmation rate"),
    ("calls_avoided", "Calls avoided"),
]


ENGAGEMENT_COLUMNS = [
    ("label", "Practice"),
    ("texts_finished", "Texts sent"),
    ("delivery_failure_rate", "Delivery failure rate"),
    ("reply_rate", "Reply rate"),
    ("opt_out_rate", "Opt-out rate"),
    ("slots_freed", "Slots freed"),
    ("slots_refilled", "Slots refilled"),
    ("median_first_answer_minutes", "Median first answer (min)"),
]


# Bars the dashboard's chart draws at most (the latest weeks or months).
CHART_BARS = 26


def _cell(value):
    if value is None:
        return ""
    return round(value, 4) if isinstance(value, float) else value


def _csv(filename: str, header: list[str], rows: list[list]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = spreadsheets.writer(response)
    writer.writerow(header)
    writer.writerows(rows)
    return response


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    group_by = request.GET.get("group_by", "week")
    if group_by not in metrics.DIMENSIONS:
        group_by = "week"
    try:
        start, end = query_date(request.GET, "from"), query_date(request.GET, "to")
        practice_id = query_id(request.GET, "practice")
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages), content_type="text/plain")
    appointments = Appointment.objects.visible_to(request.user)
    if practice_id is not None:
        appointments = appointments.filter(practice_id=practice_id)
    rows = metrics.appointment_metrics(appointments, group_by=group_by, start=start, end=end)
    practices = Practice.objects.visible_to(request.user)
    if practice_id is not None:
        practices = practices.filter(pk=practice_id)
    period_end = datetime.combine(end, time.min, tzinfo=UTC) if end else timezone.now()
    period_start = (
        datetime.combine(start, time.min, tzinfo=UTC) if start else period_end - timedelta(days=30)
    )
    if request.GET.get("format") == "csv" and request.GET.get("table") == "engagement":
        engagement = metrics.engagement_metrics(practices, start=period_start, end=period_end)
        return _csv(
            "careline-engagement.csv",
            [title for _, title in ENGAGEMENT_COLUMNS],
            [[_cell(getattr(r, f)) for f, _ in ENGAGEMENT_COLUMNS] for r in engagement],
        )
    if request.GET.get("format") == "csv":
        return _csv(
            f"careline-{group_by}.csv",
            [title for _, title in COLUMNS],
            [
                [getattr(r, f) if getattr(r, f) is not None else "" for f, _ in COLUMNS]
                for r in rows
            ],
        )
    drawable = [r for r in rows if r.no_show_rate is not None]
    # A bar per practice or provider stops being readable past a few dozen: those are
    # compared ranked (analytics:compare) instead.
    too_many_to_draw = group_by not in ("week", "month") and len(drawable) > CHART_BARS
    chart_rows = [] if too_many_to_draw else drawable[-CHART_BARS:]
    peak = max((r.no_show_rate for r in chart_rows), default=0) or 1
    chart = []
    for i, r in enumerate(chart_rows):
        height = round(150 * r.no_show_rate / peak)
        chart.append(
            {
                "label": r.label,
                "rate": r.no_show_rate,
                "height": height,
                "y": 190 - height,
                "label_y": 186 - height,
                "x": 30 + i * 28,
                "short": r.label.removeprefix("Week of ")[5:]
                if group_by == "week"
                else r.label[:8],
            }
        )
    context = {
        "engagement": metrics.engagement_metrics(
            practices[:100], start=period_start, end=period_end
        ),
        "engagement_columns": ENGAGEMENT_COLUMNS,
        "glossary": glossary.APPOINTMENT_RATES + glossary.ENGAGEMENT_RATES,
        "period_start": period_start,
        "period_end": period_end,
        "rows": rows,
        "columns": COLUMNS,
        "group_by": group_by,
        "dimensions": list(metrics.DIMENSIONS),
        "practices": Practice.objects.visible_to(request.user),
        "practice_id": practice_id,
        "start": start,
        "end": end,
        "chart": chart,
        "too_many_to_draw": len(drawable) if too_many_to_draw else 0,
        "chart_peak": peak,
        "chart_width": 60 + 28 * len(chart),
    }
    return render(request, "analytics/dashboard.html", context)


@login_required
def before_after(request: HttpRequest) -> HttpResponse:
    practices = Practice.objects.visible_to(request.user).filter(go_live_date__isnull=False)
    results = metrics.before_and_after(practices)
    if request.GET.get("format") == "csv":
        return _csv(
            "careline-before-after.csv",
            [
                "Practice",
                "Go-live",
                "Due before",
                "No-shows before",
                "Due after",
                "No-shows after",
                "Rate before",
                "Rate after",
                "Difference",
                "CI low",
                "CI high",
                "Enough data",
            ],
            [
                [
                    r.practice.name,
                    r.go_live,
                    r.before_due,
                    r.before_no_shows,
                    r.after_due,
                    r.after_no_shows,
                    round(r.comparison.before_rate, 4),
                    round(r.comparison.after_rate, 4),
                    round(r.comparison.difference, 4),
                    round(r.comparison.difference_low, 4),
                    round(r.comparison.difference_high, 4),
                    r.comparison.enough_data,
                ]
                for r in results
            ],
        )
    return render(request, "analytics/before_after.html", {"results": results})


class ExperimentForm(forms.ModelForm):
    share_percent = forms.IntegerField(
        min_value=SHARE_PERCENT_RANGE[0],
        max_value=SHARE_PERCENT_RANGE[1],
        initial=10,
        label="Share of patients withheld (%)",
    )

    class Meta:
        model = Experiment
        fields = ["name", "practice", "withheld_step"]
        help_texts = {
            "withheld_step": "'all' holds out every reminder; 'reminder:4320' drops "
            "only the 72-hour one (compares two cadences)."
        }

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Practices the user manages: not those they only work the front desk of.
        self.fields["practice"].queryset = Practice.objects.visible_to(user).filter(
            organization_id__in=_experiment_orgs(user)
        )

    def clean_withheld_step(self) -> str:
        return check_withheld_step(self.cleaned_data["withheld_step"])


def _experiment_orgs(user) -> list[int]:
    if user.is_superuser:
        return list(Organization.objects.values_list("id", flat=True))
    return list(
        StaffMembership.objects.filter(
            user=user, role__in=[StaffRole.ORGANIZATION_ADMIN, StaffRole.PRACTICE_MANAGER]
        ).values_list("organization_id", flat=True)
    )


ORGANIZATION_WIDE_EXPERIMENTS = (
    "Experiments across every practice of the organization are for organization admins; "
    "practice managers run experiments at their own practices."
)


def _administers(user, organization_id: int) -> bool:
    administered = administered_organization_ids(user)
    return administered is None or organization_id in administered


def _visible_experiments(user):
    practices = Practice.objects.visible_to(user)
    return Experiment.objects.filter(organization_id__in=_experiment_orgs(user)).filter(
        Q(practice__isnull=True) | Q(practice__in=practices)
    )


@login_required
def experiment_list(request: HttpRequest) -> HttpResponse:
    org_ids = _experiment_orgs(request.user)
    if not org_ids:
        raise PermissionDenied("Experiments are for practice managers and organization admins.")
    form = ExperimentForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        practice = form.cleaned_data.get("practice")
        if practice is None:
            administered = administered_organization_ids(request.user)
            if administered is None:
                administered = org_ids
            if not administered:
                raise PermissionDenied(ORGANIZATION_WIDE_EXPERIMENTS)
        experiment = start_experiment(
            organization_id=practice.organization_id if practice else administered[0],
            practice_id=practice.pk if practice else None,
            name=form.cleaned_data["name"],
            withheld_step=form.cleaned_data["withheld_step"],
            share_basis_points=form.cleaned_data["share_percent"] * 100,
            created_by=request.user,
        )
        return redirect("analytics:experiment", experiment_id=experiment.id)
    return render(
        request,
        "analytics/experiments.html",
        {"experiments": _visible_experiments(request.user), "form": form},
    )


@login_required
def experiment_detail(request: HttpRequest, experiment_id: int) -> HttpResponse:
    if not _experiment_orgs(request.user):
        raise PermissionDenied("Experiments are for practice managers and organization admins.")
    experiment = get_object_or_404(_visible_experiments(request.user), pk=experiment_id)
    if request.method == "POST" and request.POST.get("action") == "stop":
        if experiment.practice_id is None and not _administers(
            request.user, experiment.organization_id
        ):
            raise PermissionDenied(ORGANIZATION_WIDE_EXPERIMENTS)
        end_experiment(experiment)
    return render(request, "analytics/experiment.html", {"result": experiments.results(experiment)})


class RiskTouchForm(forms.Form):
    practice = forms.ModelChoiceField(
        queryset=Practice.objects.none(), required=False, empty_label="Every practice"
    )
    threshold_percent = forms.IntegerField(
        min_value=1, max_value=99, initial=30, label="High risk from (no-show risk, %)"
    )
    touch_percent = forms.IntegerField(
        min_value=1, max_value=99, initial=50, label="Share of high-risk visits touched (%)"
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["practice"].queryset = Practice.objects.visible_to(user).filter(
            organization_id__in=_experiment_orgs(user)
        )


def _visible_touch_policies(user):
    practices = Practice.objects.visible_to(user)
    return RiskTouchPolicy.objects.filter(organization_id__in=_experiment_orgs(user)).filter(
        Q(practice__isnull=True) | Q(practice__in=practices)
    )


@login_required
def extra_touch(request: HttpRequest) -> HttpResponse:
    """The extra touch for high-risk visits: start or stop a policy, and its randomized
    result (touch vs no touch)."""
    org_ids = _experiment_orgs(request.user)
    if not org_ids:
        raise PermissionDenied("Experiments are for practice managers and organization admins.")
    form = RiskTouchForm(request.POST or None, user=request.user)
    if request.method == "POST" and request.POST.get("action") == "stop":
        policy = get_object_or_404(
            _visible_touch_policies(request.user), pk=query_id(request.POST, "policy")
        )
        if policy.practice_id is None and not _administers(request.user, policy.organization_id):
            raise PermissionDenied(ORGANIZATION_WIDE_EXPERIMENTS)
        stop_policy(policy, now=timezone.now())
        return redirect("analytics:extra-touch")
    if request.method == "POST" and form.is_valid():
        practice = form.cleaned_data.get("practice")
        administered = administered_organization_ids(request.user)
        if practice is None and administered == []:
            raise PermissionDenied(ORGANIZATION_WIDE_EXPERIMENTS)
        start_policy(
            organization_id=practice.organization_id if practice else (administered or org_ids)[0],
            practice_id=practice.pk if practice else None,
            threshold=form.cleaned_data["threshold_percent"] / 100,
            touch_basis_points=form.cleaned_data["touch_percent"] * 100,
            now=timezone.now(),
        )
        return redirect("analytics:extra-touch")
    results = [
        experiments.touch_results(p)
        for p in _visible_touch_policies(request.user).select_related("practice")
    ]
    return render(request, "analytics/extra_touch.html", {"results": results, "form": form})


def _choice(params, name: str, choices, default: str) -> str:
    value = params.get(name, default)
    if value not in choices:
        raise ValidationError(f"{name}: choose one of {', '.join(choices)}.")
    return value


def _whole_number(params, name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, "")
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValidationError(f"{name}: a whole number from {low} to {high}.")
    return int(text)


BAR_HEIGHT = 22


@login_required
def compare(request: HttpRequest) -> HttpResponse:
    """Practices or providers ranked, searched and drawn at any number of them."""
    params = request.GET
    try:
        group_by = _choice(params, "group_by", ranking.GROUPS, "practice")
        sort = _choice(params, "sort", list(ranking.SORTS), "no_show_rate")
        order = _choice(params, "order", ("desc", "asc"), "desc")
        show = _choice(params, "show", ("top", "bottom"), "top")
        limit = _whole_number(params, "n", 15, 1, 100)
        min_due = _whole_number(params, "min_due", 30, 0, 100_000)
        start, end = query_date(params, "from"), query_date(params, "to")
        practice_id = query_id(params, "practice")
        search = params.get("q", "")[:100]
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages), content_type="text/plain")
    appointments = Appointment.objects.visible_to(request.user)
    if practice_id is not None:
        appointments = appointments.filter(practice_id=practice_id)
    result = ranking.rank(
        appointments,
        group_by=group_by,
        start=start,
        end=end,
        search=search,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        bottom=show == "bottom",
        min_due=min_due,
    )
    steps = ranking.funnel(appointments, start=start, end=end).steps()
    if params.get("format") == "csv":
        if params.get("chart") == "funnel":
            return _csv(
                "careline-funnel.csv",
                ["Step", "Visits", "Share of all visits"],
                [[label, n, _cell(share)] for label, n, share in steps],
            )
        return _csv(
            f"careline-{group_by}-ranking.csv",
            ["Rank", group_by.capitalize(), *list(ranking.SORTS.values())[1:]]
            + [m.strftime("%Y-%m") for m in result.spark_months],
            [
                [row.rank, row.metrics.label]
                + [_cell(getattr(row.metrics, f)) for f in list(ranking.SORTS)[1:]]
                + [_cell(v) for v in row.spark]
                for row in result.rows
            ],
        )
    # The chart draws the rate the rows are ranked by (the no-show rate for a count).
    drawn = sort if sort.endswith("_rate") else "no_show_rate"
    values = [getattr(r.metrics, drawn) for r in result.rows]
    peak = max((v or 0 for v in values), default=0) or 1
    bars = [
        {
            "row": r,
            "value": value,
            "y": i * BAR_HEIGHT,
            "text_y": i * BAR_HEIGHT + 15,
            "width": round(400 * (value or 0) / peak),
            "value_x": 232 + round(400 * (value or 0) / peak),
            "short": r.metrics.label if len(r.metrics.label) <= 30 else r.metrics.label[:29] + "…",
        }
        for i, (r, value) in enumerate(zip(result.rows, values, strict=True))
    ]
    funnel_bars = [
        {
            "label": label,
            "n": n,
            "share": share,
            "y": i * 30,
            "text_y": i * 30 + 18,
            "width": round(400 * (share or 0)),
            "value_x": 172 + round(400 * (share or 0)),
        }
        for i, (label, n, share) in enumerate(steps)
    ]
    query = params.copy()
    query.pop("sort", None)
    query.pop("order", None)
    return render(
        request,
        "analytics/compare.html",
        {
            "result": result,
            "bars": bars,
            "chart_height": max(len(bars), 1) * BAR_HEIGHT,
            "funnel": funnel_bars,
            "group_by": group_by,
            "groups": ranking.GROUPS,
            "sorts": ranking.SORTS,
            "sort": sort,
            "sort_title": ranking.SORTS[sort],
            "drawn_title": ranking.SORTS[drawn],
            "order": order,
            "show": show,
            "limit": limit,
            "min_due": min_due,
            "search": search,
            "start": start,
            "end": end,
            "practice_id": practice_id,
            "practices": Practice.objects.visible_to(request.user),
            "sort_query": query.urlencode(),
            "glossary": glossary.APPOINTMENT_RATES + glossary.ENGAGEMENT_RATES,
            "spark_width": ranking.SPARK_WIDTH,
            "spark_height": ranking.SPARK_HEIGHT,
        },
    )
