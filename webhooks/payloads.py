"""What each event says (the `data` of the body sent). The README and the OpenAPI docs
(webhooks/serializers.py) describe the same shapes."""

from __future__ import annotations

from calls.models import Call, Turn
from insights.analysis import analysis_as_payload
from insights.costs import cost_as_payload
from insights.models import CallReport

TURN_TIMINGS = (
    "llm_first_token_ms",
    "llm_done_ms",
    "first_audio_ms",
    "response_sent_ms",
    "last_token_sent_ms",
)


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def call_summary(call: Call) -> dict:
    snapshot = call.config_snapshot or {}
    return {
        "id": str(call.id),
        "call_sid": call.call_sid,
        "assistant": {"id": snapshot.get("id"), "name": snapshot.get("name", "")},
        "from": call.from_number,
        "to": call.to_number,
        "direction": call.direction,
        "mode": call.mode,
        "status": call.status,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
    }


def call_started(call: Call) -> dict:
    return {"call": call_summary(call)}


def call_transferred(call: Call) -> dict:
    transfer_number = (call.config_snapshot or {}).get("transfer_number", "")
    return {"call": call_summary(call), "transfer_number": transfer_number}


def _turn(turn: Turn) -> dict:
    return {
        "sequence": turn.sequence,
        "role": turn.role,
        "text": turn.text,
        "interrupted": turn.interrupted,
        "heard_text": turn.heard_text,
        "at": _iso(turn.created_at),
        "source": turn.source,
        "timings_ms": {name: getattr(turn, name) for name in TURN_TIMINGS},
    }


def call_ended(call: Call, report: CallReport) -> dict:
    turns = Turn.objects.filter(call=call, tenant_id=call.tenant_id).order_by("sequence")
    return {
        "call": {
            **call_summary(call),
            "ended_at": _iso(call.ended_at),
            "duration_seconds": call.duration_seconds,
            "outcome": call.outcome,
            "error": call.error[:500],
            "recording_url": None,  # the platform does not record calls
        },
        "transcript": [_turn(turn) for turn in turns],
        "cost": cost_as_payload(report),
    }


def call_analyzed(report: CallReport) -> dict:
    return {"call": call_summary(report.call), "analysis": analysis_as_payload(report)}


def body(event_type: str, created_at, data: dict) -> dict:
    """The whole JSON body, in the Standard Webhooks shape."""
    return {"type": event_type, "timestamp": _iso(created_at), "data": data}
