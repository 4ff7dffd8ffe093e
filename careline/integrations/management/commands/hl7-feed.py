"""`careline hl7-feed add|list|remove`: configure HL7 feeds without the admin, so a go-live
can be scripted (docs/integrations.md)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from careline.clinics.directory import UnknownOrganization, organization_named
from careline.integrations.feeds import FeedError, add_feed, remove_feed
from careline.integrations.models import Hl7Feed, ProcessingId

OPTION_OF_FIELD = {
    "name": "NAME",
    "time_zone": "--time-zone",
    "identifier_system": "--namespace",
    "processing_id": "--processing-id",
    "location_map": "--map-location",
    "sending_application": "--sending-application",
}


def location_mapping(text: str) -> tuple[str, str]:
    code, sep, practice = text.partition("=")
    if not sep or not code.strip() or not practice.strip():
        raise ValueError(f"--map-location takes CODE=PRACTICE (e.g. TROYMAIN=TROY), not {text!r}.")
    return code.strip(), practice.strip()


def describe(feed: Hl7Feed) -> str:
    locations = ",".join(
        f"{code}={practice}" for code, practice in sorted(feed.location_map.items())
    )
    return "  ".join(
        [
            feed.organization.slug,
            feed.name,
            "active" if feed.active else "inactive",
            f"processing-id={feed.processing_id}",
            f"time-zone={feed.time_zone}",
            f"namespace={feed.namespace}",
            f"locations={locations or '-'}",
            f"sending-application={feed.routing_application}",
        ]
    )


class Command(BaseCommand):
    help = (
        "Add, list or remove HL7 feeds: the sending systems `careline mllp` and "
        "`careline import-hl7` take messages from."
    )

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add a feed.")
        add.add_argument("name", help="The feed's name, e.g. ATHENA; stored on its visits.")
        add.add_argument("--organization", required=True, help="Organization slug.")
        add.add_argument(
            "--time-zone",
            default="",
            help="IANA zone of MSH-7 when it has no offset; visit times are read in their "
            "location's practice zone (default: the zone the organization's practices "
            "share, else America/New_York).",
        )
        add.add_argument(
            "--namespace",
            default="",
            help="Identifier system (URI) of the feed's MRNs, e.g. urn:oid:1.2.840.114350 "
            "(default: urn:careline:ORGANIZATION:NAME). Feeds sharing one share patients.",
        )
        add.add_argument(
            "--processing-id",
            type=str.upper,
            choices=ProcessingId.values,
            default=ProcessingId.PRODUCTION,
            help="MSH-11 the feed takes: P production (default), T training, D debugging; "
            "other messages are refused with AR.",
        )
        add.add_argument(
            "--map-location",
            action="append",
            default=[],
            metavar="CODE=PRACTICE",
            help="An AIL-3 location code and the practice code it means (repeatable). A "
            "location code that is itself a practice code needs no mapping.",
        )
        add.add_argument(
            "--sending-application",
            default="",
            help="MSH-3 that routes messages here when one listener serves several feeds "
            "(default: the feed name).",
        )
        listing = sub.add_parser("list", help="List feeds and their settings.")
        listing.add_argument("--organization", default="", help="Only this organization's.")
        remove = sub.add_parser(
            "remove",
            help="Remove a feed; one that has stored messages is deactivated instead.",
        )
        remove.add_argument("name")
        remove.add_argument("--organization", required=True, help="Organization slug.")

    def handle(self, *args, **opts) -> None:
        return getattr(self, f"_{opts['action']}")(opts)

    def _organization(self, slug: str):
        try:
            return organization_named(slug)
        except UnknownOrganization as exc:
            raise CommandError(str(exc)) from exc

    def _add(self, opts) -> None:
        organization = self._organization(opts["organization"])
        try:
            location_map = dict(location_mapping(m) for m in opts["map_location"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            feed = add_feed(
                organization,
                name=opts["name"],
                time_zone=opts["time_zone"],
                identifier_system=opts["namespace"],
                processing_id=opts["processing_id"],
                location_map=location_map,
                sending_application=opts["sending_application"],
            )
        except FeedError as exc:
            problems = "".join(
                f"\n  {OPTION_OF_FIELD.get(field, field)}: {' '.join(messages)}"
                if field != "__all__"
                else f"\n  {' '.join(messages)}"
                for field, messages in exc.problems.items()
            )
            raise CommandError(f"The feed was not added:{problems}") from exc
        self.stdout.write(f"Added HL7 feed: {describe(feed)}")

    def _list(self, opts) -> None:
        feeds = Hl7Feed.objects.select_related("organization").order_by(
            "organization__slug", "name"
        )
        if opts["organization"]:
            feeds = feeds.filter(organization=self._organization(opts["organization"]))
        for feed in feeds:
            self.stdout.write(describe(feed))

    def _remove(self, opts) -> None:
        organization = self._organization(opts["organization"])
        feed = Hl7Feed.objects.filter(organization=organization, name=opts["name"]).first()
        if feed is None:
            names = ", ".join(
                Hl7Feed.objects.filter(organization=organization).values_list("name", flat=True)
            )
            raise CommandError(
                f"'{organization.slug}' has no feed named '{opts['name']}'. "
                f"Its feeds: {names or 'none'}."
            )
        if remove_feed(feed):
            self.stdout.write(f"Removed HL7 feed '{feed.name}' of '{organization.slug}'.")
        else:
            self.stdout.write(
                f"HL7 feed '{feed.name}' of '{organization.slug}' has stored messages, so it "
                "was deactivated (kept for the record) rather than deleted."
            )
