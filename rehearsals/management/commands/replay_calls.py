"""Replay an assistant's recorded calls against a version or the draft, and print the report."""

from __future__ import annotations

import datetime as dt
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_scopes import scope

from rehearsals import replay, scenarios
from rehearsals.management.commands.run_scenarios import assistant_named
from rehearsals.models import ReplayRun
from rehearsals.services import replay_begin


def _moment(value: str | None):
    if not value:
        return None
    try:
        moment = parse_datetime(value)
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"Not a date or time: {value!r} (e.g. 2026-11-27 or 2026-11-27T09:00Z)")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt.UTC)


def _call_ids(values: list[str]) -> tuple[str, ...]:
    try:
        return replay.call_ids_parse(values)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = (
        "Replay recorded calls of an assistant against a version or the draft on the Celery "
        "workers; with --wait, print the report when it is done."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs):
        # --version names the assistant's version here, not Django's.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--assistant", required=True, help="The assistant's id (or name).")
        parser.add_argument("--version", default="draft", help='A number, "draft" or "published".')
        parser.add_argument("--since", help="Calls started at or after (date or ISO time).")
        parser.add_argument("--until", help="Calls started before (date or ISO time).")
        parser.add_argument("--outcome", default="", help="Only calls with this outcome.")
        parser.add_argument("--success", choices=["yes", "no"], help="The analysis' verdict.")
        parser.add_argument("--call", action="append", default=[], help="A call id (repeat).")
        parser.add_argument("--limit", type=int, default=0, help="At most this many calls.")
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--budget-tokens", type=int, default=None)
        parser.add_argument("--wait", action="store_true", help="Wait and print the report.")

    def handle(self, *args, **options) -> None:
        assistant = assistant_named(options["assistant"])
        success = {"yes": True, "no": False}.get(options["success"] or "")
        selection = replay.Selection(
            since=_moment(options["since"]),
            until=_moment(options["until"]),
            outcome=options["outcome"],
            success=success,
            call_ids=_call_ids(options["call"]),
            limit=options["limit"],
        )
        with scope(tenant=assistant.tenant_id):
            try:
                _, version, _ = scenarios.candidate_named(
                    assistant=assistant, name=options["version"]
                )
                run = replay_begin(
                    assistant=assistant,
                    version=version,
                    selection=selection,
                    concurrency=options["concurrency"],
                    budget_tokens=options["budget_tokens"],
                )
            except (LookupError, replay.NothingToReplay) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"Replay {run.id}: {run.calls.count()} calls on {run.candidate_label}"
            )
            if not options["wait"]:
                return
            while run.status not in ReplayRun.FINAL:
                time.sleep(0.5)
                run.refresh_from_db()
        self._print(run)

    def _print(self, run: ReplayRun) -> None:
        report = run.report
        self.stdout.write(f"{run.get_status_display()}: {run.message}")
        if not report:
            return
        latency = report["latency_ms"]
        self.stdout.write(
            f"turns changed: {report['turns_changed']} of {report['turns']}\n"
            f"latency p50/p90 ms: {latency['original']['p50']}/{latency['original']['p90']} "
            f"before, {latency['candidate']['p50']}/{latency['candidate']['p90']} after\n"
            f"cost ({report['currency']}): {report['cost']['original']} before, "
            f"{report['cost']['candidate']} after"
        )
