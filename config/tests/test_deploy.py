"""Production settings: `check --deploy` is clean, and the platform refuses unsafe start-ups."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "PRODUCTION": "true",
    "ALLOWED_HOSTS": "voice.example.com",
    "PUBLIC_BASE_URL": "https://voice.example.com",
    "TRUST_PROXY_HEADERS": "true",
    "DATABASE_URL": "sqlite:////tmp/deploy-check.sqlite3",
    "TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",
    "METRICS_TOKEN": "0123456789abcdef0123456789abcdef",
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing_under_production_settings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        **PRODUCTION_ENV,
        SECRET_KEY=secrets.token_urlsafe(60),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage("check", **PRODUCTION_ENV)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when PRODUCTION is on" in result.stderr


def test_production_refuses_to_start_without_a_twilio_auth_token():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "TWILIO_AUTH_TOKEN"}
    result = _manage("check", **env, SECRET_KEY=secrets.token_urlsafe(60))
    assert result.returncode != 0
    assert "TWILIO_AUTH_TOKEN must be set when PRODUCTION is on" in result.stderr


def test_production_refuses_debug():
    result = _manage("check", **PRODUCTION_ENV, SECRET_KEY=secrets.token_urlsafe(60), DEBUG="true")
    assert result.returncode != 0
    assert "DEBUG must be off" in result.stderr


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_but_probes_are_not(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    settings.SECURE_HSTS_SECONDS = 31536000
    redirected = client.get("/admin/login/")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://testserver/admin/login/"
    assert client.get("/healthz").status_code == 200
    secure = client.get("/admin/login/", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")


def test_check_deploy_warns_when_metrics_have_no_token_in_production():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "METRICS_TOKEN"}
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", **env, SECRET_KEY=secrets.token_urlsafe(60)
    )
    assert result.returncode != 0
    assert "voice.W001" in result.stderr + result.stdout
    assert "METRICS_TOKEN" in result.stderr + result.stdout
