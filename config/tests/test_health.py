from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import Client

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SERVER_START_TIMEOUT = 30.0


def test_healthz_answers_200(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_answers_200_when_database_cache_and_broker_answer(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["checks"]) == {"load", "database", "cache", "broker"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "no-cache" in response["Cache-Control"]


def test_readyz_only_answers_get(client: Client) -> None:
    assert client.post("/readyz").status_code == 405


# --- a real server with its dependencies down ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@contextmanager
def running_server(tmp_path: Path, **env: str) -> Iterator[str]:
    """daphne serving the platform with `env` added to its environment; yields its base URL."""
    port = free_port()
    log_path = tmp_path / "daphne.log"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    command = [
        str(BASE_DIR / ".venv/bin/daphne"),
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "config.asgi:application",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=BASE_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"daphne exited at start:\n{log_path.read_text()}")
            try:
                if get(f"{base}/healthz", timeout=1)[0] == 200:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"daphne did not answer /healthz:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung database or Redis)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # the kernel completes the handshakes; nobody ever reads or answers
        yield sock.getsockname()[1]


def test_readyz_reports_a_down_database_cache_and_broker(tmp_path: Path) -> None:
    with running_server(
        tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:1/nothing",
        REDIS_URL="redis://127.0.0.1:1/0",
    ) as base:
        started = time.monotonic()
        status, body = get(f"{base}/readyz", timeout=15)
        elapsed = time.monotonic() - started
        # The process itself is fine: liveness stays green while readiness is red.
        assert get(f"{base}/healthz", timeout=5) == (200, {"status": "ok"})
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failing"] == ["database", "cache", "broker"]
    assert all(body["checks"][name]["error"] for name in body["failing"])
    assert elapsed < 5


def test_readyz_answers_in_time_when_the_dependencies_hang(tmp_path: Path) -> None:
    with (
        silent_server() as port,
        running_server(
            tmp_path,
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/nothing",
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
        ) as base,
    ):
        started = time.monotonic()
        status, body = get(f"{base}/readyz", timeout=30)
        elapsed = time.monotonic() - started
    assert status == 503
    assert body["failing"] == ["database", "cache", "broker"]
    assert elapsed < 10, body
