"""What insights does when a call ends: its cost is stored in the same transaction, and its
analysis is queued once that transaction commits."""

from __future__ import annotations

from functools import partial

from django.db import transaction

from calls import signals as call_signals
from calls.models import Call
from insights.costs import call_report_prepare
from insights.tasks import analyze_call


def on_call_ended(sender: type, *, call: Call, **kwargs: object) -> None:
    report = call_report_prepare(call=call)
    transaction.on_commit(partial(analyze_call.delay, str(report.id), str(call.tenant_id)))


def connect() -> None:
    call_signals.call_ended.connect(on_call_ended, dispatch_uid="insights.call_ended")
