"""The benchmark report: its targets, and keeping sections when only some benchmarks run."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bench.report import Figure, describe, read_previous, render


def dispatch(kind: str, size: int, seconds: float, rate: float) -> list[Figure]:
    return [
        Figure("dispatch", "no rate limit: messages/s", kind, size, size / seconds, "msg/s",
               10000.0, size / seconds / 10000),
        Figure("dispatch", "no rate limit: seconds", kind, size, seconds, "s", None, None),
        Figure("dispatch", "rate limit 10 segments/s: actual", kind, size, rate, "seg/s",
               10.0, rate / 10),
    ]  # fmt: skip


def test_issue_3_targets_are_judged_from_the_figures():
    points = dispatch("postgres", 100_000, 80, 10.1) + dispatch("postgres", 1_000_000, 900, 9.7)
    by_name = lambda name: [f for f in points if f.name == name]  # noqa: E731
    assert "not met" not in describe("no rate limit: seconds", by_name("no rate limit: seconds"))
    slow = dispatch("postgres", 100_000, 80, 10) + dispatch("postgres", 1_000_000, 1100, 10)
    seconds = [f for f in slow if f.name == "no rate limit: seconds"]
    assert "×13.75 from 100,000 to 1,000,000: **not met**" in describe(seconds[0].name, seconds)
    rate = describe("no rate limit: messages/s", by_name("no rate limit: messages/s"))
    assert "1,250 msg/s at 100,000 rows: met" in rate
    assert "1,111 msg/s at 1,000,000 rows: met" in rate
    limited = describe(
        "rate limit 10 segments/s: actual", by_name("rate limit 10 segments/s: actual")
    )
    assert "within 2%" in limited and "**Not met**: postgres at 1,000,000: ratio 0.97" in limited


def test_a_partial_run_keeps_the_other_sections(tmp_path):
    earlier = dispatch("sqlite", 10_000, 5, 10) + [
        Figure("broadcast", "broadcast_click_to_queued_s", "postgres", 100_000, 4.31, "", 2.77,
               1.56),
    ]  # fmt: skip
    stamp = {
        ("dispatch", "sqlite", 10_000): "Measured on sqlite at 10,000 rows 2026-11-24 05:00.",
        ("broadcast", "postgres", 100_000): "Measured on postgres at 100,000 rows 2026-11-23.",
    }
    document = tmp_path / "benchmarks.md"
    document.write_text(
        render(
            earlier,
            [],
            started=datetime.now(UTC),
            seconds=60,
            loads=("1", "2"),
            quick=False,
            measured=stamp,
        )  # fmt: skip
    )
    figures, measured = read_previous(document)
    assert figures == earlier
    assert measured == stamp


def test_a_run_of_one_database_and_size_replaces_only_those_figures():
    from bench.report import merge

    old = (
        dispatch("sqlite", 100_000, 80, 10)
        + dispatch("sqlite", 1_000_000, 800, 10)
        + dispatch("postgres", 100_000, 90, 10)
    )
    old_stamps = {
        ("dispatch", "sqlite", 100_000): "A1",
        ("dispatch", "sqlite", 1_000_000): "A2",
        ("dispatch", "postgres", 100_000): "A3",
    }
    new = dispatch("sqlite", 100_000, 50, 10)
    figures, stamps = merge(old, old_stamps, new, {("dispatch", "sqlite", 100_000): "B"})
    assert sorted(f.value for f in figures if f.name == "no rate limit: seconds") == [50, 90, 800]
    assert stamps == {
        ("dispatch", "sqlite", 100_000): "B",
        ("dispatch", "sqlite", 1_000_000): "A2",
        ("dispatch", "postgres", 100_000): "A3",
    }


def test_memory_may_fill_sqlites_page_cache_but_not_follow_the_rows():
    def memory(kind: str, small: float, big: float) -> list[Figure]:
        return [
            Figure("csv_import", "csv_import_peak_anon_growth_mib", kind, size, mib, "", None,
                   None)
            for size, mib in ((100_000, small), (1_000_000, big))
        ]  # fmt: skip

    name = "csv_import_peak_anon_growth_mib"
    # 60 -> 150 MiB: SQLite's 128 MiB cache filling up, not the rows.
    assert "sqlite 60 → 150 MiB for ×10 the rows: met" in describe(name, memory("sqlite", 60, 150))
    assert "**not met**" in describe(name, memory("sqlite", 60, 600))
    # PostgreSQL's cache is in the server: the same growth in the client is a leak.
    assert "postgres 60 → 150 MiB for ×10 the rows: **not met**" in describe(
        name, memory("postgres", 60, 150)
    )
    assert "postgres 2 → 3 MiB for ×10 the rows: met" in describe(name, memory("postgres", 2, 3))


def test_peak_anonymous_memory_sees_a_buffer_that_grows():
    from bench.common import peak_anonymous_memory

    with peak_anonymous_memory(every=0.005) as memory:
        buffer = bytearray(64 * 1024 * 1024)
        buffer[::4096] = b"x" * len(buffer[::4096])  # touch every page so it is resident
        time.sleep(0.05)
        del buffer
    assert 60 <= memory.growth_mib <= 100


def test_the_benchmark_helpers_leave_the_database_choice_to_each_benchmark():
    # Benchmarks that run on both databases set DATABASE_URL after importing bench.common;
    # had it imported the settings, Django would keep the database of that moment.
    import subprocess
    import sys

    code = "import sys, bench.common; print('careline.settings' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_memory_at_one_size_is_not_judged():
    one = [Figure("demo_load", "demo_load_peak_anon_mib", "sqlite", 1_000_000, 269, "", 187, 1.4)]
    text = describe("demo_load_peak_anon_mib", one)
    assert "Measured at one size here, so not judged." in text and "met" not in text


def test_a_partial_run_keeps_the_time_of_the_last_full_run(tmp_path):
    from bench.report import previous_full_run

    figures = dispatch("sqlite", 10_000, 5, 10)
    common = dict(loads=("1", "1"), quick=False)
    full = render(figures, [], started=datetime(2026, 11, 24, 11, 4, tzinfo=UTC), seconds=1056,
                  **common)  # fmt: skip
    document = tmp_path / "benchmarks.md"
    document.write_text(full)
    full_line = previous_full_run(document)
    assert full_line.startswith("- Full run (every benchmark): 2026-11-24 11:04 UTC, 17.6 min")
    again = render(figures, [], started=datetime(2026, 11, 24, 11, 25, tzinfo=UTC), seconds=42,
                   partial=True, full_run=full_line, **common)  # fmt: skip
    assert full_line in again.splitlines()
    assert "- Some benchmarks run again: 2026-11-24 11:25 UTC, 0.7 minutes" in again
    document.write_text(again)
    assert previous_full_run(document) == full_line
    # A document that never had a full run does not claim one.
    assert previous_full_run(tmp_path / "missing.md") is None
    alone = render(figures, [], started=datetime(2026, 11, 24, 11, 25, tzinfo=UTC), seconds=42,
                   partial=True, **common)  # fmt: skip
    assert "Full run" not in alone and "- Some benchmarks run again:" in alone


def test_growth_is_judged_from_a_hundred_thousand_rows_as_issue_3_sets_it():
    seconds = [
        Figure("reminders_planning", "planning: seconds", "sqlite", size, value, "s", None, None)
        for size, value in ((10_000, 0.1), (100_000, 1.6), (1_000_000, 17.9))
    ]
    verdict = describe("planning: seconds", seconds)
    assert "×16 from 10,000 to 100,000: not judged below 100,000 rows" in verdict
    assert "×11.19 from 100,000 to 1,000,000: met" in verdict
    assert "not met" not in verdict


def test_benchmarks_print_small_figures_precisely_enough_for_their_growth(capsys):
    from bench.reminders_common import report

    report("planning: seconds", 0.142, "s")
    report("no rate limit: messages/s", 1234.56, "msg/s", 10000.0)
    out = capsys.readouterr().out.splitlines()
    assert "0.142 s" in out[0]
    assert "1,234.6 msg/s" in out[1] and "baseline     10,000.0" in out[1]
