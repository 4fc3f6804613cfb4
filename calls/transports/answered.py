"""Calls the voice webhook just answered with a socket (relay, stream), kept in this process for
that socket's handshake.

Twilio opens the socket a moment after the webhook's answer, most often to the same server
process: the handshake then takes the call (with its tenant) from here instead of reading it
again. Each call is taken once, within HANDOFF_SECONDS; a socket that lands on another process,
or later, reads the call from the database. A call that ends in this process meanwhile (the
caller hung up before the socket opened) is forgotten, so its handshake is refused; one that
ends in another process is caught by the conversation's first trip, which notes the process
holding the call only while it is live (`calls.services.call_hold`), and the socket is closed.
"""

from __future__ import annotations

import copy
import pickle
import threading
import time
import uuid

from django.dispatch import receiver

from calls import signals
from calls.models import Call

HANDOFF_SECONDS = 30.0
MAX_KEPT = 2_000  # calls waiting for their socket in one process; past it, the oldest go

_lock = threading.Lock()
_kept: dict[uuid.UUID, tuple[float, bytes]] = {}  # insertion order: oldest first


def keep(call: Call) -> None:
    """Keep the just answered `call` (and its tenant, nothing else it was read with) for its
    socket's handshake in this process."""
    handed = copy.copy(call)
    handed._state = copy.copy(call._state)
    handed._state.fields_cache = {"tenant": call.tenant}
    kept = pickle.dumps(handed, protocol=pickle.HIGHEST_PROTOCOL)
    now = time.monotonic()
    with _lock:
        # The oldest first: those past their time (their socket went to another process) or
        # past the limit go.
        while _kept:
            oldest = next(iter(_kept))
            if len(_kept) < MAX_KEPT and now - _kept[oldest][0] <= HANDOFF_SECONDS:
                break
            del _kept[oldest]
        _kept.pop(call.id, None)  # a webhook retry: kept again, as the newest
        _kept[call.id] = (now, kept)


def take(call_id: uuid.UUID) -> Call | None:
    """The call the webhook kept for this handshake (taken: a second handshake reads the
    database), or None."""
    with _lock:
        entry = _kept.pop(call_id, None)
    if entry is None or time.monotonic() - entry[0] > HANDOFF_SECONDS:
        return None
    return pickle.loads(entry[1])


@receiver(signals.call_ended, dispatch_uid="answered-call-ended")
def _forget_ended(sender: object, call: Call, **kwargs: object) -> None:
    with _lock:
        _kept.pop(call.id, None)
