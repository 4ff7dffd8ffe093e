"""`careline hl7-writeback`: send what patients did back to the EHR feeds over MLLP."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from careline.background import Pass, run_passes, summary
from careline.integrations.hl7.writeback.queue import writeback_configured
from careline.integrations.hl7.writeback.send import run_once


class Command(BaseCommand):
    help = (
        "Send patients' confirmations (SIU S14), cancellations (S15), reschedules (S13), "
        "online bookings (S12) and texting opt-outs/opt-ins (ADT A31) to every HL7 feed "
        "that has an outbound host and port, in order per appointment, with retries."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Do all due work, then exit.")
        parser.add_argument("--sleep", type=float, default=5.0, help="Seconds between passes.")
        parser.add_argument("--batch-size", type=int, default=50)
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="Seconds to wait for each ACK."
        )

    def handle(self, *args, **opts) -> None:
        if opts["batch_size"] < 1 or opts["sleep"] < 0 or opts["timeout"] <= 0:
            raise CommandError(
                "--batch-size must be at least 1, --sleep not negative, --timeout positive."
            )
        if not writeback_configured():
            self.stdout.write(
                "No active HL7 feed has an outbound host and port; nothing is written back "
                "until one does (admin: Integrations › HL7 feeds)."
            )
            if opts["once"]:
                return

        def writeback() -> dict[str, int]:
            return run_once(batch_size=opts["batch_size"], timeout=opts["timeout"])

        if opts["once"]:
            self.stdout.write(summary(writeback()))
            return
        run_passes([Pass("hl7-writeback", writeback)], sleep=opts["sleep"])
