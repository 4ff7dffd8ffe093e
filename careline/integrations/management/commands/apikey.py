from django.core.management.base import BaseCommand, CommandError

from careline.integrations.api_keys import issue_api_key, revoke_api_key
from careline.integrations.models import ApiKey


class Command(BaseCommand):
    help = "Create, list or revoke API keys for the FHIR and JSON APIs."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser(
            "create", help="Create a key; it is printed once, on the last line."
        )
        create.add_argument("name", help="Who uses the key, e.g. 'Epic interface'.")
        create.add_argument(
            "--organization",
            required=True,
            help="Organization slug (see `careline organization list`).",
        )
        create.add_argument(
            "--create-organization",
            action="store_true",
            help="Create the organization (named after its slug) if it does not exist, "
            "for scripts; without it an unknown slug is an error.",
        )
        create.add_argument(
            "--identifier-system",
            default="",
            metavar="SYSTEM",
            help="System (a URI) of patient identifiers the client sends without one; "
            "default urn:careline:<organization>:mrn.",
        )
        revoke = sub.add_parser("revoke", help="Revoke a key by its prefix or the whole key.")
        revoke.add_argument("key", help="The key's prefix (see `apikey list`) or the key itself.")
        listing = sub.add_parser("list", help="List keys (prefixes only, never secrets).")
        listing.add_argument("--organization", help="Only this organization's keys.")

    def handle(self, *args, **opts):
        return getattr(self, f"_{opts['action']}")(opts)

    def _create(self, opts) -> None:
        try:
            issued = issue_api_key(
                organization_slug=opts["organization"],
                name=opts["name"],
                create_organization=opts["create_organization"],
                identifier_system=opts["identifier_system"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        key = issued.api_key
        self.stdout.write(
            f"API key '{key.name}' for organization '{key.organization.slug}' "
            f"(prefix {key.prefix}"
            + (f", identifier system {key.identifier_system}" if key.identifier_system else "")
            + "). Store it now: it is not shown again."
        )
        self.stdout.write(issued.plaintext)

    def _revoke(self, opts) -> None:
        try:
            key = revoke_api_key(opts["key"])
        except ApiKey.DoesNotExist as exc:
            raise CommandError(f"No API key with prefix '{opts['key']}'.") from exc
        self.stdout.write(f"Revoked API key '{key.name}' (prefix {key.prefix}).")

    def _list(self, opts) -> None:
        keys = ApiKey.objects.select_related("organization")
        if opts["organization"]:
            keys = keys.filter(organization__slug=opts["organization"])
        for key in keys:
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            self.stdout.write(
                f"{key.prefix}  {key.organization.slug}  {key.name}  {state}  last used {used}"
            )
