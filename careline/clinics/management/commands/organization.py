"""`careline organization add SLUG --name NAME` and `careline organization list`."""

from django.core.management.base import BaseCommand, CommandError

from careline.clinics.directory import add_organization
from careline.clinics.models import Organization


class Command(BaseCommand):
    help = "Add or list organizations (every API key, feed and staff login belongs to one)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add an organization.")
        add.add_argument("slug", help="Short id used by the other commands, e.g. valley-health.")
        add.add_argument("--name", required=True, help="Display name, e.g. 'Valley Health'.")
        sub.add_parser("list", help="List organizations: slug and name.")

    def handle(self, *args, **opts):
        if opts["action"] == "add":
            try:
                organization = add_organization(opts["slug"], name=opts["name"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Added organization '{organization.slug}' ({organization.name}).")
            return
        for organization in Organization.objects.order_by("slug"):
            self.stdout.write(f"{organization.slug}  {organization.name}")
