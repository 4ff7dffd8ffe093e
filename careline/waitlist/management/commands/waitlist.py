"""`careline waitlist`: offer freed times to waitlisted patients and move lapsed offers on."""

from django.core.management.base import BaseCommand

from careline.background import Pass, run_passes, run_round, summary
from careline.waitlist.offers import run_due


class Command(BaseCommand):
    help = "Offer freed times to waitlisted patients and move lapsed offers on to the next ones."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Do all due work, then exit.")
        parser.add_argument("--sleep", type=float, default=15.0, help="Seconds between passes.")

    def handle(self, *args, **opts):
        passes = [Pass("waitlist", run_due)]
        if opts["once"]:
            done, _ = run_round(passes, due_only=False)
            self.stdout.write(summary(done))
            return
        run_passes(passes, sleep=opts["sleep"])
