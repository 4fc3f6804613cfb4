"""What happens to a call, for the apps above `calls` (webhooks, analysis, costs, campaigns).

`calls` may not import those apps, so it announces its changes instead. Each call signal is sent
inside the database transaction that makes the change, so a receiver that writes rows (an outbox
event) commits or rolls back with the change itself; work outside the database (sending, asking an
LLM) belongs in `transaction.on_commit`. Every signal is sent once per call and change: a repeated
webhook or status callback that changes nothing sends nothing.

Receivers get `call` (the Call, as saved).
"""

from __future__ import annotations

from django.dispatch import Signal

# Answered: the conversation begins (not sent for rejected calls). Sent before the answer's
# TwiML is made: a receiver may adjust the call's config snapshot for it (saving it), e.g. a
# recorded call's notice and `recording_callback_path`, which starts Twilio's recording.
call_started = Signal()
call_ended = Signal()  # an answered call is over (its final status, duration and outcome are set)
call_transferred = Signal()  # the caller is being handed to a human
# A caller's words were stored (`call`, `text`): e.g. "stop calling me" for the do-not-call list.
caller_spoke = Signal()
