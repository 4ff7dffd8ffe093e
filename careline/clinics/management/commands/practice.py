"""`careline practice add CODE --organization SLUG --name NAME …` and `careline practice list`.

Safe to run again: a practice is found by its code, and only the options given change it.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from careline.clinics.directory import UnknownOrganization, organization_named, put_practice
from careline.clinics.office_hours import parse_week, practice_week, save_week


def _problems(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"--{k.replace('_', '-')}: {' '.join(v)}" for k, v in exc.message_dict.items()
        )
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Add (or update) and list an organization's practices."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add a practice, or bring it to the values given.")
        add.add_argument("code", help="Short code feeds and links use, e.g. RIV.")
        add.add_argument("--organization", required=True, help="Organization slug.")
        add.add_argument("--name", help="Name patients see (required for a new practice).")
        add.add_argument("--time-zone", help="IANA zone, e.g. America/Denver.")
        add.add_argument("--sender-number", help="Number texts come from (E.164).")
        add.add_argument("--phone", help="Front-desk number, for patients to call.")
        add.add_argument("--address", help="Street address, one line.")
        add.add_argument(
            "--office-hours",
            help="When the front desk reads texts, e.g. 'Mon-Fri 08:00-17:00; Sat 09:00-12:00'.",
        )
        listing = sub.add_parser("list", help="List the organization's practices.")
        listing.add_argument("--organization", required=True, help="Organization slug.")

    def handle(self, *args, **opts):
        try:
            organization = organization_named(opts["organization"])
        except UnknownOrganization as exc:
            raise CommandError(str(exc)) from exc
        if opts["action"] == "list":
            for practice in organization.practices.order_by("code"):
                self.stdout.write(
                    f"{practice.code}  {practice.name}  {practice.time_zone}  "
                    f"{practice.texting_number or '(no sender number)'}"
                )
            return
        try:
            week = parse_week(opts["office_hours"]) if opts["office_hours"] else None
        except ValidationError as exc:
            raise CommandError(f"--office-hours: {' '.join(exc.messages)}") from exc
        try:
            practice, outcome = put_practice(
                organization,
                opts["code"],
                name=opts["name"],
                time_zone=opts["time_zone"],
                sender_number=opts["sender_number"],
                phone=opts["phone"],
                address=opts["address"],
            )
        except ValidationError as exc:
            raise CommandError(f"The practice is not valid: {_problems(exc)}") from exc
        if week is not None and practice_week(practice) != week:
            save_week(practice, week)
            outcome = "updated" if outcome == "unchanged" else outcome
        self.stdout.write(f"Practice {practice.code} ({practice.name}): {outcome}.")
