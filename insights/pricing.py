"""Prices of what a call uses, from the price table in settings (`PRICES`, overridable with the
`PRICE_TABLE` environment variable). Money is Decimal throughout; a model, mode or engine missing
from the table costs nothing (and is logged once per process, so the table can be completed)."""

from __future__ import annotations

import logging
import math
from decimal import Decimal
from functools import cache

from django.conf import settings

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)


@cache
def _missing(kind: str, name: str) -> None:
    logger.warning("no price for %s %r in the price table: counted as free", kind, name)


def _price(table: dict, kind: str, name: str) -> object:
    if name not in table:
        if name:
            _missing(kind, name)
        return 0
    return table[name]


def llm_cost(model: str, tokens_in: int, tokens_out: int) -> Decimal:
    """LLM tokens at the model's price per million input and output tokens."""
    prices = _price(settings.PRICES["llm_per_million_tokens"], "model", model) or {}
    per_in = Decimal(str(prices.get("input", 0))) if prices else Decimal(0)
    per_out = Decimal(str(prices.get("output", 0))) if prices else Decimal(0)
    return (per_in * tokens_in + per_out * tokens_out) / MILLION


def billed_minutes(duration_seconds: int | None) -> int:
    """Telephony is billed per started minute."""
    return math.ceil(max(duration_seconds or 0, 0) / 60)


def telephony_cost(mode: str, minutes: int) -> Decimal:
    per_minute = _price(settings.PRICES["telephony_per_minute"], "call mode", mode)
    return Decimal(str(per_minute)) * minutes


def speech_cost(engine: str, characters: int) -> Decimal:
    per_million = _price(settings.PRICES["speech_per_million_characters"], "speech engine", engine)
    return Decimal(str(per_million)) * characters / MILLION
