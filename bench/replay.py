"""Replay throughput: recorded calls said again to a draft, with the fake Groq server as the LLM.

    .venv/bin/python bench/replay.py [--calls 1000] [--turns 3] [--lanes 4] [--ttft-ms 20]

Starts everything itself against PostgreSQL and Redis (`BENCH_DATABASE_URL`, `BENCH_REDIS_URL`):
the fake Groq server in a process of its own (time to first token `--ttft-ms`, 2000 tokens/s,
~30-token answers) and one Celery worker (threads pool). `--calls` recorded calls of `--turns`
caller turns each are written straight to the database (with recorded answers, tokens and
timings, as a live call leaves them), then:

1. one lane in this process (no Celery): turns per second of one lane, on 50 calls;
2. the whole replay on the worker, `--lanes` lanes: time from starting the run to its report,
   and turns per second of the worker.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    bench_tenant,
    celery_worker,
    configure_environment,
    create_database,
    fake_groq_process,
    machine,
    python_speed_ns,
)

LINES = (
    "Can someone fix my boiler this week?",
    "How much does a visit cost?",
    "What are your opening hours on Saturday?",
    "Do you also repair radiators?",
    "Thanks, that is all for now.",
)


def record_calls(*, tenant, assistant, version, calls: int, turns: int) -> None:
    """`calls` ended calls of the assistant, each with `turns` caller turns and their answers."""
    from django.utils import timezone
    from django_scopes import scopes_disabled

    from calls.models import Call, Turn

    started = timezone.now() - timedelta(days=1)
    with scopes_disabled():
        made = Call.objects.bulk_create(
            Call(
                tenant=tenant,
                assistant=assistant,
                version=version,
                config_snapshot=version.config,
                call_sid="CABENCH" + uuid.uuid4().hex,
                status=Call.Status.COMPLETED,
                outcome=Call.Outcome.COMPLETED,
                mode=Call.Mode.RELAY,
                started_at=started + timedelta(seconds=n),
                ended_at=started + timedelta(seconds=n + 60),
            )
            for n in range(calls)
        )
        rows = []
        for call in made:
            for index in range(turns):
                line = LINES[index % len(LINES)]
                rows.append(
                    Turn(
                        tenant=tenant,
                        call=call,
                        sequence=2 * index + 1,
                        role="caller",
                        text=line,
                        created_at=started,
                    )  # fmt: skip
                )
                rows.append(
                    Turn(
                        tenant=tenant,
                        call=call,
                        sequence=2 * index + 2,
                        role="assistant",
                        text=f"The recorded answer to {line.lower()}",
                        source="llm",
                        model_used=assistant.model,
                        tokens_in=120,
                        tokens_out=30,
                        llm_first_token_ms=300 + index,
                        response_sent_ms=320 + index,
                        created_at=started,
                    )
                )
        Turn.objects.bulk_create(rows, batch_size=2000)


def wait_for(run, timeout: float = 3600.0) -> None:
    from django_scopes import scopes_disabled

    from rehearsals.models import ReplayRun

    deadline = time.monotonic() + timeout
    with scopes_disabled():
        while run.status not in ReplayRun.FINAL:
            if time.monotonic() > deadline:
                raise RuntimeError("the replay did not finish in time")
            time.sleep(0.25)
            run.refresh_from_db()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--ttft-ms", type=float, default=20.0)
    parser.add_argument("--in-process-calls", type=int, default=50)
    args = parser.parse_args()

    speed = python_speed_ns()
    with fake_groq_process(ttft_ms=args.ttft_ms, tps=2000, answer_tokens=30) as (groq_url, _):
        env = configure_environment(
            GROQ_BASE_URL=groq_url, GROQ_API_KEY="bench", REPLAY_MAX_CONCURRENCY="16"
        )
        import django

        django.setup()
        create_database()
        from django.conf import settings
        from django_scopes import scopes_disabled

        from assistants import versions
        from rehearsals import replay
        from rehearsals.services import replay_begin

        settings.REPLAY_MAX_CONCURRENCY = 16
        tenant, assistant, _ = bench_tenant(mode="relay", tts_engine="say")
        with scopes_disabled():
            version = versions.version_publish(assistant=assistant, note="bench")
            assistant.system_prompt = "You are a plumber's receptionist. Be brief."
            assistant.save()
        total = args.calls + args.in_process_calls
        started = time.perf_counter()
        record_calls(
            tenant=tenant, assistant=assistant, version=version, calls=total, turns=args.turns
        )
        print(f"{total} calls recorded in {time.perf_counter() - started:.1f} s")

        with scopes_disabled():
            calls = replay.calls_select(assistant=assistant, selection=replay.Selection())
            first = tuple(str(call.id) for call in calls[: args.in_process_calls])
            rest = tuple(str(call.id) for call in calls[args.in_process_calls :])
            run = replay.replay_start(
                assistant=assistant,
                version=None,
                selection=replay.Selection(call_ids=first),
                concurrency=1,
                budget_tokens=10**9,
            )
            started = time.perf_counter()
            replay.replay_lane_run(run=run)
            lane_seconds = time.perf_counter() - started
            run.refresh_from_db()
        lane_turns = run.report["turns"]

        with celery_worker(env, concurrency=args.lanes):
            with scopes_disabled():
                started = time.perf_counter()
                big = replay_begin(
                    assistant=assistant,
                    version=None,
                    selection=replay.Selection(call_ids=rest, limit=len(rest)),
                    concurrency=args.lanes,
                    budget_tokens=10**9,
                )
            wait_for(big)
            worker_seconds = time.perf_counter() - started
        report = big.report

    print(f"\n{machine()}; Python speed check {speed:.0f} ns/iteration")
    print(f"fake LLM: time to first token {args.ttft_ms:.0f} ms, 2000 tokens/s, ~30-token answers")
    print("| measure | calls | turns | seconds | turns/s |")
    print("|---|---|---|---|---|")
    print(
        f"| one lane, in process | {args.in_process_calls} | {lane_turns} | {lane_seconds:.1f} "
        f"| {lane_turns / lane_seconds:.1f} |"
    )
    print(
        f"| one worker, {args.lanes} lanes | {report['calls']['done']} | {report['turns']} "
        f"| {worker_seconds:.1f} | {report['turns'] / worker_seconds:.1f} |"
    )
    latency = report["latency_ms"]["candidate"]
    print(
        f"\nstatus {big.status}; candidate latency p50 {latency['p50']} ms, p90 {latency['p90']}"
        f" ms; turns changed {report['turns_changed']} of {report['turns']}"
    )


if __name__ == "__main__":
    main()
