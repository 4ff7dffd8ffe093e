"""`careline import-csv FILE`: import a practice's appointments from a CSV file."""

from __future__ import annotations

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from careline.clinics.models import Organization
from careline.integrations.csv import importer

MAX_ERRORS_SHOWN = 1000


class Command(BaseCommand):
    help = "Import appointments from a CSV file.\n\n" + (importer.__doc__ or "")

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Keep the column table's layout in --help.
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", metavar="FILE")
        parser.add_argument(
            "--organization", default="", help="Organization slug (needed when there are several)."
        )
        parser.add_argument(
            "--source",
            default="csv",
            help="Name of the system the ids come from (default: %(default)s); files from "
            "different systems keep separate appointment ids.",
        )
        parser.add_argument(
            "--identifier-system",
            default="",
            metavar="SYSTEM",
            help="System (a URI) of the MRNs in rows without a mrn_system column value "
            "(default: urn:careline:<organization>:mrn). Give each EHR's files its own.",
        )
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Import the valid rows even when some rows are bad (they are still listed).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        organization = self._organization(options["organization"])
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            disable=options["no_progress"],
            transient=True,
        )
        size = path.stat().st_size
        with progress:
            checking = progress.add_task("Checking", total=size)
            importing = progress.add_task("Importing", total=size, visible=False)

            def checked(done: int) -> None:
                progress.update(checking, completed=done)

            def imported(done: int) -> None:
                progress.update(importing, completed=done, visible=True)

            try:
                report = importer.import_csv(
                    path,
                    organization,
                    external_system=options["source"],
                    skip_invalid=options["skip_invalid"],
                    identifier_system=options["identifier_system"].strip(),
                    validate_progress=checked,
                    import_progress=imported,
                )
            except importer.CsvLayoutError as exc:
                raise CommandError(str(exc)) from exc
            except DatabaseError as exc:
                # Everything is written in one transaction: it was rolled back.
                raise CommandError(
                    f"The database refused the import ({type(exc).__name__}); nothing was imported."
                ) from exc
        for line, reason in report.errors[:MAX_ERRORS_SHOWN]:
            self.stdout.write(f"line {line}: {reason}")
        if report.invalid > MAX_ERRORS_SHOWN:
            self.stdout.write(f"… and {report.invalid - MAX_ERRORS_SHOWN} more bad rows.")
        if not report.imported:
            raise CommandError(
                f"{report.invalid} of {report.rows} rows are bad; nothing was imported. Fix "
                "them, or use --skip-invalid to import the others."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.rows} rows: {report.created} new, {report.updated} updated, "
                f"{report.unchanged} unchanged, {report.invalid} skipped as bad."
            )
        )

    def _organization(self, slug: str) -> Organization:
        if slug:
            try:
                return Organization.objects.get(slug=slug)
            except Organization.DoesNotExist:
                raise CommandError(f"No organization with slug '{slug}'.") from None
        organizations = list(Organization.objects.all()[:2])
        if len(organizations) != 1:
            raise CommandError("Name the organization with --organization SLUG.")
        return organizations[0]
