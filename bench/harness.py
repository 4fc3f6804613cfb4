"""Shared pieces of the benchmarks: a throwaway database, providers on loopback, a Celery worker,
and tables of percentiles.

Benchmarks run against PostgreSQL and Redis (`BENCH_DATABASE_URL`, `BENCH_REDIS_URL`; defaults on
127.0.0.1) in a database of their own, so they never touch the platform's data.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/voiceplatform_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def table(title: str, rows: dict[str, list[float]], *, unit: str = "ms", baseline: str = "") -> str:
    """A Markdown table of p50/p90/p99 per row, with each row's p50 as a ratio of `baseline`."""
    base = percentile(rows[baseline], 50) if baseline else None
    lines = [
        f"### {title}",
        "",
        f"| | n | p50 ({unit}) | p90 ({unit}) | p99 ({unit}) | mean ({unit}) |"
        + (" p50 vs first row |" if base else ""),
        "|---|---|---|---|---|---|" + ("---|" if base else ""),
    ]
    for name, values in rows.items():
        p50 = percentile(values, 50)
        cells = [
            name,
            str(len(values)),
            f"{p50:.0f}",
            f"{percentile(values, 90):.0f}",
            f"{percentile(values, 99):.0f}",
            f"{statistics.fmean(values):.0f}" if values else "-",
        ]
        if base:
            cells.append(f"{p50 / base:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    import django

    cores = os.cpu_count()
    return (
        f"{platform.system()} {platform.machine()}, {cores} cores, Python "
        f"{platform.python_version()}, Django {django.get_version()}"
    )


def python_speed_ns() -> float:
    """Nanoseconds per iteration of a fixed pure-Python loop (best of 3): how fast this machine
    runs Python at the moment, so that runs made on other days or machines can be compared."""
    iterations = 2_000_000
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1e9 / iterations


def configure_environment(**extra: str) -> dict[str, str]:
    """Point this process (and the subprocesses it starts) at the benchmark's own services."""
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "MEDIA_ROOT": tempfile.mkdtemp(prefix="bench-media-"),
        "CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
        **extra,
    }
    os.environ.update(env)
    return env


def create_database() -> None:
    """Create the benchmark database if needed and migrate it."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{db["NAME"]}"')
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


@contextmanager
def celery_worker(env: dict[str, str], *, concurrency: int = 8) -> Iterator[subprocess.Popen]:
    """A real worker process on the benchmark's queue, stopped afterwards."""
    log = open(Path(env["MEDIA_ROOT"]) / "worker.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            env["CELERY_QUEUE"],
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from config.celery import app

        result = app.send_task("celery.accumulate", args=("ready",), queue=env["CELERY_QUEUE"])
        result.get(timeout=60)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def bench_tenant(
    *, mode: str = "gather", tts_engine: str = "simulated", generous_limits: bool = False
):
    """A fresh tenant with one assistant and one number; returns (tenant, assistant, number)."""
    from django_scopes import scopes_disabled

    from assistants.models import AssistantConfig
    from assistants.versions import version_publish
    from tenants.models import PhoneNumber, RateLimit, Tenant

    run = uuid.uuid4().hex[:8]
    with scopes_disabled():
        tenant = Tenant.objects.create(name=f"Bench {run}", slug=f"bench-{run}")
        assistant = AssistantConfig.objects.create(
            tenant=tenant,
            name="Bench",
            mode=mode,
            tts_engine=tts_engine,
            system_prompt="You are a plumber's receptionist.",
        )
        # As every new assistant is: its first settings are version 1, which calls run on.
        version_publish(assistant=assistant, note="First version", check=False)
        number = PhoneNumber.objects.create(
            tenant=tenant, assistant=assistant, number=f"+1415{int(run, 16) % 10**7:07d}"
        )
        if generous_limits:  # the benchmark measures the platform, not its limits
            for kind, limit in (
                (RateLimit.Kind.CONCURRENT_CALLS, 100_000),
                (RateLimit.Kind.CALLS_PER_CALLER, 1_000_000),
                (RateLimit.Kind.TURNS_PER_CALL, 1_000_000),
                (RateLimit.Kind.LLM_TOKENS_PER_DAY, 2_000_000_000),
            ):
                RateLimit.objects.create(tenant=tenant, kind=kind, limit=limit)
    return tenant, assistant, number


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int, app: str = "config.asgi:application") -> list[str]:
    """The ASGI server's command: daphne, or uvicorn with uvloop and httptools when
    BENCH_SERVER=uvicorn, to compare the two (docs/benchmarks.md; uvicorn is not a requirement:
    `pip install "uvicorn[standard]==0.54.0"` first)."""
    if os.environ.get("BENCH_SERVER") == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--ws",
            "websockets",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    return [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        app,
    ]


@contextmanager
def daphne_server(
    env: dict[str, str], port: int, app: str = "config.asgi:application"
) -> Iterator[subprocess.Popen]:
    """The platform's ASGI server (one process) on 127.0.0.1:`port`, ready when yielded;
    `app` is the ASGI application it serves (module:attribute, importable from the project)."""
    import httpx

    log = open(Path(env["MEDIA_ROOT"]) / f"daphne-{port}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        server_command(port, app),
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not start; see {log.name}")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def relay_server(app: str = "config.asgi:application") -> Iterator[tuple[str, int, str, str]]:
    """One server process (`app`) on loopback with a relay assistant on a number, the fake Groq
    in a process of its own, and this process set up to sign Twilio's requests; yields (base
    URL, server pid, the number, the Twilio auth token)."""
    with fake_groq_process() as (groq_url, _):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = configure_environment(
            GROQ_BASE_URL=groq_url, GROQ_API_KEY="bench", PUBLIC_BASE_URL=base
        )
        import django

        django.setup()
        create_database()
        from django.conf import settings

        _, _, number = bench_tenant(mode="relay", tts_engine="say", generous_limits=True)
        with daphne_server(env, port, app=app) as server:
            yield base, server.pid, number.number, settings.TWILIO_AUTH_TOKEN


@contextmanager
def fake_groq_process(*, ttft_ms: float = 150.0, tps: float = 280.0, answer_tokens: int = 60):
    """The fake Groq server in a process of its own (in this one it would compete with the
    measuring client for the interpreter lock); yields (base URL, FakeGroqControl)."""
    from devtools.fake_groq import FakeGroqControl

    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "fake_groq",
            "--port",
            "0",
            "--ttft-ms",
            str(ttft_ms),
            "--tps",
            str(tps),
            "--answer-tokens",
            str(answer_tokens),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    try:
        url = ""
        for line in process.stdout:
            if line.startswith("GROQ_BASE_URL="):
                url = line.strip().split("=", 1)[1]
                break
        if not url:
            raise RuntimeError("the fake Groq server did not start")
        control = FakeGroqControl(url)
        yield url, control
        control.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ms(seconds: float) -> float:
    return seconds * 1000


def now() -> float:
    return time.perf_counter()
