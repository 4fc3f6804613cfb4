"""Formatting for the dashboard's templates, the same as static/analytics/dashboard.js does."""

from __future__ import annotations

import math

from django import template

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    """A rate as a percentage with at most one decimal (0.3333 -> "33.3 %", 0.5 -> "50 %"),
    rounded as the page's JavaScript rounds (`Math.round`); None -> "—"."""
    if value is None:
        return "—"
    return f"{math.floor(value * 1000 + 0.5) / 10:g} %"


@register.filter
def figure(value: float | int | None) -> str:
    """A figure as the page's JavaScript prints a number (120.0 -> "120", 2.5 -> "2.5");
    None -> "—"."""
    if value is None:
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
