"""Writes for outbound calls, campaigns and the do-not-call list.

Callers enter the tenant's scope first. An outbound call is written (Call + OutboundCall, status
ringing, a placeholder CallSid) before Twilio is asked, and Twilio's webhooks name it by its id,
so every step after that is idempotent and a dialler that dies mid-request loses nothing.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from twilio.twiml.voice_response import VoiceResponse

from assistants.models import AssistantConfig
from assistants.versions import version_for
from calls import events, phrases
from calls import services as call_services
from calls.models import Call
from campaigns import twilio_calls
from campaigns.models import (
    Campaign,
    Contact,
    DoNotCall,
    OutboundCall,
    OutboundSettings,
    RecordingSettings,
)
from tenants import generations
from tenants.models import PhoneNumber, Tenant
from tenants.phone import normalize_e164

logger = logging.getLogger(__name__)

# A Call's sid until Twilio names it (Twilio's own start with "CA").
PLACEHOLDER_SID_PREFIX = "OUT"
MAX_VARIABLES = 30
MAX_VARIABLE_CHARS = 200
_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,39}"
_VARIABLE = re.compile(r"\{\{\s*(" + _NAME + r")\s*\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MACHINE = {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}


class OutboundError(Exception):
    """A call that cannot be placed; the message says why, for the API and the admin."""


class DoNotCallError(OutboundError):
    pass


# --- variables ----------------------------------------------------------------------------------
def variables_clean(raw: object) -> dict[str, str]:
    """Contact variables as short, printable text under simple names; raise ValidationError."""
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise ValidationError("Variables must be an object of names and values.")
    if len(raw) > MAX_VARIABLES:
        raise ValidationError(f"At most {MAX_VARIABLES} variables.")
    clean = {}
    for name, value in raw.items():
        if not (isinstance(name, str) and re.fullmatch(_NAME, name)):
            raise ValidationError(f"{name!r} is not a variable name (letters, digits, _).")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValidationError(f"The value of {name} must be text.")
        text = _CONTROL.sub(" ", str(value)).strip()
        if len(text) > MAX_VARIABLE_CHARS:
            raise ValidationError(f"The value of {name} is over {MAX_VARIABLE_CHARS} characters.")
        clean[name] = text
    return clean


def render(text: str, variables: dict[str, str]) -> str:
    """`text` with each `{{name}}` replaced by its variable (nothing for an unknown name)."""
    return _VARIABLE.sub(lambda match: variables.get(match.group(1), ""), text)


# --- do-not-call --------------------------------------------------------------------------------
def dnc_contains(*, tenant: Tenant, number: str) -> bool:
    return DoNotCall.objects.filter(tenant=tenant, number=number).exists()


def dnc_add(
    *, tenant: Tenant, number: str, source: str = DoNotCall.Source.MANUAL, note: str = ""
) -> DoNotCall:
    """Put a number on the tenant's list (again: nothing changes). Raises ValidationError."""
    number = normalize_e164(number)
    try:
        with transaction.atomic():
            return DoNotCall.objects.create(
                tenant=tenant, number=number, source=source, note=note[:200]
            )
    except IntegrityError:
        return DoNotCall.objects.get(tenant=tenant, number=number)


# --- one outbound call --------------------------------------------------------------------------
def call_place(
    *,
    tenant: Tenant,
    assistant: AssistantConfig,
    phone_number: PhoneNumber,
    to: str,
    variables: dict | None = None,
) -> OutboundCall:
    """Call `to` now from one of the tenant's numbers, with `assistant` and `variables` filled
    into its prompt and greeting: the API, the admin and an assistant's promised callback.

    Raises ValidationError (bad number or variables, another tenant's assistant or number),
    DoNotCallError, or OutboundError when Twilio refused or could not be reached (the Call is
    then stored as failed, with the reason).
    """
    to = normalize_e164(to)
    variables = variables_clean(variables)
    if assistant.tenant_id != tenant.id or phone_number.tenant_id != tenant.id:
        raise ValidationError("Choose an assistant and a number of your own.")
    if not phone_number.active:
        raise ValidationError({"phone_number": "This number is switched off."})
    if dnc_contains(tenant=tenant, number=to):
        raise DoNotCallError(f"{to} is on the do-not-call list.")
    with transaction.atomic():
        outbound = outbound_prepare(
            tenant=tenant,
            assistant=assistant,
            phone_number=phone_number,
            to=to,
            variables=variables,
        )
    return outbound_dial(outbound=outbound)


def outbound_prepare(
    *,
    tenant: Tenant,
    assistant: AssistantConfig,
    phone_number: PhoneNumber,
    to: str,
    variables: dict[str, str],
    contact: Contact | None = None,
) -> OutboundCall:
    """Write the Call (ringing, placeholder sid) and its OutboundCall, before Twilio is asked."""
    version = version_for(assistant=assistant, number=phone_number)
    config = call_services.call_config(assistant, version)
    config["system_prompt"] = render(config["system_prompt"], variables)
    config["greeting"] = render(config["greeting"], variables)
    if recording_settings_for(assistant_id=assistant.id).announced:
        announce_recording(config)
    call = Call.objects.create(
        tenant=tenant,
        phone_number=phone_number,
        assistant=assistant,
        version=version,
        config_snapshot=config,
        call_sid=PLACEHOLDER_SID_PREFIX + uuid.uuid4().hex,
        from_number=phone_number.number,
        to_number=to,
        direction="outbound",
        status=Call.Status.RINGING,
        mode=call_services.call_mode_for(assistant, version=version),
        started_at=timezone.now(),
    )
    return OutboundCall.objects.create(
        tenant=tenant, call=call, contact=contact, variables=variables
    )


def outbound_settings_for(*, assistant_id: object) -> OutboundSettings:
    """The assistant's outbound settings (the defaults when it has none)."""
    found = OutboundSettings.objects.filter(assistant_id=assistant_id).first()
    return found or OutboundSettings()


def recording_settings_for(
    *, assistant_id: object, tenant: Tenant | None = None
) -> RecordingSettings:
    """The assistant's recording settings (not recorded when it has none). With its `tenant`
    row just read, from this process' copy while they are unchanged (tenants.generations);
    the one returned then is shared: not to be modified."""

    def read() -> RecordingSettings:
        found = RecordingSettings.objects.filter(assistant_id=assistant_id).first()
        return found or RecordingSettings()

    if tenant is None:
        return read()
    return generations.cached(tenant, f"recording:{assistant_id}", read)


def recording_settings_set(*, assistant: AssistantConfig, **fields: object) -> RecordingSettings:
    """Change the assistant's recording settings (the ones not named keep their value)."""
    settings, _ = RecordingSettings.objects.get_or_create(
        assistant=assistant, defaults={"tenant_id": assistant.tenant_id}
    )
    for name, value in fields.items():
        setattr(settings, name, value)
    settings.full_clean()
    settings.save()
    return settings


def announce_recording(config: dict) -> None:
    """Start the greeting of a call's config snapshot with "This call is recorded." (in the
    assistant's language)."""
    notice = phrases.say(phrases.CALL_IS_RECORDED, config=config)
    config["greeting"] = f"{notice} {config.get('greeting', '')}".strip()


def outbound_dial(
    *, outbound: OutboundCall, settings: OutboundSettings | None = None
) -> OutboundCall:
    """Ask Twilio to place a prepared call. Raises OutboundError when it will not (the Call is
    closed as failed). `settings`: the assistant's outbound settings, when the caller has them."""
    call = outbound.call
    settings = settings or outbound_settings_for(assistant_id=call.assistant_id)
    try:
        sid = twilio_calls.call_create(
            tenant=call.tenant,
            to=call.to_number,
            from_=call.from_number,
            call_id=call.id,
            detect_machines=settings.detect_machines,
            record=recording_settings_for(assistant_id=call.assistant_id).record_calls,
        )
    except twilio_calls.TwilioUnavailable as exc:
        call_services.call_status_update(
            call=call, status=Call.Status.FAILED, sequence=None, duration=0
        )
        call_services.call_set_outcome(call=call, outcome=Call.Outcome.FAILED, error=str(exc))
        raise OutboundError(str(exc)) from exc
    outbound_adopt_sid(outbound=outbound, call_sid=sid)
    call.call_sid = sid
    outbound.placed_at = outbound.placed_at or timezone.now()
    return outbound


def outbound_adopt_sid(*, outbound: OutboundCall, call_sid: str) -> None:
    """Twilio named the call (its create answered, or a webhook arrived first): keep its sid."""
    if not call_sid or len(call_sid) > 64:
        return
    Call.objects.filter(
        pk=outbound.call_id,
        tenant_id=outbound.tenant_id,
        call_sid__startswith=PLACEHOLDER_SID_PREFIX,
    ).update(call_sid=call_sid)
    OutboundCall.objects.filter(pk=outbound.pk, placed_at__isnull=True).update(
        placed_at=timezone.now()
    )


def outbound_answered(*, outbound: OutboundCall, call_sid: str) -> Call:
    """The callee picked up (Twilio fetched the voice URL): the conversation starts."""
    outbound_adopt_sid(outbound=outbound, call_sid=call_sid)
    now = timezone.now()
    updated = Call.objects.filter(
        pk=outbound.call_id, tenant_id=outbound.tenant_id, status=Call.Status.RINGING
    ).update(status=Call.Status.IN_PROGRESS, answered_at=now)
    call = Call.objects.select_related("tenant").get(pk=outbound.call_id)
    if updated:
        events.publish(
            "started",
            call=call,
            from_number=call.from_number,
            to_number=call.to_number,
            assistant=call.config_snapshot.get("name", ""),
            mode=call.mode,
        )
    return call


def outbound_status(
    *,
    outbound: OutboundCall,
    call_sid: str,
    status: str,
    sequence: int | None,
    duration: int | None,
    timestamp: datetime | None,
) -> None:
    """A status callback: update the Call once, and settle its contact when it is over."""
    outbound_adopt_sid(outbound=outbound, call_sid=call_sid)
    call = Call.objects.get(pk=outbound.call_id, tenant_id=outbound.tenant_id)
    call_services.call_status_update(
        call=call, status=status, sequence=sequence, duration=duration, timestamp=timestamp
    )
    call.refresh_from_db()
    if call.status in Call.FINAL_STATUSES and outbound.contact_id:
        contact_settle(outbound=outbound, call=call)


def outbound_machine_answered(*, outbound: OutboundCall, call_sid: str, answered_by: str) -> None:
    """Twilio's answering-machine detection decided: at the beep, leave the assistant's message
    or hang up, as its voicemail settings say."""
    outbound_adopt_sid(outbound=outbound, call_sid=call_sid)
    machine = answered_by in _MACHINE
    kind = OutboundCall.AnsweredBy.MACHINE if machine else OutboundCall.AnsweredBy.HUMAN
    changed = OutboundCall.objects.filter(pk=outbound.pk, answered_by="").update(answered_by=kind)
    if not (machine and changed):
        return
    call = Call.objects.select_related("tenant").get(pk=outbound.call_id)
    if call.status in Call.FINAL_STATUSES:
        return
    settings = OutboundSettings.objects.filter(assistant_id=call.assistant_id).first()
    message = render(settings.message, outbound.variables) if settings else ""
    try:
        if settings and settings.action == OutboundSettings.Action.LEAVE_MESSAGE and message:
            response = VoiceResponse()
            response.say(message, language=call.config_snapshot.get("language", "en-US"))
            response.hangup()
            twilio_calls.call_redirect(
                tenant=call.tenant, call_sid=call.call_sid, twiml=str(response)
            )
            OutboundCall.objects.filter(pk=outbound.pk).update(voicemail_left=True)
        else:
            twilio_calls.call_hang_up(tenant=call.tenant, call_sid=call.call_sid)
    except twilio_calls.TwilioUnavailable:
        logger.warning("could not act on an answering machine", exc_info=True)


# --- campaigns ----------------------------------------------------------------------------------
def contact_settle(*, outbound: OutboundCall, call: Call) -> None:
    """The contact's call is over: note the outcome, or queue a retry for busy / no answer /
    failed calls while attempts remain. Repeats change nothing."""
    with transaction.atomic():
        contact = (
            Contact.objects.select_for_update()
            .select_related("campaign")
            .get(pk=outbound.contact_id, tenant_id=outbound.tenant_id)
        )
        if contact.state != Contact.State.DIALLING or contact.last_call_id != call.id:
            return
        answered_by = OutboundCall.objects.values_list("answered_by", flat=True).get(pk=outbound.pk)
        outcome = _outcome(call, answered_by)
        campaign = contact.campaign
        retry = (
            outcome in Contact.RETRIED
            and contact.attempts < campaign.max_attempts
            and campaign.status in (Campaign.Status.RUNNING, Campaign.Status.PAUSED)
        )
        contact.outcome = outcome
        if retry:
            contact.state = Contact.State.PENDING
            contact.next_attempt_at = timezone.now() + timedelta(
                seconds=campaign.retry_delay_seconds
            )
        else:
            contact.state = Contact.State.DONE
            contact.next_attempt_at = None
        contact.save(update_fields=["state", "outcome", "next_attempt_at", "updated_at"])
    campaign_finish_if_done(campaign=campaign)


def _outcome(call: Call, answered_by: str) -> str:
    if call.status == Call.Status.COMPLETED:
        if answered_by == OutboundCall.AnsweredBy.MACHINE:
            return Contact.Outcome.VOICEMAIL
        return Contact.Outcome.ANSWERED if call.answered_at else Contact.Outcome.FAILED
    if call.status == Call.Status.BUSY:
        return Contact.Outcome.BUSY
    if call.status == Call.Status.NO_ANSWER:
        return Contact.Outcome.NO_ANSWER
    return Contact.Outcome.FAILED


def campaign_finish_if_done(*, campaign: Campaign) -> bool:
    """A running campaign with no contact left to call or in a call is completed."""
    if campaign.status != Campaign.Status.RUNNING:
        return False
    left = campaign.contacts.exclude(state=Contact.State.DONE).exists()
    if left:
        return False
    return bool(
        Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.RUNNING).update(
            status=Campaign.Status.COMPLETED, finished_at=timezone.now()
        )
    )


_MOVES = {
    "start": ({Campaign.Status.DRAFT}, Campaign.Status.RUNNING),
    "pause": ({Campaign.Status.RUNNING}, Campaign.Status.PAUSED),
    "resume": ({Campaign.Status.PAUSED}, Campaign.Status.RUNNING),
    "cancel": (
        {Campaign.Status.DRAFT, Campaign.Status.RUNNING, Campaign.Status.PAUSED},
        Campaign.Status.CANCELED,
    ),
}


def campaign_move(*, campaign: Campaign, action: str) -> Campaign:
    """Start, pause, resume or cancel a campaign; raise ValidationError for a move its status
    does not allow. Calls in progress finish; canceling ends every contact not yet called."""
    allowed, target = _MOVES[action]
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk, tenant=campaign.tenant)
        if locked.status not in allowed:
            raise ValidationError(
                f"A {locked.get_status_display().lower()} campaign cannot {action}."
            )
        locked.status = target
        if action == "start":
            locked.started_at = timezone.now()
        if action == "cancel":
            locked.finished_at = timezone.now()
            locked.contacts.filter(state=Contact.State.PENDING).update(
                state=Contact.State.DONE, outcome=Contact.Outcome.CANCELED, next_attempt_at=None
            )
        locked.save()
    if action in ("start", "resume"):
        campaign_finish_if_done(campaign=locked)
        locked.refresh_from_db()
    return locked
