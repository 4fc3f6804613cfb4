"""The one way into a call for Twilio's webhooks.

`twilio_webhook` makes a view a CSRF-exempt POST endpoint that answers TwiML even when something
breaks inside. `call_webhook` also finds the Call the request is about, checks X-Twilio-Signature
against that call's tenant's token, and runs the view inside the tenant's scope and log context.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_scopes import scope

from calls import languages, phrases
from calls.models import Call
from calls.selectors import unscoped_call_by_sid
from calls.transports import twiml
from calls.transports.signatures import request_is_signed
from core.logging import log_context
from tenants.selectors import unscoped_phone_number_by_dialled

logger = logging.getLogger(__name__)

# Twilio's numbers (durations, sequence numbers) fit comfortably; larger ones are not Twilio's.
MAX_TWILIO_INT = 2**31 - 1


def field(request: HttpRequest, name: str) -> str:
    """A POST field as text PostgreSQL can store (no NUL characters)."""
    return request.POST.get(name, "").replace("\x00", "")


def int_field(request: HttpRequest, name: str) -> int | None:
    """A whole number Twilio sent, or None when it is missing, malformed or out of range."""
    try:
        value = int(request.POST.get(name, ""))
    except (TypeError, ValueError):
        return None
    return value if 0 <= value <= MAX_TWILIO_INT else None


def float_field(request: HttpRequest, name: str) -> float | None:
    """A finite number Twilio sent (e.g. a confidence), or None."""
    try:
        value = float(request.POST.get(name, ""))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def sorry(config: dict) -> HttpResponse:
    """Something broke on our side: apologise (in `config`'s language) and hang up."""
    message = phrases.say(phrases.SORRY_ERROR, config=config)
    return twiml.twiml_response(twiml.hang_up_with(message, config=config))


def datetime_field(request: HttpRequest, name: str) -> datetime | None:
    """An RFC 2822 date Twilio sent (a status callback's `Timestamp`), or None."""
    try:
        value = parsedate_to_datetime(request.POST.get(name, ""))
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, datetime) else None


def forbidden() -> HttpResponse:
    logger.warning("rejected a request with a missing or wrong Twilio signature")
    return HttpResponseForbidden("Invalid Twilio signature.")


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
                return sorry({})

    return wrapper


def signed_call(request: HttpRequest) -> tuple[Call | None, bool]:
    """(the Call named by CallSid, whether the request is Twilio's).

    The signature is checked against the call's tenant token; for an unknown call, against the
    token of the dialled number's tenant (or the platform's).
    """
    call = unscoped_call_by_sid(field(request, "CallSid"))
    tenant = call.tenant if call else None
    if tenant is None:
        number = unscoped_phone_number_by_dialled(field(request, "To"))
        tenant = number.tenant if number else None
    return call, request_is_signed(request, tenant=tenant)


def call_webhook(
    *, unknown: Callable[[], HttpResponse], active_only: bool = False
) -> Callable[[Callable[[HttpRequest, Call], HttpResponse]], Callable]:
    """A webhook about a call: `view(request, call)` runs for a signed request about a known
    call (`active_only`: one still in progress), inside its tenant's scope and log context.
    Unknown calls get `unknown()`, which answers Twilio so that it stops retrying."""

    def decorate(view: Callable[[HttpRequest, Call], HttpResponse]) -> Callable:
        @twilio_webhook
        @functools.wraps(view)
        def wrapper(request: HttpRequest) -> HttpResponse:
            call, signed = signed_call(request)
            if not signed:
                return forbidden()
            if call is None or call.tenant is None:
                return unknown()
            if active_only and call.status in Call.FINAL_STATUSES:
                return unknown()
            with scope(tenant=[call.tenant_id]), log_context(tenant=call.tenant.slug):
                try:
                    return view(request, call)
                except Exception:
                    logger.exception("webhook failed", extra={"path": request.path})
                    return sorry(languages.for_call(call))

        return wrapper

    return decorate
