"""Call events for the live dashboard, published to the tenant's and the staff groups.

Publishing is best effort: a call never fails because the channel layer is down.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

logger = logging.getLogger(__name__)

STAFF_GROUP = "calls.staff"


def tenant_group(tenant_id: object) -> str:
    return f"calls.tenant.{tenant_id}"


def event_payload(kind: str, *, call: Any, **data: Any) -> dict:
    return {
        "type": "call.event",  # the consumer's handler: call_event()
        "event": kind,
        "tenant": str(call.tenant_id) if call.tenant_id else None,
        "call": str(call.id),
        "call_sid": call.call_sid,
        "at": timezone.now().isoformat(),
        "data": data,
    }


async def apublish(kind: str, *, call: Any, **data: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = event_payload(kind, call=call, **data)
    try:
        if call.tenant_id:
            await layer.group_send(tenant_group(call.tenant_id), message)
        await layer.group_send(STAFF_GROUP, message)
    except Exception:
        logger.warning("could not publish call event", extra={"event": kind}, exc_info=True)


def publish(kind: str, *, call: Any, **data: Any) -> None:
    """Publish `kind` (started, turn, interrupted, ended, rejected, error) for `call`."""
    try:
        async_to_sync(apublish)(kind, call=call, **data)
    except Exception:
        logger.warning("could not publish call event", extra={"event": kind}, exc_info=True)
