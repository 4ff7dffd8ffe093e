"""`make run PORT=8010` serves on that port and CARELINE_BASE_URL follows it unless set;
emails go to the console unless EMAIL_URL is set."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Stands in for the real `careline`: prints what `serve` would be started with.
FAKE_CARELINE = """#!/bin/sh
if [ "$1" = serve ]; then echo "serve $* email=$EMAIL_URL base=$CARELINE_BASE_URL"; fi
"""


def _make_run(
    tmp_path: Path, *make_args: str, base_url: str | None = None, email_url: str | None = None
) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "careline"
    fake.write_text(FAKE_CARELINE)
    fake.chmod(0o755)
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: nothing is installed
    # Not the make that may be running these tests (`make test`): its flags and level would
    # have this one print "Entering directory" lines.
    outer = {"CARELINE_BASE_URL", "EMAIL_URL", "MAKELEVEL", "MAKEFLAGS", "MFLAGS"}
    env = {k: v for k, v in os.environ.items() if k not in outer}
    if base_url is not None:
        env["CARELINE_BASE_URL"] = base_url
    if email_url is not None:
        env["EMAIL_URL"] = email_url
    out = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "run",
            f"BIN={bin_dir}",
            f"STAMP={stamp}",
            *make_args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_run_serves_on_the_port_given_and_the_base_url_follows(tmp_path):
    line = _make_run(tmp_path, "PORT=8010")
    assert "--bind 127.0.0.1:8010" in line
    assert line.endswith("base=http://127.0.0.1:8010")


def test_run_defaults_to_port_8000(tmp_path):
    line = _make_run(tmp_path)
    assert "--bind 127.0.0.1:8000" in line
    assert line.endswith("base=http://127.0.0.1:8000")


def test_a_base_url_that_is_set_wins_over_the_port(tmp_path):
    line = _make_run(tmp_path, "PORT=8010", base_url="https://careline.example.org")
    assert "--bind 127.0.0.1:8010" in line
    assert line.endswith("base=https://careline.example.org")


def test_run_prints_emails_on_the_console_unless_an_email_url_is_set(tmp_path):
    assert " email=console: " in _make_run(tmp_path)
    (tmp_path / "smtp").mkdir()
    line = _make_run(tmp_path / "smtp", email_url="smtp://mail.example.org:587/?tls=True")
    assert " email=smtp://mail.example.org:587/?tls=True " in line
