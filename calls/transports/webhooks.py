"""Twilio's call webhooks: /twilio/voice, /twilio/status, /twilio/relay-action,
/twilio/stream-action, /twilio/fallback.

Every request is checked against X-Twilio-Signature before anything is stored. Twilio always
gets TwiML back: a polite spoken message instead of an HTTP 429 or 500. Whether a call is
answered is `services.call_admit`'s decision; what is said in a turn is the engine's
(`/twilio/gather` is in `calls.transports.gather`).
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_scopes import scope
from twilio.twiml.voice_response import VoiceResponse

from assistants.speech import speech_url
from calls import languages, services
from calls.models import Call
from calls.transports import answered, twiml
from calls.transports.gather import gather_url, prepare_speech
from calls.transports.media import handoff_read
from calls.transports.signatures import (
    public_base_url,
    public_url,
    request_is_signed,
    websocket_url,
)
from calls.transports.twilio import (
    call_webhook,
    datetime_field,
    field,
    forbidden,
    int_field,
    sorry,
    twilio_webhook,
)
from core.logging import log_context
from tenants.selectors import unscoped_phone_number_by_dialled
from tools.selectors import transfer_number

logger = logging.getLogger(__name__)


@twilio_webhook
def voice(request: HttpRequest) -> HttpResponse:
    """An incoming call: pick tenant and assistant by the dialled number, greet, listen."""
    call_sid, to, caller = field(request, "CallSid"), field(request, "To"), field(request, "From")
    number = unscoped_phone_number_by_dialled(to)
    tenant = number.tenant if number else None
    if not request_is_signed(request, tenant=tenant):
        return forbidden()
    if not call_sid or len(call_sid) > 64:
        return HttpResponseBadRequest("CallSid is missing or malformed.")

    with scope(tenant=[tenant.id] if tenant else []), log_context(tenant=tenant and tenant.slug):
        admission = services.call_admit(
            number=number,
            call_sid=call_sid,
            from_number=caller,
            to_number=to,
            direction=field(request, "Direction") or "inbound",
        )
        if admission.call is None:
            if admission.reject:
                return twiml.twiml_response(twiml.reject())
            spoken_in = {"language": admission.language}
            return twiml.twiml_response(twiml.hang_up_with(admission.message, config=spoken_in))
        try:
            return twiml.twiml_response(answer(request, admission.call))
        except Exception:
            # The caller hears an apology and the line is given back: nothing stays "live".
            logger.exception("webhook failed", extra={"path": request.path})
            services.call_finish(
                call=admission.call, outcome=Call.Outcome.ERROR, error="the voice webhook failed"
            )
            return sorry(languages.for_call(admission.call))


def answer(request: HttpRequest, call: Call) -> VoiceResponse:
    """The TwiML that starts a conversation on an answered call: the greeting and a gather, or
    the ConversationRelay socket (inbound calls, and outbound ones once the callee picks up).
    A call whose snapshot names a recording callback (its assistant records calls) starts
    Twilio's recording first."""
    response = _answer(request, call)
    if path := call.config_snapshot.get("recording_callback_path"):
        return twiml.recorded(response, callback_url=public_url(request, path))
    return response


def _answer(request: HttpRequest, call: Call) -> VoiceResponse:
    config = call.config_snapshot
    languages.warm_up_soon(config)  # ready by the caller's first words
    if call.mode == Call.Mode.RELAY:
        answered.keep(call)  # for its socket's handshake in this process
        return _relay_answer(request, call)
    if call.mode == Call.Mode.STREAM:
        answered.keep(call)  # for its socket's handshake in this process
        return _stream_answer(request, call)
    greeting = twiml.Utterance(text=config["greeting"])
    spoken = prepare_speech(call=call, config=config, text=config["greeting"])
    if spoken.audio is not None and spoken.audio.file:
        greeting.audio_url = speech_url(spoken.audio, base_url=public_base_url(request))
    return twiml.speak_and_listen([greeting], config=config, action_url=gather_url(request))


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


def _stream_answer(request: HttpRequest, call: Call) -> VoiceResponse:
    """Connect the call to our Media Streams socket (bidirectional), signed like relay's."""
    socket_url = websocket_url(public_url(request, f"/twilio/media?{urlencode({'call': call.id})}"))
    return twiml.media_stream(
        socket_url=socket_url,
        action_url=public_url(request, "/twilio/stream-action"),
        parameters={"call": str(call.id), "tenant": call.tenant.slug},
    )


@call_webhook(unknown=lambda: twiml.twiml_response(twiml.hang_up()))
def relay_action(request: HttpRequest, call: Call) -> HttpResponse:
    """The relay session ended: transfer to a human when it asked for it, else hang up.

    Closes the Call (once; Twilio may retry, and the socket's disconnect may have closed it).
    """
    return _session_ended(call, _handoff_data(field(request, "HandoffData")))


@call_webhook(unknown=lambda: twiml.twiml_response(twiml.hang_up()))
def stream_action(request: HttpRequest, call: Call) -> HttpResponse:
    """The media stream ended: what the session left to do (a transfer, an apology to say),
    else hang up. Closes the Call (once)."""
    return _session_ended(call, handoff_read(call))


def _session_ended(call: Call, handoff: dict) -> HttpResponse:
    config = languages.for_call(call)
    transfer_to = config.get("transfer_number", "")
    if "destination" in handoff:  # a destination the caller asked for in words
        transfer_to = transfer_number(
            tenant_id=call.tenant_id,
            assistant_id=call.assistant_id,
            destination=handoff["destination"],
        )
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


# Unknown or already-closed calls: answer so that Twilio stops retrying.
@call_webhook(unknown=lambda: HttpResponse(status=204), active_only=True)
def status(request: HttpRequest, call: Call) -> HttpResponse:
    """Status callback: closes the call once, whatever order or how often callbacks arrive."""
    services.call_status_update(
        call=call,
        status=request.POST.get("CallStatus", ""),
        sequence=int_field(request, "SequenceNumber"),
        duration=int_field(request, "CallDuration"),
        timestamp=datetime_field(request, "Timestamp"),
    )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def fallback(request: HttpRequest) -> HttpResponse:
    """The fallback URL of a number, and of the calls the platform places: Twilio calls it when
    the voice URL failed. Apologise, hang up.

    Written to work while the database is down: the tenant's own token is used when it can be
    read, the platform's otherwise.
    """
    tenant, config = None, {}
    # The platform's number is the one dialled, or (a call the platform placed) the caller id.
    outbound = request.POST.get("Direction", "").startswith("outbound")
    ours = request.POST.get("From" if outbound else "To", "")
    try:
        number = unscoped_phone_number_by_dialled(ours)
        tenant = number.tenant if number else None
        if number is not None and number.assistant_id:
            config = number.assistant.snapshot()
    except Exception:
        logger.warning("fallback: could not look up the number", exc_info=True)
    if not request_is_signed(request, tenant=tenant):
        return forbidden()
    logger.error("fallback URL used", extra={"error_code": request.POST.get("ErrorCode", "")})
    return sorry(config)
