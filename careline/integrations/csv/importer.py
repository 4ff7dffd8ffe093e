"""CSV import of a practice's schedule, for practices without an HL7 or FHIR interface.

File layout: UTF-8 (a BOM is fine), comma-separated, one header row naming the columns
(any order, extra columns ignored), then one appointment per row.

    column            required  meaning
    appointment_id    yes       your system's id for the visit; importing the same id
                                again updates that visit instead of adding another
    practice          yes       the practice code in Careline (e.g. TROY)
    provider          yes       the provider as patients see the name, e.g. "Dr. Lee";
                                matched without regard to case, added when new
    provider_npi      no        10-digit NPI; when given, the provider is matched by it
    mrn               yes       the patient's medical record number
    mrn_system        no        the system (a URI, e.g. urn:oid:1.2.3) the MRN belongs to;
                                default: the import's --identifier-system, else the
                                organization's own (urn:careline:<organization>:mrn).
                                A patient is found by (system, MRN): MRN 12345 of two
                                systems is two patients
    given_name        yes       patient's first name
    family_name       yes       patient's last name
    birth_date        no        YYYY-MM-DD
    mobile_phone      no        the number reminders are texted to (any common format;
                                without a country code it is taken as US)
    email             no
    language          no        en or es (also English / Spanish / spa); new patients: en
    address_line      no        the patient's street address
    city              no
    state             no        a US state (code or name) sets the patient's time zone for
                                quiet hours, ahead of the mobile number's area code
    postal_code       no
    country           no        blank is the United States
    appointment_type  no        type code (added when new); default VISIT
    start             yes       YYYY-MM-DD HH:MM in the practice's time zone, or ISO 8601
                                with a UTC offset (2026-12-03T09:30:00-05:00); from 1900
                                to ten years ahead
    duration_minutes  no        1 to 1440; default: the appointment type's duration
    status            no        booked (default), confirmed, cancelled, noshow, arrived,
                                fulfilled or entered-in-error

Every row is checked before anything is written. A bad row (also one that is not UTF-8,
holds a NUL character or cannot be read as CSV) is reported with its line number, the
column and the reason; unless skipping invalid rows was asked for, one bad row means
nothing is imported. The file is read twice as a stream and written in batches inside one
transaction, so memory stays flat for a million rows. A later row with the same
appointment_id overrides an earlier one. Reminders are planned batch by batch for the
visits the batch added or changed (set-based, a few statements per batch); a row that
changes nothing writes nothing and plans nothing. Each imported row leaves a fingerprint
(a hash of its cells and of the practice, time zone, provider and visit type they name);
a row exactly as last imported, whose visit and patient nothing else changed since, is
skipped without being validated or compared, so re-importing an unchanged file costs
little more than reading it. Imported changes send no booking or cancellation notices.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from careline.clinics.directory import add_provider, appointment_type_for_code, link_providers
from careline.clinics.models import AppointmentType, Organization, Practice, Provider
from careline.clinics.validators import FIRST_DATE, calendar_date, normalize_phone
from careline.integrations.models import CsvRowFingerprint, validate_identifier_system
from careline.messaging.models import OutboundMessage
from careline.messaging.planning import sync_reminders
from careline.patients.identifiers import MAX_SYSTEM, Identifier, identifier_q
from careline.patients.languages import language_code
from careline.patients.models import (
    Patient,
    PatientIdentifier,
    PatientVersion,
    default_identifier_system,
)
from careline.patients.records import import_identifiers, import_patients
from careline.scheduling.appointments import (
    LONGEST_VISIT,
    VisitTimeError,
    check_visit_times,
    import_appointments,
    record_imported_changes,
    stamp_status,
)
from careline.scheduling.external import FeedChange, feed_change
from careline.scheduling.models import (
    Appointment,
    AppointmentEvent,
    AppointmentStatus,
    AppointmentVersion,
)
from careline.scheduling.models import ChangeSource as Source
from careline.tablestats import refresh_statistics

MAX_VISIT_MINUTES = int(LONGEST_VISIT.total_seconds() // 60)

# Column → (Patient field, longest value).
ADDRESS = {
    "address_line": ("address_line", 200),
    "city": ("city", 100),
    "state": ("state", 50),
    "postal_code": ("postal_code", 20),
    "country": ("country", 60),
}
ADDRESS_COLUMNS = tuple(ADDRESS)
REQUIRED = ("appointment_id", "practice", "provider", "mrn", "given_name", "family_name", "start")
OPTIONAL = (
    "mrn_system",
    "provider_npi",
    "birth_date",
    "mobile_phone",
    "email",
    "language",
    *ADDRESS_COLUMNS,
    "appointment_type",
    "duration_minutes",
    "status",
)
_COLUMNS = (*REQUIRED, *OPTIONAL)
DEFAULT_TYPE_CODE = "VISIT"
_STATUSES = frozenset(AppointmentStatus.values)
BATCH_SIZE = 2000


class CsvLayoutError(ValueError):
    """The file as a whole cannot be read (no header, required columns missing)."""


@dataclass(frozen=True)
class Row:
    line: int
    appointment_id: str
    practice_id: int
    provider: str
    provider_npi: str
    mrn: str
    mrn_system: str
    given_name: str
    family_name: str
    birth_date: date | None
    mobile_phone: str
    email: str
    language: str
    address: dict[str, str]  # Patient field → value, the filled address columns only
    type_code: str
    start: datetime
    duration_minutes: int | None
    status: str
    # The stripped cells in _COLUMNS order, fingerprinted once the row is written (its
    # provider or visit type may be new until then).
    cells: tuple[str, ...] = ()


class _Known(NamedTuple):
    """A row exactly as Careline last imported it (its fingerprint matched): skipped unread."""

    line: int
    appointment_id: str


@dataclass
class ImportReport:
    rows: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    imported: bool = False

    @property
    def invalid(self) -> int:
        return len(self.errors)


Progress = Callable[[int], None]  # called with the bytes read so far


class _Validator:
    def __init__(self, organization: Organization, identifier_system: str = ""):
        self.identifier_system = identifier_system or default_identifier_system(organization.slug)
        self.practices = {
            p.code.lower(): (p.id, zoneinfo.ZoneInfo(p.time_zone))
            for p in Practice.objects.filter(organization=organization)
        }
        self.region = settings.CARELINE_DEFAULT_REGION

    def row(self, line: int, cells: list[str]) -> Row:
        """A clean row from its stripped cells in _COLUMNS order, or ValueError with the
        reason."""
        value = dict(zip(_COLUMNS, cells, strict=True))
        joined = "".join(value.values())
        # Plain ASCII without NUL, nearly every row: no cell needs a look of its own.
        if "\x00" in joined or not joined.isascii():
            for name, text in value.items():
                problem = _text_problem(text)
                if problem:
                    # The reason names the column, not the value: it may be a patient's name.
                    raise ValueError(f"{name} {problem}")
        missing = [k for k in REQUIRED if not value[k]]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        practice = self.practices.get(value["practice"].lower())
        if practice is None:
            raise ValueError(f"unknown practice code '{value['practice']}'")
        practice_id, zone = practice
        start = _start(value["start"], zone)
        birth_date = None
        if value["birth_date"]:
            birth_date = calendar_date(value["birth_date"])
            if birth_date is None or birth_date > timezone.now().date():
                raise ValueError(
                    f"birth_date is not a date of birth YYYY-MM-DD between {FIRST_DATE.year} "
                    "and today"
                )
        duration = None
        if value["duration_minutes"]:
            text = value["duration_minutes"]
            # ASCII only: "²".isdigit() is True and int("٣") is 3.
            if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_VISIT_MINUTES):
                raise ValueError(
                    f"duration_minutes '{text[:20]}' is not a whole number of minutes from 1 "
                    f"to {MAX_VISIT_MINUTES}"
                )
            duration = int(text)
        status = value["status"].lower() or AppointmentStatus.BOOKED
        if status not in _STATUSES:
            raise ValueError(
                f"status '{value['status']}' is not one of {', '.join(AppointmentStatus.values)}"
            )
        # Blank: a new patient gets English, a known one keeps theirs.
        language = language_code(value["language"]) if value["language"] else ""
        if language is None:
            raise ValueError(f"language '{value['language']}' is not en or es")
        npi = value["provider_npi"]
        if npi and not (npi.isascii() and npi.isdigit() and len(npi) == 10):
            raise ValueError(f"provider_npi '{npi[:20]}' is not 10 digits")
        for name in ("appointment_id", "mrn"):
            if len(value[name]) > (120 if name == "appointment_id" else 64):
                raise ValueError(f"{name} is too long")
        for name, (_, longest) in ADDRESS.items():
            if len(value[name]) > longest:
                raise ValueError(f"{name} is longer than {longest} characters")
        mrn_system = value["mrn_system"] or self.identifier_system
        if value["mrn_system"]:
            try:
                validate_identifier_system(mrn_system)
            except ValidationError:
                raise ValueError(
                    "mrn_system is not a URI (e.g. urn:oid:1.2.840.114350.1)"
                ) from None
            if len(mrn_system) > MAX_SYSTEM:
                raise ValueError("mrn_system is too long")
        return Row(
            line=line,
            appointment_id=value["appointment_id"],
            practice_id=practice_id,
            provider=value["provider"][:200],
            provider_npi=npi,
            mrn=value["mrn"],
            mrn_system=mrn_system,
            given_name=value["given_name"][:100],
            family_name=value["family_name"][:100],
            birth_date=birth_date,
            mobile_phone=self._phone(value["mobile_phone"]),
            email=value["email"][:254],
            language=language,
            address={ADDRESS[k][0]: value[k] for k in ADDRESS_COLUMNS if value[k]},
            type_code=(value["appointment_type"] or DEFAULT_TYPE_CODE)[:40],
            start=start,
            duration_minutes=duration,
            status=status,
            cells=tuple(cells),
        )

    def _phone(self, text: str) -> str:
        if not text:
            return ""
        try:
            return _e164(text, self.region)
        except ValidationError as exc:
            raise ValueError(f"mobile_phone {' '.join(exc.messages)}") from None


def _text_problem(text: str) -> str:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, kept as surrogates by _read
        return "is not UTF-8 text"
    return ""


def _start(text: str, zone: zoneinfo.ZoneInfo) -> datetime:
    """The visit's start in UTC, so the end is the duration later in elapsed time, also
    across DST; ValueError unless it is a time Careline accepts for a visit."""
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"start '{text[:40]}' is not YYYY-MM-DD HH:MM (or ISO 8601 with offset)"
        ) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=zone)
    try:
        check_visit_times(start)
        return start.astimezone(UTC)
    except VisitTimeError as exc:
        raise ValueError(f"start {exc.message}") from None


# Cached: a file repeats numbers (families, many visits), and parsing one is the costliest
# check per row. Refusals raise, so they are not cached.
_e164 = functools.lru_cache(maxsize=50_000)(normalize_phone)


Item = Row | _Known | str  # a clean row, a row as last imported, or why the row is bad


def _read(
    path: Path,
    validator: _Validator,
    progress: Progress | None,
    fingerprints: _Fingerprints | None = None,
    chunk_size: int = BATCH_SIZE,
) -> Iterator[list[tuple[int, Item]]]:
    """(line number, item) for every data row, streamed in chunks of `chunk_size` rows.
    With `fingerprints`, a row exactly as Careline last imported it comes as _Known,
    without being validated (one set-based look-up per chunk)."""
    with path.open("rb") as binary:
        # Bytes that are not UTF-8 become surrogates, so one bad row is reported (by
        # _text_problem) instead of stopping the reader for the whole file.
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise CsvLayoutError("The file is empty: it needs a header row naming the columns.")
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise CsvLayoutError(
                f"The header row lacks the required column(s) {', '.join(missing)}; "
                f"it has {', '.join(header)}."
            )
        width = len(header)
        # Each column's cell (the last of a repeated name); an absent column reads the
        # blank cell appended after the row's own.
        where = {name: n for n, name in enumerate(header)}
        places = [where.get(name, width) for name in _COLUMNS]
        count = 0
        pending: list[tuple[int, list[str] | str]] = []
        while True:
            before = reader.line_num
            try:
                raw = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # A field over csv.field_size_limit() and the like; the reader goes on
                # with the next line. line_num has not moved past the bad row yet.
                pending.append((before + 1, f"cannot be read as CSV ({exc})"))
                continue
            if not raw:
                continue  # a blank line
            line = reader.line_num
            count += 1
            if progress is not None and count % 1000 == 0:
                progress(binary.tell())
            if len(raw) > width:
                pending.append((line, "more values than there are columns"))
            else:
                raw.extend([""] * (width - len(raw) + 1))
                pending.append((line, [raw[n].strip() for n in places]))
            if len(pending) >= chunk_size:
                yield _judge(pending, validator, fingerprints)
                pending = []
        if pending:
            yield _judge(pending, validator, fingerprints)
        if progress is not None:
            progress(binary.tell())


def _judge(
    pending: list[tuple[int, list[str] | str]],
    validator: _Validator,
    fingerprints: _Fingerprints | None,
) -> list[tuple[int, Item]]:
    prints: dict[int, int] = {}
    stored: dict[str, int] = {}
    if fingerprints is not None:
        prints = {
            line: fingerprints.of(cells) for line, cells in pending if isinstance(cells, list)
        }
        stored = fingerprints.stored(
            [cells[0] for _, cells in pending if isinstance(cells, list) and cells[0]]
        )
    judged: list[tuple[int, Item]] = []
    for line, cells in pending:
        if isinstance(cells, str):
            judged.append((line, cells))
            continue
        fingerprint = prints.get(line, 0)
        if fingerprint and stored.get(cells[0]) == fingerprint:
            judged.append((line, _Known(line, cells[0])))
            continue
        try:
            judged.append((line, validator.row(line, cells)))
        except UnicodeDecodeError:
            judged.append((line, "not UTF-8 text"))
        except ValueError as exc:
            judged.append((line, str(exc)))
    return judged


def validate_csv(
    path: Path,
    organization: Organization,
    progress: Progress | None = None,
    identifier_system: str = "",
) -> ImportReport:
    """Check every row; nothing is written."""
    report = ImportReport()
    _check(path, _Validator(organization, identifier_system), progress, None, report)
    return report


def _check(
    path: Path,
    validator: _Validator,
    progress: Progress | None,
    fingerprints: _Fingerprints | None,
    report: ImportReport,
    chunk_size: int = BATCH_SIZE,
) -> int | None:
    """Fill `report` with the rows and the bad ones. Returns, when every row is known as
    last imported, how many visits they are (as the import would count them unchanged);
    otherwise None."""
    known: int | None = 0
    try:
        for chunk in _read(path, validator, progress, fingerprints, chunk_size):
            for line, item in chunk:
                report.rows += 1
                if isinstance(item, str):
                    report.errors.append((line, item))
            if known is not None and all(isinstance(item, _Known) for _, item in chunk):
                known += len({item.appointment_id for _, item in chunk})  # type: ignore[union-attr]
            else:
                known = None
    except UnicodeDecodeError as exc:
        raise CsvLayoutError(f"The file is not UTF-8 text ({exc.reason}).") from exc
    return known


def import_csv(
    path: Path,
    organization: Organization,
    *,
    external_system: str = "csv",
    skip_invalid: bool = False,
    batch_size: int = BATCH_SIZE,
    plan_reminders: bool = True,
    validate_progress: Progress | None = None,
    import_progress: Progress | None = None,
    identifier_system: str = "",
) -> ImportReport:
    """Validate the whole file, then import it in batches in one transaction.

    A row exactly as the last import left it (same fingerprint, its visit and patient not
    changed since) is neither validated nor compared: a re-import of an unchanged file
    reads it and writes nothing.

    `identifier_system` is the system of MRNs in rows without a mrn_system (default: the
    organization's own); ValueError when it is not a URI."""
    if identifier_system:
        try:
            validate_identifier_system(identifier_system)
        except ValidationError as exc:
            raise CsvLayoutError(f"--identifier-system: {' '.join(exc.messages)}") from exc
    report = ImportReport()
    validator = _Validator(organization, identifier_system)
    writer = _BatchWriter(organization, external_system[:255], report, plan=plan_reminders)
    fingerprints = _Fingerprints(organization, external_system[:255], validator, writer)
    known = _check(path, validator, validate_progress, fingerprints, report, batch_size)
    if report.errors and not skip_invalid:
        return report
    if known is not None:
        # Every row is as the last import left it: nothing to write, no second reading.
        report.unchanged = known
        report.imported = True
        if import_progress is not None:
            import_progress(path.stat().st_size)
        return report
    with transaction.atomic():
        for chunk in _read(path, validator, import_progress, fingerprints, batch_size):
            items = [item for _, item in chunk if not isinstance(item, str)]
            if items:
                fingerprints.record(writer.write(items))
    report.imported = True
    if report.created or report.updated:
        # A bulk load; a file that changed nothing leaves the statistics as they are.
        refresh_statistics(
            Patient,
            PatientVersion,
            Appointment,
            AppointmentEvent,
            AppointmentVersion,
            OutboundMessage,
            CsvRowFingerprint,
        )
    return report


_CELL = {name: n for n, name in enumerate(_COLUMNS)}


class _Fingerprints:
    """Each row's fingerprint: a hash of its stripped cells and of what they resolve to in
    Careline now (practice and its time zone, provider, visit type and length, the default
    MRN system, the phone region), so a row means the same visit only while all of that
    holds. Stored per visit with the visit's and its patient's versions (CsvRowFingerprint);
    a stored one counts only while neither version moved (another door changed them)."""

    def __init__(
        self,
        organization: Organization,
        external_system: str,
        validator: _Validator,
        writer: _BatchWriter,
    ):
        self.org = organization
        self.system = external_system
        self.validator = validator
        self.writer = writer
        self.context = f"{validator.identifier_system}\x1e{validator.region}"

    def of(self, cells: list[str]) -> int:
        practice = self.validator.practices.get(cells[_CELL["practice"]].lower())
        npi = cells[_CELL["provider_npi"]]
        writer = self.writer
        provider = writer.providers_by_npi.get(npi) if npi else None
        if provider is None:
            provider = writer.providers_by_name.get(cells[_CELL["provider"]][:200].lower())
        kind = writer.types.get((cells[_CELL["appointment_type"]] or DEFAULT_TYPE_CODE)[:40])
        resolved = (practice and (practice[0], practice[1].key), provider, kind, self.context)
        text = "\x1f".join(cells) + "\x1e" + repr(resolved)
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        # Never 0, which means "no fingerprint".
        return int.from_bytes(digest, "big", signed=True) or 1

    def stored(self, appointment_ids: list[str]) -> dict[str, int]:
        """appointment_id → the fingerprint of the row its visit was last imported from,
        for visits whose visit and patient have not changed since."""
        found: dict[str, int] = {}
        for start in range(0, len(appointment_ids), 1000):
            found.update(
                CsvRowFingerprint.objects.filter(
                    appointment__organization=self.org,
                    appointment__external_system=self.system,
                    appointment__external_id__in=appointment_ids[start : start + 1000],
                    appointment_version=F("appointment__version"),
                    patient_id=F("appointment__patient_id"),
                    patient_version=F("appointment__patient__version"),
                ).values_list("appointment__external_id", "fingerprint")
            )
        return found

    def record(self, rows: list[Row]) -> None:
        """Keep the fingerprints of the rows just written or found unchanged."""
        prints = {row.appointment_id: self.of(list(row.cells)) for row in rows}
        if not prints:
            return
        ids = list(prints)
        kept: list[CsvRowFingerprint] = []
        for start in range(0, len(ids), 1000):
            kept.extend(
                CsvRowFingerprint(
                    appointment_id=pk,
                    fingerprint=prints[external_id],
                    appointment_version=version,
                    patient_id=patient_id,
                    patient_version=patient_version,
                )
                for external_id, pk, version, patient_id, patient_version in (
                    Appointment.objects.filter(
                        organization=self.org,
                        external_system=self.system,
                        external_id__in=ids[start : start + 1000],
                    ).values_list("external_id", "id", "version", "patient_id", "patient__version")
                )
            )
        CsvRowFingerprint.objects.bulk_create(
            kept,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["appointment"],
            update_fields=[
                "fingerprint",
                "appointment_version",
                "patient_id",
                "patient_version",
            ],
        )


class _Stored(NamedTuple):
    """What of a stored visit an import compares (named as on Appointment)."""

    id: int
    external_id: str
    practice_id: int
    provider_id: int
    patient_id: int
    appointment_type_id: int
    start: datetime
    end: datetime
    status: str


class _BatchWriter:
    """Set-based upserts of patients, providers, types and appointments, batch by batch."""

    def __init__(
        self,
        organization: Organization,
        external_system: str,
        report: ImportReport,
        *,
        plan: bool = True,
    ):
        self.org = organization
        self.plan = plan
        self.system = external_system
        self.report = report
        self.now = timezone.now()
        self.providers_by_name: dict[str, int] = {}
        self.providers_by_npi: dict[str, int] = {}
        for pid, name, npi in Provider.objects.filter(organization=organization).values_list(
            "id", "display_name", "npi"
        ):
            self.providers_by_name.setdefault(name.lower(), pid)
            if npi:
                self.providers_by_npi.setdefault(npi, pid)
        self.linked = set(
            Provider.practices.through.objects.filter(
                provider__organization=organization
            ).values_list("provider_id", "practice_id")
        )
        self.types = {
            code: (tid, minutes)
            for tid, code, minutes in AppointmentType.objects.filter(
                organization=organization
            ).values_list("id", "code", "duration_minutes")
        }

    def write(self, items: list[Row | _Known]) -> list[Row]:
        """Write a batch; a later row with the same appointment_id wins. Returns the rows
        it wrote or found unchanged (not those known unchanged by their fingerprint)."""
        latest = {item.appointment_id: item for item in items}
        rows = [item for item in latest.values() if isinstance(item, Row)]
        self.report.unchanged += len(latest) - len(rows)
        if rows:
            patients = self._patients(rows)
            providers = self._providers(rows)
            self._types(rows)
            self._appointments(rows, patients, providers)
        return rows

    def _patients(self, rows: list[Row]) -> dict[tuple[str, str], int]:
        """(system, MRN) → patient id; a patient is found by the identifier, never by the
        bare MRN. Several rows may describe one patient; a blank cell does not erase a
        filled one."""
        by_key: dict[tuple[str, str], dict] = {}
        for row in rows:
            merged = by_key.setdefault((row.mrn_system, row.mrn), {"practice_id": row.practice_id})
            for key, value in (
                ("given_name", row.given_name),
                ("family_name", row.family_name),
                ("birth_date", row.birth_date),
                ("mobile_phone", row.mobile_phone),
                ("email", row.email),
                ("preferred_language", row.language),
                *row.address.items(),
            ):
                if value not in ("", None):
                    merged[key] = value
        identifiers = {key: Identifier(key[0], key[1], "MR") for key in by_key}
        found = self._identified(list(identifiers.values()))
        existing = Patient.objects.in_bulk(set(found.values()))
        fields = [
            "given_name",
            "family_name",
            "birth_date",
            "mobile_phone",
            "email",
            "preferred_language",
            *(field for field, _ in ADDRESS.values()),
        ]
        new: list[Patient] = []
        new_keys: list[tuple[str, str]] = []
        changed: dict[int, Patient] = {}
        for key, values in by_key.items():
            practice_id = values.pop("practice_id")
            patient = existing.get(found.get(key))
            if patient is None:
                new.append(
                    Patient(
                        organization=self.org, mrn=key[1], home_practice_id=practice_id, **values
                    )
                )
                new_keys.append(key)
                continue
            if any(getattr(patient, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(patient, k, v)
                changed[patient.pk] = patient
        import_patients(new, list(changed.values()), fields)
        import_identifiers(
            self.org.pk, {p.pk: [identifiers[key]] for p, key in zip(new, new_keys, strict=True)}
        )
        return {**found, **{key: p.pk for p, key in zip(new, new_keys, strict=True)}}

    def _identified(self, identifiers: list[Identifier]) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for start in range(0, len(identifiers), 500):
            chunk = identifiers[start : start + 500]
            found.update(
                {
                    (system, value): pid
                    for pid, system, value in PatientIdentifier.objects.filter(
                        identifier_q(chunk), organization=self.org
                    ).values_list("patient_id", "system", "value")
                }
            )
        return found

    def _provider_id(self, row: Row) -> int | None:
        if row.provider_npi and row.provider_npi in self.providers_by_npi:
            return self.providers_by_npi[row.provider_npi]
        return self.providers_by_name.get(row.provider.lower())

    def _providers(self, rows: list[Row]) -> dict[int, int]:
        """Row line → provider id; new providers are added and linked to their practice."""
        new: dict[str, Provider] = {}
        for row in rows:
            if self._provider_id(row) is None:
                key = row.provider_npi or row.provider.lower()
                new.setdefault(key, {"display_name": row.provider, "npi": row.provider_npi})
        for names in new.values():
            provider = add_provider(self.org.pk, **names)
            self.providers_by_name.setdefault(provider.display_name.lower(), provider.id)
            if provider.npi:
                self.providers_by_npi[provider.npi] = provider.id
        result = {row.line: self._provider_id(row) for row in rows}
        links = {(result[row.line], row.practice_id) for row in rows} - self.linked
        link_providers(links)
        self.linked |= links
        return result

    def _types(self, rows: list[Row]) -> None:
        for row in rows:
            if row.type_code not in self.types:
                created = appointment_type_for_code(
                    self.org,
                    code=row.type_code,
                    duration_minutes=row.duration_minutes or 20,
                )
                self.types[row.type_code] = (created.id, created.duration_minutes)

    def _appointments(
        self, rows: list[Row], patients: dict[str, int], providers: dict[int, int]
    ) -> None:
        ids = [row.appointment_id for row in rows]
        # Compared as plain tuples first; whole rows are read only for the visits that
        # change (a re-import of an unchanged file builds no model instance at all).
        light = {
            visit.external_id: visit
            for visit in map(
                _Stored._make,
                Appointment.objects.filter(
                    organization=self.org, external_system=self.system, external_id__in=ids
                ).values_list(*_Stored._fields),
            )
        }
        planned: list[tuple[Row, dict, FeedChange | None, str]] = []
        for row in rows:
            type_id, type_minutes = self.types[row.type_code]
            start = row.start
            values = {
                "practice_id": row.practice_id,
                "provider_id": providers[row.line],
                "patient_id": patients[(row.mrn_system, row.mrn)],
                "appointment_type_id": type_id,
                "start": start,
                "end": start + timedelta(minutes=row.duration_minutes or type_minutes),
            }
            stored = light.get(row.appointment_id)
            if stored is None:
                planned.append((row, values, None, row.status))
                continue
            change = feed_change(
                stored,  # type: ignore[arg-type]  # reads start, provider_id and status
                start=start,
                provider_id=values["provider_id"],
                status=row.status,
            )
            # Set directly, not through the state machine: imports send no notices.
            status = AppointmentStatus.CONFIRMED if change.confirms else change.status
            if status == stored.status and all(getattr(stored, k) == v for k, v in values.items()):
                self.report.unchanged += 1
                continue
            planned.append((row, values, change, status))
        changing = [light[row.appointment_id].id for row, _, change, _ in planned if change]
        existing = (
            {a.external_id: a for a in Appointment.objects.filter(id__in=changing)}
            if changing
            else {}
        )
        fields = [
            "practice_id",
            "provider_id",
            "patient_id",
            "appointment_type_id",
            "start",
            "end",
            "status",
            "confirmed_at",
            "status_changed_at",
            "status_source",
            "status_changed_by",
            "external_updated_at",
        ]
        new, changed, events = [], [], []
        for row, values, change, status in planned:
            start = values["start"]
            if change is None:
                new.append(
                    Appointment(
                        organization=self.org,
                        status=row.status,
                        confirmed_at=self.now
                        if row.status == AppointmentStatus.CONFIRMED
                        else None,
                        status_changed_at=self.now,
                        status_source=Source.CSV,
                        allow_overlap=True,
                        external_system=self.system,
                        external_id=row.appointment_id,
                        external_updated_at=self.now,
                        **values,
                    )
                )
                continue
            current = existing[row.appointment_id]
            moved = change.moved
            old_status, old_start = current.status, current.start
            for k, v in values.items():
                setattr(current, k, v)
            if status != old_status:
                stamp_status(current, status, source=Source.CSV, at=self.now, was=old_status)
            current.external_updated_at = self.now
            changed.append(current)
            if status != old_status or moved:
                events.append(
                    AppointmentEvent(
                        appointment=current,
                        from_status=old_status,
                        to_status=status,
                        old_start=old_start if moved else None,
                        new_start=start if moved else None,
                        source=Source.CSV,
                        note="rescheduled" if moved else "",
                        occurred_at=self.now,
                    )
                )
        import_appointments(new, changed, fields)
        if new:
            new_ids = dict(
                Appointment.objects.filter(
                    organization=self.org,
                    external_system=self.system,
                    external_id__in=[a.external_id for a in new],
                ).values_list("external_id", "id")
            )
            events.extend(
                AppointmentEvent(
                    appointment_id=new_ids[a.external_id],
                    to_status=a.status,
                    new_start=a.start,
                    source=Source.CSV,
                    occurred_at=self.now,
                )
                for a in new
            )
        record_imported_changes(events)
        self.report.created += len(new)
        self.report.updated += len(changed)
        if self.plan:
            # Only the visits this batch added or changed: a re-import of unchanged rows
            # plans nothing, and one changed row re-plans one visit, not the organization.
            touched = [a.pk for a in changed]
            if new:
                touched.extend(new_ids.values())
            sync_reminders(touched, notices=False, chunk_size=len(touched) or 1)
