"""The web start commands we ship (Procfile, systemd unit), run as they are, behind a proxy.

A proxy appends the address it received a request from to X-Forwarded-For, after whatever the
client wrote there; the client controls everything left of that. A forged first entry must not
make a request from outside look like one from the host itself.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from devtools.testing import channels_database_env, database_url

ROOT = Path(__file__).resolve().parents[2]
FORGED = "127.0.0.1, 203.0.113.9"  # the client's forgery, then what the proxy appended

pytestmark = pytest.mark.django_db


def _procfile_web() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:")
    raise AssertionError("the Procfile has no web process")


def _systemd_web() -> str:
    for line in (ROOT / "deploy/systemd/voice-web@.service").read_text().splitlines():
        if line.startswith("ExecStart="):
            return line.removeprefix("ExecStart=")
    raise AssertionError("the unit has no ExecStart")


def _daphne_args(command: str, port: int) -> list[str]:
    """The command's daphne arguments, listening on `port` on loopback."""
    words = shlex.split(command.replace("${PORT:-8000}", str(port)).replace("%i", str(port)))
    assert Path(words[0]).name == "daphne", command
    args = words[1:]
    args[args.index("-b") + 1] = "127.0.0.1"
    return args


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["Procfile", "systemd"])
def shipped_server(request, tmp_path) -> Iterator[str]:
    command = _procfile_web() if request.param == "Procfile" else _systemd_web()
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
        "LOG_LEVEL": "WARNING",
        **channels_database_env(),
    }
    for name in ("METRICS_TOKEN", "TRUST_PROXY_HEADERS", "TRUSTED_PROXY_HOPS"):
        env.pop(name, None)
    log = tmp_path / "daphne.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", *_daphne_args(command, port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_the_shipped_web_command_gives_no_metrics_to_a_forged_forwarded_for(shipped_server):
    forged = httpx.get(shipped_server + "/metrics", headers={"X-Forwarded-For": FORGED})
    assert forged.status_code == 403
    assert "voice_" not in forged.text
    # A scraper on the host itself, not through the proxy, still gets them.
    assert httpx.get(shipped_server + "/metrics").status_code == 200
