"""Webhook deliveries, measured end to end with a real Celery worker and a receiver on loopback.

    .venv/bin/python bench/webhooks.py [--calls 50] [--burst 1000] [--flaky 500] [--concurrency 8]

1. `--calls` calls end at the same moment (one thread each); time from each call's end (its
   transaction committed) to its `call.ended` arriving at the receiver: p50 / p99.
2. `--burst` calls end in one transaction: deliveries per second one worker process sustains
   (first to last arrival).
3. `--flaky` calls end while the receiver answers 500 to half of the requests (at random): every
   event must arrive (zero lost), each with one `webhook-id` however often it was sent. The retry
   schedule has the default number of attempts (11) with its delays shortened to seconds.

Uses PostgreSQL and Redis (BENCH_DATABASE_URL, BENCH_REDIS_URL; a database of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    celery_worker,
    configure_environment,
    create_database,
    machine,
    percentile,
    python_speed_ns,
)

SHORT_SCHEDULE = "0.2,0.4,0.8,1.6,2,2,2,2,2,2"  # the default's 10 retries, in seconds


class Receiver:
    """An aiohttp server in a thread: records when each webhook-id first arrived (2xx)."""

    def __init__(self) -> None:
        self.fail_rate = 0.0
        self.arrived: dict[str, tuple[float, dict]] = {}
        self.requests = 0
        self.answers: dict[int, int] = defaultdict(int)
        self.port = 0
        self._random = random.Random(17)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        from aiohttp import web

        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests += 1
            if self._random.random() < self.fail_rate:
                self.answers[500] += 1
                return web.Response(status=500, text="try again")
            self.answers[200] += 1
            self.arrived.setdefault(request.headers["webhook-id"], (time.time(), json.loads(body)))
            return web.Response(text="ok")

        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/hooks", hook)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return self

    def arrivals_by_call(self) -> dict[str, float]:
        return {body["data"]["call"]["id"]: at for at, body in list(self.arrived.values())}


def setup(receiver: Receiver):
    from django_scopes import scopes_disabled

    from bench.harness import bench_tenant
    from insights.models import AnalysisPlan
    from webhooks.services import endpoint_create

    tenant, assistant, number = bench_tenant(generous_limits=True)
    with scopes_disabled():
        # Deliveries are measured here, not analysis (which has no LLM in this benchmark).
        AnalysisPlan.objects.create(tenant=tenant, assistant=assistant, enabled=False)
        endpoint_create(tenant=tenant, url=receiver.url, events=["call.ended"])
    return tenant, number


def start_calls(tenant, number, count: int, tag: str) -> list:
    from django_scopes import scope

    from calls.services import call_start

    with scope(tenant=tenant.id):
        return [
            call_start(
                phone_number=number,
                call_sid=f"CA{tag}{i:06d}{time.time_ns()}",
                from_number="+15551230000",
                to_number=number.number,
            )[0]
            for i in range(count)
        ]


def wait_for(receiver: Receiver, call_ids: list[str], timeout: float) -> dict[str, float]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        arrivals = receiver.arrivals_by_call()
        if all(call_id in arrivals for call_id in call_ids):
            return arrivals
        time.sleep(0.01)
    return receiver.arrivals_by_call()


def calls_ending_together(tenant, number, receiver: Receiver, count: int) -> list[float]:
    from django.db import connection, transaction
    from django_scopes import scope

    from calls.services import call_finish

    calls = start_calls(tenant, number, count, "T")
    ended: dict[str, float] = {}
    barrier = threading.Barrier(count)

    def end(call) -> None:
        def committed() -> None:  # runs first of the commit's callbacks, before the queueing
            ended[str(call.id)] = time.time()

        barrier.wait()
        with scope(tenant=tenant.id), transaction.atomic():
            transaction.on_commit(committed)
            call_finish(call=call)
        connection.close()

    threads = [threading.Thread(target=end, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    arrivals = wait_for(receiver, list(ended), timeout=120)
    return [(arrivals[c] - ended[c]) * 1000 for c in ended if c in arrivals]


def burst(tenant, number, receiver: Receiver, count: int) -> tuple[float, int]:
    from django.db import transaction
    from django_scopes import scope

    from calls.services import call_finish

    calls = start_calls(tenant, number, count, "B")
    with scope(tenant=tenant.id), transaction.atomic():
        for call in calls:
            call_finish(call=call)
    committed = time.time()
    arrivals = wait_for(receiver, [str(c.id) for c in calls], timeout=600)
    got = [arrivals[str(c.id)] for c in calls if str(c.id) in arrivals]
    return len(got) / (max(got) - committed), len(got)


def flaky(tenant, number, receiver: Receiver, count: int) -> dict:
    from django.db import transaction
    from django_scopes import scope, scopes_disabled

    from calls.services import call_finish
    from webhooks.models import Delivery

    receiver.fail_rate = 0.5
    requests_before = receiver.requests
    calls = start_calls(tenant, number, count, "F")
    with scope(tenant=tenant.id), transaction.atomic():
        for call in calls:
            call_finish(call=call)
    ids = [str(c.id) for c in calls]
    arrivals = wait_for(receiver, ids, timeout=300)
    receiver.fail_rate = 0.0
    with scopes_disabled():
        deliveries = Delivery.objects.filter(event__call_id__in=ids)
        deadline = time.time() + 30  # the last attempts' outcomes are being recorded
        while deliveries.filter(status=Delivery.Status.PENDING).exists() and time.time() < deadline:
            time.sleep(0.1)
        statuses = defaultdict(int)
        for status in deliveries.values_list("status", flat=True):
            statuses[status] += 1
    return {
        "events": count,
        "arrived": sum(1 for c in ids if c in arrivals),
        "requests": receiver.requests - requests_before,
        "statuses": dict(statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--flaky", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    env = configure_environment(
        OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8",
        WEBHOOK_RETRY_SCHEDULE=SHORT_SCHEDULE,
        WEBHOOK_RETRY_JITTER="0.2",
        WEBHOOK_SWEEP_SECONDS="5",
        DB_POOL_MAX_SIZE="60",  # the calls ending together, one thread each
    )
    import django

    django.setup()
    create_database()
    speed = python_speed_ns()
    receiver = Receiver().start()
    tenant, number = setup(receiver)
    with celery_worker(env, concurrency=args.concurrency):
        latencies = calls_ending_together(tenant, number, receiver, args.calls)
        rate, delivered = burst(tenant, number, receiver, args.burst)
        outcome = flaky(tenant, number, receiver, args.flaky)

    print(f"{machine()}; Python speed check {speed:.0f} ns per iteration")
    print(
        f"{args.calls} calls ending together, call end -> call.ended delivered: "
        f"p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms, "
        f"max {max(latencies):.0f} ms ({len(latencies)}/{args.calls} arrived)"
    )
    print(
        f"one worker (threads, concurrency {args.concurrency}): {rate:.0f} deliveries/s "
        f"({delivered}/{args.burst} delivered)"
    )
    print(
        f"receiver failing half the requests: {outcome['arrived']}/{outcome['events']} events "
        f"arrived ({outcome['events'] - outcome['arrived']} lost) after {outcome['requests']} "
        f"requests; deliveries {outcome['statuses']}; receiver saw "
        f"{receiver.answers[200] - len(receiver.arrived)} duplicate webhook-ids in all"
    )


if __name__ == "__main__":
    main()
