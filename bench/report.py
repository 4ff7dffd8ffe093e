"""`make bench`: run the benchmark suite at growing sizes on SQLite and PostgreSQL, and
write docs/benchmarks.md (a table per benchmark, the machine, and per figure its target
and whether this run met it).

    .venv/bin/python -m bench.report                  # the full suite (under 30 minutes here)
    .venv/bin/python -m bench.report --quick          # tiny sizes: checks the pipeline only
    .venv/bin/python -m bench.report --output FILE
    .venv/bin/python -m bench.report --big            # the 10^6 sizes `make bench` skips
    .venv/bin/python -m bench.report --big --only dispatch,reminders_planning
    .venv/bin/python -m bench.report --big --only csv_import --database sqlite --size 100000
    .venv/bin/python -m bench.report --only csv_import --size 200000   # a size not planned

Each benchmark runs in its own process (as `python -m bench` does); its
`name | value | baseline | ratio` lines are echoed as they come and collected. Not a
benchmark itself: it has no `main`, so `python -m bench` does not run it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, SQLITE_CACHE_KIB, postgres_server_url

OUTPUT = REPO / "docs" / "benchmarks.md"
BIG_OUTPUT = REPO / "docs" / "benchmarks-big.md"
KINDS = ("sqlite", "postgres")
BIG = 1_000_000


@dataclass(frozen=True)
class Run:
    """One benchmark invocation: module, its size, and how it picks its database."""

    bench: str
    size: int
    args: tuple[str, ...]
    # "flag": the module takes --database KIND; "env": it uses DATABASE_URL (Django's test
    # database on it); "both": the module runs both databases itself.
    database: str = "flag"


def plan(quick: bool) -> list[Run]:
    """The suite. Sizes are chosen to keep `make bench` under 30 minutes on this machine:
    10^4 and 10^5 for every data-sized benchmark, 10^6 where the issues set a target at
    that size (reports, staff pages: one demo load serves both; it also gives the 10^6
    demo-load time). `plan_big` has the 10^6 sizes of the rest."""
    if quick:
        small, medium, big = 1_000, 2_000, 3_000
    else:
        small, medium, big = 10_000, 100_000, BIG
    runs: list[Run] = []
    for n in (small, medium):
        runs.append(Run("demo_load", n, ("--appointments", str(n)), "both"))
    for n in (small, medium, big):
        runs.append(Run("reports", n, ("--appointments", str(n)), "both"))
        runs.append(Run("staff_pages", n, ("--appointments", str(n), "--reuse-demo"), "both"))
    for n in (small, medium):
        # 10^5 conversations hold 10^6 texts (ten each): the size issue 20 names.
        runs.append(Run("inbox_search", n, ("--conversations", str(n))))
    for n in (small, medium):
        runs.append(Run("reminders_planning", n, ("--rows", str(n))))
        runs.append(Run("rule_replanning", n, ("--rows", str(n))))
    runs.append(Run("dispatch", small, ("--rows", str(small))))
    messages = 200 if quick else 2000
    runs.append(Run("hl7_mllp", messages, ("--messages", str(messages)), "env"))
    for n in (small, medium):
        runs.append(Run("csv_import", n, ("--rows", str(n)), "env"))
        runs.append(Run("broadcast", n, ("--rows", str(n)), "both"))
    # 500 texts a second offered (issue 21); a few seconds of it is the burst after a broadcast.
    seconds = "2" if quick else "5"
    runs.append(Run("webhook", small, ("--rows", str(small), "--seconds", seconds), "both"))
    return runs


def plan_big(quick: bool) -> list[Run]:
    """`--big`: every data-sized benchmark at 10^6 that `plan` stops short of, with its
    10^5 run again so the growth is measured in one run (about two to three hours here)."""
    medium, big = (2_000, 20_000) if quick else (100_000, BIG)
    runs: list[Run] = []
    for bench, size_flag, database in (
        ("reminders_planning", "--rows", "flag"),
        ("rule_replanning", "--rows", "flag"),
        ("dispatch", "--rows", "flag"),
        ("broadcast", "--rows", "both"),
        ("csv_import", "--rows", "env"),
    ):
        for n in (medium, big):
            runs.append(Run(bench, n, (size_flag, str(n)), database))
    runs.append(Run("demo_load", big, ("--appointments", str(big)), "both"))
    return runs


@dataclass(frozen=True)
class Figure:
    bench: str
    name: str
    kind: str
    size: int
    value: float
    unit: str
    baseline: float | None
    ratio: float | None


TAG = re.compile(r"^(?P<name>.*?)\[(?P<kind>sqlite|postgres(?:ql)?)(?:,(?P<size>\d+))?\]$")
NUMBER = re.compile(r"^-?[\d,]*\.?\d+(?:e[-+]?\d+)?|^inf")


def _number(text: str) -> tuple[float, str] | None:
    text = text.strip()
    for prefix in ("baseline", "ratio"):
        text = text.removeprefix(prefix).strip()
    match = NUMBER.match(text)
    if not match:
        return None
    return float(match.group(0).replace(",", "")), text[match.end() :].strip()


def parse_line(line: str, run: Run, kind: str | None) -> Figure | None:
    """A figure from either result format the benchmarks print, else None.

    `name | value | baseline | ratio` (the name tagged `[kind,size]`), or
    `name | value unit | baseline B | ratio R` with the last two parts optional.
    """
    if line.startswith("#") or "|" not in line:
        return None
    parts = [p.strip() for p in line.split("|")]
    if parts[:2] == ["name", "value"] or len(parts) < 2:
        return None
    value = _number(parts[1])
    if value is None:
        return None
    name, size = parts[0], run.size
    tagged = TAG.match(name)
    if tagged:
        name = tagged["name"]
        kind = "postgres" if tagged["kind"].startswith("postgres") else "sqlite"
        size = int(tagged["size"]) if tagged["size"] else size
    baseline = _number(parts[2]) if len(parts) > 2 else None
    ratio = _number(parts[3]) if len(parts) > 3 else None
    return Figure(
        run.bench,
        name,
        kind or "?",
        size,
        value[0],
        value[1],
        baseline[0] if baseline else None,
        ratio[0] if ratio else None,
    )


def execute(
    run: Run, postgres_url: str, kinds: tuple[str, ...] = KINDS
) -> tuple[list[Figure], list[str]]:
    """Run one benchmark (per database unless it does both itself); figures and failures."""
    figures, failures = [], []
    both = run.database == "both" and len(kinds) == len(KINDS)
    targets: list[str | None] = [None] if both else list(kinds)
    for kind in targets:
        env = {**os.environ}
        args = list(run.args)
        if run.database in ("flag", "both") and kind is not None:
            args += ["--database", kind]
        elif run.database == "env":
            if kind == "postgres":
                env["DATABASE_URL"] = postgres_url
            else:
                env.pop("DATABASE_URL", None)
        label = f"bench.{run.bench} {' '.join(args)}" + (f" [{kind}]" if kind else "")
        print(f"# {label}", flush=True)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", f"bench.{run.bench}", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            figure = parse_line(line.strip(), run, kind)
            if figure:
                figures.append(figure)
        if proc.wait():
            failures.append(f"{label} (exit {proc.returncode})")
        print(f"# {label}: {time.monotonic() - started:.0f} s", flush=True)
    return figures, failures


# --- targets: what each figure is held to, and whether the run met it ---------------


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"


def _at_largest(points: list[Figure]) -> dict[str, Figure]:
    """Per database, the figure at the largest size measured."""
    best: dict[str, Figure] = {}
    for f in points:
        if f.kind not in best or f.size > best[f.kind].size:
            best[f.kind] = f
    return best


def _under(limit: float, unit: str, at: int | None = None) -> Callable[[list[Figure]], str]:
    def check(points: list[Figure]) -> str:
        verdicts = []
        for kind, f in sorted(_at_largest(points).items()):
            if at is not None and f.size < at:
                verdicts.append(f"{kind}: measured up to {f.size:,} rows only")
                continue
            met = "met" if f.value < limit else "**not met**"
            verdicts.append(f"{kind} {_fmt(f.value)} {unit} at {f.size:,} rows: {met}")
        size = f" at {at:,} rows" if at else ""
        return f"Target: under {_fmt(limit)} {unit}{size}. " + "; ".join(verdicts) + "."

    return check


def _zero(points: list[Figure]) -> str:
    bad = [f for f in points if f.value != 0]
    verdict = (
        "Met in every run"
        if not bad
        else "**Not met**: " + ", ".join(f"{f.kind} at {f.size:,}: {_fmt(f.value)}" for f in bad)
    )
    return f"Target: zero. {verdict}."


def _near_baseline(low: float, high: float | None, what: str) -> Callable[[list[Figure]], str]:
    """The ratio to the baseline between `low` and `high` (no upper bound: None)."""

    def check(points: list[Figure]) -> str:
        bad = [
            f
            for f in points
            if f.ratio is None or f.ratio < low or (high is not None and f.ratio > high)
        ]
        verdict = (
            "Met in every run"
            if not bad
            else "**Not met**: "
            + ", ".join(f"{f.kind} at {f.size:,}: ratio {f.ratio}" for f in bad)
        )
        bounds = f"at least {low:g}" if high is None else f"{low:g}–{high:g}"
        return f"Target: {what} (ratio {bounds}). {verdict}."

    return check


def _under_ratio(high: float, what: str) -> Callable[[list[Figure]], str]:
    """The ratio to the baseline at most `high` (a time beside a longer one)."""

    def check(points: list[Figure]) -> str:
        bad = [f for f in points if f.ratio is None or f.ratio > high]
        verdict = (
            "Met in every run"
            if not bad
            else "**Not met**: "
            + ", ".join(f"{f.kind} at {f.size:,}: ratio {f.ratio}" for f in bad)
        )
        return f"Target: at most {what} (ratio at most {high:g}). {verdict}."

    return check


def _bounded_memory(points: list[Figure]) -> str:
    verdicts = []
    for kind in KINDS:
        mine = sorted((f for f in points if f.kind == kind), key=lambda f: f.size)
        if len(mine) < 2:
            continue
        first, last = mine[0], mine[-1]
        # Bounded: at most double (or 64 MiB more) while the rows grow tenfold or more.
        # SQLite's page cache lives in the process and fills up to its fixed bound as the
        # file grows past it, so it is allowed on top.
        allowance = 64 + (SQLITE_CACHE_KIB / 1024 if kind == "sqlite" else 0)
        bounded = last.value <= max(2 * first.value, first.value + allowance)
        met = "met" if bounded else "**not met**"
        verdicts.append(
            f"{kind} {_fmt(first.value)} → {_fmt(last.value)} MiB for ×{last.size / first.size:g}"
            f" the rows: {met}"
        )
    return (
        "Target: memory that does not grow with the data (at most double, or 64 MiB more; "
        f"on SQLite plus its {SQLITE_CACHE_KIB // 1024} MiB page cache). "
        + ("; ".join(verdicts) or "Measured at one size here, so not judged")
        + "."
    )


def _at_least(limit: float, unit: str, kind: str | None) -> Callable[[list[Figure]], str]:
    """At least `limit` on `kind` (None: on every database)."""

    def check(points: list[Figure]) -> str:
        verdicts = [
            f"{f.kind} {_fmt(f.value)} {unit} at {f.size:,} rows: "
            + ("met" if f.value >= limit else "**not met**")
            for f in sorted(points, key=lambda f: (KINDS.index(f.kind), f.size))
            if kind is None or f.kind == kind
        ]
        where = f"on {kind}" if kind else "on each database"
        return f"Target: at least {_fmt(limit)} {unit} {where}. " + "; ".join(verdicts) + "."

    return check


SCALING_FROM = 100_000


def _scales(limit: float) -> Callable[[list[Figure]], str]:
    """Seconds for ten times the rows: at most `limit` times as long (issue 3 sets 12),
    judged from 10^5 rows up as the issue sets it: below that, a run takes a fraction of a
    second and fixed costs (connections, loading the rules) blur the ratio."""

    def check(points: list[Figure]) -> str:
        verdicts = []
        for kind in KINDS:
            mine = {f.size: f.value for f in points if f.kind == kind}
            for size, value in sorted(mine.items()):
                smaller = mine.get(size // 10)
                if smaller:
                    growth = value / smaller
                    met = "met" if growth <= limit else "**not met**"
                    if size // 10 < SCALING_FROM:
                        met = f"not judged below {SCALING_FROM:,} rows"
                    verdicts.append(
                        f"{kind} ×{_fmt(growth)} from {size // 10:,} to {size:,}: {met}"
                    )
        if not verdicts:
            return "Target: ten times the rows take at most 12 times as long; not measured here."
        return (
            f"Target: ten times the rows take at most {_fmt(limit)} times as long. "
            + "; ".join(verdicts)
            + "."
        )

    return check


def _no_target(points: list[Figure]) -> str:
    ratios = [
        f"{f.kind} {f.ratio:g} at {f.size:,}"
        for f in sorted(points, key=lambda f: (KINDS.index(f.kind), f.size))
        if f.ratio is not None
    ]
    if not ratios:
        return "No fixed target; recorded to follow over time."
    return "No fixed target; read it against its same-run baseline (ratio " + (
        ", ".join(ratios) + ")."
    )


TARGETS: list[tuple[str, Callable[[list[Figure]], str]]] = [
    (r"^reports_(metrics|before)", _under(2000, "ms", BIG)),
    (r"^staff_(inbox|day_view)_", _under(300, "ms", BIG)),
    (r"^staff_patient_page_", _under(300, "ms", BIG)),
    (r"peak_anon|anon_growth", _bounded_memory),
    (r"rows added$", _zero),
    (r"^webhook_p50_ms$", _under(10, "ms")),
    (r"^webhook_p99_ms$", _under(50, "ms")),
    (r"^webhook_failed_requests$", _zero),
    (
        r"^webhook_at_offered_load",
        _near_baseline(0.95, 1.05, "keep up with the offered load as /healthz does"),
    ),
    (r"^rate limit .*actual$", _near_baseline(0.98, 1.02, "the configured rate within 2%")),
    (r"^no rate limit: messages/s$", _at_least(1000, "msg/s", "postgres")),
    (
        r"^planning: outbox rows/s$",
        _near_baseline(0.5, None, "half the true bulk-insert limit (COPY / multi-row INSERT)"),
    ),
    (
        r"^demo_load_appointment_rows_per_s",
        _near_baseline(0.25, None, "a quarter of the true bulk-insert limit"),
    ),
    (r"^csv_reimport_unchanged_s", _under_ratio(0.10, "a tenth of the first import's time")),
    (r"^csv_reimport_unchanged_rows_written", _zero),
    (r"^(no rate limit|planning|re-planning the same data): seconds$", _scales(12)),
    (
        r"^re-planning after a rule change: rows/s$",
        _near_baseline(0.25, None, "a quarter of the same-run raw UPDATE's rate"),
    ),
    (r"^due to sent .*p99$", _under(5, "s")),
    (r"^inbox search (name|phone|text|rare)", _under(300, "ms", 100_000)),
    (r"^hl7_mllp_8_connections_(2_processes_)?msgs_per_s$", _at_least(500, "msg/s", None)),
    (r"^broadcast_(preview_whole_practice|click_to_recorded)_s", _under(2, "s")),
    (r"^broadcast_day_view_during_worker_max_s", _under(1, "s")),
]
WHY = {
    r"^reports_(metrics|before)": "Issue 9: every report over the 10^6-appointment demo "
    "answers in under 2 s, computed in the database.",
    r"^staff_(inbox|day_view)_": "Issue 7: with the 10^6 demo loaded, the inbox and day "
    "view answer in under 300 ms.",
    r"^staff_patient_page_": "No target in the issues; held to the inbox's 300 ms.",
    r"^rate limit .*actual$": "Issue 3:",
    r"^no rate limit: messages/s$": "Issue 3: dispatch through the simulator, no limit.",
    r"^planning: outbox rows/s$": "Issues 3 and 21: set-based planning, beside COPY on "
    "PostgreSQL and multi-row INSERTs on SQLite of the same rows in the same run.",
    r"^demo_load_appointment_rows_per_s": "Issue 21: loading beside COPY / multi-row INSERT.",
    r"^csv_reimport_unchanged": "Issue 21: re-importing an unchanged file.",
    r"^(no rate limit|planning|re-planning the same data): seconds$": "Issue 3:",
    r"^re-planning after a rule change: rows/s$": "Issue 20: re-planning 10^6 booked "
    "visits after a rule change, beside a raw UPDATE of those rows.",
    r"^due to sent .*p99$": "Issue 3: p99 from due to sent under 5 s.",
    r"^inbox search (name|phone|text|rare)": "Issue 20: inbox search by name, phone and text "
    "through indexes, over 10^5 conversations and 10^6 texts, beside a same-run raw scan of "
    "the texts; held to the inbox's 300 ms.",
    r"^hl7_mllp_8_connections_msgs_per_s$": "Issue 21: SIU^S12 over 8 MLLP connections, "
    "every message AA and applied, beside a raw MLLP echo at 8 connections.",
    r"^hl7_mllp_8_connections_2_processes_msgs_per_s$": "Issue 21: the same through "
    "`careline mllp --processes 2` (PostgreSQL only), beside the same echo. Where the time "
    "goes: docs/performance.md.",
    r"^broadcast_(preview_whole_practice|click_to_recorded)_s": "Issue 21: a whole "
    "practice's audience preview request (and the click that records the broadcast) "
    "through the staff page on a fresh load, with no manual ANALYZE; a large audience is "
    "counted by the worker, not in the request.",
    r"^broadcast_preview_counted_by_worker_s": "Issue 21: the worker counting the whole "
    "practice's audience the page polls for (no target; never in a web request).",
    r"^broadcast_day_view_during_worker": "Issue 21: the day view stays under 1 s while the "
    "worker counts and queues a broadcast (requested one after another meanwhile).",
    r"^broadcast_webhook_during_worker": "Issue 21: signed Twilio texts posted while the "
    "worker counts and queues a broadcast: the slowest answer, and the share stored (the "
    "rest answered a fast 503, which Twilio retries).",
}


def describe(name: str, points: list[Figure]) -> str:
    check = next((c for pattern, c in TARGETS if re.search(pattern, name)), _no_target)
    why = next((w + " " for pattern, w in WHY.items() if re.search(pattern, name)), "")
    text = why + check(points)
    growth = []
    for kind in KINDS:
        mine = sorted((f for f in points if f.kind == kind), key=lambda f: f.size)
        if len(mine) >= 2 and mine[0].value and mine[-1].size > mine[0].size:
            first, last = mine[0], mine[-1]
            growth.append(
                f"{kind} ×{_fmt(last.value / first.value)} from {first.size:,} to {last.size:,}"
            )
    if growth:
        text += " Growth: " + "; ".join(growth) + "."
    return text


# --- the document --------------------------------------------------------------------


def machine() -> list[str]:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    return [
        f"- CPUs (nproc): {os.cpu_count()}" + (f" × {model.group(1).strip()}" if model else ""),
        f"- RAM: {int(total.group(1)) / 1024**2:.1f} GiB" if total else "- RAM: unknown",
        f"- {platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {_postgres_version()}",
    ]


def _postgres_version() -> str:
    try:
        import psycopg

        with psycopg.connect(postgres_server_url()) as conn:
            return "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0].split()[0]
    except Exception as exc:  # the document still gets written, saying what is missing
        return f"PostgreSQL unavailable ({type(exc).__name__})"


def _git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    # The documents this report writes (and merges into) do not make the code dirty.
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() + (" plus uncommitted changes" if dirty.stdout.strip() else "")


def render(
    figures: list[Figure],
    failures: list[str],
    *,
    started: datetime,
    seconds: float,
    loads: tuple[str, str],
    quick: bool,
    big: bool = False,
    measured: dict[tuple[str, str, int], str] | None = None,
    partial: bool = False,
    full_run: str | None = None,
) -> str:
    """A partial run (`--only`, `--database`, `--size`) keeps `full_run`, the earlier
    document's full-run line, so the time of the whole run stays on record."""
    command = (
        "make bench-big` (`python -m bench.report --big"
        if big
        else ("make bench` (`python -m bench.report")
    )
    out = [
        "# Benchmarks" + (": the 10^6 sizes" if big else ""),
        "",
        f"Written by `{command}`); do not edit by hand. Every figure",
        "is `value | baseline | ratio`, the baseline measured in the same run on the same",
        "database (ratio = value / baseline); each benchmark's docstring in `bench/` says",
        "exactly what it times and what its baseline is. Each section says when it was",
        "measured (`--only` and `--database` run some again and keep the other figures).",
        "",
        *([full_run] if partial and full_run else []),
        f"- {PARTIAL_RUN if partial else FULL_RUN} {started:%Y-%m-%d %H:%M} UTC, "
        f"{seconds / 60:.1f} minutes in all, commit {_git_commit()}"
        + (" — **quick sizes, not real figures**" if quick else ""),
        *machine(),
        f"- Load average (1 min) at the start and at the end: {loads[0]} / {loads[1]} "
        "(other work on the machine slows every figure, baselines too)",
        "",
    ]
    if big:
        out += [
            "The data-sized benchmarks that `make bench` (docs/benchmarks.md) stops short of",
            "10^6 for, at 10^5 and 10^6 in one run, so each figure's growth over ten times the",
            "rows is measured on the same machine in the same session. Too long for `make",
            "bench`'s 30 minutes; `--only NAME,...` runs some of them.",
        ]
    else:
        out += [
            "Sizes: 10^4 and 10^5 rows for every data-sized benchmark; 10^6 for the reports",
            "and staff pages (whose targets are set at 10^6: one in-process demo load per",
            "database serves both, and `reports_demo_generate_s` is the 10^6 demo load time).",
            "The `careline demo` command with its raw-insert baseline (`demo_load`), reminder",
            "planning, CSV import and broadcasts stop at 10^5, dispatch and the webhook",
            "(patients in the database) run at 10^4 and HL7 at 2,000 messages, so that the",
            "whole run stays under 30 minutes here; `make bench-big` runs the others at 10^5",
            "and 10^6 ([benchmarks-big.md](benchmarks-big.md)). Not a speed test and not",
            "here: `python -m bench reply_accuracy`.",
        ]
    by_bench: dict[str, list[Figure]] = defaultdict(list)
    for f in figures:
        by_bench[f.bench].append(f)
    missed = [
        f"- `{name}` ({bench}): {sentence}"
        for bench, mine in by_bench.items()
        for name in dict.fromkeys(f.name for f in mine)
        if "not met" in (sentence := describe(name, [f for f in mine if f.name == name])).lower()
    ]
    out += ["", "## Targets not met", ""] + (missed or ["None in this run."])
    if failures:
        out += ["", "**Failed runs** (their figures are missing):", ""]
        out += [f"- `{f}`" for f in failures]
    for bench, mine in by_bench.items():
        out += ["", f"## {bench}", "", f"See `bench/{bench}.py`.", ""]
        stamps = list(
            dict.fromkeys(measured[key] for key in sorted(measured or {}) if key[0] == bench)
        )
        if stamps:
            out += [*stamps, ""]
        out += [
            "| Figure | Database | Rows | Value | Baseline | Ratio |",
            "|---|---|---:|---:|---:|---:|",
        ]
        names = list(dict.fromkeys(f.name for f in mine))
        for name in names:
            for f in sorted(
                (f for f in mine if f.name == name), key=lambda f: (KINDS.index(f.kind), f.size)
            ):
                unit = f" {f.unit}" if f.unit else ""
                baseline = "–" if f.baseline is None else _fmt(f.baseline)
                ratio = "–" if f.ratio is None else f"{f.ratio:g}"
                out.append(
                    f"| {name} | {f.kind} | {f.size:,} | {_fmt(f.value)}{unit} | {baseline} "
                    f"| {ratio} |"
                )
        out.append("")
        for name in names:
            out.append(f"- **{name}**: {describe(name, [f for f in mine if f.name == name])}")
    return "\n".join(out) + "\n"


FULL_RUN = "Full run (every benchmark):"
PARTIAL_RUN = "Some benchmarks run again:"


def previous_full_run(path: Path) -> str | None:
    """The full-run line of a document this module wrote, if it has one."""
    if not path.exists():
        return None
    return next(
        (line for line in path.read_text().splitlines() if line.startswith(f"- {FULL_RUN}")),
        None,
    )


MEASURED = re.compile(r"^Measured on (?P<kind>sqlite|postgres) (at (?P<size>[\d,]+) rows )?.*\.$")


def read_previous(path: Path) -> tuple[list[Figure], dict[tuple[str, str, int], str]]:
    """The figures (and each section's `Measured …` line) of a document this module wrote,
    so that a run of some benchmarks (`--only`) keeps the others' sections."""
    figures: list[Figure] = []
    measured: dict[tuple[str, str, int], str] = {}
    if not path.exists():
        return figures, measured
    bench = ""
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            bench = line[3:].strip()
        elif bench and (stamp := MEASURED.match(line)):
            # Older documents stamped a database's whole section: size 0 stands for all.
            size = int(stamp["size"].replace(",", "")) if stamp["size"] else 0
            measured[(bench, stamp["kind"], size)] = line
        elif bench and line.startswith("| ") and not line.startswith(("| Figure", "|---")):
            parts = [part.strip() for part in line.strip().strip("|").split("|")]
            if len(parts) != 6 or parts[1] not in KINDS:
                continue
            name, kind, size, value, baseline, ratio = parts
            number = _number(value)
            if number is None:
                continue
            base, rat = _number(baseline), _number(ratio)
            figures.append(
                Figure(
                    bench,
                    name,
                    kind,
                    int(size.replace(",", "")),
                    number[0],
                    number[1],
                    base[0] if base else None,
                    rat[0] if rat else None,
                )
            )
    for bench, kind, _size in [key for key in measured if key[2] == 0]:
        line = measured.pop((bench, kind, 0))
        for f in figures:
            if (f.bench, f.kind) == (bench, kind):
                measured.setdefault((bench, kind, f.size), line)
    return figures, measured


def merge(
    kept: list[Figure],
    kept_measured: dict[tuple[str, str, int], str],
    figures: list[Figure],
    measured: dict[tuple[str, str, int], str],
) -> tuple[list[Figure], dict[tuple[str, str, int], str]]:
    """An earlier document's figures with this run's in place of the (benchmark, database,
    size) it measured again."""
    return (
        [f for f in kept if (f.bench, f.kind, f.size) not in measured] + figures,
        {**{k: v for k, v in kept_measured.items() if k not in measured}, **measured},
    )


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the pipeline")
    parser.add_argument("--big", action="store_true", help="the 10^6 sizes make bench skips")
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run")
    parser.add_argument("--database", choices=KINDS, help="run on this database only")
    parser.add_argument("--size", type=int, help="run this size only")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    steps = (plan_big if args.big else plan)(args.quick)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {step.bench for step in steps}
        if unknown:
            parser.error(f"not in this plan: {', '.join(sorted(unknown))}")
        steps = [step for step in steps if step.bench in wanted]
    if args.size:
        sized = [step for step in steps if step.size == args.size]
        if not sized and args.only:
            # A size the plan does not have (e.g. CSV import at 2·10^5): each chosen
            # benchmark's largest planned run, at that size.
            largest: dict[str, Run] = {}
            for step in steps:
                if step.size >= largest.get(step.bench, step).size:
                    largest[step.bench] = step
            sized = [
                Run(
                    step.bench,
                    args.size,
                    tuple(str(args.size) if a == str(step.size) else a for a in step.args),
                    step.database,
                )
                for step in largest.values()
            ]
        steps = sized
    output = args.output or (BIG_OUTPUT if args.big else OUTPUT)
    started = datetime.now(UTC)
    clock = time.monotonic()
    load_before = _load()
    postgres_url = postgres_server_url()
    figures, failures = [], []
    kinds = (args.database,) if args.database else KINDS
    measured: dict[tuple[str, str, int], str] = {}
    for step in steps:
        # Stamped per step: the code may change between the steps of a long run.
        at, commit, load = datetime.now(UTC), _git_commit(), _load()
        got, failed = execute(step, postgres_url, kinds)
        figures += got
        failures += failed
        for f in got:
            measured[(f.bench, f.kind, f.size)] = (
                f"Measured on {f.kind} at {f.size:,} rows {at:%Y-%m-%d %H:%M} UTC at commit "
                f"{commit}, load average {load} / {_load()}."
            )
    seconds = time.monotonic() - clock
    partial = bool(args.only or args.database or args.size)
    full_run = previous_full_run(output) if partial else None
    if partial:
        figures, measured = merge(*read_previous(output), figures, measured)
    order = [step.bench for step in (plan_big if args.big else plan)(args.quick)]
    figures.sort(key=lambda f: order.index(f.bench) if f.bench in order else len(order))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        render(
            figures,
            failures,
            started=started,
            seconds=seconds,
            loads=(load_before, _load()),
            quick=args.quick,
            big=args.big,
            measured=measured,
            partial=partial,
            full_run=full_run,
        )
    )
    print(f"# wrote {output} ({len(figures)} figures) in {seconds / 60:.1f} minutes")
    if failures:
        print(f"# failed: {'; '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run())
