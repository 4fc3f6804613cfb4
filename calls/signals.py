"""What calls tell the floors above them, which calls cannot import."""

from __future__ import annotations

from django.dispatch import Signal

# A caller's words were stored (`call`, `text`): e.g. "stop calling me" for the do-not-call list.
caller_spoke = Signal()
