"""What the HL7 commands share: the feeds chosen with --organization and --feed."""

from __future__ import annotations

from django.core.management.base import CommandError

from careline.integrations.hl7.receiving import FeedSelector


def feed_selector(options: dict) -> FeedSelector:
    """The feeds the options name; CommandError saying what to configure when none is active."""
    selector = FeedSelector(organization_slug=options["organization"], feed_name=options["feed"])
    try:
        selector.check()
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return selector
