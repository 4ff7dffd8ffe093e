"""`careline serve` logs requests to patients' links without their tokens."""

import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.web.test_serve_stops_gunicorn import ROOT, _free_port, _wait_for_port


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_access_log_and_django_log_show_link_paths_redacted(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CARELINE_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite3'}",
        "SECRET_KEY": "test-only-serve-log-key-" + "x" * 40,
        "CARELINE_SMS_GATEWAY": "simulator",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    subprocess.run(
        [sys.executable, "-m", "careline", "migrate", "--verbosity", "0"],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=120,
    )
    log = Path(tmp_path / "serve.log")
    tokens = [secrets.token_urlsafe(12) for _ in range(3)]
    with log.open("wb") as out:
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
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_port(port, serve)
            base = f"http://127.0.0.1:{port}"
            assert _get(f"{base}/a/{tokens[0]}") == 404
            assert _get(f"{base}/a/{tokens[1]}/visit.ics") == 404
            _get(f"{base}/login/?next=%2Fa%2F{tokens[2]}")
            assert _get(f"{base}/healthz") == 200
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=40)
    text = log.read_text()
    assert '"GET /a/[redacted]" 404' in text
    assert '"GET /a/[redacted]/visit.ics" 404' in text
    # Django's own warning for the refused link names the path too.
    assert "Not Found: /a/[redacted]" in text
    assert '"GET /healthz" 200' in text
    for token in tokens:
        assert token not in text
