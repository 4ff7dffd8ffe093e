"""Helpers shared by the benchmarks: timing, a child's peak memory, fresh databases, and a
same-run baseline that inserts appointment-shaped rows straight into the same database.

Benchmarks print one line per figure, `name | value | baseline | ratio` (see `figure`).
Run as a module for the baseline alone (in its own process, so its peak memory is its own):

    .venv/bin/python -m bench.common raw-insert DATABASE_URL ROWS
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dj_database_url

# Every Careline connection to SQLite has this page cache; the baseline gets the same.
from careline.sqlite import SQLITE_CACHE_KIB

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(
    os.environ.get("CARELINE_BENCH_DIR", Path(tempfile.gettempdir()) / "careline-bench")
)
BATCH = 10_000

APPOINTMENT_TABLE = "scheduling_appointment"
RAW_TABLE = "bench_raw_appointment"
APPOINTMENT_COLUMNS = (
    "organization_id",
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
    "allow_overlap",
    "external_system",
    "external_id",
    "created_at",
)


@dataclass
class Timer:
    started: float
    seconds: float = 0.0


@contextmanager
def timer() -> Iterator[Timer]:
    """`with timer() as t: ...` then `t.seconds` (wall clock, monotonic)."""
    t = Timer(started=time.perf_counter())
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - t.started


def anonymous_memory_mib(pid: int) -> float | None:
    """A process's anonymous resident memory (RssAnon), or None once it has exited.

    Anonymous memory is what the process itself holds: Python's objects, buffers and
    SQLite's page cache (bounded by cache_size). Unlike ru_maxrss it leaves out the
    database file that SQLite maps with mmap_size: those pages are the kernel's file cache,
    shared and dropped under pressure, and they would make every figure follow the size
    of the file rather than what the code keeps in memory."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None  # a zombie has no memory lines


@dataclass
class PeakMemory:
    """The highest anonymous resident memory of one process while it runs (sampled)."""

    start_mib: float = 0.0
    peak_mib: float = 0.0

    @property
    def growth_mib(self) -> float:
        return self.peak_mib - self.start_mib


@contextmanager
def peak_anonymous_memory(pid: int | None = None, every: float = 0.02) -> Iterator[PeakMemory]:
    """`with peak_anonymous_memory(pid) as m: ...` then `m.peak_mib` and `m.growth_mib`.
    Samples every `every` seconds in a thread; a spike shorter than that can be missed,
    a buffer that grows with the data cannot."""
    pid = os.getpid() if pid is None else pid
    start = anonymous_memory_mib(pid) or 0.0
    memory = PeakMemory(start_mib=start, peak_mib=start)
    done = threading.Event()

    def sample() -> None:
        while True:
            now = anonymous_memory_mib(pid)
            if now is not None:
                memory.peak_mib = max(memory.peak_mib, now)
            if done.wait(every):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield memory
    finally:
        done.set()
        sampler.join()


@dataclass
class ChildRun:
    seconds: float
    peak_anon_mib: float
    returncode: int
    stdout: str
    stderr: str


def run_child(args: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run a command; wall time and the peak anonymous memory of that one child."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(args), stdout=out, stderr=err, env=env, cwd=REPO)
        with peak_anonymous_memory(proc.pid) as memory:
            proc.wait()
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return ChildRun(seconds, memory.peak_mib, proc.returncode, out.read(), err.read())


def careline(*args: str) -> list[str]:
    """The `careline` console command, run with this interpreter."""
    return [sys.executable, "-m", "careline", *args]


def database_env(url: str) -> dict[str, str]:
    """Environment for a child process that works on `url` (and keeps its files in BENCH_DIR)."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    # Benchmarks send through the simulator unless told otherwise (production settings
    # have no implicit gateway).
    return {
        "CARELINE_SMS_GATEWAY": "simulator",
        **os.environ,
        "DATABASE_URL": url,
        "CARELINE_DATA_DIR": str(BENCH_DIR),
    }


def postgres_server_url() -> str:
    """DATABASE_URL of the local throwaway cluster (started by scripts/postgres.sh if needed)."""
    out = subprocess.run(
        [str(REPO / "scripts" / "postgres.sh")],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def fresh_database(kind: str, name: str = "careline_bench") -> str:
    """An empty, migrated database named `name`; returns its DATABASE_URL.

    kind is "sqlite" (a file under BENCH_DIR) or "postgres" (a database on the local cluster).
    """
    if kind == "sqlite":
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        path = BENCH_DIR / f"{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    elif kind == "postgres":
        import psycopg

        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"'{name}' is not a plain PostgreSQL database name")
        server = postgres_server_url()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        url = server.rsplit("/", 1)[0] + f"/{name}"
    else:
        raise ValueError(f"unknown database kind '{kind}' (sqlite or postgres)")
    migrate = run_child(careline("migrate", "--noinput", "--skip-checks"), database_env(url))
    if migrate.returncode:
        raise RuntimeError(f"migrate failed on {kind}:\n{migrate.stderr[-2000:]}")
    return url


def figure(name: str, value: float, baseline: float | None, fmt: str = ",.0f") -> str:
    """One result line: `name | value | baseline | ratio` (ratio = value / baseline)."""
    if baseline is None:
        return f"{name} | {value:{fmt}} | - | -"
    ratio = value / baseline if baseline else float("inf")
    return f"{name} | {value:{fmt}} | {baseline:{fmt}} | {ratio:.2f}"


def appointment_rows(count: int, *, sqlite: bool) -> Iterator[tuple]:
    """`count` valid appointment-shaped rows: 420 providers, back-to-back 20-minute visits."""
    base = datetime(2024, 1, 1, 14, 0)
    providers = 420
    for i in range(count):
        start = base + timedelta(minutes=30 * (i // providers))
        times = (start, start + timedelta(minutes=20), start, start - timedelta(days=9))
        if sqlite:
            when = tuple(str(t) for t in times)
        else:
            when = tuple(t.replace(tzinfo=UTC) for t in times)
        yield (
            1,
            1 + i % 72,
            1 + i % providers,
            1 + i % 20_000,
            1 + i % 7,
            when[0],
            when[1],
            "noshow" if i % 7 == 0 else "fulfilled",
            None,
            when[2],
            "demo",
            False,
            "",
            "",
            when[3],
        )


# Values per multi-row INSERT statement on SQLite (its limit: 32,766 bound variables).
MULTIROW_VARIABLES = 8_000


def multirow_insert(cursor, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """SQLite's fastest plain path: INSERT … VALUES (…), (…), … with as many rows per
    statement as its variable limit allows. `cursor` is a DB-API cursor with qmark ("?")
    parameters (sqlite3) or Django's ("%s")."""
    mark = "?" if isinstance(cursor, sqlite3.Cursor) else "%s"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    step = max(1, MULTIROW_VARIABLES // len(columns))
    full = head + ", ".join([one] * step)
    for low in range(0, len(rows), step):
        part = rows[low : low + step]
        sql = full if len(part) == step else head + ", ".join([one] * len(part))
        cursor.execute(sql, [value for row in part for value in row])


def copy_rows(cursor, table: str, columns: Sequence[str], rows) -> None:
    """PostgreSQL's fastest plain path: COPY … FROM STDIN. `cursor` is psycopg's."""
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _batches(rows: Iterator[tuple]) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def raw_insert_appointments(url: str, rows: int) -> float:
    """Seconds to insert `rows` rows into a copy of the appointment table, in one transaction.

    The copy has the same columns, indexes and constraints (on PostgreSQL also the
    no-overlap exclusion constraint), but no foreign keys; it is dropped afterwards.
    SQLite gets multi-row INSERTs, PostgreSQL COPY: each database's true limit (issue 21;
    executemany, the baseline before, is several times slower on both).
    """
    config = dj_database_url.parse(url)
    columns = ", ".join(f'"{c}"' for c in APPOINTMENT_COLUMNS)
    if config["ENGINE"].endswith("sqlite3"):
        conn = sqlite3.connect(config["NAME"], isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            conn.execute(f'DROP TABLE IF EXISTS "{RAW_TABLE}"')
            schema = conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL",
                (APPOINTMENT_TABLE,),
            ).fetchall()
            for kind, name, sql in sorted(schema, key=lambda s: s[0] != "table"):
                sql = sql.replace(f'"{APPOINTMENT_TABLE}"', f'"{RAW_TABLE}"')
                if kind == "index":
                    sql = sql.replace(f'"{name}"', f'"bench_{name}"', 1)
                conn.execute(sql)
            quoted = [f'"{c}"' for c in APPOINTMENT_COLUMNS]
            with timer() as t:
                conn.execute("BEGIN")
                cursor = conn.cursor()
                for batch in _batches(appointment_rows(rows, sqlite=True)):
                    multirow_insert(cursor, f'"{RAW_TABLE}"', quoted, batch)
                conn.execute("COMMIT")
            conn.execute(f'DROP TABLE "{RAW_TABLE}"')
        finally:
            conn.close()
        return t.seconds

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        conn.execute(f"CREATE TABLE {RAW_TABLE} (LIKE {APPOINTMENT_TABLE} INCLUDING ALL)")
        with timer() as t:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY {RAW_TABLE} ({columns}) FROM STDIN") as copy:
                    for row in appointment_rows(rows, sqlite=False):
                        copy.write_row(row)
        conn.execute(f"DROP TABLE {RAW_TABLE}")
    return t.seconds


def run_raw_insert(url: str, rows: int) -> tuple[float, ChildRun]:
    """The baseline in its own process: (insert seconds, the child's run incl. peak memory)."""
    child = run_child(
        [sys.executable, "-m", "bench.common", "raw-insert", url, str(rows)], database_env(url)
    )
    if child.returncode:
        raise RuntimeError(f"raw insert baseline failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])["seconds"], child


def _cli(args: list[str]) -> int:
    if len(args) != 3 or args[0] != "raw-insert" or not args[2].isdigit():
        print("usage: python -m bench.common raw-insert DATABASE_URL ROWS", file=sys.stderr)
        return 2
    seconds = raw_insert_appointments(args[1], int(args[2]))
    print(json.dumps({"rows": int(args[2]), "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
