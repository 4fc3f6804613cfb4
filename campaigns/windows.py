"""Calling windows: the hours and weekdays a campaign may call, in each contact's time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from campaigns.models import Campaign


def _zone(name: str, campaign: Campaign) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or campaign.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(campaign.timezone)


def in_window(campaign: Campaign, zone_name: str, now: dt.datetime) -> bool:
    """Whether `now` is inside the campaign's window where the contact lives."""
    local = now.astimezone(_zone(zone_name, campaign))
    return (
        str(local.isoweekday()) in campaign.window_days
        and campaign.window_start <= local.time() < campaign.window_end
    )


def next_opening(campaign: Campaign, zone_name: str, now: dt.datetime) -> dt.datetime | None:
    """When the window next opens for the contact (None: the campaign names no weekday)."""
    zone = _zone(zone_name, campaign)
    local = now.astimezone(zone)
    for days in range(8):
        day = local.date() + dt.timedelta(days=days)
        if str(day.isoweekday()) not in campaign.window_days:
            continue
        opening = dt.datetime.combine(day, campaign.window_start, tzinfo=zone)
        if opening > local:
            return opening
    return None
