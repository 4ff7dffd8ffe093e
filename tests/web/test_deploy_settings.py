"""Production settings pass Django's own deployment checklist."""

import os
import subprocess
import sys


def test_check_deploy_is_clean_with_production_environment(tmp_path):
    env = {
        **os.environ,
        "SECRET_KEY": "x" * 20 + "production-secret-key-with-enough-entropy-9f8e7d6c5b4a",
        "CARELINE_BASE_URL": "https://careline.example.org",
        "DEBUG": "0",
        "CARELINE_DATA_DIR": str(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    env.pop("SECURE_HSTS_PRELOAD", None)
    # A developer's console backend would rightly be warned about (careline.W002).
    env.pop("EMAIL_URL", None)
    # Set by the browser-test fixture for this test process only; never in a deployment.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "-m", "careline", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_while_emails_stay_on_the_machine(tmp_path):
    env = {
        **os.environ,
        "SECRET_KEY": "x" * 20 + "production-secret-key-with-enough-entropy-9f8e7d6c5b4a",
        "CARELINE_BASE_URL": "https://careline.example.org",
        "DEBUG": "0",
        "CARELINE_DATA_DIR": str(tmp_path),
        "EMAIL_URL": "console:",
    }
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "-m", "careline", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "careline.W002" in result.stderr and "printed on the console" in result.stderr


def test_security_headers_are_set(client):
    response = client.get("/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
