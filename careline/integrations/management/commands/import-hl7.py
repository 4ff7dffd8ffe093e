"""`careline import-hl7 FILE…`: apply a batch of HL7 v2 SIU messages from files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from careline.integrations.hl7.files import iter_messages
from careline.integrations.hl7.receiving import receive_message, refresh_statistics_after_bulk
from careline.integrations.management.feeds import feed_selector


class Command(BaseCommand):
    help = (
        "Apply HL7 v2 SIU messages from files, exactly as if they had arrived over MLLP: "
        "each is stored, applied and acknowledged. A file may be MLLP-framed "
        "(<VT>…<FS><CR>) or plain text with one message per MSH segment (CR, CRLF or LF "
        "segment breaks; blank lines between messages are fine). Prints one line per "
        "message that was not accepted and a summary of AA/AE/AR counts."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--organization", default="", help="Organization slug to import into.")
        parser.add_argument("--feed", default="", help="Feed name the messages come from.")

    def handle(self, *args, **options) -> None:
        selector = feed_selector(options)
        paths = [Path(name) for name in options["files"]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"No such file: {', '.join(missing)}")
        counts: Counter[str] = Counter()
        duplicates = 0
        for path in paths:
            with path.open("rb") as stream:
                for number, text in enumerate(iter_messages(stream), start=1):
                    receipt = receive_message(text, selector)
                    counts[receipt.ack_code] += 1
                    duplicates += receipt.duplicate
                    if receipt.ack_code != "AA":
                        self.stdout.write(
                            f"{path}: message {number}: {receipt.ack_code} {receipt.reason}"
                        )
        # A batch file is a bulk load: fresh statistics for the tables it filled.
        refresh_statistics_after_bulk()
        total = sum(counts.values())
        summary = f"{total} message(s): {counts['AA']} AA, {counts['AE']} AE, {counts['AR']} AR" + (
            f" ({duplicates} duplicate(s), not re-applied)" if duplicates else ""
        )
        style = self.style.SUCCESS if total == counts["AA"] else self.style.WARNING
        self.stdout.write(style(summary))
