"""The periods the figures are shown for (today, 7 days, 30 days), in a tenant's time zone."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

PERIODS = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days"}
DEFAULT_PERIOD = "today"


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    start: datetime
    end: datetime
    tz: zoneinfo.ZoneInfo

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def period_for(key: str, *, now: datetime | None = None, tz_name: str = "UTC") -> Period:
    """The period named `key` (today, 7d, 30d; anything else means today) ending now.

    "today" starts at midnight in `tz_name`; 7d and 30d are rolling windows.
    """
    if key not in PERIODS:
        key = DEFAULT_PERIOD
    try:
        tz = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = zoneinfo.ZoneInfo("UTC")
    now = now or timezone.now()
    if key == "today":
        start = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = now - timedelta(days=7 if key == "7d" else 30)
    return Period(key=key, label=PERIODS[key], start=start, end=now, tz=tz)
