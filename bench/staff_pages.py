"""Staff pages over the demo: response time of the inbox, the day view and a patient page.

For each database it loads (or, with --reuse-demo, reuses) the bench demo of N
appointments (see bench.reports), lets the flagship practice's patients send it some
texts through `receive_sms` so the inbox has conversations, logs in as the demo front-desk
user and requests each page through Django's test Client (the whole middleware and
template stack, no network) a fixed number of times. Figures are the median and the 95th
percentile in milliseconds; the same-run baseline is the /healthz view (one `SELECT 1`).
Target (issue 7): inbox and day view under 300 ms at 10^6 appointments.

    .venv/bin/python -m bench.staff_pages [--appointments 1000000] [--database sqlite]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import timedelta

from bench.common import figure, timer
from bench.reports import DEMO_NOW, DEMO_SLUG, demo_database, each_database

REQUESTS = 30
TEXTS = 300
# What patients ask the front desk: each lands in one of the inbox queues.
QUESTIONS = (
    "Do you take Blue Cross insurance?",
    "I need a refill of my blood pressure pills please",
    "Can you send my records to my new cardiologist?",
    "How much do I still owe on my bill?",
    "Is there parking near the office?",
    "My son has had a fever since yesterday, should he come in?",
)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _inbound_texts(organization, practice) -> tuple[int, float]:
    """The practice's patients text in (idempotent per run size); (texts, seconds)."""
    from careline.conversations.inbound import receive_sms
    from careline.patients.models import Patient

    patients = list(
        Patient.objects.filter(home_practice=practice)
        .exclude(mobile_phone="")
        .order_by("id")
        .values_list("id", "mobile_phone")[:TEXTS]
    )
    if not patients:
        raise RuntimeError(f"practice {practice.pk} has no patients with a mobile number")
    with timer() as t:
        for n in range(TEXTS):
            _, phone = patients[n % len(patients)]
            receive_sms(
                from_phone=phone,
                to_phone=organization.default_sender_number,
                body=QUESTIONS[n % len(QUESTIONS)],
                provider_message_id=f"SMbench{n:06d}",
                received_at=DEMO_NOW - timedelta(minutes=TEXTS - n),
            )
    return TEXTS, t.seconds


def _timings(client, url: str) -> list[float]:
    """Milliseconds of REQUESTS requests to `url`, after one warm-up request."""
    first = client.get(url)
    if first.status_code != 200:
        raise RuntimeError(f"GET {url} answered {first.status_code}")
    times = []
    for _ in range(REQUESTS):
        with timer() as t:
            response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        times.append(t.seconds * 1000)
    return times


def measure(kind: str, appointments: int, *, reuse: bool) -> list[str]:
    demo_database(kind, appointments, reuse=reuse)
    from django.contrib.auth import get_user_model
    from django.db.models import Count
    from django.test import Client

    from careline.clinics.models import Organization, Practice
    from careline.conversations.models import Conversation
    from careline.scheduling import dayview
    from careline.scheduling.models import Appointment

    organization = Organization.objects.get(slug=DEMO_SLUG)
    practice = Practice.objects.filter(organization=organization).order_by("id").first()
    texts, seconds = _inbound_texts(organization, practice)
    user = get_user_model().objects.get(username="demo-frontdesk")
    open_conversations = Conversation.objects.visible_to(user).count()
    if not open_conversations:
        raise RuntimeError("the front desk's inbox is empty after the texts came in")
    day = DEMO_NOW.date()
    visits = len(dayview.day_rows(practice, day))
    # The patient page worth timing: the texting patient with the longest history.
    texting = Conversation.objects.filter(practice=practice, patient__isnull=False)
    patient_id = (
        Appointment.objects.filter(patient_id__in=texting.values("patient_id"))
        .values("patient_id")
        .annotate(n=Count("id"))
        .order_by("-n", "patient_id")
        .values_list("patient_id", flat=True)
        .first()
    )
    if patient_id is None:
        raise RuntimeError("no conversation is tied to a patient with appointments")
    print(
        f"# {kind}: {texts} texts in {seconds:.1f} s, {open_conversations} conversations, "
        f"{visits} visits on {day}",
        flush=True,
    )

    client = Client()
    client.force_login(user)
    pages = {
        "inbox": "/inbox/",
        "day_view": f"/schedule/{practice.pk}/{day.isoformat()}/",
        "patient_page": f"/patients/{patient_id}/",
    }
    health = _timings(client, "/healthz")
    tag = f"[{kind},{appointments}]"
    lines = []
    for page, url in pages.items():
        times = _timings(client, url)
        lines.append(
            figure(
                f"staff_{page}_median_ms{tag}",
                statistics.median(times),
                statistics.median(health),
                ".1f",
            )
        )
        lines.append(
            figure(
                f"staff_{page}_p95_ms{tag}",
                _percentile(times, 0.95),
                _percentile(health, 0.95),
                ".1f",
            )
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.staff_pages", description=__doc__)
    parser.add_argument("--appointments", "--rows", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--reuse-demo", action="store_true", help="use a demo of this size loaded earlier"
    )
    args = parser.parse_args(argv)
    if args.appointments < 1:
        parser.error("--appointments must be positive")
    if args.database == "both":
        return each_database("bench.staff_pages", sys.argv[1:] if argv is None else argv)
    for line in measure(args.database, args.appointments, reuse=args.reuse_demo):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
