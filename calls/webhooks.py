"""Twilio voice webhooks: /twilio/voice, /twilio/gather, /twilio/status, /twilio/fallback.

Every request is checked against X-Twilio-Signature before anything is stored. Twilio always
gets TwiML back: a polite spoken message instead of an HTTP 429 or 500.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_scopes import scope
from twilio.twiml.voice_response import VoiceResponse

from assistants.models import AssistantConfig
from assistants.speech import speech_url
from calls import services, twiml
from calls.models import Call, Turn
from calls.pipeline import gather_answer, prepare_speech
from calls.selectors import unscoped_call_by_sid
from calls.signatures import public_base_url, public_url, request_is_signed, websocket_url
from config.logging import log_context
from tenants import ratelimits
from tenants.models import RateLimit, Tenant
from tenants.selectors import unscoped_phone_number_by_dialled

logger = logging.getLogger(__name__)


def twilio_webhook(view: Callable[[HttpRequest], HttpResponse]) -> Callable:
    """CSRF-exempt POST endpoint that answers TwiML even when something breaks inside."""

    @csrf_exempt
    @require_POST
    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        call_sid = request.POST.get("CallSid", "")[:64]
        with log_context(call_sid=call_sid or None):
            try:
                return view(request)
            except Exception:
                logger.exception("webhook failed", extra={"path": request.path})
                return twiml.twiml_response(twiml.hang_up_with(twiml.SORRY_ERROR))

    return wrapper


def _forbidden() -> HttpResponse:
    logger.warning("rejected a request with a missing or wrong Twilio signature")
    return HttpResponseForbidden("Invalid Twilio signature.")


def _field(request: HttpRequest, name: str) -> str:
    """A POST field as text PostgreSQL can store (no NUL characters)."""
    return request.POST.get(name, "").replace("\x00", "")


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _gather_url(request: HttpRequest) -> str:
    return public_url(request, "/twilio/gather")


def _signed_call(request: HttpRequest) -> tuple[Call | None, bool]:
    """(the Call named by CallSid, whether the request is Twilio's).

    The signature is checked against the call's tenant token; for an unknown call, against the
    token of the dialled number's tenant (or the platform's).
    """
    call = unscoped_call_by_sid(_field(request, "CallSid"))
    tenant = call.tenant if call else None
    if tenant is None:
        number = unscoped_phone_number_by_dialled(_field(request, "To"))
        tenant = number.tenant if number else None
    return call, request_is_signed(request, tenant=tenant)


def _refuse(verdict: ratelimits.Verdict, config: dict | None = None) -> VoiceResponse:
    if verdict.action == RateLimit.Action.REJECT:
        return twiml.reject()
    return twiml.hang_up_with(verdict.message, config=config)


@twilio_webhook
def voice(request: HttpRequest) -> HttpResponse:
    """An incoming call: pick tenant and assistant by the dialled number, greet, listen."""
    call_sid, to, caller = _field(request, "CallSid"), _field(request, "To"), _field(request, "From")
    number = unscoped_phone_number_by_dialled(to)
    tenant: Tenant | None = number.tenant if number else None
    if not request_is_signed(request, tenant=tenant):
        return _forbidden()
    if not call_sid or len(call_sid) > 64:
        return HttpResponseBadRequest("CallSid is missing or malformed.")

    with scope(tenant=[tenant.id] if tenant else []), log_context(tenant=tenant and tenant.slug):
        if number is None or tenant is None:
            services.call_reject(
                tenant=None, phone_number=None, call_sid=call_sid, from_number=caller,
                to_number=to, outcome=Call.Outcome.REJECTED_UNKNOWN_NUMBER,
            )  # fmt: skip
            return twiml.twiml_response(twiml.hang_up_with(twiml.UNKNOWN_NUMBER))
        if not (number.active and tenant.active and number.assistant_id):
            services.call_reject(
                tenant=tenant, phone_number=number, call_sid=call_sid, from_number=caller,
                to_number=to, outcome=Call.Outcome.REJECTED_INACTIVE,
            )  # fmt: skip
            return twiml.twiml_response(twiml.hang_up_with(twiml.NOT_AVAILABLE))

        try:
            existing = Call.objects.get(tenant=tenant, call_sid=call_sid)
        except Call.DoesNotExist:
            existing = None
        if existing is None:
            verdict = ratelimits.call_admit(tenant=tenant, call_sid=call_sid, caller=caller)
            if not verdict.allowed:
                services.call_reject(
                    tenant=tenant, phone_number=number, call_sid=call_sid, from_number=caller,
                    to_number=to, outcome=Call.Outcome.REJECTED_RATE_LIMIT,
                    reason=f"{verdict.limit.kind} limit {verdict.limit.limit}",
                )  # fmt: skip
                return twiml.twiml_response(_refuse(verdict))
        elif existing.status == Call.Status.REJECTED:
            return twiml.twiml_response(twiml.hang_up_with(twiml.NOT_AVAILABLE))

        relay = number.assistant.mode == AssistantConfig.Mode.RELAY
        call, _ = services.call_start(
            phone_number=number, call_sid=call_sid, from_number=caller, to_number=to,
            direction=_field(request, "Direction") or "inbound",
            mode=Call.Mode.RELAY if relay else Call.Mode.GATHER,
        )  # fmt: skip
        config = call.config_snapshot
        if call.mode == Call.Mode.RELAY:
            return twiml.twiml_response(_relay_answer(request, call))
        greeting = twiml.Utterance(text=config["greeting"])
        spoken = prepare_speech(call=call, config=config, text=config["greeting"])
        if spoken.audio is not None and spoken.audio.file:
            greeting.audio_url = speech_url(spoken.audio, base_url=public_base_url(request))
        response = twiml.speak_and_listen(
            [greeting], config=config, action_url=_gather_url(request)
        )
        return twiml.twiml_response(response)


def _relay_answer(request: HttpRequest, call: Call) -> VoiceResponse:
    """Connect the call to our ConversationRelay socket. The call id sits in the socket URL,
    which Twilio signs on the handshake, so the socket can trust it."""
    socket_url = websocket_url(public_url(request, f"/twilio/relay?{urlencode({'call': call.id})}"))
    return twiml.conversation_relay(
        config=call.config_snapshot,
        socket_url=socket_url,
        action_url=public_url(request, "/twilio/relay-action"),
        parameters={"call": str(call.id), "tenant": call.tenant.slug},
    )


@twilio_webhook
def relay_action(request: HttpRequest) -> HttpResponse:
    """The relay session ended: transfer to a human when it asked for it, else hang up.

    Closes the Call (once; Twilio may retry, and the socket's disconnect may have closed it).
    """
    call, signed = _signed_call(request)
    if not signed:
        return _forbidden()
    if call is None or call.tenant is None:
        return twiml.twiml_response(twiml.hang_up())
    handoff = _handoff_data(_field(request, "HandoffData"))
    with scope(tenant=[call.tenant_id]), log_context(tenant=call.tenant.slug):
        config = call.config_snapshot
        transfer_to = config.get("transfer_number", "")
        if handoff.get("transfer") is True and transfer_to:
            services.call_set_outcome(call=call, outcome=Call.Outcome.TRANSFERRED)
            services.call_finish(call=call, outcome=Call.Outcome.TRANSFERRED)
            return twiml.twiml_response(twiml.dial(transfer_to))
        services.call_finish(call=call)
        message = handoff.get("message")
        if isinstance(message, str) and message.strip():
            return twiml.twiml_response(twiml.hang_up_with(message[:1000], config=config))
        return twiml.twiml_response(twiml.hang_up())


def _handoff_data(raw: str) -> dict:
    """ConversationRelay's HandoffData (the JSON string our `end` message carried), or {}."""
    if not raw or len(raw) > 10000:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@twilio_webhook
def gather(request: HttpRequest) -> HttpResponse:
    """The caller said something (or nothing): answer and listen again."""
    started_at = time.monotonic()
    post = request.POST
    call, signed = _signed_call(request)
    if not signed:
        return _forbidden()
    if call is None or call.tenant is None or call.status in Call.FINAL_STATUSES:
        return twiml.twiml_response(twiml.hang_up_with(twiml.GOODBYE))

    with scope(tenant=[call.tenant_id]), log_context(tenant=call.tenant.slug):
        config = call.config_snapshot
        action_url = _gather_url(request)
        speech = _field(request, "SpeechResult").strip()
        if not speech:
            if services.call_count_silence(call=call, silent=True) > settings.MAX_SILENT_PROMPTS:
                services.call_set_outcome(call=call, outcome=Call.Outcome.NO_INPUT)
                return twiml.twiml_response(twiml.hang_up_with(twiml.GOODBYE, config=config))
            reprompt = [twiml.Utterance(text=twiml.REPROMPT)]
            return twiml.twiml_response(
                twiml.speak_and_listen(reprompt, config=config, action_url=action_url)
            )
        if call.silent_prompts:
            services.call_count_silence(call=call, silent=False)

        history, last = services.call_history_and_last(call=call)
        caller_turn = services.turn_add(
            call=call, role=Turn.Role.CALLER, text=speech, sequence=last + 1,
            confidence=_float_or_none(post.get("Confidence")),
        )  # fmt: skip
        limits = ratelimits.effective_limits(call.tenant)
        verdict = ratelimits.turn_verdict(tenant=call.tenant, call_sid=call.call_sid, limits=limits)
        if not verdict.allowed:
            return twiml.twiml_response(_limited_turn(call, verdict, config, action_url))

        utterances, _ = gather_answer(
            call=call, utterance=speech, started_at=started_at, history=history,
            sequence=caller_turn.sequence + 1, base_url=public_base_url(request), limits=limits,
        )  # fmt: skip
        return twiml.twiml_response(
            twiml.speak_and_listen(utterances, config=config, action_url=action_url)
        )


def _limited_turn(
    call: Call, verdict: ratelimits.Verdict, config: dict, action_url: str
) -> VoiceResponse:
    services.turn_add(
        call=call, role=Turn.Role.ASSISTANT, text=verdict.message, source="system",
        error=f"rate limit: {verdict.limit.kind}",
    )  # fmt: skip
    if verdict.action == RateLimit.Action.SPEAK_AND_CONTINUE:
        return twiml.speak_and_listen(
            [twiml.Utterance(text=verdict.message)], config=config, action_url=action_url
        )
    services.call_set_outcome(call=call, outcome=Call.Outcome.REJECTED_RATE_LIMIT)
    return twiml.hang_up_with(verdict.message, config=config)


@twilio_webhook
def status(request: HttpRequest) -> HttpResponse:
    """Status callback: closes the call once, whatever order or how often callbacks arrive."""
    post = request.POST
    call, signed = _signed_call(request)
    if not signed:
        return _forbidden()
    # Unknown or already-closed calls: answer 200 so Twilio stops retrying.
    if call is None or call.tenant is None or call.status in Call.FINAL_STATUSES:
        return HttpResponse(status=204)
    with scope(tenant=[call.tenant_id]), log_context(tenant=call.tenant.slug):
        timestamp = None
        if raw := post.get("Timestamp"):
            try:
                timestamp = parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                timestamp = None
        services.call_status_update(
            call=call,
            status=post.get("CallStatus", ""),
            sequence=_int_or_none(post.get("SequenceNumber")),
            duration=_int_or_none(post.get("CallDuration")),
            timestamp=timestamp if isinstance(timestamp, datetime) else None,
        )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def fallback(request: HttpRequest) -> HttpResponse:
    """The number's fallback URL: Twilio calls it when the voice URL failed. Apologise, hang up.

    Written to work while the database is down: the tenant's own token is used when it can be
    read, the platform's otherwise.
    """
    tenant = None
    try:
        number = unscoped_phone_number_by_dialled(request.POST.get("To", ""))
        tenant = number.tenant if number else None
    except Exception:
        logger.warning("fallback: could not look up the number", exc_info=True)
    if not request_is_signed(request, tenant=tenant):
        return _forbidden()
    logger.error("fallback URL used", extra={"error_code": request.POST.get("ErrorCode", "")})
    return twiml.twiml_response(twiml.hang_up_with(twiml.SORRY_ERROR))
