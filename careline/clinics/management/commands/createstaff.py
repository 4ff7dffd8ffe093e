from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from careline.clinics.directory import set_staff_role
from careline.clinics.models import Organization, Practice, StaffRole
from careline.clinics.usernames import normalize_username


class Command(BaseCommand):
    help = "Create (or update) a staff login with a role in an organization and its practices."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--organization", required=True, help="Organization slug")
        parser.add_argument(
            "--role", choices=[r.value for r in StaffRole], default=StaffRole.FRONT_DESK
        )
        parser.add_argument(
            "--practice", action="append", default=[], help="Practice code (repeatable)"
        )
        parser.add_argument("--email", default="")

    @transaction.atomic
    def handle(self, *args, **opts):
        try:
            org = Organization.objects.get(slug=opts["organization"])
        except Organization.DoesNotExist as exc:
            raise CommandError(f"No organization with slug '{opts['organization']}'.") from exc
        practices = list(Practice.objects.filter(organization=org, code__in=opts["practice"]))
        missing = set(opts["practice"]) - {p.code for p in practices}
        if missing:
            raise CommandError(
                f"Unknown practice code(s) in {org.slug}: {', '.join(sorted(missing))}"
            )
        if opts["role"] != StaffRole.ORGANIZATION_ADMIN and not practices:
            raise CommandError("Practice managers and front desk need at least one --practice.")
        username = normalize_username(opts["username"])
        if not username:
            raise CommandError("The username is empty.")
        User = get_user_model()
        lookalikes = [
            u.username
            for u in User.objects.only("username")
            if u.username != username and normalize_username(u.username) == username
        ]
        if lookalikes:
            raise CommandError(
                f"A login spelled '{lookalikes[0]}' already exists; use that exact username."
            )
        user = User.objects.filter(username=username).first() or User(username=username)
        user.email = opts["email"]
        user.is_staff = True
        try:
            validate_password(opts["password"], user)
        except ValidationError as exc:
            reasons = "\n".join(f"  - {m}" for m in exc.messages)
            raise CommandError(f"Password rejected:\n{reasons}") from exc
        user.set_password(opts["password"])
        user.save()
        membership = set_staff_role(user, org, opts["role"], practices)
        self.stdout.write(f"Staff login '{user.username}' ready ({membership.get_role_display()}).")
