"""Overload and scale-out: one server process past its capacity, and several behind HAProxy.

- overload: one daphne process with `LOAD_MAX_SESSIONS`; that many relay sessions ask at a
  caller's rhythm while new calls arrive far beyond it. Are the newcomers refused politely (the
  busy line, no socket), do the calls in progress keep their latency, does any connection fail,
  is any dashboard event lost?
- scale-out: 1, then N daphne processes behind HAProxy (deploy/haproxy.cfg), relay sessions at a
  caller's rhythm per level: the most answers/s with overhead p99 <= 50 ms and zero errors, and
  where the machine's CPU went (psutil) at that level. Then one of two processes is killed
  mid-call: how many calls are lost (only its own), how many the sweeper closes, and whether
  new calls are answered by the survivor.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from harness import ROOT, daphne_server, free_port, percentile

# Each server's database pool: enough for its database threads, and small enough that several
# servers fit in a PostgreSQL shared with other users (max_connections).
SMALL_POOL = {"DB_POOL_MAX_SIZE": os.environ.get("DB_POOL_MAX_SIZE", "20")}

HOW_TO_INSTALL = (
    "HAProxy is not installed: install it from the system's packages "
    "(`sudo apt-get install -y haproxy` on Debian/Ubuntu) and run again."
)


def haproxy_path() -> str | None:
    return shutil.which("haproxy")


def _haproxy_config(front_port: int, backend_ports: list[int]) -> str:
    """deploy/haproxy.cfg with this run's ports."""
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    config = re.sub(r"bind 127\.0\.0\.1:\d+", f"bind 127.0.0.1:{front_port}", config)
    config = re.sub(r"\n    server web[^\n]*", "", config)
    servers = "".join(
        f"\n    server web{i} 127.0.0.1:{port} check" for i, port in enumerate(backend_ports, 1)
    )
    backups = "".join(
        f"\n    server web{i}-full 127.0.0.1:{port} backup"
        for i, port in enumerate(backend_ports, 1)
    )
    return config.rstrip("\n") + servers + backups + "\n"


@contextmanager
def haproxy(front_port: int, backend_ports: list[int], workdir: Path) -> Iterator[subprocess.Popen]:
    """HAProxy on `front_port` in front of the daphne processes, ready when every backend is
    up (its health check passed)."""
    import httpx

    config = workdir / f"haproxy-{front_port}.cfg"
    config.write_text(_haproxy_config(front_port, backend_ports))
    log = open(workdir / f"haproxy-{front_port}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [haproxy_path() or "haproxy", "-db", "-f", str(config)], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{front_port}/healthz", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start; see {log.name}")
            time.sleep(0.2)
        time.sleep(3)  # two health checks: every backend is up
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@contextmanager
def servers(env: dict[str, str], count: int) -> Iterator[list[tuple[int, subprocess.Popen]]]:
    """`count` daphne processes on free ports: [(port, process)]."""
    with ExitStack() as stack:
        started = []
        for _ in range(count):
            port = free_port()
            started.append((port, stack.enter_context(daphne_server(env, port))))
        yield started


# --- where the CPU went -----------------------------------------------------------------------


def _processes(match) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            if match(process.info["name"] or "", " ".join(process.info["cmdline"] or [])):
                found.append(process)
        except (psutil.Error, TypeError):
            continue
    return found


def _cpu(processes: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
        except psutil.Error:
            continue
    return seconds


class CpuSplit:
    """CPU seconds per part of the set-up over a phase, read with psutil."""

    def __init__(self, parts: dict[str, object]) -> None:
        # part -> a function returning its processes now (they may come and go).
        self.parts = parts
        self.before: dict[str, dict[int, float]] = {}
        self.machine_before = None
        self.started = 0.0

    def start(self) -> None:
        self.before = {name: _cpu(find()) for name, find in self.parts.items()}
        self.machine_before = psutil.cpu_times()
        self.started = time.monotonic()

    def stop(self) -> tuple[dict[str, float], float, float]:
        """({part: CPU seconds}, all CPU seconds used on the machine, wall seconds)."""
        used = {}
        for name, find in self.parts.items():
            now = _cpu(find())
            used[name] = sum(value - self.before[name].get(pid, 0.0) for pid, value in now.items())
        after = psutil.cpu_times()
        busy = sum(
            getattr(after, field) - getattr(self.machine_before, field)
            for field in ("user", "system", "nice", "irq", "softirq", "steal")
            if hasattr(after, field)
        )
        return used, busy, time.monotonic() - self.started


def cpu_parts(*, server_pids: list[int], database: str, extra: dict[str, list[int]]) -> dict:
    me = os.getpid()
    parts = {
        "server processes (daphne)": lambda: [psutil.Process(pid) for pid in server_pids],
        "load client (this benchmark)": lambda: [psutil.Process(me)],
        "LLM stand-in (fake Groq)": lambda: _processes(lambda n, c: "fake_groq" in c),
        "PostgreSQL (this run's connections)": lambda: _processes(
            lambda n, c: n.startswith("postgres") and f" {database} " in f" {c} "
        ),
        "Redis (the whole server)": lambda: _processes(lambda n, c: n.startswith("redis-server")),
    }
    for name, pids in extra.items():
        parts[name] = lambda pids=pids: [psutil.Process(pid) for pid in pids]
    return parts


def cpu_table(title: str, split: tuple[dict[str, float], float, float]) -> list[str]:
    used, busy, wall = split
    cores = psutil.cpu_count() or 1
    lines = [
        f"{title} ({wall:.0f} s, {cores} cores = {cores * wall:.0f} CPU-seconds available):",
        "",
        "| part | CPU seconds | % of the machine |",
        "|---|---|---|",
    ]
    for name, seconds in used.items():
        lines.append(f"| {name} | {seconds:.1f} | {seconds * 100 / (cores * wall):.0f} % |")
    others = busy - sum(used.values())
    lines += [
        f"| everything else on the machine (other users, kernel) | {max(others, 0):.1f} | "
        f"{max(others, 0) * 100 / (cores * wall):.0f} % |",
        f"| idle | {max(cores * wall - busy, 0):.1f} | "
        f"{max(cores * wall - busy, 0) * 100 / (cores * wall):.0f} % |",
        "",
    ]
    return lines


# --- load -------------------------------------------------------------------------------------


@dataclass
class Level:
    sessions: int
    answers_per_s: float
    p50: float
    p99: float
    errors: int
    error_kinds: str


def relay_level(
    *, base: str, token: str, number: str, sessions: int, seconds: float, pause: float, ttft_ms
) -> Level:
    from relay import RelayStats, close_all, drive, open_sessions

    stats = RelayStats()

    async def phase() -> float:
        sockets = await open_sessions(
            base=base, token=token, number=number, count=sessions, stats=stats
        )
        started = time.monotonic()
        await drive(sockets, until=started + seconds, pause=pause, stats=stats)
        elapsed = time.monotonic() - started
        await close_all(sockets)
        return elapsed

    elapsed = asyncio.run(phase())
    overhead = [value - ttft_ms for value in stats.first_ms]
    kinds: dict[str, int] = {}
    for error in stats.errors:
        kind = ":".join(error.split(":")[:2])
        kinds[kind] = kinds.get(kind, 0) + 1
    return Level(
        sessions=sessions,
        answers_per_s=stats.answers / elapsed,
        p50=percentile(overhead, 50),
        p99=percentile(overhead, 99),
        errors=len(stats.errors),
        error_kinds=", ".join(f"{n} × `{k}`" for k, n in sorted(kinds.items())[:3]),
    )


def metric_total(base: str, name: str) -> float:
    """The sum of a counter's samples in the server's /metrics (all labels)."""
    import httpx

    total = 0.0
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Burst:
    attempted: int = 0
    refused_politely: int = 0
    answered: int = 0
    connection_errors: int = 0
    other: int = 0


async def new_calls_burst(*, base: str, token: str, number: str, count: int, rate: float) -> Burst:
    """`count` new calls at `rate` per second: each voice webhook either connects a session
    (asked once, then closed) or is refused; anything else is an error."""
    import httpx
    from relay import RelayStats, _ask, _open

    burst = Burst()
    stats = RelayStats()

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as http:

        async def one(index: int) -> None:
            await asyncio.sleep(index / rate)
            burst.attempted += 1
            try:
                socket = await _open(base, token, number, http)
            except RuntimeError as refused:  # the voice answer had no ConversationRelay
                burst.refused_politely += 1 if "(200)" in str(refused) else 0
                burst.other += 0 if "(200)" in str(refused) else 1
                return
            except Exception:
                burst.connection_errors += 1
                return
            try:
                await _ask(socket, "Are you open today?", stats, 30)
                burst.answered += 1
            except Exception:
                burst.connection_errors += 1
            finally:
                await socket.close()

        await asyncio.gather(*(one(i) for i in range(count)))
    return burst


def busy_line_check(*, base: str, token: str, number: str) -> bool:
    """Whether a refused call hears the busy line and is hung up (not just any answer)."""
    import uuid

    import httpx

    from calls.transports.signatures import sign

    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+15550001111", "To": number}
    url = base + "/twilio/voice"
    body = httpx.post(
        url,
        data=params,
        headers={"X-Twilio-Signature": sign(url=url, params=params, auth_token=token)},
    ).text
    return "lines are busy" in body and "<Hangup" in body and "<Connect" not in body


def overload(
    *,
    env: dict[str, str],
    token: str,
    number: str,
    limit: int,
    extra: int,
    rates: list[float],
    seconds: float,
    pause: float,
    ttft_ms: float,
) -> str:
    """The overload table: `limit` sessions held by a process that takes no more, `extra` new
    calls arriving meanwhile at each of `rates` per second (a fresh server for each)."""
    rows, polite = [], True
    for rate in rates:
        row, refused_politely = _overload_row(
            env=env,
            token=token,
            number=number,
            limit=limit,
            extra=extra,
            rate=rate,
            seconds=seconds,
            pause=pause,
            ttft_ms=ttft_ms,
        )
        rows.append(row)
        polite = polite and refused_politely
    return "\n".join(
        [
            f"### 5. Overload: one server process that takes {limit} sessions "
            f"(`LOAD_MAX_SESSIONS={limit}`), {extra} more calls arriving",
            "",
            f"{limit} relay sessions ask at a caller's rhythm (a prompt {pause:g} s after each "
            f"answer) for {seconds / 2:g} s alone, then {seconds / 2:g} s while {extra} new calls "
            "arrive (voice webhook, and the socket if one is offered). Server CPU per refusal: "
            "the server's CPU while the new calls arrive minus its CPU while alone, per call.",
            "",
            "| new calls per second | new calls | refused politely (busy line, no socket) | "
            "answered | connection errors | other failures | calls in progress: overhead p50 / "
            "p99 alone (ms) | ... while the new calls arrive (ms) | their errors | server CPU "
            "ms per refusal | dashboard events published | events lost |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"A refused call hears the busy line and is hung up: {'yes' if polite else 'NO'}. "
            "Events are counted by the server's `/metrics` (`voice_events_published_total`, "
            "`voice_events_lost_total`).",
            "",
        ]
    )


def _overload_row(
    *,
    env: dict[str, str],
    token: str,
    number: str,
    limit: int,
    extra: int,
    rate: float,
    seconds: float,
    pause: float,
    ttft_ms: float,
) -> tuple[str, bool]:
    from harness import process_cpu_seconds
    from relay import RelayStats, close_all, drive, open_sessions

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {
        **env,
        **SMALL_POOL,
        "PUBLIC_BASE_URL": base,
        "LOAD_MAX_SESSIONS": str(limit),
    }
    with daphne_server(server_env, port) as server:
        published = metric_total(base, "voice_events_published_total")
        lost = metric_total(base, "voice_events_lost_total")
        held, calm = RelayStats(), RelayStats()
        cpu: list[float] = []

        async def phase() -> Burst:
            sockets = await open_sessions(
                base=base, token=token, number=number, count=limit, stats=held
            )
            started = time.monotonic()
            cpu.append(process_cpu_seconds(server.pid))
            # The calls in progress alone for a while, then with the crowd at the door.
            await drive(sockets, until=started + seconds / 2, pause=pause, stats=calm)
            cpu.append(process_cpu_seconds(server.pid))
            driving = asyncio.create_task(
                drive(sockets, until=time.monotonic() + seconds / 2, pause=pause, stats=held)
            )
            burst = await new_calls_burst(
                base=base, token=token, number=number, count=extra, rate=rate
            )
            await driving
            cpu.append(process_cpu_seconds(server.pid))
            await close_all(sockets)
            return burst

        burst = asyncio.run(phase())
        polite = busy_line_check(base=base, token=token, number=number)
        time.sleep(2)  # the last events of the closed calls are sent
        published = metric_total(base, "voice_events_published_total") - published
        lost = metric_total(base, "voice_events_lost_total") - lost
    quiet = [value - ttft_ms for value in calm.first_ms]
    crowded = [value - ttft_ms for value in held.first_ms]
    per_refusal = ((cpu[2] - cpu[1]) - (cpu[1] - cpu[0])) * 1000 / max(1, burst.refused_politely)
    row = (
        f"| {rate:g} | {burst.attempted} | {burst.refused_politely} | {burst.answered} | "
        f"{burst.connection_errors} | {burst.other} | {percentile(quiet, 50):.0f} / "
        f"{percentile(quiet, 99):.0f} | {percentile(crowded, 50):.0f} / "
        f"{percentile(crowded, 99):.0f} | {len(held.errors) + len(calm.errors)} | "
        f"{per_refusal:.1f} | {published:.0f} | {lost:.0f} |"
    )
    return row, polite


def scale_out(
    *,
    env: dict[str, str],
    token: str,
    number: str,
    database: str,
    processes: int,
    levels: list[int],
    seconds: float,
    pause: float,
    ttft_ms: float,
    workdir: Path,
    extra_parts: dict[str, list[int]],
) -> str:
    """Answers/s at overhead p99 <= 50 ms with 1 and `processes` servers behind HAProxy, the CPU
    split at each best level, and one of the servers killed mid-call."""
    if haproxy_path() is None:
        print(HOW_TO_INSTALL)
        return f"### 6. Scale-out\n\nNot measured: {HOW_TO_INSTALL}\n"
    lines = [
        f"### 6. Scale-out: 1 and {processes} server processes behind HAProxy "
        f"(deploy/haproxy.cfg), relay sessions asking every {pause:g} s, {seconds:g} s per level",
        "",
        "| processes | sessions | answers/s | overhead p50 (ms) | overhead p99 (ms) | errors |",
        "|---|---|---|---|---|---|",
    ]
    best: dict[int, Level | None] = {}
    splits: list[str] = []
    for count in sorted({1, processes}):
        front = free_port()
        base = f"http://127.0.0.1:{front}"
        server_env = {**env, **SMALL_POOL, "PUBLIC_BASE_URL": base}
        with (
            servers(server_env, count) as started,
            haproxy(front, [port for port, _ in started], workdir) as balancer,
        ):
            pids = [process.pid for _, process in started]
            parts = cpu_parts(
                server_pids=pids,
                database=database,
                extra={**extra_parts, "HAProxy": [balancer.pid]},
            )
            best[count] = None
            best_split = last_split = None
            # Warm-up, not reported: first connections, first requests of each process.
            relay_level(
                base=base,
                token=token,
                number=number,
                sessions=5 * count,
                seconds=5,
                pause=1,
                ttft_ms=ttft_ms,
            )
            for sessions in levels:
                split = CpuSplit(parts)
                split.start()
                level = relay_level(
                    base=base,
                    token=token,
                    number=number,
                    sessions=sessions,
                    seconds=seconds,
                    pause=pause,
                    ttft_ms=ttft_ms,
                )
                measured = split.stop()
                last_split = (level, measured)
                lines.append(
                    f"| {count} | {sessions} | {level.answers_per_s:.1f} | {level.p50:.1f} | "
                    f"{level.p99:.1f} | {level.errors}"
                    + (f" ({level.error_kinds})" if level.errors else "")
                    + " |"
                )
                passing = level.errors == 0 and level.p99 <= 50
                if passing and (
                    best[count] is None or level.answers_per_s > best[count].answers_per_s
                ):
                    best[count], best_split = level, measured
                time.sleep(3)
            if best_split is not None:
                splits += cpu_table(
                    f"Where the CPU went, {count} process(es) at {best[count].sessions} sessions",
                    best_split,
                )
            elif last_split is not None:
                splits += cpu_table(
                    f"Where the CPU went, {count} process(es) at {last_split[0].sessions} "
                    "sessions (no level passed)",
                    last_split[1],
                )
    one, many = best.get(1), best.get(processes)
    lines.append("")
    summary = "Most answers/s with zero errors and overhead p99 ≤ 50 ms: " + ", ".join(
        f"{n} process(es): **{b.answers_per_s:.1f}** ({b.sessions} sessions)" if b else f"{n}: none"
        for n, b in ((1, one), (processes, many))
    )
    if one and many:
        summary += f"; ratio **{many.answers_per_s / one.answers_per_s:.2f}×**"
    lines += [summary + ".", "", *splits]
    lines += failover(env=env, token=token, number=number, workdir=workdir)
    return "\n".join(lines)


def failover(*, env: dict[str, str], token: str, number: str, workdir: Path) -> list[str]:
    """Two servers behind HAProxy, 20 calls on each; one server is killed mid-call."""
    from django_scopes import scopes_disabled
    from relay import RelayStats, _ask, close_all, open_sessions

    from calls.models import Call
    from calls.services import calls_close_orphaned

    front = free_port()
    base = f"http://127.0.0.1:{front}"
    server_env = {**env, **SMALL_POOL, "PUBLIC_BASE_URL": base, "SERVER_HEARTBEAT_SECONDS": "1"}
    ttl = int(env.get("SERVER_HEARTBEAT_TTL", "20"))
    with servers(server_env, 2) as started, haproxy(front, [p for p, _ in started], workdir):
        victim = started[0][1]
        before, after = RelayStats(), RelayStats()
        killed_at = [0.0, 0.0]  # when the server was killed, and when the new calls were done

        async def phase() -> tuple[int, int, int]:
            sockets = await open_sessions(
                base=base, token=token, number=number, count=40, stats=before
            )
            for socket in sockets:
                await _ask(socket, "Hello?", before, 20)
            victim.kill()
            killed_at[0] = time.monotonic()
            alive = await _answering(sockets, after)
            fresh = await open_sessions(
                base=base, token=token, number=number, count=20, stats=after
            )
            answered = await _answering(fresh, after)
            killed_at[1] = time.monotonic()
            await close_all(sockets + fresh)
            return len(sockets), alive, answered

        opened, alive, answered = asyncio.run(phase())
        victim.wait(timeout=10)
        new_seconds = killed_at[1] - killed_at[0]
        time.sleep(max(ttl + 1 - (time.monotonic() - killed_at[0]), 0))
        closed = calls_close_orphaned()
        with scopes_disabled():  # the killed process' calls (its server id names its pid)
            swept = Call.objects.filter(
                error="the server process holding the call stopped",
                server__contains=f":{victim.pid}:",
            ).count()
    return [
        "Failover: 2 processes behind HAProxy, 40 relay calls opened through it, then one process "
        "killed (SIGKILL) mid-call:",
        "",
        "| calls before | still answering after the kill | new calls after the kill | new calls "
        "answered | closed by the sweeper (any stopped process) | the killed process' calls "
        "closed as stopped |",
        "|---|---|---|---|---|---|",
        f"| {opened} | {alive} | 20 | {answered} (within {new_seconds:.1f} s) | {closed} | "
        f"{swept} |",
        "",
        "The calls lost are the killed process' own: the others go on, and HAProxy's `/readyz` "
        "check sends new calls to the survivor.",
        "",
    ]


async def _answering(sockets: list, stats) -> int:
    """How many of `sockets` answer a question (all asked at once)."""
    from relay import _ask

    async def one(socket) -> bool:
        try:
            await _ask(socket, "Still there?", stats, 10)
        except Exception:
            return False
        return True

    return sum(await asyncio.gather(*(one(socket) for socket in sockets)))
