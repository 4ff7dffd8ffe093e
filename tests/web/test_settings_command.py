"""`careline settings` shows the configuration in effect, where it came from, no secret; and
every setting Careline reads from the environment is in the README's configuration table."""

import os
import re
import subprocess
import sys
from pathlib import Path

from careline.web.management.commands.settings import read_variables

ROOT = Path(__file__).resolve().parents[2]


def _settings_output(**env: str) -> dict[str, tuple[str, str]]:
    result = subprocess.run(
        [sys.executable, "-m", "careline", "settings"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | env,
        timeout=120,
        check=True,
    )
    rows = {}
    for line in result.stdout.splitlines():
        name, source, value = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        rows[name] = (source, value)
    return rows


def test_settings_shows_effective_values_and_their_source_without_secrets(tmp_path):
    (tmp_path / ".careline-secret-key").write_text("dev-secret-value-xyz")
    rows = _settings_output(
        CARELINE_DATA_DIR=str(tmp_path),
        CARELINE_SESSION_HOURS="8",
        TWILIO_AUTH_TOKEN="tok-3f9a-very-secret",
        SECRET_KEY="prod-secret-key-abc",
        EMAIL_HOST_PASSWORD="mail-pass",
    )
    assert rows["CARELINE_SESSION_HOURS"] == ("environment", "8")
    assert rows["CARELINE_SENDING_HOURS_END"] == ("default", "21")
    assert rows["TWILIO_AUTH_TOKEN"] == ("environment", "(set, hidden)")
    assert rows["SECRET_KEY"] == ("environment", "(set, hidden)")
    assert rows["DATABASE_URL"] == ("default", f"sqlite:///{tmp_path / 'careline.sqlite3'}")
    printed = "\n".join(f"{k} {v}" for k, v in rows.items())
    for secret in ("tok-3f9a-very-secret", "prod-secret-key-abc", "dev-secret-value-xyz"):
        assert secret not in printed
    database = _settings_output(
        CARELINE_DATA_DIR=str(tmp_path), DATABASE_URL="postgres://app:pw-123@db.internal:5432/cl"
    )["DATABASE_URL"]
    assert database == ("environment", "postgres://app:***@db.internal:5432/cl")


def test_every_environment_variable_is_in_the_readme_configuration_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    read = set(read_variables())
    assert len(read) > 30
    assert read - documented == set()
