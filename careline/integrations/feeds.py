"""Writes HL7 feeds: adding, saving and removing the configuration of a sending system.

Every door that configures a feed — `careline hl7-feed`, the REST API's /hl7-feeds and the
Django admin — comes through here, so a feed gets the same checks and defaults whichever
way it was made: its MRN namespace is stored (never left to be derived later), its time
zone is a real zone, and its location map names only the organization's practices.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from careline.clinics.models import Organization, Practice
from careline.integrations.models import (
    Hl7Feed,
    Hl7Message,
    Hl7OutboundMessage,
    ProcessingId,
    default_identifier_system,
)

FALLBACK_TIME_ZONE = Hl7Feed._meta.get_field("time_zone").default


class FeedError(ValueError):
    """The feed cannot be saved; `problems` says why, by field."""

    def __init__(self, problems: dict[str, list[str]]):
        self.problems = problems
        super().__init__(
            " ".join(
                " ".join(messages) if field == "__all__" else f"{field}: {' '.join(messages)}"
                for field, messages in problems.items()
            )
        )


def default_time_zone(organization: Organization) -> str:
    """The zone all the organization's practices share, else the model's default."""
    zones = set(
        Practice.objects.filter(organization=organization).values_list("time_zone", flat=True)
    )
    return zones.pop() if len(zones) == 1 else FALLBACK_TIME_ZONE


def add_feed(
    organization: Organization,
    *,
    name: str,
    time_zone: str = "",
    identifier_system: str = "",
    processing_id: str = ProcessingId.PRODUCTION,
    location_map: dict[str, str] | None = None,
    sending_application: str = "",
) -> Hl7Feed:
    """A new active feed of the organization; FeedError naming each bad field."""
    name = name.strip()
    problems: dict[str, list[str]] = {}
    if name and Hl7Feed.objects.filter(organization=organization, name=name).exists():
        problems["name"] = [
            f"The organization '{organization.slug}' already has a feed named '{name}'."
        ]
    location_map = dict(location_map or {})
    _check_location_map(organization, location_map, problems)
    feed = Hl7Feed(
        organization=organization,
        name=name,
        time_zone=time_zone.strip() or default_time_zone(organization),
        identifier_system=identifier_system.strip(),
        processing_id=processing_id.strip().upper(),
        location_map=location_map,
        sending_application=sending_application.strip(),
    )
    return save_feed(feed, problems)


def save_feed(feed: Hl7Feed, problems: dict[str, list[str]] | None = None) -> Hl7Feed:
    """Check and save a new or edited feed, storing its default namespace when it has none."""
    problems = dict(problems or {})
    if not feed.identifier_system and feed.name.strip():
        feed.identifier_system = default_identifier_system(feed.organization.slug, feed.name)
    try:
        # A duplicate name is reported by add_feed and the admin's form, and caught below.
        feed.full_clean(validate_constraints=False)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            if field not in problems:
                problems[field] = list(messages)
    if problems:
        raise FeedError(problems)
    try:
        with transaction.atomic():
            feed.save()
    except IntegrityError as exc:
        # Another request added the same name between the check and the save.
        raise FeedError({"name": [f"A feed named '{feed.name}' already exists."]}) from exc
    return feed


def _check_location_map(
    organization: Organization, location_map: dict[str, str], problems: dict[str, list[str]]
) -> None:
    if any(not code.strip() or not practice.strip() for code, practice in location_map.items()):
        problems.setdefault("location_map", []).append(
            "Give each location as CODE=PRACTICE, with neither side empty."
        )
        return
    known = set(Practice.objects.filter(organization=organization).values_list("code", flat=True))
    unknown = sorted(set(location_map.values()) - known)
    if unknown:
        problems.setdefault("location_map", []).append(
            f"No practice of '{organization.slug}' has the code(s) {', '.join(unknown)}; "
            f"known practice codes: {', '.join(sorted(known)) or 'none yet'}."
        )


def remove_feed(feed: Hl7Feed) -> bool:
    """Delete a feed that never exchanged a message (True); a feed with stored messages is
    deactivated instead (False), because those messages are the record of what it did."""
    with transaction.atomic():
        has_history = (
            Hl7Message.objects.filter(feed=feed).exists()
            or Hl7OutboundMessage.objects.filter(feed=feed).exists()
        )
        if has_history:
            Hl7Feed.objects.filter(pk=feed.pk).update(active=False)
            feed.active = False
            return False
        Hl7Feed.objects.filter(pk=feed.pk).delete()
        return True
