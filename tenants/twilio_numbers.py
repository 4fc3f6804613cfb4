"""Which numbers a Twilio account holds, asked of Twilio's REST API (IncomingPhoneNumbers)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

TIMEOUT_SECONDS = 5.0

# The client logs every request and response header at INFO; keep that out of the platform's log.
_http_log = logging.getLogger(__name__ + ".http")
_http_log.setLevel(logging.WARNING)


class TwilioLookupError(Exception):
    """Twilio did not answer the question. `permanent`: asking again cannot help (Twilio
    refused the account's credentials or does not know the account)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def rest_client(account_sid: str, auth_token: str) -> Client:
    """The official client for an account, with a short timeout, a quiet request log, and
    TWILIO_API_BASE_URL (a local stand-in in tests and demos) when set."""
    client = Client(
        account_sid,
        auth_token,
        http_client=TwilioHttpClient(timeout=TIMEOUT_SECONDS, logger=_http_log),
    )
    if settings.TWILIO_API_BASE_URL:
        client.api.base_url = settings.TWILIO_API_BASE_URL
    return client


def account_holds_number(*, account_sid: str, auth_token: str, number: str) -> bool:
    """Whether Twilio lists the E.164 `number` among the account's incoming phone numbers."""
    client = rest_client(account_sid, auth_token)
    try:
        listed = client.api.v2010.accounts(account_sid).incoming_phone_numbers.list(
            phone_number=number, page_size=50, limit=50
        )
    except (TwilioException, requests.RequestException, ValueError) as exc:
        raise lookup_error(exc) from exc
    # Twilio's filter matches partial numbers too: only the exact number counts.
    return any(item.phone_number == number for item in listed)


@dataclass(frozen=True)
class AccountNumber:
    """One of an account's incoming phone numbers, and where its calls go now."""

    sid: str
    number: str
    voice_url: str


def account_numbers(*, account_sid: str, auth_token: str) -> list[AccountNumber]:
    """Every incoming phone number of the account (up to 1000)."""
    client = rest_client(account_sid, auth_token)
    try:
        listed = client.api.v2010.accounts(account_sid).incoming_phone_numbers.list(limit=1000)
    except (TwilioException, requests.RequestException, ValueError) as exc:
        raise lookup_error(exc) from exc
    return [AccountNumber(n.sid, n.phone_number, n.voice_url or "") for n in listed]


def number_point(
    *,
    account_sid: str,
    auth_token: str,
    number_sid: str,
    voice_url: str,
    fallback_url: str,
    status_callback: str,
) -> None:
    """Point one of the account's numbers at these webhooks (empty strings: at nothing)."""
    client = rest_client(account_sid, auth_token)
    number = client.api.v2010.accounts(account_sid).incoming_phone_numbers(number_sid)
    try:
        number.update(
            voice_url=voice_url,
            voice_method="POST",
            voice_fallback_url=fallback_url,
            voice_fallback_method="POST",
            status_callback=status_callback,
            status_callback_method="POST",
        )
    except (TwilioException, requests.RequestException, ValueError) as exc:
        raise lookup_error(exc) from exc


def lookup_error(exc: Exception) -> TwilioLookupError:
    """The TwilioLookupError for what the client raised (permanent for refused credentials)."""
    if isinstance(exc, TwilioException):
        status = _status(exc)
        return TwilioLookupError(f"Twilio answered {status}", permanent=status in (401, 403, 404))
    return TwilioLookupError(f"Twilio could not be reached: {type(exc).__name__}")


def _status(exc: TwilioException) -> int | None:
    """The HTTP status behind a client error (a list page carries the response itself)."""
    if status := getattr(exc, "status", None):  # TwilioRestException
        return status
    response = exc.args[1] if len(exc.args) > 1 else None
    return getattr(response, "status_code", None)
