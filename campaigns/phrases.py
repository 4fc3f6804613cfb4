"""What the platform says on a call about outbound calling (see `calls.phrases`)."""

from __future__ import annotations

from calls.phrases import say as say
from core.phrases import _

# Told to the caller (through the model) when a callback they asked for cannot be scheduled.
CALLBACK_NOT_SCHEDULED = _(
    "I'm sorry, I couldn't schedule the call back just now. Please call us again later."
)
