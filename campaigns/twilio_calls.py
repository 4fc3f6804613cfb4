"""Outbound calls through Twilio's REST API, with the official client (`tenants.twilio_numbers`):
the tenant's own account when it brings one, else the platform's."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from urllib.parse import urlencode

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from calls.transports.signatures import auth_token_for
from tenants.models import Tenant
from tenants.twilio_numbers import TwilioLookupError, lookup_error, rest_client

RECORDING_TIMEOUT_SECONDS = 30.0
_media = requests.Session()

# Twilio's progress events the platform needs: the callee answered, the call ended. (The line
# counts as taken from the moment the call is written; "initiated" and "ringing" would only
# double the webhooks of a campaign.)
STATUS_EVENTS = ["answered", "completed"]


class TwilioUnavailable(TwilioLookupError):
    """Twilio refused or could not be asked; `permanent` when asking again cannot help."""


def account_sid_for(tenant: Tenant) -> str:
    if tenant.twilio_account_sid and tenant.has_twilio_auth_token:
        return tenant.twilio_account_sid
    return settings.TWILIO_ACCOUNT_SID


def webhook_url(path: str, *, call_id: object) -> str:
    """The platform's address for one call's webhooks. The call's id rides in the query,
    which Twilio signs with the rest of the URL."""
    if not settings.PUBLIC_BASE_URL:
        raise TwilioUnavailable(
            "PUBLIC_BASE_URL is not set: Twilio would not know where to reach the platform.",
            permanent=True,
        )
    return f"{settings.PUBLIC_BASE_URL}{path}?{urlencode({'call': call_id})}"


@functools.lru_cache(maxsize=256)
def _client(account_sid: str, auth_token: str, base_url: str) -> Client:
    """One client per account (and API address), so a dialler reuses its connection."""
    return rest_client(account_sid, auth_token)


def _calls(tenant: Tenant):
    sid = account_sid_for(tenant)
    if not sid:
        raise TwilioUnavailable("No Twilio account: set TWILIO_ACCOUNT_SID.", permanent=True)
    client = _client(sid, auth_token_for(tenant), settings.TWILIO_API_BASE_URL)
    return client.api.v2010.accounts(sid).calls


def _ask(request):
    try:
        return request()
    except (TwilioException, requests.RequestException, ValueError) as exc:
        error = lookup_error(exc)
        raise TwilioUnavailable(str(error), permanent=error.permanent) from exc


def call_create(
    *, tenant: Tenant, to: str, from_: str, call_id: object, detect_machines: bool, record: bool
) -> str:
    """Ask Twilio to place the call; returns its CallSid."""
    options = {
        "to": to,
        "from_": from_,
        "url": webhook_url("/twilio/outbound/voice", call_id=call_id),
        "fallback_url": f"{settings.PUBLIC_BASE_URL}/twilio/fallback",
        "status_callback": webhook_url("/twilio/outbound/status", call_id=call_id),
        "status_callback_event": STATUS_EVENTS,
    }
    if detect_machines:
        options |= {
            "machine_detection": "DetectMessageEnd",
            "async_amd": "true",
            "async_amd_status_callback": webhook_url("/twilio/outbound/amd", call_id=call_id),
        }
    if record:
        options |= {
            "record": True,
            "recording_status_callback": webhook_url("/twilio/outbound/recording", call_id=call_id),
            "recording_status_callback_event": ["completed"],
        }
    calls = _calls(tenant)
    return _ask(lambda: calls.create(**options)).sid


def call_redirect(*, tenant: Tenant, call_sid: str, twiml: str) -> None:
    """Replace what a call in progress is doing with `twiml`."""
    calls = _calls(tenant)
    _ask(lambda: calls(call_sid).update(twiml=twiml))


def call_hang_up(*, tenant: Tenant, call_sid: str) -> None:
    calls = _calls(tenant)
    _ask(lambda: calls(call_sid).update(status="completed"))


def call_sid_placed(*, tenant: Tenant, to: str, from_: str, since: datetime) -> str:
    """The sid of a call Twilio placed from `from_` to `to` since `since`, or "": whether a
    dialler that stopped mid-request had in fact placed its call."""
    calls = _calls(tenant)
    listed = _ask(lambda: calls.list(to=to, from_=from_, limit=20))
    margin = since - timedelta(seconds=5)
    return next((c.sid for c in listed if c.date_created and c.date_created >= margin), "")


def recording_download(*, tenant: Tenant, url: str) -> bytes:
    """A recording's MP3, from the `RecordingUrl` Twilio gave (a media file: the REST client
    reads JSON only, so it is fetched with the account's credentials directly)."""
    if not url.startswith(_api_base()):
        raise TwilioUnavailable("The recording is not on Twilio's API.", permanent=True)
    try:
        response = _media.get(
            f"{url}.mp3",
            auth=(account_sid_for(tenant), auth_token_for(tenant)),
            timeout=RECORDING_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        raise TwilioUnavailable(f"Twilio could not be reached: {type(exc).__name__}") from exc
    return response.content


def recording_delete(*, tenant: Tenant, recording_sid: str) -> None:
    """Delete the recording at Twilio, which bills its storage by the month."""
    sid = account_sid_for(tenant)
    client = _client(sid, auth_token_for(tenant), settings.TWILIO_API_BASE_URL)
    _ask(lambda: client.api.v2010.accounts(sid).recordings(recording_sid).delete())


def _api_base() -> str:
    return (settings.TWILIO_API_BASE_URL or "https://api.twilio.com").rstrip("/") + "/"
