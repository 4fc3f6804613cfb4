"""The platform's own Prometheus counters and histograms (the `/metrics` view and the
collectors that read the database at scrape time are in `config/metrics.py`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import (
    Counter,
    Histogram,
)

logger = logging.getLogger(__name__)

# Seconds; a phone turn is judged in tenths of a second.
_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13)

TURNS = Counter("voice_turns_total", "Conversation turns stored.", ["mode", "role", "source"])
TURN_STAGE_SECONDS = Histogram(
    "voice_turn_stage_seconds",
    "Time from the caller's words to each stage of the assistant's answer.",
    ["mode", "stage"],
    buckets=_LATENCY_BUCKETS,
)
LLM_ERRORS = Counter("voice_llm_errors_total", "Failed LLM attempts.", ["model", "kind"])
LLM_FALLBACKS = Counter(
    "voice_llm_fallbacks_total", "LLM retries and moves to the fallback model.", ["kind"]
)
TTS_FALLBACKS = Counter(
    "voice_tts_fallbacks_total", "Sentences spoken with <Say> because their audio was not ready."
)
RATE_LIMITED = Counter(
    "voice_rate_limited_total", "Calls and turns refused by a rate limit.", ["tenant", "kind"]
)
ANSWER_CACHE = Counter("voice_answer_cache_total", "Answer cache lookups.", ["result"])
CALLS = Counter("voice_calls_total", "Calls started or rejected.", ["tenant", "mode", "result"])
EVENTS_PUBLISHED = Counter(
    "voice_events_published_total", "Call events sent to the live dashboard's groups."
)
EVENTS_LOST = Counter(
    "voice_events_lost_total",
    "Call events the live dashboard never got (queue full, channel layer down, stopping).",
    ["reason"],
)

# Turn timing fields and the stage they measure.
STAGES = {
    "llm_first_token_ms": "llm_first_token",
    "llm_done_ms": "llm_done",
    "first_audio_ms": "tts_first_audio",
    "response_sent_ms": "turn",
    "last_token_sent_ms": "last_token_sent",
}


def turn_observe(
    *, mode: str, role: str, source: str, timings: dict, fallbacks: Iterable[str], cache_hit: bool
) -> None:
    """Count one stored turn and observe its stage latencies."""
    try:
        TURNS.labels(mode=mode, role=role, source=source or "none").inc()
        for field, stage in STAGES.items():
            if (value := timings.get(field)) is not None:
                TURN_STAGE_SECONDS.labels(mode=mode, stage=stage).observe(value / 1000)
        for fallback in fallbacks:
            if fallback == "tts:say":
                TTS_FALLBACKS.inc()
            else:
                LLM_FALLBACKS.labels(kind=fallback.split(":", 1)[0]).inc()
        if role == "assistant" and source in ("llm", "cache"):
            ANSWER_CACHE.labels(result="hit" if cache_hit else "miss").inc()
    except Exception:  # metrics never break a call
        logger.warning("could not record turn metrics", exc_info=True)


def error_kind(message: str) -> str:
    """A short, bounded label for an LLM error message."""
    text = message.lower()
    for needle, kind in (
        ("timeout", "timeout"),
        ("http 429", "rate_limited"),
        ("http 5", "server_error"),
        ("http 4", "client_error"),
        ("stream", "stream_broken"),
        ("connection", "connection"),
        ("no llm configured", "not_configured"),
    ):
        if needle in text:
            return kind
    return "other"
