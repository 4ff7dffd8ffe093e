"""No-show risk: features from an organization's own history, a logistic model, honest checks.

Features for one visit are known before it happens: lead time (booking to visit), local
weekday and hour, the patient's age band, the patient's earlier no-shows, visits and
cancellations, and whether the patient confirmed. The model is evaluated on the most recent
months, held out by time (never a random split, which would let the future leak into
training), next to a simple baseline: the patient's own prior no-show rate.

History is read in one ordered pass (patient, start) with running counts per patient, so
memory is the feature matrix itself, not the rows.
"""

from __future__ import annotations

import math
import zoneinfo
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Count, Q
from django.utils import timezone

from careline.analytics.models import NoShowModel
from careline.clinics.models import Practice
from careline.scheduling.appointments import record_risk_scores
from careline.scheduling.models import Appointment, AppointmentStatus

AGE_BANDS = ((0, 18), (18, 30), (30, 45), (45, 65), (65, 200))
HOUR_BANDS = ((0, 9), (9, 12), (12, 15), (15, 24))
FEATURES = (
    ["log_lead_days", "prior_noshow_rate", "log_prior_visits", "log_prior_cancellations",
     "confirmed"]
    + [f"weekday_{d}" for d in range(1, 7)]
    + [f"hour_{a}_{b}" for a, b in HOUR_BANDS[1:]]
    + [f"age_{a}_{b}" for a, b in AGE_BANDS[1:]]
)  # fmt: skip
DUE = (AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED, AppointmentStatus.NO_SHOW)
# Prior no-show rate is smoothed toward the organization's rate with this many visits.
PRIOR_WEIGHT = 2.0


class NotEnoughHistory(Exception):
    pass


def _band(value: float, bands) -> int:
    for i, (low, high) in enumerate(bands):
        if low <= value < high:
            return i
    return len(bands) - 1


def _row(
    *,
    start: datetime,
    created: datetime,
    zone,
    birth,
    confirmed: bool,
    prior_due: int,
    prior_ns: int,
    prior_cancel: int,
    base_rate: float,
) -> list[float]:
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
        1.0 if confirmed else 0.0,
    ]
    row += [1.0 if weekday == d else 0.0 for d in range(1, 7)]
    row += [1.0 if hour_band == b else 0.0 for b in range(1, len(HOUR_BANDS))]
    row += [1.0 if age_band == b else 0.0 for b in range(1, len(AGE_BANDS))]
    return row


@dataclass
class History:
    features: np.ndarray
    outcome: np.ndarray  # 1 = no-show
    starts: np.ndarray  # epoch seconds
    base_rate: float


def load_history(organization_id: int, *, until: datetime | None = None) -> History:
    until = until or timezone.now()
    past = Appointment.objects.filter(organization_id=organization_id, start__lt=until)
    counts = past.aggregate(
        due=Count("id", filter=Q(status__in=DUE)),
        ns=Count("id", filter=Q(status=AppointmentStatus.NO_SHOW)),
    )
    if counts["due"] < 200:
        raise NotEnoughHistory(
            f"Only {counts['due']} past visits with a known outcome; at least 200 are needed."
        )
    base_rate = counts["ns"] / counts["due"]
    zones = {
        p: zoneinfo.ZoneInfo(tz)
        for p, tz in Practice.objects.filter(organization_id=organization_id).values_list(
            "id", "time_zone"
        )
    }
    flat, outcome, starts = array("d"), array("b"), array("d")
    patient, prior_due, prior_ns, prior_cancel = None, 0, 0, 0
    rows = past.order_by("patient_id", "start").values_list(
        "patient_id",
        "start",
        "created_at",
        "practice_id",
        "status",
        "confirmed_at",
        "patient__birth_date",
    )
    for pid, start, created, practice_id, status, confirmed_at, birth in rows.iterator(
        chunk_size=20_000
    ):
        if pid != patient:
            patient, prior_due, prior_ns, prior_cancel = pid, 0, 0, 0
        if status in DUE:
            flat.extend(
                _row(
                    start=start,
                    created=created,
                    zone=zones[practice_id],
                    birth=birth,
                    confirmed=confirmed_at is not None,
                    prior_due=prior_due,
                    prior_ns=prior_ns,
                    prior_cancel=prior_cancel,
                    base_rate=base_rate,
                )
            )
            outcome.append(1 if status == AppointmentStatus.NO_SHOW else 0)
            starts.append(start.timestamp())
            prior_due += 1
            prior_ns += status == AppointmentStatus.NO_SHOW
        elif status == AppointmentStatus.CANCELLED:
            prior_cancel += 1
    features = np.frombuffer(flat, dtype=np.float64).reshape(-1, len(FEATURES))
    return History(
        features,
        np.frombuffer(outcome, dtype=np.int8).astype(np.int8),
        np.frombuffer(starts, dtype=np.float64),
        base_rate,
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


def _evaluate(predicted: np.ndarray, observed: np.ndarray) -> dict:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    both = len(set(observed.tolist())) == 2
    return {
        "auc": float(roc_auc_score(observed, predicted)) if both else None,
        "brier": float(brier_score_loss(observed, predicted)),
        "calibration": calibration_table(predicted, observed),
    }


def train(
    organization_id: int, *, holdout_days: int = 90, now: datetime | None = None
) -> NoShowModel:
    from sklearn.linear_model import LogisticRegression

    now = now or timezone.now()
    history = load_history(organization_id, until=now)
    cutoff = (now - timedelta(days=holdout_days)).timestamp()
    train_rows, test_rows = history.starts < cutoff, history.starts >= cutoff
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
        "organization_rate": history.base_rate,
        "test_rate": float(y_test.mean()),
        "model": _evaluate(predicted, y_test),
        "baseline": _evaluate(baseline, y_test),
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


def score_upcoming(organization_id: int, *, now: datetime | None = None, batch: int = 5000) -> int:
    """Write `noshow_risk` on every upcoming visit with the latest model; returns how many."""
    model = NoShowModel.objects.filter(organization_id=organization_id).first()
    if model is None:
        raise NotEnoughHistory("No model yet: run `careline train-noshow` first.")
    now = now or timezone.now()
    base_rate = model.report["organization_rate"]
    past = Appointment.objects.filter(organization_id=organization_id, start__lt=now)
    priors = {
        r["patient_id"]: r
        for r in past.values("patient_id")
        .annotate(
            due=Count("id", filter=Q(status__in=DUE)),
            ns=Count("id", filter=Q(status=AppointmentStatus.NO_SHOW)),
            cancel=Count("id", filter=Q(status=AppointmentStatus.CANCELLED)),
        )
        .order_by()
    }
    zones = {
        p: zoneinfo.ZoneInfo(tz)
        for p, tz in Practice.objects.filter(organization_id=organization_id).values_list(
            "id", "time_zone"
        )
    }
    upcoming = (
        Appointment.objects.filter(
            organization_id=organization_id,
            start__gte=now,
            status__in=[AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED],
        )
        .only(
            "id",
            "patient_id",
            "start",
            "created_at",
            "practice_id",
            "confirmed_at",
            "patient__birth_date",
        )
        .select_related("patient")
    )
    scored, pending = 0, []

    def flush() -> None:
        features = np.array([row for _, row in pending]).reshape(-1, len(FEATURES))
        risks = predict(model, features)
        record_risk_scores({a_id: float(r) for (a_id, _), r in zip(pending, risks, strict=True)})

    for appt in upcoming.iterator(chunk_size=batch):
        prior = priors.get(appt.patient_id, {"due": 0, "ns": 0, "cancel": 0})
        pending.append(
            (
                appt.id,
                _row(
                    start=appt.start,
                    created=appt.created_at,
                    zone=zones[appt.practice_id],
                    birth=appt.patient.birth_date,
                    confirmed=appt.confirmed_at is not None,
                    prior_due=prior["due"],
                    prior_ns=prior["ns"],
                    prior_cancel=prior["cancel"],
                    base_rate=base_rate,
                ),
            )
        )
        if len(pending) >= batch:
            flush()
            scored += len(pending)
            pending = []
    if pending:
        flush()
        scored += len(pending)
    return scored
