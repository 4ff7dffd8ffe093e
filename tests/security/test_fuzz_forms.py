"""Property-based fuzzing of every staff form, the patient booking flow and the CSV importer:
odd values (year 9999, "²" and other Unicode digits, ids beyond 64 bits, NUL bytes, RTL
marks, empty, very long) never give a 500 and never leave half-stored rows.

The staff forms are found, not listed: every staff URL of the resolver (as
test_authorization_matrix walks it) is fetched as each role, and every <form> on the page,
every query parameter of its links and every str segment of its URL is fuzzed. A form
added tomorrow is fuzzed tomorrow."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import Resolver404, resolve, reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careline.clinics.models import StaffRole
from careline.scheduling.appointments import check_visit_times
from careline.scheduling.models import Appointment
from careline.selfservice.links import issue_manage_link
from tests.integrations.conftest import feeds  # noqa: F401 (fixture)
from tests.integrations.test_csv_import import HEADER
from tests.security.test_authorization_matrix import (  # noqa: F401 (fixture)
    kwargs_for,
    staff_urls,
    two_practices,
)
from tests.selfservice.conftest import Clinic

# Modest on purpose: every example sends one request per form, link and path. The odd
# SHAPES are drawn often, so a few examples already try most of them somewhere.
QUICK = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
STAFF_FUZZ = settings(max_examples=5, **QUICK)
BOOKING_FUZZ = settings(max_examples=8, **QUICK)
CSV_FUZZ = settings(max_examples=25, **QUICK)

SHAPES = [
    "9999-12-31",
    "9999-12-31T23:59",
    "9999-12-31 23:59:59",
    "0001-01-01",
    "0001-01-01T00:00:00+05:00",
    "²",
    "٣",
    "１２",
    "2026-١٢-03",
    str(2**31),
    str(2**63),
    str(2**64),
    "9" * 30,
    "-1",
    "0",
    "",
    " ",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "\x00",
    "a\x00b",
    "\u202e1",
    "\u200fabc",
    "=1+2",
    "@SUM(A1)",
    "reminder:²",
    "queue:²",
    "x" * 5000,
]
texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
odd = st.one_of(
    st.sampled_from(SHAPES),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    texts,
    st.dates().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
)

# Rows a failed request must not have added (a 302 is the only way a form says "saved").
BUSINESS_MODELS = [
    "scheduling.Appointment",
    "scheduling.AppointmentEvent",
    "patients.Patient",
    "messaging.MessageTemplate",
    "messaging.ReminderRule",
    "messaging.OutboundMessage",
    "messaging.Experiment",
    "broadcasts.Broadcast",
    "clinics.SenderNumber",
    "waitlist.WaitlistEntry",
]


def _counts() -> dict[str, int]:
    return {name: apps.get_model(name).objects.count() for name in BUSINESS_MODELS}


# --- finding the forms ---------------------------------------------------------------------


@dataclass
class PageForm:
    method: str
    action: str
    # name → values the page offers (options, hidden values, button values)
    fields: dict[str, list[str]] = field(default_factory=dict)


class _FormFinder(HTMLParser):
    def __init__(self, page_url: str):
        super().__init__()
        self.page_url = page_url
        self.forms: list[PageForm] = []
        self.links: list[str] = []
        self._current: PageForm | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            action = a.get("action") or a.get("hx-post") or a.get("hx-get") or self.page_url
            method = (
                a.get("method") or ("post" if a.get("hx-post") is not None else "get")
            ).lower()
            self._current = PageForm(method, action)
            self.forms.append(self._current)
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif self._current is not None and tag in ("input", "textarea", "select", "button"):
            name = a.get("name")
            if not name:
                return
            values = self._current.fields.setdefault(name, [])
            if a.get("value") is not None:
                values.append(a["value"])
            if tag == "select":
                self._select = name
        elif tag == "option" and self._current is not None and self._select:
            self._current.fields[self._select].append(a.get("value", ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None
        elif tag == "select":
            self._select = None


def _pages(objects: dict) -> list[tuple[str, str, object]]:
    """(URL of practice A's object, URL name, URL pattern) for every staff page."""
    return [
        (reverse(name, kwargs=kwargs_for(pattern, objects)), name, pattern)
        for _route, name, pattern in staff_urls()
    ]


def _is_staff_page(url: str) -> bool:
    """Whether `url` is one of the staff pages (not sign-out, which would end the run)."""
    try:
        match = resolve(urlsplit(url).path)
    except Resolver404:
        return False
    return any(pattern.callback is match.func for _r, _n, pattern in staff_urls())


def _route(url: str) -> str:
    try:
        return resolve(urlsplit(url).path).route
    except Resolver404:
        return url


def _discover(client: Client, objects: dict):
    forms: list[PageForm] = []
    queries: dict[str, dict[str, list[str]]] = {}
    paths: list[tuple[str, dict]] = []
    seen: dict[tuple, PageForm] = {}
    for url, name, pattern in _pages(objects):
        kwargs = kwargs_for(pattern, objects)
        if any(isinstance(v, str) for v in kwargs.values()):
            paths.append((name, kwargs))
        response = client.get(url)
        assert response.status_code < 500, url
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        finder = _FormFinder(url)
        finder.feed(response.content.decode())
        for form in finder.forms:
            form.fields.pop("csrfmiddlewaretoken", None)
            # One form per view: each row's copy (e.g. a visit's "confirm") posts to the
            # same view with another id, and fuzzing each copy adds nothing but time.
            key = (form.method, _route(form.action), tuple(form.fields))
            if key in seen:  # the same form on another row: keep the values it offers
                for name, values in form.fields.items():
                    seen[key].fields[name].extend(values)
            elif _is_staff_page(form.action):
                seen[key] = form
                forms.append(form)
        for href in finder.links:
            parts = urlsplit(href)
            if parts.query and not parts.netloc and _is_staff_page(parts.path or url):
                params = queries.setdefault(parts.path or url, {})
                for key, value in parse_qsl(parts.query, keep_blank_values=True):
                    params.setdefault(key, []).append(value)
    return forms, queries, paths


def _value(data, offered: list[str]) -> str:
    if offered and data.draw(st.booleans()):
        return data.draw(st.sampled_from(offered))
    return data.draw(odd)


@pytest.mark.parametrize(
    "role", [StaffRole.FRONT_DESK, StaffRole.PRACTICE_MANAGER, StaffRole.ORGANIZATION_ADMIN]
)
def test_every_staff_form_survives_odd_values(client, build, two_practices, role):  # noqa: F811
    org, objects = two_practices
    user = build.staff(org, role, practices=[objects["a"]["practice"]])
    client.force_login(user)
    client.raise_request_exception = False
    forms, queries, paths = _discover(client, objects["a"])
    assert len({f.action for f in forms if f.method == "post"}) >= 3, forms

    @STAFF_FUZZ
    @given(st.data())
    def run(data):
        htmx = {"HTTP_HX_REQUEST": "true"} if data.draw(st.booleans()) else {}
        for form in forms:
            values = {name: _value(data, offered) for name, offered in form.fields.items()}
            before = _counts()
            response = getattr(client, form.method)(form.action, values, **htmx)
            assert response.status_code < 500, (form.action, values)
            # HTMX posts answer the updated fragment (200) also when they saved.
            if form.method == "post" and response.status_code != 302 and not htmx:
                assert _counts() == before, (form.action, values)
        for path, params in queries.items():
            values = {name: _value(data, offered) for name, offered in params.items()}
            response = client.get(path, values, **htmx)
            assert response.status_code < 500, (path, values)
        for name, real in paths:
            # Each str segment of the URL (e.g. the day view's day) gets odd text.
            marked = {k: f"ZZ{k}ZZ" if isinstance(v, str) else v for k, v in real.items()}
            url = reverse(name, kwargs=marked)
            for key, value in real.items():
                if isinstance(value, str):
                    url = url.replace(f"ZZ{key}ZZ", quote(data.draw(odd), safe="") or "x")
            response = client.get(url, **htmx)
            assert response.status_code < 500, url

    run()


# --- the patient booking flow --------------------------------------------------------------


@pytest.fixture
def clinic(build) -> Clinic:
    return Clinic(build)


def _stored_visits_are_acceptable() -> None:
    for appointment in Appointment.objects.all():
        check_visit_times(appointment.start, appointment.end)  # raises on a bad one


def test_the_booking_flow_survives_odd_values(build):
    clinic = Clinic(build)
    book = f"/book/{clinic.org.slug}/{clinic.practice.code}/"
    good = {
        "visit_type": [str(clinic.visit_type.pk)],
        "provider": [str(clinic.provider.pk), "any"],
        "day": [clinic.monday.isoformat()],
        "start": [clinic.at(clinic.monday, 9, 20).isoformat()],
        "earliest": [clinic.monday.isoformat()],
        "latest": [(clinic.monday + timedelta(days=3)).isoformat()],
        "given_name": ["Maria"],
        "family_name": ["Garcia"],
        "birth_date": ["1980-05-17"],
        "mobile": ["(512) 555-0400"],
        "language": ["en", "es"],
        "code": ["123456"],
        "answer": ["take", "decline"],
    }
    steps = [
        ("get", book, ["visit_type", "provider", "day"]),
        ("post", book + "choose/", ["visit_type", "provider", "start"]),
        ("post", book + "waitlist/", ["visit_type", "provider", "earliest", "latest"]),
        (
            "post",
            book + "details/",
            ["given_name", "family_name", "birth_date", "mobile", "language"],
        ),
        ("post", book + "verify/", ["code"]),
        ("get", book + "done/", []),
    ]
    patient = clinic.patient(given_name="Rosa")
    visit = clinic.appointment(clinic.at(clinic.monday, 14), patient=patient)

    @BOOKING_FUZZ
    @given(st.data())
    def run(data):
        client = Client(raise_request_exception=False)
        for method, url, names in steps:
            values = {n: _value(data, good[n]) for n in names}
            response = getattr(client, method)(url, values)
            assert response.status_code < 500, (url, values)
        token = issue_manage_link(visit.pk)
        link_steps = [
            ("get", f"/a/{token}/move", ["day"]),
            ("post", f"/a/{token}/move", ["start", "provider"]),
            ("post", f"/a/{token}/details", ["birth_date"]),
            ("post", f"/a/{token}/confirm", []),
            ("get", f"/a/{token}", []),
        ]
        for method, url, names in link_steps:
            values = {n: _value(data, good[n]) for n in names}
            response = getattr(client, method)(url, values)
            assert response.status_code < 500, (url, values)
        _stored_visits_are_acceptable()

    run()


# --- the CSV importer ----------------------------------------------------------------------

COLUMNS = HEADER.split(",")
GOOD_CELLS = {
    "practice": ["TROY", "alb"],
    "provider": ["Dr. Lee", "Patel, Nisha"],
    "provider_npi": ["", "1234567893"],
    "mrn": ["M1", "M2"],
    "given_name": ["Ana"],
    "family_name": ["Lopez"],
    "birth_date": ["", "1980-02-03"],
    "mobile_phone": ["", "(518) 555-0122"],
    "email": ["", "ana@example.org"],
    "language": ["", "es"],
    "appointment_type": ["", "NP30"],
    "start": ["2026-12-10 09:30", "2026-12-11T09:30:00-05:00"],
    "duration_minutes": ["", "30"],
    "status": ["", "booked", "cancelled"],
}
# Cells without line breaks, so that each row stays on its own line of the file.
cell_texts = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"),
    max_size=30,
)
odd_cells = st.one_of(
    st.sampled_from([s for s in SHAPES if "\n" not in s]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    cell_texts,
    st.just("\udcff\udcfe"),  # bytes that are not UTF-8 (written with surrogateescape)
)


def _cell(data, column: str, n: int) -> str:
    if column == "appointment_id":
        return f"F{n}"
    if data.draw(st.integers(0, 3)) == 0:
        return data.draw(odd_cells)
    return data.draw(st.sampled_from(GOOD_CELLS[column]))


def test_the_csv_importer_survives_odd_rows(feeds, tmp_path, capsys):  # noqa: F811
    path = tmp_path / "fuzz.csv"
    counter = iter(range(10**6))

    @CSV_FUZZ
    @given(st.data())
    def run(data):
        rows = []
        for _ in range(data.draw(st.integers(1, 4))):
            n = next(counter)
            width = data.draw(st.sampled_from([len(COLUMNS)] * 4 + [2, len(COLUMNS) + 2]))
            row = [_cell(data, c, n) for c in COLUMNS]
            rows.append((row + ["extra"] * width)[:width] if width != len(COLUMNS) else row)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        path.write_bytes(text.getvalue().encode("utf-8", "surrogateescape"))
        ids = [row[0] for row in rows]

        before = set(Appointment.objects.values_list("external_id", flat=True))
        capsys.readouterr()
        try:
            _import(path)
        except CommandError:
            # Refused as a whole: nothing of this file stored.
            assert set(Appointment.objects.values_list("external_id", flat=True)) == before
        try:
            _import(path, "--skip-invalid")
        except CommandError as exc:
            assert "line" not in str(exc) or "header" in str(exc), exc
        out = capsys.readouterr().out
        bad_lines = {int(n) for n in re.findall(r"^line (\d+):", out, re.M)}
        stored = set(Appointment.objects.values_list("external_id", flat=True)) - before
        for line, appointment_id in enumerate(ids, start=2):
            if line in bad_lines:
                assert appointment_id not in stored, (line, out)
        _stored_visits_are_acceptable()

    run()


def _import(path, *extra: str) -> None:
    call_command(
        "import-csv", str(path), "--organization", "capital-health", "--no-progress", *extra
    )
