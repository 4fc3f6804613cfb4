"""Build or rebuild the dashboard's rollups: `manage.py rollup_analytics [--since WHEN | --all]`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from analytics.services import RollupRun, hourly_stats_backfill, hourly_stats_refresh


def parse_since(value: str, *, now: datetime) -> datetime:
    """`48h`, `30d` (that long ago), an ISO date (midnight UTC) or an ISO date-time (UTC unless
    it names its offset)."""
    if match := re.fullmatch(r"(\d+)([hd])", value.strip()):
        amount, unit = int(match[1]), match[2]
        return now - (timedelta(hours=amount) if unit == "h" else timedelta(days=amount))
    try:
        at = parse_datetime(value)
        if at is None and (day := parse_date(value)) is not None:
            at = datetime(day.year, day.month, day.day)
    except ValueError:
        at = None
    if at is None:
        raise CommandError(f"--since {value!r}: use e.g. 48h, 30d, 2026-03-01 or 2026-03-01T12:00")
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Recompute the dashboard's hourly rollups. Without options: one refresh, as the beat "
        "task does every ANALYTICS_ROLLUP_SECONDS (recent hours, calls that ended, and a day "
        "of older history). --since/--all: recompute every hour from then up to now, newest "
        "first, a day per transaction; the dashboard uses each day as soon as it is done."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--since", help="48h, 30d, an ISO date or date-time (UTC)")
        which.add_argument(
            "--all", action="store_true", dest="everything", help="since the oldest call or turn"
        )

    def handle(self, *args, since: str | None, everything: bool, verbosity: int, **options) -> None:
        now = timezone.now()
        if since is None and not everything:
            run = hourly_stats_refresh(now=now)
        else:

            def progress(start: datetime, end: datetime, rows: int) -> None:
                if verbosity >= 2:
                    span = f"{start:%Y-%m-%d %H:00} .. {end:%Y-%m-%d %H:00}"
                    self.stdout.write(f"  {span}: {rows} rows")

            first = parse_since(since, now=now) if since else None
            run = hourly_stats_backfill(since=first, now=now, progress=progress)
        self.stdout.write(self._summary(run))

    @staticmethod
    def _summary(run: RollupRun) -> str:
        covered = (
            f"{run.covered_from:%Y-%m-%d %H:00} to {run.covered_until:%Y-%m-%d %H:00} UTC"
            if run.covered_from and run.covered_until and run.covered_from < run.covered_until
            else "nothing yet"
        )
        return f"Recomputed {run.hours} hours ({run.rows} rows). Rollups cover {covered}."
