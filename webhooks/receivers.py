"""Events written when a call changes (inside the change's transaction: the outbox)."""

from __future__ import annotations

from functools import partial

from calls import signals as call_signals
from calls.models import Call
from insights import signals as insight_signals
from insights.costs import call_report_prepare
from insights.models import CallReport
from webhooks import payloads
from webhooks.models import EventType
from webhooks.services import event_emit


def on_call_started(sender: type, *, call: Call, **kwargs: object) -> None:
    event_emit(
        tenant_id=call.tenant_id,
        # Later events of a call read its endpoints afresh.
        tenant=call.tenant_if_read(),
        event_type=EventType.CALL_STARTED,
        call=call,
        data=partial(payloads.call_started, call),
    )


def _call_ended_payload(call: Call) -> dict:
    return payloads.call_ended(call, call_report_prepare(call=call))  # the cost goes with it


def on_call_ended(sender: type, *, call: Call, **kwargs: object) -> None:
    event_emit(
        tenant_id=call.tenant_id,
        tenant=call.tenant_if_read(),  # read afresh with the call's closing row
        event_type=EventType.CALL_ENDED,
        call=call,
        data=partial(_call_ended_payload, call),
    )


def on_call_transferred(sender: type, *, call: Call, **kwargs: object) -> None:
    event_emit(
        tenant_id=call.tenant_id,
        event_type=EventType.CALL_TRANSFERRED,
        call=call,
        data=partial(payloads.call_transferred, call),
    )


def on_call_analyzed(sender: type, *, report: CallReport, **kwargs: object) -> None:
    event_emit(
        tenant_id=report.tenant_id,
        event_type=EventType.CALL_ANALYZED,
        call=report.call,
        data=partial(payloads.call_analyzed, report),
    )


def connect() -> None:
    call_signals.call_started.connect(on_call_started, dispatch_uid="webhooks.call_started")
    call_signals.call_ended.connect(on_call_ended, dispatch_uid="webhooks.call_ended")
    call_signals.call_transferred.connect(
        on_call_transferred, dispatch_uid="webhooks.call_transferred"
    )
    insight_signals.call_analyzed.connect(on_call_analyzed, dispatch_uid="webhooks.call_analyzed")
