"""Pytest fixtures shared by every app: a temporary MEDIA_ROOT and a real Celery worker.

`celery_worker_process` runs `celery worker` as a separate process on the test database, the
configured broker (Redis, or the embedded filesystem broker) and a queue of its own, so a test
exercises the same path as production: commit, publish, another process picks it up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
WORKER_START_TIMEOUT = 60.0


@dataclass
class CeleryWorker:
    """A running worker process and the queue it consumes."""

    queue: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        """Everything the worker printed so far (to explain a failing test)."""
        return self.log_path.read_text(errors="replace")


def database_url(database: dict) -> str:
    """A DATABASE_URL for the database described by a Django DATABASES entry."""
    engine = database["ENGINE"]
    name = str(database["NAME"])
    if engine == "django.db.backends.sqlite3":
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError("an in-memory SQLite database cannot be shared with a worker")
        return f"sqlite:///{Path(name).resolve()}"
    if engine in ("django.db.backends.postgresql", "core.postgresql"):
        user = quote(database.get("USER") or "", safe="")
        password = quote(database.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = quote(database.get("HOST") or "", safe="")
        port = f":{database['PORT']}" if database.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(name, safe='')}"
    raise RuntimeError(f"no DATABASE_URL for database engine {engine}")


def channels_database_env() -> dict[str, str]:
    """With the embedded channel layer, the test's channels database for a subprocess, so
    that the events it publishes reach the test (and the other way round)."""
    from django.conf import settings

    if "channels" not in settings.DATABASES:
        return {}
    return {"CHANNELS_DATABASE_PATH": str(settings.DATABASES["channels"]["NAME"])}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With the embedded settings, call events travel through a second SQLite database
    ("channels"); let every database test use it, as the running platform does."""
    from django.conf import settings
    from pytest_django.fixtures import validate_django_db

    if "channels" not in settings.DATABASES:
        return
    db_fixtures = {"db", "transactional_db", "live_server"}
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None and not db_fixtures & set(getattr(item, "fixturenames", ())):
            continue
        transaction = "transactional_db" in item.fixturenames or "live_server" in item.fixturenames
        kwargs = {"transaction": transaction}
        if marker is not None:
            marked_transaction, reset_sequences, databases, serialized, apps = validate_django_db(
                marker
            )
            if databases is not None:
                continue
            kwargs = {
                "transaction": marked_transaction or transaction,
                "reset_sequences": reset_sequences,
                "serialized_rollback": serialized,
                "available_apps": apps,
            }
        item.add_marker(pytest.mark.django_db(databases="__all__", **kwargs), append=False)


@pytest.fixture(scope="session")
def _shared_media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture
def media_root(_shared_media_root: Path, settings) -> Iterator[Path]:
    """A temporary MEDIA_ROOT for this test, emptied afterwards. The Celery worker of
    `celery_worker_process` stores its files in the same directory."""
    settings.MEDIA_ROOT = _shared_media_root
    yield _shared_media_root
    for child in _shared_media_root.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def wait_until_ready(worker: CeleryWorker) -> None:
    """Round-trip a built-in task: works on every broker (the filesystem one has no broadcast)."""
    from celery.exceptions import TimeoutError as ResultTimeout

    from config.celery import app

    result = app.send_task("celery.accumulate", args=("ready",), queue=worker.queue)
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited at start:\n{worker.log()}")
        try:
            result.get(timeout=0.5, interval=0.05)
            return
        except ResultTimeout:
            continue
    raise RuntimeError(
        f"the Celery worker was not ready in {WORKER_START_TIMEOUT} s:\n{worker.log()}"
    )


def stop_celery_worker(worker: CeleryWorker) -> None:
    """Stop the worker (warm: running tasks finish) and empty its queue."""
    process = worker.process
    if process.poll() is None:
        process.terminate()  # warm shutdown: running tasks finish
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    from config.celery import app

    # Nothing will consume this queue again; don't leave its messages in the broker.
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(worker.queue)


def start_celery_worker(
    *,
    env: dict[str, str],
    queue: str,
    log_path: Path,
    beat_schedule: Path | None = None,
    loglevel: str = "WARNING",
) -> CeleryWorker:
    """Start `celery worker` (threads pool) on `queue`; with `beat_schedule`, beat runs inside
    it. The process leads a session of its own, so a test can stop it and its children as a
    machine failure would (`os.killpg`)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        queue,
        "-n",
        f"{queue}-{uuid.uuid4().hex[:6]}@%h",
        "--pool",
        "threads",
        "--concurrency",
        "4",
        "--loglevel",
        loglevel,
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
    ]
    if beat_schedule is not None:
        command += ["--beat", "--schedule", str(beat_schedule)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return CeleryWorker(queue=queue, process=process, log_path=log_path)


def worker_env(
    *, queue: str, media_root: Path, extra_env: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a worker process on the test database and `queue`. `extra_env` sets
    the worker's own settings (it reads them from the environment, not from the test's)."""
    from django.conf import settings

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": queue,
        "MEDIA_ROOT": str(media_root),
        **channels_database_env(),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }


def start_test_worker(
    *, log_path: Path, media_root: Path, extra_env: dict[str, str] | None = None
) -> CeleryWorker:
    """Start a worker process on the test database and a queue of its own; returns once it
    answers."""
    queue = f"test-{uuid.uuid4().hex[:12]}"
    env = worker_env(queue=queue, media_root=media_root, extra_env=extra_env)
    worker = start_celery_worker(env=env, queue=queue, log_path=log_path)
    try:
        wait_until_ready(worker)
    except BaseException:
        stop_celery_worker(worker)
        raise
    return worker


@pytest.fixture(scope="session")
def _celery_worker_session(
    django_db_setup, _shared_media_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    # Requesting django_db_setup means the test database exists now, and that this worker
    # stops before pytest-django drops it.
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    worker = start_test_worker(log_path=log_path, media_root=_shared_media_root)
    try:
        yield worker
    finally:
        stop_celery_worker(worker)


@pytest.fixture
def celery_worker_process(
    _celery_worker_session: CeleryWorker, transactional_db, media_root: Path
) -> Iterator[CeleryWorker]:
    """A real Celery worker process on the test database; tasks queued by the test go to it.

    Use with `@pytest.mark.django_db(transaction=True)`: the worker only sees committed rows.
    It is started once per test session (on first use) and shares `media_root` with the test.
    Its settings come from the environment, not from the test's `settings` overrides.
    """
    with tasks_queued_to(_celery_worker_session.queue):
        yield _celery_worker_session


@contextmanager
def tasks_queued_to(queue: str) -> Iterator[str]:
    """Inside, the tasks the platform queues go to `queue` (a test worker's, or one nobody
    reads)."""
    from config.celery import app

    # Read from Django settings, the option is found under its namespaced name: setting
    # `app.conf.task_default_queue` would be ignored.
    option = f"{app.namespace}_TASK_DEFAULT_QUEUE" if app.namespace else "task_default_queue"
    previous = app.conf.task_default_queue
    app.conf.update({option: queue})
    try:
        yield queue
    finally:
        app.conf.update({option: previous})


# --- Groq, replaced at the wire ---------------------------------------------------------------

FAKE_GROQ_KEY = "gsk_test_fake_groq_key"


@pytest.fixture(scope="session")
def _fake_groq_server() -> Iterator:
    from devtools.fake_groq import FakeGroqServer

    # Fast by default; a test that is about latency sets its own with `set_latency()`.
    server = FakeGroqServer(ttft_ms=20, tokens_per_second=2000, answer_tokens=40)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_groq(_fake_groq_server, settings) -> Iterator:
    """A Groq-compatible server on loopback that the real `groq` SDK talks to.

    The platform is pointed at it through GROQ_BASE_URL / GROQ_API_KEY; requests, answers,
    latency and faults are controlled through the returned `FakeGroqServer`.
    """
    from providers import llm

    _fake_groq_server.reset()
    settings.GROQ_BASE_URL = _fake_groq_server.base_url
    settings.GROQ_API_KEY = FAKE_GROQ_KEY
    llm.reset_clients()
    yield _fake_groq_server
    llm.reset_clients()
    _fake_groq_server.reset()


def fake_groq_env(server) -> dict[str, str]:
    """Environment for a subprocess (server, worker) that should use the fake Groq server."""
    return {"GROQ_BASE_URL": server.base_url, "GROQ_API_KEY": FAKE_GROQ_KEY}


# --- Deepgram (streaming recognition and speech), replaced at the wire ---------------------------

FAKE_DEEPGRAM_KEY = "dg_test_fake_deepgram_key"


@pytest.fixture(scope="session")
def _fake_deepgram_server() -> Iterator:
    from devtools.fake_deepgram import FakeDeepgramServer

    server = FakeDeepgramServer(api_key=FAKE_DEEPGRAM_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_deepgram(_fake_deepgram_server, settings) -> Iterator:
    """A server speaking Deepgram's live recognition and Aura speech protocols (and AssemblyAI's
    streaming recognition) on loopback, which the platform (and daphne, through
    DEEPGRAM_BASE_URL / ASSEMBLYAI_BASE_URL) uses; told the caller's lines with
    `queue_transcript()`, faults with `configure()`."""
    _fake_deepgram_server.reset()
    settings.DEEPGRAM_BASE_URL = settings.ASSEMBLYAI_BASE_URL = _fake_deepgram_server.base_url
    settings.DEEPGRAM_API_KEY = settings.ASSEMBLYAI_API_KEY = FAKE_DEEPGRAM_KEY
    yield _fake_deepgram_server
    _fake_deepgram_server.reset()


# --- a real ASGI server ---------------------------------------------------------------------------

SERVER_START_TIMEOUT = 60.0


@dataclass
class DaphneServer:
    """A running daphne process serving the platform (HTTP and websockets) on loopback."""

    base_url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_sessions_closed(self, *, timeout: float = 10.0) -> None:
        """Wait (at most `timeout`) until the server holds no call sockets: a socket's call is
        finalised before it stops counting, so the server writes nothing more for them."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = httpx.get(self.base_url + "/readyz", timeout=2).json()
                if body["checks"]["load"]["sessions"] == 0:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_daphne(*, env: dict[str, str], log_path: Path) -> DaphneServer:
    """Start `daphne config.asgi:application` on a free loopback port; wait until it answers."""
    import httpx

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "--application-close-timeout",
        "10",
        "config.asgi:application",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = DaphneServer(base_url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited at start:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_daphne(server)
    raise RuntimeError(f"daphne was not ready in {SERVER_START_TIMEOUT} s:\n{server.log()}")


def stop_daphne(server: DaphneServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


@pytest.fixture(scope="session")
def _daphne_session(
    django_db_setup,
    _fake_groq_server,
    _fake_deepgram_server,
    _shared_media_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
        "PUBLIC_BASE_URL": "",
        "MEDIA_ROOT": str(_shared_media_root),
        **channels_database_env(),
        **fake_groq_env(_fake_groq_server),
        "DEEPGRAM_BASE_URL": _fake_deepgram_server.base_url,
        "DEEPGRAM_API_KEY": FAKE_DEEPGRAM_KEY,
        "ASSEMBLYAI_BASE_URL": _fake_deepgram_server.base_url,
        "ASSEMBLYAI_API_KEY": FAKE_DEEPGRAM_KEY,
        "ANALYTICS_CACHE_SECONDS": "0",  # figures as they are at each request
        "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",  # tool servers of the tests run on loopback
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    # whitenoise serves what collectstatic gathered (the pages' JavaScript, Chart.js).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        timeout=120,
    )
    server = start_daphne(env=env, log_path=tmp_path_factory.mktemp("daphne") / "daphne.log")
    try:
        yield server
    finally:
        stop_daphne(server)


@pytest.fixture
def daphne_server(
    _daphne_session: DaphneServer, transactional_db, fake_groq, fake_deepgram
) -> Iterator[DaphneServer]:
    """The platform served by a real daphne process (HTTP and websockets) on the test database,
    the configured channel layer and broker, its LLM the fake Groq server (`fake_groq`). Use with
    `@pytest.mark.django_db(transaction=True)`: the server only sees committed rows. After the
    test, the calls of its sockets are finalised before the database is emptied (a call ending
    while the tables are truncated can deadlock the two)."""
    yield _daphne_session
    _daphne_session.wait_until_sessions_closed()


# --- a tenant's tool server ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def _tool_server_session() -> Iterator:
    from devtools.tool_server import ToolServer

    server = ToolServer().start()
    yield server
    server.stop()


@pytest.fixture
def tool_server(_tool_server_session, settings) -> Iterator:
    """A tenant's HTTP tool server on loopback (which outbound requests may reach here)."""
    _tool_server_session.reset()
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    yield _tool_server_session
    _tool_server_session.reset()
