"""`careline serve` takes gunicorn down with it on SIGTERM (systemd, Docker stop)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.add(int(entry.name))
    return found


def _descendants(pid: int) -> set[int]:
    result, todo = set(), [pid]
    while todo:
        for child in _children_of(todo.pop()):
            if child not in result:
                result.add(child)
                todo.append(child)
    return result


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "careline serve exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail("gunicorn never listened")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_stops_serve_and_leaves_no_gunicorn(tmp_path, stop_signal):
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CARELINE_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite3'}",
        "SECRET_KEY": "test-only-serve-signal-key-" + "x" * 40,
        "CARELINE_SMS_GATEWAY": "simulator",
    }
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "careline",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--no-worker",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    spawned: set[int] = set()
    try:
        _wait_for_port(port, serve)
        spawned = _descendants(serve.pid)
        assert spawned, "serve started no gunicorn"
        serve.send_signal(stop_signal)
        assert serve.wait(timeout=40) is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in spawned):
            time.sleep(0.2)
        assert [p for p in spawned if _alive(p)] == []
    finally:
        # Never leave a stray gunicorn on the machine, whatever the outcome.
        for pid in spawned | (_descendants(serve.pid) if serve.poll() is None else set()):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if serve.poll() is None:
            serve.kill()
            serve.wait()
