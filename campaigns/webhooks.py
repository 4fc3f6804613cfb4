"""Twilio's webhooks for outbound calls: /twilio/outbound/voice, /status and /amd.

Each names the call by the id in its URL (Twilio signs the whole URL), is checked against the
call's tenant's Twilio token, and runs inside that tenant's scope. After the callee answers, the
conversation is the inbound one's: the same TwiML, and `/twilio/gather` or the relay socket.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django_scopes import scope

from calls.models import Call
from calls.selectors import unscoped_call_by_id
from calls.transports import twiml
from calls.transports.signatures import request_is_signed
from calls.transports.twilio import (
    datetime_field,
    field,
    forbidden,
    int_field,
    twilio_webhook,
)
from calls.transports.webhooks import answer
from campaigns import recordings, services, tasks
from campaigns.models import OutboundCall
from campaigns.selectors import unscoped_outbound_by_call_id
from core.logging import log_context


def outbound_webhook(
    *, unknown: Callable[[], HttpResponse]
) -> Callable[[Callable[[HttpRequest, OutboundCall], HttpResponse]], Callable]:
    """`view(request, outbound)` for a signed request about a known outbound call; unknown
    calls and ones whose CallSid is another's get `unknown()` (Twilio stops retrying)."""

    def decorate(view: Callable[[HttpRequest, OutboundCall], HttpResponse]) -> Callable:
        @twilio_webhook
        @functools.wraps(view)
        def wrapper(request: HttpRequest) -> HttpResponse:
            outbound = unscoped_outbound_by_call_id(request.GET.get("call", ""))
            tenant = outbound.tenant if outbound else None
            if not request_is_signed(request, tenant=tenant):
                return forbidden()
            if outbound is None or not _same_call(outbound.call, field(request, "CallSid")):
                return unknown()
            with scope(tenant=[outbound.tenant_id]), log_context(tenant=outbound.tenant.slug):
                return view(request, outbound)

        return wrapper

    return decorate


def _same_call(call: Call, call_sid: str) -> bool:
    placeholder = call.call_sid.startswith(services.PLACEHOLDER_SID_PREFIX)
    return bool(call_sid) and (placeholder or call.call_sid == call_sid)


def _no_content() -> HttpResponse:
    return HttpResponse(status=204)


def _hang_up() -> HttpResponse:
    return twiml.twiml_response(twiml.hang_up())


@outbound_webhook(unknown=_hang_up)
def voice(request: HttpRequest, outbound: OutboundCall) -> HttpResponse:
    """The callee picked up: the assistant greets them and the conversation begins."""
    call = services.outbound_answered(outbound=outbound, call_sid=field(request, "CallSid"))
    if call.status != Call.Status.IN_PROGRESS:
        return _hang_up()
    return twiml.twiml_response(answer(request, call))


@outbound_webhook(unknown=_no_content)
def status(request: HttpRequest, outbound: OutboundCall) -> HttpResponse:
    """Twilio's status callback: closes the call once, then settles its campaign contact."""
    services.outbound_status(
        outbound=outbound,
        call_sid=field(request, "CallSid"),
        status=field(request, "CallStatus"),
        sequence=int_field(request, "SequenceNumber"),
        duration=int_field(request, "CallDuration"),
        timestamp=datetime_field(request, "Timestamp"),
    )
    return _no_content()


@outbound_webhook(unknown=_no_content)
def amd(request: HttpRequest, outbound: OutboundCall) -> HttpResponse:
    """Twilio's asynchronous answering-machine detection result (`AnsweredBy`)."""
    services.outbound_machine_answered(
        outbound=outbound,
        call_sid=field(request, "CallSid"),
        answered_by=field(request, "AnsweredBy"),
    )
    return _no_content()


@outbound_webhook(unknown=_no_content)
def recording(request: HttpRequest, outbound: OutboundCall) -> HttpResponse:
    """Twilio's recording status callback of an outbound call (`Record=true`)."""
    _recording_ready(request, outbound.call)
    return _no_content()


@twilio_webhook
def call_recording(request: HttpRequest) -> HttpResponse:
    """Twilio's recording status callback of a call recorded from its answer's TwiML
    (`<Start><Recording>`: inbound calls). The call's id is in the signed URL."""
    try:
        call = unscoped_call_by_id(uuid.UUID(request.GET.get("call", "")))
    except ValueError:
        call = None
    tenant = call.tenant if call else None
    if not request_is_signed(request, tenant=tenant):
        return forbidden()
    if call is None or call.call_sid != field(request, "CallSid"):
        return _no_content()
    with scope(tenant=[call.tenant_id]), log_context(tenant=call.tenant.slug):
        _recording_ready(request, call)
    return _no_content()


def _recording_ready(request: HttpRequest, call: Call) -> None:
    """A finished recording is noted, and fetched by a worker once that is committed."""
    if field(request, "RecordingStatus") != "completed":
        return
    noted = recordings.recording_note(
        call=call,
        recording_sid=field(request, "RecordingSid"),
        url=field(request, "RecordingUrl"),
        duration=int_field(request, "RecordingDuration"),
    )
    if noted is not None:
        transaction.on_commit(
            lambda: tasks.fetch_recording.delay(str(noted.tenant_id), str(noted.id))
        )
