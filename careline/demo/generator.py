"""A synthetic physician organization for demos, benchmarks and analytics tests.

`generate_demo` builds one organization like the group in our story: practices spread over
US time zones (Central, Eastern, Mountain and Pacific, including Arizona without DST), each
provider's weekly working hours, lunch breaks and the practices' holidays, visit types,
patients with English and Spanish names, and appointments over the past ~18 months and the
next 4 weeks. Everything is drawn from one seeded `random.Random`, so the same seed and the
same `now` give the same data.

Planted effects (what analytics and the no-show model should recover)
--------------------------------------------------------------------
Each past appointment gets a no-show probability from a logistic model; the coefficients
below (module constants) are chosen to land in the published ranges:

* Baseline: each practice's reference no-show rate is drawn from 5-12%; with the effects
  below the overall rate before go-live is about 17% and after about 14%, inside the
  5-25% range of primary care and under the ~23% average across all specialties in
  Dantas et al., "No-shows in appointment scheduling - a systematic literature review",
  Health Policy 2018;122(4):412-421 (105 studies).
* Lead time (booking to visit) and prior no-shows are that review's most commonly
  reported determinants. Lead time adds `LEAD_LOGIT_PER_DOUBLING` to the log-odds per
  doubling of (1 + lead weeks): a visit booked 3 months ahead has about 2.3 times the
  odds of one booked the same day.
* Age: younger adults (18-29) highest, 65+ lowest (same review). Weekday and hour, as
  commonly modelled: Monday, Friday and Saturday, early morning and late afternoon higher.
* Prior no-shows: every patient has a stable personal propensity (normal on the logit
  scale, sd `PATIENT_PROPENSITY_SD`), so a patient's own no-show history predicts the next
  visit — the strongest individual predictor in published models — without making the
  whole population drift over time, which would blur the before/after comparison.
  Realistic models on such data reach an AUC of about 0.70-0.81 (e.g. the reviews above).
* Reminders: every practice has a `go_live_date` (2-14 months ago). An appointment counts
  as reminded when its 24-hour reminder fell on or after go-live (00:00 UTC), it was
  booked at least 24 h ahead and the patient has a mobile number; its no-show
  probability is multiplied by `REMINDER_RELATIVE_RISK` = 0.77, the pooled risk ratio of
  SMS reminders vs none (Tang, "Effect of SMS reminders on attendance rates for healthcare
  appointments: a systematic review & meta-analysis", J Clin Case Stud Rev Rep: RR 0.77,
  95% CI 0.71-0.84). Same-day bookings and patients without a mobile get no reminder, so a
  practice's whole before/after ratio comes out slightly weaker (about 0.79).
* Confirmations: a reminded patient confirms with a personal probability (lower for
  patients with a high propensity, 15-75%); a confirmed visit's no-show risk is
  `CONFIRMED_FACTOR` = 0.35 times the reminded risk, and an unconfirmed one's is raised so
  that the average over both stays exactly at the reminded risk. `confirmed_at` is kept on
  past visits, so confirmation behavior is visible to analytics.
* The extra touch for high-risk visits: for the last `TOUCH_DAYS` an organization-wide
  policy randomizes past visits scored at or above `TOUCH_THRESHOLD` (their no-show
  probability before reminders, kept as `noshow_risk`) half to an extra reminder, which
  multiplies the no-show probability by `TOUCH_RELATIVE_RISK` = 0.7; the experiment page
  (Analytics → Experiments → Extra touch) should recover that lift within its interval.
* Not planted: the two-reminder (72 h + 24 h) vs one-reminder difference (4.4% vs 5.3-5.8%
  missed in a 54,066-patient trial: Steiner et al., "Optimizing number and timing of
  appointment reminders: a randomized trial", Am J Manag Care 2018;24(8):377-384). The
  demo history has a single cadence, so there is nothing to compare; that figure is why
  the default cadence has two steps, and experiments measure it on live data.
* Cancellations: a few percent, more for visits booked over a month ahead, and a little
  more once reminders make cancelling by text easy (slots freed for the waitlist).

Lead time is recorded as `created_at` (the booking moment), so `start - created_at` is the
lead time analytics can use. Upcoming appointments are `booked`; those whose reminder has
gone out already may be `confirmed`, and a few are cancelled.

Phone numbers are fictional: 555-0100..0199 in real US area codes (reserved by the NANP
for fiction), then other 555-0xxx lines when a large demo needs more; 555 lines are not
assigned to subscribers' phones. Emails use the reserved example.com domain.

For speed, history is written as appointment rows only: no AppointmentEvent rows (the
status fields say who changed what when: `status_source` is `demo`).
"""

from __future__ import annotations

import bisect
import math
import random
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from itertools import accumulate
from zoneinfo import ZoneInfo

import phonenumbers
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone
from faker import Faker

from careline.clinics.models import (
    AppointmentType,
    Organization,
    Practice,
    Provider,
    StaffMembership,
    StaffRole,
)
from careline.messaging.models import RiskTouch, RiskTouchPolicy, TouchArm
from careline.messaging.touches import arm_of, decision_time
from careline.patients.models import (
    Language,
    Patient,
    PatientIdentifier,
    default_identifier_system,
)
from careline.scheduling.models import (
    Appointment,
    AppointmentStatus,
    ChangeSource,
    Holiday,
    RecurringBreak,
    WorkingHours,
)
from careline.tablestats import refresh_statistics

DEFAULT_SLUG = "riverbend-medical"
DEFAULT_NAME = "Riverbend Medical Group"
DEFAULT_SEED = 20240917
ORGANIZATION_NUMBER = "+15125550100"
DEMO_PASSWORD = "careline-demo"  # demo data only; printed by `careline demo`

HISTORY_DAYS = 548  # ~18 months
UPCOMING_DAYS = 28
BATCH_SIZE = 10_000
# Values per multi-row INSERT on SQLite (its limit is 32,766 bound variables).
MULTIROW_VARIABLES = 8_000
# A demo calendar fuller than this looks fake and leaves no open slots to book.
MAX_UTILIZATION = 0.55

# --- planted effects (see module docstring) -------------------------------------------
REMINDER_RELATIVE_RISK = 0.77
CONFIRMED_FACTOR = 0.35
# The extra touch for high-risk visits (careline.messaging.touches), running organization-wide
# for the last TOUCH_DAYS: half the visits at or above TOUCH_THRESHOLD get an extra reminder,
# which multiplies their no-show probability by TOUCH_RELATIVE_RISK.
TOUCH_DAYS = 120
TOUCH_THRESHOLD = 0.2
TOUCH_RELATIVE_RISK = 0.7
LEAD_LOGIT_PER_DOUBLING = 0.22
PATIENT_PROPENSITY_SD = 0.9
PRACTICE_REFERENCE_RATE = (0.05, 0.12)
AGE_BANDS = ((0, 18), (18, 30), (30, 45), (45, 65), (65, 95))
AGE_BAND_WEIGHTS = (0.18, 0.14, 0.20, 0.27, 0.21)
AGE_BAND_LOGIT = (0.10, 0.50, 0.25, 0.0, -0.30)
WEEKDAY_LOGIT = (0.20, 0.0, 0.0, 0.0, 0.15, 0.10, 0.0)
HOUR_LOGIT = {7: 0.15, 8: 0.10, 12: 0.05, 13: 0.10, 15: 0.10, 16: 0.20, 17: 0.25}
CANCEL_BASE = 0.025
CANCEL_LONG_LEAD = 0.02  # booked more than 30 days ahead
CANCEL_REMINDED = 0.015
UPCOMING_CANCEL = 0.03
SHARED_PHONE_JOIN = 0.055  # chance the next patient is a family member of the previous
NO_MOBILE_SHARE = 0.03
SPANISH_NAME_SHARE = 0.30
SPANISH_PREFERENCE_AMONG_SPANISH_NAMES = 0.67
EMAIL_SHARE = 0.55
SECOND_PRACTICE_SHARE = 0.15


@dataclass(frozen=True)
class VisitType:
    code: str
    name: str
    patient_facing_name: str
    minutes: int
    bookable_online: bool
    weight: float  # share of calendar slots
    logit: float  # planted effect on no-show odds
    lead_days: tuple[tuple[float, float, float], ...]  # (weight, from, to) uniform parts


VISIT_TYPES = (
    VisitType("FU", "Follow-up visit", "Follow-up visit", 20, True, 0.33, 0.0,
              ((0.1, 0, 1), (0.2, 1, 7), (0.4, 7, 30), (0.3, 30, 90))),
    VisitType("NEW", "New patient visit", "New patient visit", 40, True, 0.10, 0.30,
              ((0.05, 0, 1), (0.25, 1, 14), (0.4, 14, 45), (0.3, 45, 120))),
    VisitType("AWV", "Annual wellness visit", "Annual check-up", 40, True, 0.12, -0.10,
              ((0.1, 1, 14), (0.4, 14, 60), (0.5, 60, 180))),
    VisitType("SICK", "Same-day sick visit", "Office visit", 20, False, 0.17, -0.50,
              ((0.7, 0, 1), (0.3, 1, 3))),
    VisitType("CCM", "Chronic care visit", "Follow-up visit", 30, False, 0.13, 0.05,
              ((0.05, 0, 1), (0.25, 3, 21), (0.4, 21, 60), (0.3, 60, 120))),
    VisitType("TELE", "Telehealth visit", "Video visit", 15, True, 0.10, -0.20,
              ((0.4, 0, 1), (0.4, 1, 7), (0.2, 7, 30))),
    VisitType("PROC", "Minor procedure", "Office visit", 60, False, 0.05, -0.40,
              ((0.3, 3, 14), (0.7, 14, 60))),
)  # fmt: skip

LEAD_CUM_WEIGHTS = tuple(list(accumulate(w for w, _, _ in t.lead_days)) for t in VISIT_TYPES)

# (city, state, code, IANA zone, area codes); zones interleaved so any prefix mixes them.
CITIES = (
    ("Austin", "TX", "AUS", "America/Chicago", (512, 737)),
    ("Atlanta", "GA", "ATL", "America/New_York", (404, 470, 678)),
    ("Denver", "CO", "DEN", "America/Denver", (303, 720)),
    ("Houston", "TX", "HOU", "America/Chicago", (713, 281, 832)),
    ("Charlotte", "NC", "CLT", "America/New_York", (704, 980)),
    ("San Diego", "CA", "SAN", "America/Los_Angeles", (619, 858)),
    ("Dallas", "TX", "DAL", "America/Chicago", (214, 469, 972)),
    ("Orlando", "FL", "ORL", "America/New_York", (407, 689)),
    ("Phoenix", "AZ", "PHX", "America/Phoenix", (602, 480, 623)),
    ("San Antonio", "TX", "SAT", "America/Chicago", (210, 726)),
    ("Columbus", "OH", "CMH", "America/New_York", (614, 380)),
    ("Sacramento", "CA", "SAC", "America/Los_Angeles", (916, 279)),
    ("Chicago", "IL", "CHI", "America/Chicago", (312, 773, 872)),
    ("Philadelphia", "PA", "PHL", "America/New_York", (215, 267)),
    ("Albuquerque", "NM", "ABQ", "America/Denver", (505,)),
    ("Nashville", "TN", "BNA", "America/Chicago", (615, 629)),
    ("Indianapolis", "IN", "IND", "America/Indiana/Indianapolis", (317, 463)),
    ("Portland", "OR", "PDX", "America/Los_Angeles", (503, 971)),
    ("Kansas City", "MO", "MCI", "America/Chicago", (816,)),
    ("Louisville", "KY", "SDF", "America/Kentucky/Louisville", (502,)),
    ("Salt Lake City", "UT", "SLC", "America/Denver", (801, 385)),
    ("Minneapolis", "MN", "MSP", "America/Chicago", (612, 763)),
    ("Raleigh", "NC", "RDU", "America/New_York", (919, 984)),
    ("Las Vegas", "NV", "LAS", "America/Los_Angeles", (702, 725)),
    ("New Orleans", "LA", "MSY", "America/Chicago", (504,)),
    ("Tampa", "FL", "TPA", "America/New_York", (813,)),
    ("Oklahoma City", "OK", "OKC", "America/Chicago", (405,)),
    ("Richmond", "VA", "RIC", "America/New_York", (804,)),
)
SPECIALTIES = ("Family Medicine", "Internal Medicine", "Pediatrics", "Primary Care",
               "Women's Health")  # fmt: skip
BRANCHES = ("", " North", " South", " East", " West", " Central")


class DemoError(Exception):
    """The requested demo cannot be built (bad sizes, slug taken); the message says why."""


@dataclass(frozen=True)
class DemoOptions:
    practices: int = 72
    providers: int = 420
    patients: int | None = None  # None: one patient per five appointments, at least 300
    appointments: int = 100_000
    seed: int = DEFAULT_SEED
    organization_slug: str = DEFAULT_SLUG

    @property
    def patient_count(self) -> int:
        return self.patients if self.patients is not None else max(300, self.appointments // 5)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    practice: str  # blank for organization-wide roles


@dataclass
class DemoResult:
    organization: Organization
    practices: int = 0
    providers: int = 0
    patients: int = 0
    appointments: int = 0
    upcoming: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    logins: list[DemoLogin] = field(default_factory=list)
    password: str = DEMO_PASSWORD


PATIENT_FIELDS = (
    "organization",
    "home_practice",
    "mrn",
    "given_name",
    "family_name",
    "birth_date",
    "preferred_language",
    "mobile_phone",
    "email",
    "created_at",
)
IDENTIFIER_FIELDS = (
    "organization",
    "patient",
    "system",
    "value",
    "type_code",
    "type_text",
    "created_at",
)
APPOINTMENT_FIELDS = (
    "organization",
    "practice",
    "provider",
    "patient",
    "appointment_type",
    "start",
    "end",
    "status",
    "confirmed_at",
    "status_changed_at",
    "status_source",
    "allow_overlap",
    "external_system",
    "external_id",
    "created_at",
    "noshow_risk",
)

# (phase, done, total); called after each batch so a command can draw a progress bar.
ProgressCallback = Callable[[str, int, int], None]


def generate_demo(
    options: DemoOptions,
    *,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> DemoResult:
    """Create the demo organization in one transaction and return what was made."""
    _check(options)
    now = (now or timezone.now()).astimezone(UTC).replace(microsecond=0)
    report = progress or (lambda phase, done, total: None)
    if Organization.objects.filter(slug=options.organization_slug).exists():
        raise DemoError(
            f"An organization with slug '{options.organization_slug}' already exists; "
            "pick another --organization-slug (or use --if-empty)."
        )
    with transaction.atomic():
        result = _Builder(options, now, report).build()
    # Fresh statistics, or the first queries over the new rows are planned blind.
    refresh_statistics(
        Practice,
        Provider,
        Provider.practices.through,
        AppointmentType,
        Patient,
        Appointment,
        Holiday,
        WorkingHours,
        RecurringBreak,
        RiskTouch,
    )
    return result


def _check(options: DemoOptions) -> None:
    problems = []
    if options.practices < 1:
        problems.append("--practices must be at least 1")
    if options.providers < max(1, options.practices):
        problems.append("--providers must be at least --practices (one provider per practice)")
    if options.appointments < 0:
        problems.append("--appointments cannot be negative")
    if options.patient_count < 1:
        problems.append("--patients must be at least 1")
    if problems:
        raise DemoError("; ".join(problems) + ".")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _npi(rng: random.Random) -> str:
    """A 10-digit NPI with a valid Luhn check digit (computed over the 80840 prefix)."""
    body = "1" + "".join(str(rng.randrange(10)) for _ in range(8))
    digits = [int(d) for d in "80840" + body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def _unchanged(value: date) -> date:
    return value


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _us_holidays(first: date, last: date) -> list[tuple[date, str]]:
    def nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
        day = date(year, month, 1)
        day += timedelta(days=(weekday - day.weekday()) % 7)
        return day + timedelta(weeks=n - 1)

    def last_monday_of_may(year: int) -> date:
        day = date(year, 5, 31)
        return day - timedelta(days=day.weekday())

    found = []
    for year in range(first.year, last.year + 1):
        thanksgiving = nth_weekday(year, 11, 3, 4)
        for day, name in (
            (date(year, 1, 1), "New Year's Day"),
            (last_monday_of_may(year), "Memorial Day"),
            (date(year, 7, 4), "Independence Day"),
            (nth_weekday(year, 9, 0, 1), "Labor Day"),
            (thanksgiving, "Thanksgiving"),
            (thanksgiving + timedelta(days=1), "Day after Thanksgiving"),
            (date(year, 12, 25), "Christmas Day"),
        ):
            if first <= day <= last:
                found.append((day, name))
    return found


class _PhoneBook:
    """Hands out unique fictional mobile numbers, local to a city where it can."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.national = [
            code
            for code in range(201, 990)
            if phonenumbers.region_code_for_number(phonenumbers.parse(f"+1{code}5550123")) == "US"
            and phonenumbers.is_valid_number(phonenumbers.parse(f"+1{code}5550123"))
        ]

    def new(self, local_codes: tuple[int, ...]) -> str:
        rng = self.rng
        for attempt in range(60):
            if attempt < 3:
                code, line = rng.choice(local_codes), rng.randrange(100, 200)
            elif attempt < 15:
                code, line = rng.choice(self.national), rng.randrange(100, 200)
            else:
                code, line = rng.choice(self.national), rng.randrange(100, 1000)
            number = f"+1{code}555{line:04d}"
            if number not in self.used:
                self.used.add(number)
                return number
        raise DemoError("Ran out of fictional 555 phone numbers; ask for fewer --patients.")


@dataclass
class _Shift:
    """One provider's working day pattern at one practice, with ready-made slot layouts."""

    provider: int
    practice: int
    layouts: tuple[tuple[tuple[int, int, int], ...], ...]  # (start minute, minutes, type)


class _Builder:
    def __init__(self, options: DemoOptions, now: datetime, report: ProgressCallback) -> None:
        self.options = options
        self.now = now
        self.naive_now = now.replace(tzinfo=None)
        # Naive UTC in, the backend's own representation out (what the ORM would write).
        if connection.vendor == "sqlite":
            self.as_datetime: Callable[[datetime], object] = str
            self.as_date: Callable[[date], object] = date.isoformat
        else:
            self.as_datetime = partial(datetime.replace, tzinfo=UTC)
            self.as_date = _unchanged
        self.report = report
        self.rng = random.Random(options.seed)
        self.phones = _PhoneBook(self.rng)
        self.fakes = {"en": Faker("en_US"), "es": Faker("es_MX")}
        for i, fake in enumerate(self.fakes.values()):
            fake.seed_instance(options.seed + i)
        today = now.date()
        self.first_day = today - timedelta(days=HISTORY_DAYS)
        self.last_day = today + timedelta(days=UPCOMING_DAYS)

    def build(self) -> DemoResult:
        self.organization = Organization.objects.create(
            name=DEFAULT_NAME
            if self.options.organization_slug == DEFAULT_SLUG
            else self.options.organization_slug.replace("-", " ").title(),
            slug=self.options.organization_slug,
            default_sender_number=ORGANIZATION_NUMBER,
        )
        self.phones.used.add(ORGANIZATION_NUMBER)
        result = DemoResult(organization=self.organization)
        self._practices()
        self._visit_types()
        self._providers()
        self._plan_days()
        self._patients()
        self._appointments(result)
        self._extra_touch(result)
        result.practices = len(self.practice_ids)
        result.providers = len(self.provider_ids)
        result.patients = len(self.patient_ids)
        result.logins = self._logins()
        return result

    # --- clinics ------------------------------------------------------------------------

    def _practices(self) -> None:
        rng, fake = self.rng, self.fakes["en"]
        practices = []
        self.practice_city: list[tuple] = []
        seen: dict[str, int] = {}
        for i in range(self.options.practices):
            city, state, code3, zone, codes = CITIES[i % len(CITIES)]
            zipcode = fake.zipcode_in_state(state)
            branch = seen.get(code3, 0)
            seen[code3] = branch + 1
            specialty = SPECIALTIES[(i + branch) % len(SPECIALTIES)]
            suffix = BRANCHES[branch] if branch < len(BRANCHES) else f" {branch + 1}"
            practices.append(
                Practice(
                    organization=self.organization,
                    name=f"Riverbend {specialty} {city}{suffix}",
                    code=f"{code3}{branch + 1}",
                    phone=f"+1{codes[0]}555{100 + i % 100:04d}",
                    address=f"{fake.street_address()}, {city}, {state} {zipcode}",
                    time_zone=zone,
                    sender_number=f"+1{codes[-1]}555{199 - i % 100:04d}" if i % 2 else "",
                    go_live_date=self.now.date() - timedelta(days=rng.randint(60, 420)),
                )
            )
            self.practice_city.append(CITIES[i % len(CITIES)])
        created = Practice.objects.bulk_create(practices)
        # Patients must never share a number with a front desk or a texting line.
        self.phones.used.update(p.phone for p in created)
        self.phones.used.update(p.sender_number for p in created if p.sender_number)
        self.practice_ids = [p.pk for p in created]
        self.practice_zone = [ZoneInfo(p.time_zone) for p in created]
        self.practice_go_live = [datetime.combine(p.go_live_date, time(0)) for p in created]
        self.practice_logit = [_logit(rng.uniform(*PRACTICE_REFERENCE_RATE)) for _ in created]
        self.flagship = created[0]

        holidays = _us_holidays(self.first_day, self.last_day)
        self.closed: list[set[date]] = []
        rows = []
        for pk in self.practice_ids:
            # Only some practices close the day after Thanksgiving.
            kept = [
                (d, n) for d, n in holidays if not n.startswith("Day after") or rng.random() < 0.5
            ]
            self.closed.append({d for d, _ in kept})
            rows.extend(Holiday(practice_id=pk, date=d, name=n) for d, n in kept)
        Holiday.objects.bulk_create(rows, batch_size=BATCH_SIZE)

    def _visit_types(self) -> None:
        created = AppointmentType.objects.bulk_create(
            AppointmentType(
                organization=self.organization,
                code=t.code,
                name=t.name,
                patient_facing_name=t.patient_facing_name,
                duration_minutes=t.minutes,
                bookable_online=t.bookable_online,
            )
            for t in VISIT_TYPES
        )
        self.type_ids = [t.pk for t in created]

    def _providers(self) -> None:
        rng = self.rng
        n_practices, n_providers = len(self.practice_ids), self.options.providers
        size = [rng.uniform(0.5, 1.5) for _ in range(n_practices)]
        home = list(range(n_practices)) + rng.choices(
            range(n_practices), weights=size, k=n_providers - n_practices
        )
        providers = []
        for _ in range(n_providers):
            fake = self.fakes["es" if rng.random() < 0.2 else "en"]
            given, family = fake.first_name(), fake.last_name()
            credential = rng.random()
            display = (
                f"Dr. {family}"
                if credential < 0.75
                else f"{given} {family}, " + ("NP" if credential < 0.9 else "PA")
            )
            providers.append(
                Provider(
                    organization=self.organization,
                    display_name=display,
                    given_name=given,
                    family_name=family,
                    npi=_npi(rng),
                )
            )
        created = Provider.objects.bulk_create(providers)
        self.provider_ids = [p.pk for p in created]

        links, hours, breaks = set(), [], []
        self.shifts_by_weekday: list[list[_Shift]] = [[] for _ in range(7)]
        self.practice_capacity = [0] * n_practices
        for idx, provider_id in enumerate(self.provider_ids):
            weekdays = [0, 1, 2, 3, 4]
            kind = rng.random()
            if kind < 0.2:
                weekdays.remove(rng.choice(weekdays))
            elif kind > 0.9:
                weekdays.append(5)
            at = {d: home[idx] for d in weekdays}
            if n_practices > 1 and rng.random() < SECOND_PRACTICE_SHARE:
                other = rng.choice([p for p in range(n_practices) if p != home[idx]])
                for d in rng.sample([d for d in weekdays if d < 5], k=rng.randint(1, 2)):
                    at[d] = other
            start = rng.choice((450, 480, 480, 510, 540))  # minutes after midnight
            end = start + rng.choice((510, 540, 540))
            lunch = rng.choice((720, 750))
            for weekday, practice in sorted(at.items()):
                links.add((provider_id, self.practice_ids[practice]))
                if weekday == 5:  # Saturday morning clinic, no lunch break
                    periods = ((540, 720),)
                else:
                    periods = ((start, lunch), (lunch + 60, end))
                    breaks.append(
                        RecurringBreak(
                            provider_id=provider_id,
                            practice_id=self.practice_ids[practice],
                            weekday=weekday,
                            start_time=time(lunch // 60, lunch % 60),
                            end_time=time((lunch + 60) // 60, (lunch + 60) % 60),
                            label="Lunch",
                        )
                    )
                for p_start, p_end in periods:
                    hours.append(
                        WorkingHours(
                            provider_id=provider_id,
                            practice_id=self.practice_ids[practice],
                            weekday=weekday,
                            start_time=time(p_start // 60, p_start % 60),
                            end_time=time(p_end // 60, p_end % 60),
                        )
                    )
                layouts = tuple(self._layout(periods) for _ in range(3))
                self.shifts_by_weekday[weekday].append(_Shift(idx, practice, layouts))
                self.practice_capacity[practice] += len(layouts[0])
        through = Provider.practices.through
        through.objects.bulk_create(
            [through(provider_id=a, practice_id=b) for a, b in sorted(links)],
            batch_size=BATCH_SIZE,
        )
        WorkingHours.objects.bulk_create(hours, batch_size=BATCH_SIZE)
        RecurringBreak.objects.bulk_create(breaks, batch_size=BATCH_SIZE)

    def _layout(self, periods: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int, int], ...]:
        """Back-to-back visits of mixed types filling the periods: a calendar without overlaps."""
        weights = [t.weight for t in VISIT_TYPES]
        slots = []
        for start, end in periods:
            cursor = start
            while True:
                kind = self.rng.choices(range(len(VISIT_TYPES)), weights=weights)[0]
                minutes = VISIT_TYPES[kind].minutes
                if cursor + minutes > end:
                    fitting = [i for i, t in enumerate(VISIT_TYPES) if cursor + t.minutes <= end]
                    if not fitting:
                        break
                    kind = self.rng.choice(fitting)
                    minutes = VISIT_TYPES[kind].minutes
                slots.append((cursor, minutes, kind))
                cursor += minutes
        return tuple(slots)

    # --- patients -----------------------------------------------------------------------

    def _patients(self) -> None:
        rng, total, phones = self.rng, self.options.patient_count, self.phones
        self.report("patients", 0, total)
        names = {
            lang: (
                [f.first_name_female() for _ in range(400)],
                [f.first_name_male() for _ in range(400)],
                [f.last_name() for _ in range(600)],
            )
            for lang, f in self.fakes.items()
        }
        practices = range(len(self.practice_ids))
        practice_weights = list(accumulate(c or 1 for c in self.practice_capacity))
        bands, band_weights = range(len(AGE_BANDS)), list(accumulate(AGE_BAND_WEIGHTS))
        self.patient_age_band = array("B")
        self.patient_propensity = array("f")
        self.patient_has_mobile = array("B")
        # Each practice's patients, repeated by how often they come (chronic care: often).
        self.practice_patients: list[array] = [array("l") for _ in self.practice_ids]
        writer = _BulkWriter(Patient, PATIENT_FIELDS, "patients", total, self.report)
        created_at = self.as_datetime(self.naive_now)
        family, language, phone, home = "", Language.ENGLISH, "", 0
        for i in range(total):
            if i and rng.random() < SHARED_PHONE_JOIN:
                # A family member of the previous patient: same home, name, language, phone.
                origin = "es" if language == Language.SPANISH else "en"
            else:
                home = rng.choices(practices, cum_weights=practice_weights)[0]
                origin = "es" if rng.random() < SPANISH_NAME_SHARE else "en"
                spanish = origin == "es" and rng.random() < SPANISH_PREFERENCE_AMONG_SPANISH_NAMES
                language = Language.SPANISH if spanish else Language.ENGLISH
                family = rng.choice(names[origin][2])
                phone = (
                    ""
                    if rng.random() < NO_MOBILE_SHARE
                    else phones.new(self.practice_city[home][4])
                )
            given = rng.choice(names[origin][rng.randrange(2)])
            band = rng.choices(bands, cum_weights=band_weights)[0]
            low, high = AGE_BANDS[band]
            birth = self.first_day - timedelta(days=rng.randint(low * 365 + 1, high * 365 - 1))
            email = (
                f"{_ascii(given)}.{_ascii(family)}{i}@example.com".replace(" ", "")
                if rng.random() < EMAIL_SHARE
                else ""
            )
            writer.add(
                (
                    self.organization.pk,
                    self.practice_ids[home],
                    f"{i + 1:08d}",
                    given,
                    family,
                    self.as_date(birth),
                    str(language),
                    phone,
                    email,
                    created_at,
                )
            )
            self.patient_age_band.append(band)
            self.patient_propensity.append(rng.gauss(0.0, PATIENT_PROPENSITY_SD))
            self.patient_has_mobile.append(1 if phone else 0)
            for _ in range(rng.choice((1, 1, 2, 3))):
                self.practice_patients[home].append(i)
        writer.flush()
        # Ids grow in insertion order within this transaction, so position i is patient i.
        self.patient_ids = array(
            "q",
            Patient.objects.filter(organization=self.organization)
            .order_by("id")
            .values_list("id", flat=True)
            .iterator(chunk_size=BATCH_SIZE),
        )
        # Patients are found by (system, MRN): each MRN in the organization's namespace.
        system = default_identifier_system(self.organization.slug)
        identifiers = _BulkWriter(
            PatientIdentifier, IDENTIFIER_FIELDS, "patient identifiers", total, self.report
        )
        for i, patient_id in enumerate(self.patient_ids):
            identifiers.add(
                (self.organization.pk, patient_id, system, f"{i + 1:08d}", "MR", "", created_at)
            )
        identifiers.flush()

    # --- appointments -------------------------------------------------------------------

    def _days(self) -> Iterator[date]:
        day = self.first_day
        while day <= self.last_day:
            yield day
            day += timedelta(days=1)

    def _shifts_on(self, day: date) -> list[tuple[_Shift, tuple[tuple[int, int, int], ...]]]:
        phase = day.toordinal()
        return [
            (shift, shift.layouts[(phase + shift.provider) % 3])
            for shift in self.shifts_by_weekday[day.weekday()]
            if day not in self.closed[shift.practice]
        ]

    def _demand(self, day: date) -> float:
        ahead = (day - self.now.date()).days
        if ahead < 0:
            return 1.0
        # Near days are nearly as full as the past; later weeks fill as bookings come in.
        return 0.2 + 1.5 * math.exp(-ahead / 21)

    def _plan_days(self) -> None:
        """Weigh each day by its open calendar room, and refuse demos that cannot fit."""
        target = self.options.appointments
        self.days = list(self._days())
        room = [sum(len(layout) for _, layout in self._shifts_on(day)) for day in self.days]
        total_room = sum(room)
        if target > MAX_UTILIZATION * total_room:
            raise DemoError(
                f"{target:,} appointments do not fit on {len(self.provider_ids)} providers' "
                f"calendars (room for about {int(MAX_UTILIZATION * total_room):,}); "
                "raise --providers or lower --appointments."
            )
        self.day_weights = [r * self._demand(d) for r, d in zip(room, self.days, strict=True)]

    def _appointments(self, result: DemoResult) -> None:
        target, days, weights = self.options.appointments, self.days, self.day_weights
        weight_total = sum(weights) or 1.0
        writer = _BulkWriter(Appointment, APPOINTMENT_FIELDS, "appointments", target, self.report)
        self.report("appointments", 0, target)
        self.status_counts: Counter[str] = Counter()
        self.upcoming = 0
        carried, cumulative, placed_before = 0, 0.0, 0
        for day, weight in zip(days, weights, strict=True):
            cumulative += weight
            due = round(target * cumulative / weight_total) - placed_before + carried
            placed_before = round(target * cumulative / weight_total)
            placed = self._fill_day(day, due, writer)
            carried = due - placed
        if carried:
            raise DemoError(
                f"{carried:,} appointments did not fit in the last days; "
                "raise --providers or lower --appointments."
            )
        writer.flush()
        result.appointments = writer.written
        result.upcoming = self.upcoming
        result.status_counts = dict(self.status_counts)

    def _extra_touch(self, result: DemoResult) -> None:
        """The randomized extra touch, organization-wide for the last TOUCH_DAYS: each past
        visit scored at or above TOUCH_THRESHOLD gets its arm (decided as the live system
        does, by careline.messaging.touches.arm_of), and a touched visit's planted no-show
        is kept only with probability TOUCH_RELATIVE_RISK."""
        started = self.now - timedelta(days=TOUCH_DAYS)
        policy = RiskTouchPolicy.objects.create(
            organization=self.organization,
            threshold=TOUCH_THRESHOLD,
            touch_basis_points=5000,
            started_at=started,
        )
        eligible = (
            Appointment.objects.filter(
                organization=self.organization,
                start__gte=started,
                start__lt=self.now,
                noshow_risk__gte=TOUCH_THRESHOLD,
            )
            .order_by("id")
            .values_list("id", "start", "created_at", "status", "noshow_risk")
        )
        arms: list[RiskTouch] = []
        spared: list[int] = []
        for pk, start, created, status, scored in eligible.iterator(chunk_size=BATCH_SIZE):
            decided = decision_time(start, created)
            if decided < started:
                continue
            arm = arm_of(policy, pk)
            arms.append(
                RiskTouch(
                    policy=policy, appointment_id=pk, arm=arm, risk=scored, decided_at=decided
                )
            )
            if (
                arm == TouchArm.TOUCH
                and status == AppointmentStatus.NO_SHOW
                and self.rng.random() >= TOUCH_RELATIVE_RISK
            ):
                spared.append(pk)
        RiskTouch.objects.bulk_create(arms, batch_size=BATCH_SIZE)
        for low in range(0, len(spared), 900):
            Appointment.objects.filter(id__in=spared[low : low + 900]).update(
                status=AppointmentStatus.FULFILLED
            )
        self.status_counts[AppointmentStatus.NO_SHOW] -= len(spared)
        self.status_counts[AppointmentStatus.FULFILLED] += len(spared)
        result.status_counts = dict(self.status_counts)

    def _fill_day(self, day: date, due: int, writer: _BulkWriter) -> int:
        if due <= 0:
            return 0
        shifts = self._shifts_on(day)
        ends, running = [], 0
        for _, layout in shifts:
            running += len(layout)
            ends.append(running)
        count = min(due, running)
        if not count:
            return 0
        # Local midnight in UTC per zone; clinics never work across a DST switch (2 a.m.).
        midnight: dict[ZoneInfo, datetime] = {}
        for zone in set(self.practice_zone):
            local_noon = datetime.combine(day, time(12), tzinfo=zone)
            offset = local_noon.utcoffset() or timedelta(0)
            midnight[zone] = datetime.combine(day, time(0)) - offset
        rng = self.rng
        for slot_number in rng.sample(range(running), count):
            position = bisect.bisect_right(ends, slot_number)
            shift, layout = shifts[position]
            first = ends[position - 1] if position else 0
            minute, minutes, kind = layout[slot_number - first]
            practice = shift.practice
            patients = self.practice_patients[practice]
            if patients and rng.random() < 0.92:
                patient = patients[rng.randrange(len(patients))]
            else:
                patient = rng.randrange(len(self.patient_ids))
            start = midnight[self.practice_zone[practice]] + timedelta(minutes=minute)
            self._visit(day, minute, start, minutes, kind, shift, patient, writer)
        return count

    def _lead_minutes(self, kind: int) -> int:
        parts = VISIT_TYPES[kind].lead_days
        _, low, high = self.rng.choices(parts, cum_weights=LEAD_CUM_WEIGHTS[kind])[0]
        return int(self.rng.uniform(low, high) * 1440)

    def _visit(
        self,
        day: date,
        local_minute: int,
        start: datetime,
        minutes: int,
        kind: int,
        shift: _Shift,
        patient: int,
        writer: _BulkWriter,
    ) -> None:
        rng, now = self.rng, self.naive_now
        practice = shift.practice
        end = start + timedelta(minutes=minutes)
        lead = self._lead_minutes(kind)
        if start - timedelta(minutes=lead) > now:
            # Upcoming visits were all booked by now: shorten the lead to fit.
            lead = int((start - now).total_seconds() // 60) + rng.randint(10, 4320)
        created = start - timedelta(minutes=lead)
        # Reminders go out 72 h and 24 h ahead, from the practice's go-live (00:00 UTC) on.
        go_live = self.practice_go_live[practice]
        last_reminder = start - timedelta(hours=24)
        reminded = lead >= 1440 and last_reminder >= go_live and self.patient_has_mobile[patient]
        first_reminder = start - timedelta(hours=72)
        if lead < 4320 or first_reminder < go_live:
            first_reminder = last_reminder
        propensity = self.patient_propensity[patient]
        confirm_chance = min(0.75, max(0.15, 0.55 - 0.25 * propensity))
        confirmed_at = None
        row_status = AppointmentStatus.BOOKED
        changed = created
        scored = None  # the no-show risk the visit was scored with, for past visits
        if start > now:
            if rng.random() < UPCOMING_CANCEL:
                cancel_at = created + (start - created) * rng.uniform(0.2, 0.95)
                if cancel_at <= now:
                    row_status, changed = AppointmentStatus.CANCELLED, cancel_at
            if (
                row_status == AppointmentStatus.BOOKED
                and reminded
                and rng.random() < confirm_chance
            ):
                reply_at = first_reminder + timedelta(minutes=rng.randint(2, 240))
                if reply_at <= now:
                    row_status = AppointmentStatus.CONFIRMED
                    confirmed_at = changed = reply_at
        else:
            cancel = CANCEL_BASE
            if lead > 30 * 1440:
                cancel += CANCEL_LONG_LEAD
            if reminded:
                cancel += CANCEL_REMINDED
            if rng.random() < cancel:
                row_status = AppointmentStatus.CANCELLED
                changed = created + (start - created) * rng.uniform(0.2, 0.98)
            else:
                score = (
                    self.practice_logit[practice]
                    + propensity
                    + AGE_BAND_LOGIT[self.patient_age_band[patient]]
                    + WEEKDAY_LOGIT[day.weekday()]
                    + HOUR_LOGIT.get(local_minute // 60, 0.0)
                    + VISIT_TYPES[kind].logit
                    + LEAD_LOGIT_PER_DOUBLING * math.log2(1 + lead / 10080)
                )
                risk = scored = 1 / (1 + math.exp(-score))
                if reminded:
                    risk *= REMINDER_RELATIVE_RISK
                    if rng.random() < confirm_chance:
                        confirmed_at = first_reminder + timedelta(minutes=rng.randint(2, 240))
                        risk *= CONFIRMED_FACTOR
                    else:
                        risk *= (1 - confirm_chance * CONFIRMED_FACTOR) / (1 - confirm_chance)
                if rng.random() < min(risk, 0.97):
                    row_status = AppointmentStatus.NO_SHOW
                    changed = start + timedelta(minutes=rng.randint(20, 90))
                else:
                    row_status = AppointmentStatus.FULFILLED
                    changed = end + timedelta(minutes=rng.randint(5, 60))
        when = self.as_datetime
        writer.add(
            (
                self.organization.pk,
                self.practice_ids[practice],
                self.provider_ids[shift.provider],
                self.patient_ids[patient],
                self.type_ids[kind],
                when(start),
                when(end),
                str(row_status),
                None if confirmed_at is None else when(confirmed_at),
                when(min(changed, now).replace(microsecond=0)),
                ChangeSource.DEMO.value,
                False,
                "",
                "",
                when(created),
                None if scored is None else round(scored, 4),
            )
        )
        self.status_counts[row_status] += 1
        self.upcoming += start > now

    # --- staff --------------------------------------------------------------------------

    def _logins(self) -> list[DemoLogin]:
        User = get_user_model()
        logins = [
            DemoLogin("demo-admin", StaffRole.ORGANIZATION_ADMIN, ""),
            DemoLogin("demo-manager", StaffRole.PRACTICE_MANAGER, self.flagship.name),
            DemoLogin("demo-frontdesk", StaffRole.FRONT_DESK, self.flagship.name),
        ]
        for login in logins:
            user, _ = User.objects.get_or_create(username=login.username)
            user.is_staff = True
            user.is_active = True
            user.set_password(DEMO_PASSWORD)
            user.save()
            membership, _ = StaffMembership.objects.update_or_create(
                user=user, organization=self.organization, defaults={"role": login.role}
            )
            membership.practices.set([] if not login.practice else [self.flagship])
        return logins


class _BulkWriter:
    """Buffers rows of one model and writes them BATCH_SIZE at a time (COPY on PostgreSQL)."""

    def __init__(
        self,
        model: type[Model],
        fields: tuple[str, ...],
        phase: str,
        total: int,
        report: ProgressCallback,
    ) -> None:
        self.phase, self.total, self.report = phase, total, report
        self.rows: list[tuple] = []
        self.written = 0
        quote = connection.ops.quote_name
        columns = ", ".join(quote(model._meta.get_field(f).column) for f in fields)
        table = quote(model._meta.db_table)
        self.copy_sql = f"COPY {table} ({columns}) FROM STDIN"
        # SQLite: multi-row INSERTs, a statement parsed once per batch instead of a VALUES
        # tuple stepped per row by executemany; within SQLite's limit of 32,766 variables.
        self.per_statement = max(1, MULTIROW_VARIABLES // len(fields))
        self.insert_head = f"INSERT INTO {table} ({columns}) VALUES "
        self.row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
        self.full_sql = self.insert_head + ", ".join([self.row_sql] * self.per_statement)

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # COPY is PostgreSQL's bulk path, several times faster than executemany.
                with cursor.cursor.copy(self.copy_sql) as copy:
                    for row in self.rows:
                        copy.write_row(row)
            else:
                rows, step = self.rows, self.per_statement
                for low in range(0, len(rows), step):
                    part = rows[low : low + step]
                    sql = (
                        self.full_sql
                        if len(part) == step
                        else self.insert_head + ", ".join([self.row_sql] * len(part))
                    )
                    cursor.execute(sql, [value for row in part for value in row])
        self.written += len(self.rows)
        self.rows = []
        self.report(self.phase, self.written, self.total)
