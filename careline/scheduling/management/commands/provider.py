"""`careline provider add --organization SLUG --name "Dr. Lee" --practice CODE --hours …`
and `careline provider list`.

Safe to run again: a provider is found by NPI (or, without one, by name); working hours
given replace that provider's hours at those practices. Reschedule by text offers only
times inside working hours, so a provider without them cannot be booked by patients.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from careline.clinics.directory import UnknownOrganization, organization_named, put_provider
from careline.clinics.office_hours import parse_week
from careline.scheduling.models import replace_working_hours


class Command(BaseCommand):
    help = "Add (or update) and list an organization's providers, with working hours."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add a provider, or bring them to the values given.")
        add.add_argument("--organization", required=True, help="Organization slug.")
        add.add_argument("--name", required=True, help="As patients see it, e.g. 'Dr. Lee'.")
        add.add_argument("--npi", default="", help="10-digit NPI (identifies the provider).")
        add.add_argument(
            "--practice",
            action="append",
            default=[],
            metavar="CODE",
            help="Practice code the provider works at (repeat for several).",
        )
        add.add_argument(
            "--hours",
            help="Working hours at those practices, e.g. 'Mon-Thu 08:00-17:00; Fri 08:00-12:00'.",
        )
        listing = sub.add_parser("list", help="List the organization's providers.")
        listing.add_argument("--organization", required=True, help="Organization slug.")

    def handle(self, *args, **opts):
        try:
            organization = organization_named(opts["organization"])
        except UnknownOrganization as exc:
            raise CommandError(str(exc)) from exc
        if opts["action"] == "list":
            for provider in organization.providers.order_by("display_name"):
                codes = ", ".join(
                    provider.practices.order_by("code").values_list("code", flat=True)
                )
                self.stdout.write(f"{provider.display_name}  {provider.npi or '-'}  {codes}")
            return
        codes = [c.strip() for c in opts["practice"]]
        practices = list(organization.practices.filter(code__in=codes))
        missing = sorted(set(codes) - {p.code for p in practices})
        if missing:
            known = ", ".join(
                organization.practices.order_by("code").values_list("code", flat=True)
            )
            raise CommandError(
                f"--practice: no practice has the code {', '.join(missing)} "
                f"(known: {known or 'none yet; add one with `careline practice add`'})."
            )
        if opts["hours"] and not practices:
            raise CommandError("--hours: name the practice(s) they are at with --practice.")
        try:
            week = parse_week(opts["hours"]) if opts["hours"] else None
            provider, outcome = put_provider(
                organization, display_name=opts["name"], npi=opts["npi"], practices=practices
            )
        except ValidationError as exc:
            raise CommandError(f"--hours: {' '.join(exc.messages)}" if not hasattr(
                exc, "error_dict") else "; ".join(
                f"--{'name' if k == 'display_name' else k}: {' '.join(v)}"
                for k, v in exc.message_dict.items()
            )) from exc  # fmt: skip
        if week is not None:
            changed = [replace_working_hours(provider, p, week) for p in practices]
            if any(changed) and outcome == "unchanged":
                outcome = "updated"
        self.stdout.write(f"Provider {provider.display_name}: {outcome}.")
