import logging
import time

from django.core.management.base import BaseCommand

from careline.selfservice.waitlist import run_due

logger = logging.getLogger("careline.selfservice.waitlist")


class Command(BaseCommand):
    help = "Offer freed times to waitlisted patients and move lapsed offers on to the next ones."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Do all due work, then exit.")
        parser.add_argument("--sleep", type=float, default=15.0, help="Seconds between passes.")

    def handle(self, *args, **opts):
        while True:
            counts = run_due()
            if opts["once"]:
                self.stdout.write(", ".join(f"{k}={v}" for k, v in counts.items()))
                return
            if any(counts.values()):
                logger.info("Waitlist pass: %s", counts)
            time.sleep(opts["sleep"])
