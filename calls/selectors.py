"""Reads of calls and turns."""

from __future__ import annotations

import uuid

from django_scopes import scopes_disabled

from calls.models import Call


def unscoped_call_by_sid(call_sid: str) -> Call | None:
    """The Call with Twilio's CallSid, across tenants, or None.

    A named bypass of tenant scoping for webhook entry points: the call tells us the tenant,
    whose scope the caller then enters.
    """
    if not call_sid or len(call_sid) > 64:
        return None
    with scopes_disabled():
        try:
            return Call.objects.select_related("tenant").get(call_sid=call_sid)
        except Call.DoesNotExist:
            return None


def unscoped_call_by_id(call_id: uuid.UUID) -> Call | None:
    """The Call with this id, across tenants, or None.

    A named bypass of tenant scoping for the relay handshake: the call tells us the tenant
    whose token signs it.
    """
    with scopes_disabled():
        try:
            return Call.objects.select_related("tenant").get(id=call_id)
        except Call.DoesNotExist:
            return None
