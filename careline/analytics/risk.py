"""No-show risk: features from an organization's own history, a logistic model, honest checks.

Every feature must be known at the visit's *decision time*: when the extra touch for a
high-risk visit is decided, `DECISION_LEAD` before the visit (or at booking, if that is
later). So a feature may use the booking (lead time, local weekday and hour), the patient
(age band) and the patient's visits that had already happened by then (earlier no-shows,
visits and cancellations) — never anything the reminders themselves cause. Whether the
patient *confirmed* is the classic leak: it is known only after the reminders the score is
meant to trigger, and with it the model looked much better than it is (it also cannot
tell a high-risk visit from one whose patient simply has not answered yet).
`tests/analytics/test_noshow_risk.py` checks this by scoring visits at their decision time,
letting the future happen, and asking training for the same visits' features: they must be
identical.

The model is evaluated on the most recent months, held out by time (never a random split,
which would let the future leak into training), next to a simple baseline: the patient's
own prior no-show rate, smoothed toward the organization's rate in the training months.
AUCs carry a paired bootstrap 95% interval, and so does the model's gain over the baseline.

History is read in one ordered pass (patient, start) with running counts per patient, so
memory is the feature matrix itself, not the rows.
"""

from __future__ import annotations

import logging
import math
import zoneinfo
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Count, Q
from django.utils import timezone

from careline.analytics.models import NoShowModel
from careline.clinics.models import Practice
from careline.messaging import touches
from careline.messaging.touches import DECISION_LEAD, decision_time
from careline.scheduling.appointments import record_risk_scores
from careline.scheduling.models import Appointment, AppointmentStatus

logger = logging.getLogger("careline.analytics.risk")

AGE_BANDS = ((0, 18), (18, 30), (30, 45), (45, 65), (65, 200))
HOUR_BANDS = ((0, 9), (9, 12), (12, 15), (15, 24))
FEATURES = (
    ["log_lead_days", "prior_noshow_rate", "log_prior_visits", "log_prior_cancellations"]
    + [f"weekday_{d}" for d in range(1, 7)]
    + [f"hour_{a}_{b}" for a, b in HOUR_BANDS[1:]]
    + [f"age_{a}_{b}" for a, b in AGE_BANDS[1:]]
)  # fmt: skip
DUE = (AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED, AppointmentStatus.NO_SHOW)
# Prior no-show rate is smoothed toward the organization's rate with this many visits.
PRIOR_WEIGHT = 2.0
BOOTSTRAP_RESAMPLES = 400


class NotEnoughHistory(Exception):
    pass


def _band(value: float, bands) -> int:
    for i, (low, high) in enumerate(bands):
        if low <= value < high:
            return i
    return len(bands) - 1


@dataclass
class _PatientPast:
    """One patient's visits so far, in start order, with running counts for bisecting."""

    patient_id: int | None = None
    starts: list[float] = field(default_factory=list)
    due: list[int] = field(default_factory=lambda: [0])
    noshows: list[int] = field(default_factory=lambda: [0])
    cancellations: list[int] = field(default_factory=lambda: [0])

    def add(self, start: datetime, status: str) -> None:
        self.starts.append(start.timestamp())
        self.due.append(self.due[-1] + (status in DUE))
        self.noshows.append(self.noshows[-1] + (status == AppointmentStatus.NO_SHOW))
        self.cancellations.append(self.cancellations[-1] + (status == AppointmentStatus.CANCELLED))

    def known_before(self, moment: datetime) -> tuple[int, int, int]:
        i = bisect_left(self.starts, moment.timestamp())
        return self.due[i], self.noshows[i], self.cancellations[i]


def _row(
    *, start: datetime, created: datetime, zone, birth, past: _PatientPast, known_until: datetime,
    base_rate: float,
) -> list[float]:  # fmt: skip
    prior_due, prior_ns, prior_cancel = past.known_before(known_until)
    local = start.astimezone(zone)
    lead_days = max((start - created).total_seconds() / 86400, 0.0)
    age = (local.date() - birth).days / 365.25 if birth else 40.0
    weekday, hour_band, age_band = (
        local.weekday(),
        _band(local.hour, HOUR_BANDS),
        _band(age, AGE_BANDS),
    )
    row = [
        math.log1p(lead_days),
        (prior_ns + PRIOR_WEIGHT * base_rate) / (prior_due + PRIOR_WEIGHT),
        math.log1p(prior_due),
        math.log1p(prior_cancel),
    ]
    row += [1.0 if weekday == d else 0.0 for d in range(1, 7)]
    row += [1.0 if hour_band == b else 0.0 for b in range(1, len(HOUR_BANDS))]
    row += [1.0 if age_band == b else 0.0 for b in range(1, len(AGE_BANDS))]
    return row


_COLUMNS = (
    "id",
    "patient_id",
    "start",
    "created_at",
    "practice_id",
    "status",
    "patient__birth_date",
)


def _zones(organization_id: int) -> dict[int, zoneinfo.ZoneInfo]:
    return {
        p: zoneinfo.ZoneInfo(tz)
        for p, tz in Practice.objects.filter(organization_id=organization_id).values_list(
            "id", "time_zone"
        )
    }


def _walk(visits) -> Iterator[tuple[tuple, _PatientPast]]:
    """Each visit (ordered by patient, start) with its patient's visits before it."""
    past = _PatientPast()
    for visit in (
        visits.order_by("patient_id", "start", "id")
        .values_list(*_COLUMNS)
        .iterator(chunk_size=20_000)
    ):
        if visit[1] != past.patient_id:
            past = _PatientPast(patient_id=visit[1])
        yield visit, past


@dataclass
class History:
    features: np.ndarray
    outcome: np.ndarray  # 1 = no-show
    starts: np.ndarray  # epoch seconds
    appointment_ids: np.ndarray
    base_rate: float


def base_rate_until(organization_id: int, until: datetime) -> tuple[int, float]:
    """Visits with a known outcome before `until`, and the share that were no-shows."""
    counts = Appointment.objects.filter(organization_id=organization_id, start__lt=until).aggregate(
        due=Count("id", filter=Q(status__in=DUE)),
        ns=Count("id", filter=Q(status=AppointmentStatus.NO_SHOW)),
    )
    return counts["due"], (counts["ns"] / counts["due"] if counts["due"] else 0.0)


def load_history(
    organization_id: int, *, until: datetime | None = None, base_rate: float | None = None
) -> History:
    """Features of every past visit with a known outcome, as they stood at its decision time."""
    until = until or timezone.now()
    due, rate = base_rate_until(organization_id, until)
    if due < 200:
        raise NotEnoughHistory(
            f"Only {due} past visits with a known outcome; at least 200 are needed."
        )
    base_rate = rate if base_rate is None else base_rate
    zones = _zones(organization_id)
    flat, outcome, starts, ids = array("d"), array("b"), array("d"), array("q")
    past_visits = Appointment.objects.filter(organization_id=organization_id, start__lt=until)
    for (pk, _, start, created, practice_id, status, birth), past in _walk(past_visits):
        if status in DUE:
            flat.extend(
                _row(
                    start=start,
                    created=created,
                    zone=zones[practice_id],
                    birth=birth,
                    past=past,
                    known_until=decision_time(start, created),
                    base_rate=base_rate,
                )
            )
            outcome.append(1 if status == AppointmentStatus.NO_SHOW else 0)
            starts.append(start.timestamp())
            ids.append(pk)
        past.add(start, status)
    return History(
        np.frombuffer(flat, dtype=np.float64).reshape(-1, len(FEATURES)),
        np.frombuffer(outcome, dtype=np.int8).astype(np.int8),
        np.frombuffer(starts, dtype=np.float64),
        np.frombuffer(ids, dtype=np.int64),
        base_rate,
    )


def upcoming_features(
    organization_id: int, *, now: datetime, base_rate: float
) -> Iterator[tuple[int, list[float]]]:
    """(visit id, features) of every booked or confirmed visit from `now` on, from what is
    known at `now` or at the visit's decision time, whichever is earlier."""
    zones = _zones(organization_id)
    visits = Appointment.objects.filter(organization_id=organization_id).filter(
        Q(start__lt=now)
        | Q(start__gte=now, status__in=[AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED])
    )
    for (pk, _, start, created, practice_id, status, birth), past in _walk(visits):
        if start < now:
            past.add(start, status)
            continue
        yield (
            pk,
            _row(
                start=start,
                created=created,
                zone=zones[practice_id],
                birth=birth,
                past=past,
                known_until=min(now, decision_time(start, created)),
                base_rate=base_rate,
            ),
        )


def calibration_table(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> list[dict]:
    """Visits in deciles of predicted risk: mean predicted vs observed no-show rate."""
    order = np.argsort(predicted, kind="stable")
    table = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            table.append(
                {
                    "visits": int(len(chunk)),
                    "predicted": float(predicted[chunk].mean()),
                    "observed": float(observed[chunk].mean()),
                }
            )
    return table


def _auc(observed: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(observed, predicted))


def _evaluate(predicted: np.ndarray, observed: np.ndarray) -> dict:
    from sklearn.metrics import brier_score_loss

    both = len(set(observed.tolist())) == 2
    return {
        "auc": _auc(observed, predicted) if both else None,
        "brier": float(brier_score_loss(observed, predicted)),
        "calibration": calibration_table(predicted, observed),
    }


def auc_intervals(observed: np.ndarray, model: np.ndarray, baseline: np.ndarray) -> dict:
    """Paired bootstrap 95% intervals (scipy.stats.bootstrap, percentile) for the model's
    AUC, the baseline's, and the model's gain over the baseline on the same visits."""
    from scipy.stats import bootstrap

    if len(set(observed.tolist())) < 2:
        return {"model_auc": None, "baseline_auc": None, "gain": None}

    def statistic(which):
        def of(y, m, b):
            if y.min() == y.max():  # a resample with one class has no AUC
                return np.nan
            return which(y, m, b)

        return of

    intervals = {}
    for name, which in (
        ("model_auc", lambda y, m, b: _auc(y, m)),
        ("baseline_auc", lambda y, m, b: _auc(y, b)),
        ("gain", lambda y, m, b: _auc(y, m) - _auc(y, b)),
    ):
        result = bootstrap(
            (observed, model, baseline),
            statistic(which),
            paired=True,
            vectorized=False,
            n_resamples=BOOTSTRAP_RESAMPLES,
            method="percentile",
            random_state=np.random.default_rng(20261203),
        )
        low, high = result.confidence_interval
        intervals[name] = [float(low), float(high)]
    return intervals


def train(
    organization_id: int, *, holdout_days: int = 90, now: datetime | None = None
) -> NoShowModel:
    """Fit on visits before the last `holdout_days`, test on those days (a split by time).

    The organization's no-show rate that smooths the prior-rate feature comes from the
    training months only, so nothing about the test months reaches the features."""
    from sklearn.linear_model import LogisticRegression

    now = now or timezone.now()
    cutoff = now - timedelta(days=holdout_days)
    _, train_rate = base_rate_until(organization_id, cutoff)
    history = load_history(organization_id, until=now, base_rate=train_rate)
    train_rows = history.starts < cutoff.timestamp()
    test_rows = ~train_rows
    if train_rows.sum() < 100 or test_rows.sum() < 50 or len(set(history.outcome[train_rows])) < 2:
        raise NotEnoughHistory(
            f"Need at least 100 visits before and 50 in the last {holdout_days} days."
        )
    x_train, y_train = history.features[train_rows], history.outcome[train_rows]
    means = x_train.mean(axis=0)
    scales = x_train.std(axis=0)
    scales[scales == 0] = 1.0
    fitted = LogisticRegression(max_iter=1000, C=1.0).fit((x_train - means) / scales, y_train)
    x_test, y_test = history.features[test_rows], history.outcome[test_rows]
    predicted = fitted.predict_proba((x_test - means) / scales)[:, 1]
    baseline = x_test[:, FEATURES.index("prior_noshow_rate")]
    report = {
        "trained_on": int(train_rows.sum()),
        "tested_on": int(test_rows.sum()),
        "holdout_days": holdout_days,
        "decision_lead_hours": DECISION_LEAD.total_seconds() / 3600,
        "organization_rate": history.base_rate,
        "test_rate": float(y_test.mean()),
        "model": _evaluate(predicted, y_test),
        "baseline": _evaluate(baseline, y_test),
        "intervals": auc_intervals(y_test, predicted, baseline),
    }
    return NoShowModel.objects.create(
        organization_id=organization_id,
        feature_names=FEATURES,
        coefficients=[float(c) for c in fitted.coef_[0]],
        intercept=float(fitted.intercept_[0]),
        means=[float(m) for m in means],
        scales=[float(s) for s in scales],
        report=report,
    )


def predict(model: NoShowModel, features: np.ndarray) -> np.ndarray:
    z = ((features - np.array(model.means)) / np.array(model.scales)) @ np.array(
        model.coefficients
    ) + model.intercept
    return 1.0 / (1.0 + np.exp(-z))


def latest_model(organization_id: int) -> NoShowModel:
    model = NoShowModel.objects.filter(organization_id=organization_id).first()
    if model is None or list(model.feature_names) != FEATURES:
        raise NotEnoughHistory("No current model: run `careline train-noshow` first.")
    return model


def score_upcoming(organization_id: int, *, now: datetime | None = None, batch: int = 5000) -> int:
    """Write `noshow_risk` on every upcoming visit with the latest model, and decide the
    extra touch for the high-risk ones whose decision time has come; returns how many."""
    model = latest_model(organization_id)
    now = now or timezone.now()
    scored, pending = 0, []

    def flush() -> None:
        features = np.array([row for _, row in pending]).reshape(-1, len(FEATURES))
        risks = predict(model, features)
        scores = {a_id: float(r) for (a_id, _), r in zip(pending, risks, strict=True)}
        record_risk_scores(scores)
        touches.decide(organization_id, scores, now)

    for pk, row in upcoming_features(
        organization_id, now=now, base_rate=model.report["organization_rate"]
    ):
        pending.append((pk, row))
        if len(pending) >= batch:
            flush()
            scored += len(pending)
            pending = []
    if pending:
        flush()
        scored += len(pending)
    return scored


def score_organizations(now: datetime | None = None) -> int:
    """The regular scoring run: every organization with a current model; returns how many
    visits were scored. An organization whose model predates today's features is skipped
    (and logged) until `careline train-noshow` runs again."""
    scored = 0
    for organization_id in (
        NoShowModel.objects.order_by().values_list("organization_id", flat=True).distinct()
    ):
        try:
            scored += score_upcoming(organization_id, now=now)
        except NotEnoughHistory:
            logger.warning(
                "No-show scoring skipped for organization %s: retrain with train-noshow",
                organization_id,
            )
    return scored
