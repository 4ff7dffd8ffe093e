from django.core.management.base import BaseCommand, CommandError

from careline.analytics import risk
from careline.clinics.models import Organization


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval(bounds) -> str:
    return "n/a" if bounds is None else f"{bounds[0]:.3f}–{bounds[1]:.3f}"


class Command(BaseCommand):
    help = "Fit the no-show risk model on an organization's own history and score upcoming visits."

    def add_arguments(self, parser):
        parser.add_argument("--organization", help="Organization slug (default: the only one)")
        parser.add_argument("--holdout-days", type=int, default=90)
        parser.add_argument("--no-score", action="store_true", help="Train only")

    def handle(self, *args, **opts):
        orgs = Organization.objects.all()
        if opts["organization"]:
            orgs = orgs.filter(slug=opts["organization"])
        if orgs.count() != 1:
            raise CommandError("Name the organization with --organization SLUG.")
        org = orgs.get()
        try:
            model = risk.train(org.id, holdout_days=opts["holdout_days"])
        except risk.NotEnoughHistory as exc:
            raise CommandError(str(exc)) from exc
        r = model.report
        self.stdout.write(
            f"Trained on {r['trained_on']} visits, tested on the last {r['holdout_days']} days "
            f"({r['tested_on']} visits, no-show rate {r['test_rate']:.3f})."
        )
        self.stdout.write(
            f"Features as known {r['decision_lead_hours']:g} h before each visit (or at booking)."
        )
        self.stdout.write(f"{'':22}{'AUC':>8}{'95% CI':>16}{'Brier':>8}")
        ci = r["intervals"]
        for name in ("model", "baseline"):
            self.stdout.write(
                f"{name:22}{_fmt(r[name]['auc']):>8}{_interval(ci[name + '_auc']):>16}"
                f"{_fmt(r[name]['brier']):>8}"
            )
        self.stdout.write(f"{'gain over baseline':22}{'':>8}{_interval(ci['gain']):>16}")
        self.stdout.write("Calibration (deciles of predicted risk): predicted → observed")
        for row in r["model"]["calibration"]:
            self.stdout.write(
                f"  {row['predicted']:.3f} → {row['observed']:.3f}  ({row['visits']})"
            )
        if not opts["no_score"]:
            scored = risk.score_upcoming(org.id)
            self.stdout.write(f"Scored {scored} upcoming visits.")
