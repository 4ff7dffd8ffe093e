"""`careline demo`: load the synthetic organization (see careline.demo.generator)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from careline.clinics.models import Organization, StaffRole
from careline.demo.generator import (
    DEFAULT_SEED,
    DEFAULT_SLUG,
    DemoError,
    DemoOptions,
    DemoResult,
    generate_demo,
)
from careline.messaging.models import MessageState, OutboundMessage
from careline.messaging.planning import plan_all_reminders
from careline.scheduling.models import AppointmentStatus


def plan_demo_reminders(result: DemoResult) -> int:
    """Plan reminders for the demo's upcoming appointments; returns the messages scheduled."""
    plan_all_reminders(organization_id=result.organization.pk)
    return OutboundMessage.objects.filter(
        organization=result.organization, state=MessageState.SCHEDULED
    ).count()


class Command(BaseCommand):
    help = (
        "Load a synthetic organization: practices in several US time zones, providers with "
        "working hours, patients and 18 months of appointments plus the next 4 weeks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = DemoOptions()
        parser.add_argument("--practices", type=int, default=defaults.practices)
        parser.add_argument("--providers", type=int, default=defaults.providers)
        parser.add_argument(
            "--patients", type=int, default=None, help="default: appointments / 5, at least 300"
        )
        parser.add_argument("--appointments", type=int, default=defaults.appointments)
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
        parser.add_argument("--organization-slug", default=DEFAULT_SLUG)
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing when any organization exists already (for `make run`)",
        )

    def handle(self, *args, **opts) -> None:
        if opts["if_empty"] and Organization.objects.exists():
            self.stdout.write("An organization exists already; no demo data loaded.")
            return
        options = DemoOptions(
            practices=opts["practices"],
            providers=opts["providers"],
            patients=opts["patients"],
            appointments=opts["appointments"],
            seed=opts["seed"],
            organization_slug=opts["organization_slug"],
        )
        started = time.monotonic()
        phase_started: dict[str, float] = {}
        phase_seconds: dict[str, float] = {}
        with Progress(
            TextColumn("{task.description:<13}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=opts["verbosity"] < 1,
        ) as progress:
            tasks: dict[str, int] = {}

            def report(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task(phase, total=total)
                    phase_started[phase] = time.monotonic()
                progress.update(tasks[phase], completed=done)
                phase_seconds[phase] = time.monotonic() - phase_started[phase]

            try:
                result = generate_demo(options, progress=report)
            except DemoError as exc:
                raise CommandError(str(exc)) from exc
        planning_started = time.monotonic()
        reminders = plan_demo_reminders(result)
        phase_seconds["reminders"] = time.monotonic() - planning_started
        self._summary(result, time.monotonic() - started, phase_seconds, reminders)

    def _summary(
        self, result: DemoResult, seconds: float, phases: dict[str, float], reminders: int
    ) -> None:
        out = self.stdout.write
        counts = result.status_counts
        attended = counts.get(AppointmentStatus.FULFILLED, 0)
        missed = counts.get(AppointmentStatus.NO_SHOW, 0)
        out(
            f"Demo organization '{result.organization.name}' "
            f"(slug {result.organization.slug}) loaded in {seconds:.1f} s:"
        )
        out(
            f"  {result.practices} practices, {result.providers} providers, "
            f"{result.patients:,} patients"
        )
        out(
            f"  {result.appointments:,} appointments in {phases.get('appointments', 0.0):.1f} s "
            f"({result.upcoming:,} upcoming); no-show share of past visits "
            f"{missed / max(1, attended + missed):.1%}"
        )
        out(
            f"  {reminders:,} reminder messages scheduled for upcoming visits "
            f"in {phases['reminders']:.1f} s"
        )
        out("Demo staff logins (demo data only — never use this password elsewhere):")
        for login in result.logins:
            where = f" at {login.practice}" if login.practice else " (all practices)"
            out(f"  {login.username:<15} {StaffRole(login.role).label}{where}")
        out(f"  password: {result.password}")
