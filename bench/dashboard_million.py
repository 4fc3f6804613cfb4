"""Time the dashboard with a million stored turns, on a throwaway PostgreSQL database.

    .venv/bin/python bench/dashboard_million.py --database-url postgres://postgres@127.0.0.1:5432/postgres

Creates `<name>_dashbench` next to the given database, migrates it, bulk-loads calls and turns
with COPY (~106,000 calls over 30 days, 10 turns each except the 6 % rejected ones, across 20
tenants; tenant 0 carries 5/24 of the load), builds the rollups (`manage.py rollup_analytics
--all`, timed), then times the full Django request stack (test Client: middleware, session,
views, templates) for `/dashboard/` and `/dashboard/figures/` as platform staff (every tenant)
and as the busiest tenant's admin, for each period. Prints median and worst of `--runs` runs in
ms: "raw" with the report cache and the rollups off (every request aggregates all the calls and
turns of the period: the dashboard before rollups), "cold" with the report cache off and the
rollups on (closed hours from the rollups, the partial hours at the edges from the raw rows),
"cached" with both on (ANALYTICS_CACHE_SECONDS, what viewers normally get). `--no-raw` skips
the slow first column. The database is dropped at the end unless `--keep`; `--reuse` uses a kept
one (migrated again and its rollups rebuilt up to now).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def _admin_url(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="use an already loaded database")
    parser.add_argument("--no-raw", action="store_true", help="skip timing without rollups")
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        sys.exit("--database-url must be a PostgreSQL URL (the benchmark is about PostgreSQL)")

    import psycopg

    base = urlsplit(args.database_url)
    bench_name = (base.path.strip("/") or "postgres") + "_dashbench"
    admin = psycopg.connect(_admin_url(args.database_url, "postgres"), autocommit=True)
    if not args.reuse:
        admin.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
        admin.execute(f'CREATE DATABASE "{bench_name}"')
    os.environ["DATABASE_URL"] = _admin_url(args.database_url, bench_name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["*"]
    try:
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
        if not args.reuse:
            load(args.turns)
        started = time.monotonic()
        call_command("rollup_analytics", "--all")
        print(f"rollups built in {time.monotonic() - started:.1f} s")
        report(args.runs, raw=not args.no_raw)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin.execute(f'DROP DATABASE IF EXISTS "{bench_name}" WITH (FORCE)')
        admin.close()


def _copy(cursor, model, rows) -> None:
    fields = model._meta.concrete_fields
    columns = ", ".join(f'"{f.column}"' for f in fields)
    with cursor.copy(f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([row.get(f.attname, _default(f)) for f in fields])


def _default(field):
    if field.has_default():
        value = field.get_default()
        return json.dumps(value) if field.get_internal_type() == "JSONField" else value
    return None


def load(total_turns: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone
    from django_scopes import scopes_disabled

    from assistants.models import AssistantConfig
    from calls.models import Call, Turn
    from tenants.models import Membership, Role, Tenant

    started = time.monotonic()
    rng = random.Random(5)
    now = timezone.now()
    with scopes_disabled():
        tenants = [Tenant.objects.create(name=f"Tenant {i}", slug=f"t{i}") for i in range(20)]
        assistants = {
            t.id: [
                AssistantConfig.objects.create(
                    tenant=t, name=f"{t.name} {kind}", system_prompt="Hi.", greeting="Hello."
                )
                for kind in ("day", "night")
            ]
            for t in tenants
        }
    user_model = get_user_model()
    user_model.objects.create_superuser("staff", "staff@example.com", "bench-password-1")
    admin = user_model.objects.create_user("admin0", "admin0@example.com", "bench-password-1")
    Membership.objects.create(user=admin, tenant=tenants[0], role=Role.ADMIN)

    turns_per_call = 10
    rejected_share = 0.06  # rejected calls have no turns
    n_calls = round(total_turns / (turns_per_call * (1 - rejected_share)))
    weights = [5] + [1] * 19  # tenant 0: 5/24 of everything
    calls, turns = [], []
    statuses = [Call.Status.COMPLETED] * 90 + [Call.Status.FAILED] * 4 + [Call.Status.REJECTED] * 6
    for i in range(n_calls):
        tenant = rng.choices(tenants, weights)[0]
        assistant = rng.choice(assistants[tenant.id])
        live = i >= n_calls - 30
        at = now - timedelta(
            seconds=rng.uniform(60, 3000) if live else rng.uniform(3600, 30 * 86400)
        )
        status = Call.Status.IN_PROGRESS if live else rng.choice(statuses)
        call_id = uuid.uuid4()
        calls.append(
            {
                "id": call_id,
                "tenant_id": tenant.id,
                "assistant_id": assistant.id,
                "config_snapshot": json.dumps({"name": assistant.name}),
                "call_sid": f"CA{call_id.hex}",
                "from_number": f"+1555{rng.randrange(10**7):07d}",
                "to_number": "+14155550100",
                "direction": "inbound",
                "status": status,
                "mode": "gather",
                "started_at": at,
                "answered_at": at if status != Call.Status.REJECTED else None,
                "ended_at": None if live else at + timedelta(seconds=120),
                "duration_seconds": None if live else rng.randrange(10, 600),
                "outcome": "" if live else ("completed" if status == "completed" else status),
                "error": "",
                "silent_prompts": 0,
                "status_sequence": -1,
            }
        )
        if status == Call.Status.REJECTED:
            continue
        for seq in range(1, turns_per_call + 1):
            role = "caller" if seq % 2 else "assistant"
            row = {
                "id": uuid.uuid4(),
                "tenant_id": tenant.id,
                "call_id": call_id,
                "sequence": seq,
                "role": role,
                "text": "Could you tell me when you are open on Saturday?",
                "interrupted": False,
                "heard_text": "",
                "created_at": at + timedelta(seconds=seq * 6),
                "model_used": "",
                "cache_hit": False,
                "source": "",
                "error": "",
                "fallbacks": "[]",
                "audio_urls": "[]",
            }
            if role == "assistant":
                ftt = int(rng.lognormvariate(5.8, 0.4))
                row.update(
                    llm_first_token_ms=ftt,
                    llm_done_ms=ftt + 400,
                    first_audio_ms=ftt + 500,
                    response_sent_ms=ftt + 700 + rng.randrange(300),
                    tokens_in=400,
                    tokens_out=60,
                    model_used="llama-3.3-70b-versatile",
                    source="llm",
                    cache_hit=rng.random() < 0.1,
                    fallbacks='["llama-3.1-8b-instant"]' if rng.random() < 0.03 else "[]",
                    error="timeout" if rng.random() < 0.01 else "",
                )
            turns.append(row)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        _copy(raw, Call, calls)
        _copy(raw, Turn, turns)
        cursor.execute("ANALYZE")
    print(
        f"loaded {len(calls):,} calls and {len(turns):,} turns in {time.monotonic() - started:.1f} s"
    )


def _time(client, url: str, runs: int) -> tuple[float, float]:
    assert client.get(url).status_code == 200  # warm-up (and, when cached, the cache fill)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    return statistics.median(times), max(times)


def report(runs: int, *, raw: bool = True) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client
    from django_scopes import scopes_disabled

    from analytics.models import HourlyStats
    from calls.models import Turn

    with scopes_disabled():
        print(
            f"turns stored: {Turn.objects.count():,}; hourly rollup rows: "
            f"{HourlyStats.objects.count():,}"
        )
    users = get_user_model().objects
    who = {
        "staff (all tenants)": users.get(username="staff"),
        "tenant admin": users.get(username="admin0"),
    }
    rollup_seconds = settings.ANALYTICS_ROLLUP_SECONDS
    print(
        f"{'viewer':22} {'url':32} {'raw median/worst ms':>20} {'cold median/worst ms':>21} "
        f"{'cached median/worst ms':>23}"
    )
    for label, user in who.items():
        client = Client()
        client.force_login(user)
        for period in ("today", "7d", "30d"):
            for path in ("/dashboard/", "/dashboard/figures/"):
                url = f"{path}?period={period}"
                settings.ANALYTICS_CACHE_SECONDS = 0
                settings.ANALYTICS_ROLLUP_SECONDS = 0  # the selectors then ignore the rollups
                without = _time(client, url, runs) if raw else (float("nan"),) * 2
                settings.ANALYTICS_ROLLUP_SECONDS = rollup_seconds
                cold = _time(client, url, runs)
                settings.ANALYTICS_CACHE_SECONDS = 15
                cache.clear()
                warm = _time(client, url, runs)
                print(
                    f"{label:22} {url:32} {without[0]:11.0f} /{without[1]:6.0f} "
                    f"{cold[0]:12.0f} /{cold[1]:6.0f} {warm[0]:14.0f} /{warm[1]:6.0f}"
                )


if __name__ == "__main__":
    main()
