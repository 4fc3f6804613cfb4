"""Campaign dialling: the dial rate one Celery worker sustains, and the scheduling delay (from
the moment a contact is due to Twilio receiving its call).

    .venv/bin/python bench/campaigns.py [--contacts 500] [--due 200] [--spread 20] [--tick 5]

Starts everything itself against PostgreSQL and Redis (`BENCH_DATABASE_URL`, `BENCH_REDIS_URL`):
the Twilio stand-in in this process (`devtools/fake_twilio.py`, every call answered), daphne
serving the webhooks, and one Celery worker with beat inside it. Two runs, each a campaign of
its own:

1. dial rate: `--contacts` contacts due at once, limits out of the way (calls per second and
   concurrent calls far above what one dialler reaches): calls created per second at Twilio;
2. scheduling delay: `--due` contacts falling due one by one over `--spread` seconds (as
   retries and calling windows make them), with CAMPAIGN_TICK_SECONDS = `--tick`: Twilio's
   receipt of each call minus its contact's due time, p50/p99.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    bench_tenant,
    configure_environment,
    create_database,
    daphne_server,
    free_port,
    machine,
    percentile,
    python_speed_ns,
)

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = uuid.uuid4().hex


def _campaign(*, tenant, assistant, number, contacts: int, due_over: float, prefix: int):
    """A running campaign whose contacts fall due evenly over `due_over` seconds from now."""
    import datetime as dt

    from django.utils import timezone
    from django_scopes import scopes_disabled

    from campaigns.models import Campaign, Contact

    now = timezone.now()
    with scopes_disabled():
        campaign = Campaign.objects.create(
            tenant=tenant,
            name=f"Bench {prefix}",
            assistant=assistant,
            phone_number=number,
            window_start=dt.time(0, 0),
            window_end=dt.time(23, 59, 59),
            window_days="1234567",
            max_concurrent=500,
            calls_per_second=10_000,
            max_attempts=1,
        )
        step = due_over / max(contacts, 1)
        Contact.objects.bulk_create(
            Contact(
                tenant=tenant,
                campaign=campaign,
                number=f"+1{prefix}{i:07d}",
                next_attempt_at=now + timedelta(seconds=i * step),
            )
            for i in range(contacts)
        )
        due = dict(
            Contact.objects.filter(campaign=campaign).values_list("number", "next_attempt_at")
        )
        Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)
    return due


def _wait_for(fake, numbers: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        placed = {call.to for call in list(fake.calls.values())}
        if numbers <= placed:
            return
        time.sleep(0.2)
    raise SystemExit(f"only {len(numbers & placed)} of {len(numbers)} calls placed in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--due", type=int, default=200)
    parser.add_argument("--spread", type=float, default=20.0)
    parser.add_argument("--tick", type=float, default=5.0)
    options = parser.parse_args()

    from devtools.fake_twilio import FakeTwilioServer

    fake = FakeTwilioServer(ring_seconds=0.01, talk_seconds=0.0).start()
    fake.add_account(ACCOUNT_SID, AUTH_TOKEN)
    port = free_port()
    env = configure_environment(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_BASE_URL=fake.base_url,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        CAMPAIGN_TICK_SECONDS=str(options.tick),
        CAMPAIGN_MAX_CALLS_PER_SECOND="1000",
    )
    import django

    django.setup()
    create_database()
    from devtools.testing import start_celery_worker, stop_celery_worker, wait_until_ready

    tenant, assistant, number = bench_tenant(tts_engine="say", generous_limits=True)
    speed = python_speed_ns()
    workdir = Path(tempfile.mkdtemp(prefix="bench-campaigns-"))
    with daphne_server(env, port):
        worker = start_celery_worker(
            env={**os.environ, **env},
            queue=env["CELERY_QUEUE"],
            log_path=workdir / "worker.log",
            beat_schedule=workdir / "beat",
        )
        try:
            wait_until_ready(worker)
            burst = _campaign(
                tenant=tenant,
                assistant=assistant,
                number=number,
                contacts=options.contacts,
                due_over=0,
                prefix=415,
            )
            _wait_for(fake, set(burst), timeout=options.contacts)
            created = sorted(c.created_at for c in fake.calls.values() if c.to in burst)
            rate = (len(created) - 1) / (created[-1] - created[0]).total_seconds()
            trickle = _campaign(
                tenant=tenant,
                assistant=assistant,
                number=number,
                contacts=options.due,
                due_over=options.spread,
                prefix=628,
            )
            _wait_for(fake, set(trickle), timeout=options.spread + 10 * options.tick + 60)
            delays = [
                (call.created_at - trickle[call.to]).total_seconds() * 1000
                for call in fake.calls.values()
                if call.to in trickle
            ]
        finally:
            stop_celery_worker(worker)
    fake.wait_idle(timeout=30)
    fake.stop()
    twice = [n for n in {*burst, *trickle} if fake.creates_to(n) != 1]
    print(f"## Campaign dialling\n\n{machine()}; Python speed check {speed:.1f} ns/iteration.\n")
    print(
        f"- dial rate, one worker (one dialler per tenant), {options.contacts} contacts due at "
        f"once: **{rate:.1f} calls/s** created at Twilio"
    )
    print(
        f"- scheduling delay, {options.due} contacts falling due over {options.spread:g} s, "
        f"CAMPAIGN_TICK_SECONDS={options.tick:g}: p50 **{percentile(delays, 50):.0f} ms**, "
        f"p99 **{percentile(delays, 99):.0f} ms**, max {max(delays):.0f} ms"
    )
    print(f"- contacts called other than once: {len(twice)}; webhook errors: {len(fake.errors)}")


if __name__ == "__main__":
    main()
