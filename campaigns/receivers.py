"""Campaigns listening to calls: a caller who asks not to be called again is put on the list."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django_scopes import scope

from calls.models import Call
from campaigns import recordings, services
from campaigns.models import DoNotCall
from campaigns.tasks import unwire_number
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


def unwire_removed_number(sender, *, instance: PhoneNumber, **kwargs) -> None:
    """A number left the platform: once that is committed, point it back at nothing at Twilio
    (a worker asks Twilio; only a number that still points at the platform is changed)."""
    own_account = Tenant.objects.filter(pk=instance.tenant_id).exclude(twilio_account_sid="")
    if not own_account.exists():
        return  # numbers of the platform's account are wired by staff
    tenant_id, number = str(instance.tenant_id), instance.number
    transaction.on_commit(lambda: unwire_number.delay(tenant_id, number))
