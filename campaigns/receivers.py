"""Campaigns listening to calls: a caller who asks not to be called again is put on the list."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django_scopes import scope

from calls.models import Call
from campaigns import recordings, services
from campaigns.models import DoNotCall
from campaigns.tasks import rewire_tenant_numbers, unwire_number
from tenants.models import PhoneNumber, Tenant

STOP_REQUEST = re.compile(
    r"\b(stop|quit|don'?t|do not|never)\s+(calling|call|ringing|phoning)\s+(me|us|this number)\b"
    r"|\bremove (me|my number|this number) from (your|the) (list|calling list)\b"
    r"|\b(put|add) (me|my number) (on|to) (your|the) do[- ]not[- ]call list\b",
    re.IGNORECASE,
)


def note_stop_request(sender, *, call: Call, text: str, **kwargs) -> None:
    """ "Stop calling me" said on any call puts the other party's number on the tenant's list."""
    if call.tenant_id is None or not STOP_REQUEST.search(text[:2000]):
        return
    number = call.to_number if call.direction == "outbound" else call.from_number
    try:
        with scope(tenant=call.tenant_id):
            services.dnc_add(
                tenant=call.tenant,
                number=number,
                source=DoNotCall.Source.CALL,
                note=f"asked on call {call.id}",
            )
    except ValidationError:
        pass  # not a phone number (a web conversation): nothing to stop calling


def record_answered_call(sender, *, call: Call, **kwargs) -> None:
    """An inbound call whose assistant records calls: its answer starts the recording."""
    recordings.recording_start_inbound(call=call)


def note_number_account(sender, *, instance: PhoneNumber, **kwargs) -> None:
    """Before a number is deleted (alone, or with its tenant): note its tenant's own Twilio
    account, which the un-wiring needs after the tenant may be gone."""
    account = (
        Tenant.objects.filter(pk=instance.tenant_id)
        .exclude(twilio_account_sid="")
        .exclude(twilio_auth_token_encrypted="")
        .values_list("twilio_account_sid", "twilio_auth_token_encrypted")
        .first()
    )
    instance._twilio_account = account  # numbers of the platform's account: None


def unwire_removed_number(sender, *, instance: PhoneNumber, **kwargs) -> None:
    """A number left the platform: once that is committed, point it back at nothing at Twilio
    (a worker asks Twilio; only a number that still points at the platform is changed)."""
    account = getattr(instance, "_twilio_account", None)
    if account is None:
        return  # numbers of the platform's account are wired by staff
    account_sid, token_encrypted = account
    number = instance.number
    transaction.on_commit(lambda: unwire_number.delay(account_sid, token_encrypted, number))


def note_tenant_active(sender, *, instance: Tenant, **kwargs) -> None:
    """Before a tenant is saved: whether it was active (its numbers follow a change)."""
    if instance.pk is not None:
        was = Tenant.objects.filter(pk=instance.pk).values_list("active", flat=True).first()
        instance._was_active = was


def wire_numbers_of_switched_tenant(sender, *, instance: Tenant, created: bool, **kwargs) -> None:
    """A tenant switched off: its own account's numbers are pointed at nothing (the platform
    would only refuse their calls); switched on again: they point at the platform again."""
    was = getattr(instance, "_was_active", None)
    if created or was is None or was == instance.active:
        return
    if not (instance.twilio_account_sid and instance.has_twilio_auth_token):
        return
    if instance.active:
        tenant_id = str(instance.id)
        transaction.on_commit(lambda: rewire_tenant_numbers.delay(tenant_id))
        return
    with scope(tenant=instance.id):
        numbers = list(PhoneNumber.objects.filter(tenant=instance).values_list("number", flat=True))
    account = (instance.twilio_account_sid, instance.twilio_auth_token_encrypted)
    for number in numbers:
        transaction.on_commit(lambda number=number: unwire_number.delay(*account, number))
