"""Writes for calls and turns. Callers enter the tenant scope before calling these."""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from assistants.versions import version_for
from calls import events, phrases, signals
from calls.models import Call, Turn
from core import load, metrics
from core.rows import RowInserter
from tenants import ratelimits
from tenants.models import PhoneNumber, RateLimit, Tenant

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

logger = logging.getLogger(__name__)

_OUTCOME_FOR_STATUS = {
    Call.Status.BUSY: Call.Outcome.FAILED,
    Call.Status.NO_ANSWER: Call.Outcome.FAILED,
    Call.Status.FAILED: Call.Outcome.FAILED,
    Call.Status.CANCELED: Call.Outcome.CALLER_HUNG_UP,
}


@dataclass(frozen=True)
class Admission:
    """The answer to an incoming call: the Call to go on with, or why it is refused."""

    call: Call | None = None
    message: str = ""  # what to say before hanging up, in the assistant's language
    reject: bool = False  # refuse with a busy signal instead of speaking
    language: str = "en-US"  # the language `message` is said in


def call_admit(
    *,
    number: PhoneNumber | None,
    call_sid: str,
    from_number: str,
    to_number: str,
    direction: str = "inbound",
) -> Admission:
    """Decide whether an incoming call to `number` is answered, and start it if so.

    Unknown or inactive numbers, inactive tenants and rate limits are refused and recorded as
    rejected calls. A repeated webhook for a call already started gets the same Call. The
    caller enters the scope of the number's tenant first.
    """
    tenant = number.tenant if number else None
    refusal = {"call_sid": call_sid, "from_number": from_number, "to_number": to_number}
    if number is None or tenant is None:
        call_reject(
            tenant=None, phone_number=None, outcome=Call.Outcome.REJECTED_UNKNOWN_NUMBER, **refusal
        )
        return _refusal(phrases.UNKNOWN_NUMBER, number=None)
    if not (number.active and tenant.active and number.assistant_id):
        call_reject(
            tenant=tenant, phone_number=number, outcome=Call.Outcome.REJECTED_INACTIVE, **refusal
        )
        return _refusal(phrases.NOT_AVAILABLE, number=number)
    # A webhook retry names a call already started (or refused): its status, or None.
    existing = (
        Call.objects.filter(tenant=tenant, call_sid=call_sid)
        .values_list("status", flat=True)
        .first()
    )
    if existing is None:
        if busy := load.overloaded():
            version = version_for(assistant=number.assistant, number=number)
            mode = call_mode_for(number.assistant, version=version)
            call_reject_overloaded(
                tenant=tenant, phone_number=number, mode=mode, busy=busy, **refusal
            )
            return _refusal(phrases.LINES_BUSY, number=number)
        verdict = ratelimits.call_admit(tenant=tenant, call_sid=call_sid, caller=from_number)
        if not verdict.allowed:
            call_reject(
                tenant=tenant,
                phone_number=number,
                outcome=Call.Outcome.REJECTED_RATE_LIMIT,
                reason=f"{verdict.limit.kind} limit {verdict.limit.limit}",
                **refusal,
            )
            return _refusal(
                verdict.message, number=number, reject=verdict.action == RateLimit.Action.REJECT
            )
    elif existing == Call.Status.REJECTED:
        return _refusal(phrases.NOT_AVAILABLE, number=number)
    mode = call_mode_for(
        number.assistant, version=version_for(assistant=number.assistant, number=number)
    )
    try:
        call, _ = call_start(
            phone_number=number,
            call_sid=call_sid,
            from_number=from_number,
            to_number=to_number,
            direction=direction,
            mode=mode,
            # Most often this process takes the call's socket too (`call_hold`).
            server=load.server_id() if mode in Call.SOCKET_MODES else "",
        )
    except Exception:
        if existing is None:  # the line taken above is given back
            ratelimits.call_release(tenant_id=tenant.id, call_sid=call_sid)
        raise
    return Admission(call=call)


@dataclass(frozen=True)
class Refusal:
    """A conversation refused before it started, and what to tell the user."""

    message: str


def call_reject_overloaded(
    *,
    tenant: Tenant,
    phone_number: PhoneNumber | None,
    mode: str,
    busy: list[str],
    call_sid: str,
    from_number: str,
    to_number: str,
) -> Call:
    """Record a new call refused because this server process is past its load thresholds
    (`busy`: which ones), and count it."""
    load.refusal_counted(mode)
    return call_reject(
        tenant=tenant,
        phone_number=phone_number,
        call_sid=call_sid,
        from_number=from_number,
        to_number=to_number,
        outcome=Call.Outcome.REJECTED_OVERLOADED,
        reason=f"overloaded ({', '.join(busy)})",
        mode=mode,
    )


def call_mode_for(assistant: AssistantConfig, *, version=None) -> str:
    """The Call.Mode of a phone call answered by `assistant` (on `version`, when it has one)."""
    mode = version.config.get("mode") if version is not None else assistant.mode
    return {
        AssistantConfig.Mode.RELAY: Call.Mode.RELAY,
        AssistantConfig.Mode.STREAM: Call.Mode.STREAM,
    }.get(mode, Call.Mode.GATHER)


def _refusal(message: str, *, number: PhoneNumber | None, reject: bool = False) -> Admission:
    """A refused call's Admission: `message` in the language of the number's assistant (a
    number without one: English)."""
    assistant = number.assistant if number is not None and number.assistant_id else None
    config = assistant.snapshot() if assistant is not None else {}
    language = config.get("language") or "en-US"
    return Admission(message=phrases.say(message, config=config), reject=reject, language=language)


def call_start(
    *,
    phone_number: PhoneNumber,
    call_sid: str,
    from_number: str,
    to_number: str,
    direction: str = "inbound",
    mode: str = Call.Mode.GATHER,
    server: str = "",
) -> tuple[Call, bool]:
    """Create the Call for an incoming call (or return the existing one on a webhook retry).
    It runs on the number's pinned version of its assistant, else the published one. `server`:
    the server process expected to hold its socket (see `call_hold`)."""
    assistant = phone_number.assistant
    version = version_for(assistant=assistant, number=phone_number) if assistant else None
    try:
        with transaction.atomic():
            call = Call.objects.create(
                tenant=phone_number.tenant,
                phone_number=phone_number,
                assistant=assistant,
                version=version,
                config_snapshot=call_config(assistant, version),
                call_sid=call_sid,
                from_number=from_number[:64],
                to_number=to_number[:64],
                direction=direction[:32],
                status=Call.Status.IN_PROGRESS,
                mode=mode,
                server=server[:128],
                started_at=timezone.now(),
                answered_at=timezone.now(),
            )
            signals.call_started.send(sender=Call, call=call)
    except IntegrityError:
        return Call.objects.get(call_sid=call_sid, tenant=phone_number.tenant), False
    metrics.CALLS.labels(tenant=phone_number.tenant.slug, mode=mode, result="started").inc()
    events.publish(
        "started",
        call=call,
        from_number=call.from_number,
        to_number=call.to_number,
        assistant=assistant.name if assistant else "",
        mode=call.mode,
    )
    return call, True


def call_config(assistant: AssistantConfig | None, version) -> dict:
    """The config a new call runs with: its version's, else (an assistant never published) the
    assistant's settings of the moment."""
    if version is not None:
        return dict(version.config)
    return assistant.snapshot() if assistant is not None else {}


def call_start_web(
    *, assistant: AssistantConfig, user: AbstractBaseUser
) -> Call | ratelimits.Verdict | Refusal:
    """Start a conversation with `assistant` from the browser (a call of mode "web").

    Refused, like a phone call, while this server process is past its load thresholds, and
    counted against the tenant's concurrent-calls limit; returns the refusal (with the `message`
    to show) instead of a Call when it is refused.
    """
    tenant = assistant.tenant
    call_sid = "WEB" + uuid.uuid4().hex
    if busy := load.overloaded():
        call_reject_overloaded(
            tenant=tenant,
            phone_number=None,
            mode=Call.Mode.WEB,
            busy=busy,
            call_sid=call_sid,
            from_number=f"web:{user.get_username()}",
            to_number="",
        )
        return Refusal(message=phrases.LINES_BUSY)
    verdict = ratelimits.call_admit(tenant=tenant, call_sid=call_sid, caller=f"web:{user.pk}")
    if not verdict.allowed:
        return verdict
    now = timezone.now()
    version = version_for(assistant=assistant)
    with transaction.atomic():
        call = Call.objects.create(
            tenant=tenant,
            assistant=assistant,
            version=version,
            config_snapshot=call_config(assistant, version),
            call_sid=call_sid,
            from_number=f"web:{user.get_username()}"[:64],
            to_number="",
            direction="web",
            status=Call.Status.IN_PROGRESS,
            mode=Call.Mode.WEB,
            started_at=now,
            answered_at=now,
        )
        signals.call_started.send(sender=Call, call=call)
    metrics.CALLS.labels(tenant=tenant.slug, mode=Call.Mode.WEB, result="started").inc()
    events.publish(
        "started",
        call=call,
        from_number=call.from_number,
        to_number="",
        assistant=assistant.name,
        mode=call.mode,
    )
    return call


def call_reject(
    *,
    tenant: Tenant | None,
    phone_number: PhoneNumber | None,
    call_sid: str,
    from_number: str,
    to_number: str,
    outcome: str,
    reason: str = "",
    mode: str = Call.Mode.GATHER,
) -> Call:
    """Record a call we refused (unknown number, inactive, rate limit, overload). Idempotent per
    CallSid."""
    now = timezone.now()
    # An unknown number has no tenant yet, so this record is written outside any tenant scope.
    with scopes_disabled():
        call, created = Call.objects.get_or_create(
            call_sid=call_sid,
            defaults={
                "tenant": tenant,
                "phone_number": phone_number,
                "assistant": phone_number.assistant if phone_number else None,
                "from_number": from_number[:64],
                "to_number": to_number[:64],
                "status": Call.Status.REJECTED,
                "mode": mode,
                "outcome": outcome,
                "error": reason,
                "started_at": now,
                "ended_at": now,
                "duration_seconds": 0,
            },
        )
    if created:
        metrics.CALLS.labels(
            tenant=tenant.slug if tenant else "", mode=call.mode, result=outcome
        ).inc()
        events.publish("rejected", call=call, outcome=outcome, reason=reason)
    return call


def _locked_with_tenant(call: Call) -> Call:
    """The call's row, locked for its change, with its tenant read afresh in the same query: what
    the call's end does next (its webhook events, the spend budget) reads the tenant's current
    settings from it."""
    return (
        Call.objects.select_for_update(of=("self",))
        .select_related("tenant")
        .get(pk=call.pk, tenant_id=call.tenant_id)
    )


def call_status_update(
    *,
    call: Call,
    status: str,
    sequence: int | None,
    duration: int | None,
    timestamp: datetime | None = None,
) -> bool:
    """Apply a Twilio status callback once. Repeats and late arrivals change nothing.

    Returns whether anything changed. A final status frees the call's line at once and tells
    the dashboard.
    """
    with transaction.atomic():
        call = _locked_with_tenant(call)
        if call.status in Call.FINAL_STATUSES:
            return False
        if sequence is not None and sequence <= call.status_sequence:
            return False
        if status not in Call.Status.values or status == Call.Status.REJECTED:
            return False
        if sequence is not None:
            call.status_sequence = sequence
        call.status = status
        final = status in Call.FINAL_STATUSES
        if final:
            call.ended_at = timestamp or timezone.now()
            if duration is not None:
                call.duration_seconds = max(duration, 0)
            elif call.answered_at:
                call.duration_seconds = int((call.ended_at - call.answered_at).total_seconds())
            if not call.outcome:
                call.outcome = _OUTCOME_FOR_STATUS.get(status, Call.Outcome.COMPLETED)
        call.save(update_fields=_CLOSING_FIELDS)
        if final:
            signals.call_ended.send(sender=Call, call=call)
    if final:
        ratelimits.call_release(tenant_id=call.tenant_id, call_sid=call.call_sid)
        events.publish(
            "ended",
            call=call,
            status=call.status,
            outcome=call.outcome,
            duration=call.duration_seconds,
        )
    return True


def call_set_outcome(*, call: Call, outcome: str, error: str = "") -> None:
    """Note how the call is ending (the final status callback closes it). A transfer to a human
    is announced once (`signals.call_transferred`)."""
    fields = {"outcome": outcome}
    if error:
        fields["error"] = error[:2000]
    with transaction.atomic():
        row = Call.objects.select_for_update().filter(pk=call.pk, tenant_id=call.tenant_id)
        previous = row.values_list("outcome", flat=True).first()
        row.update(**fields)
        if outcome == Call.Outcome.TRANSFERRED and previous != outcome:
            call.outcome = outcome
            signals.call_transferred.send(sender=Call, call=call)


def call_set_language(*, call: Call, language: str) -> None:
    """The conversation switched to `language` (BCP-47): later turns and webhooks go on in it."""
    Call.objects.filter(pk=call.pk, tenant_id=call.tenant_id).update(language=language[:35])
    call.language = language[:35]


def call_count_silence(*, call: Call, silent: bool) -> int:
    """Count a re-prompt for silence (or reset the count when the caller spoke)."""
    with transaction.atomic():
        locked = Call.objects.select_for_update().get(pk=call.pk, tenant_id=call.tenant_id)
        locked.silent_prompts = locked.silent_prompts + 1 if silent else 0
        locked.save(update_fields=["silent_prompts"])
    call.silent_prompts = locked.silent_prompts
    return locked.silent_prompts


def call_note_silence(*, call: Call) -> bool:
    """The caller said nothing: count it. True when it has gone on too long and the call
    should end (its outcome is noted as no input)."""
    if call_count_silence(call=call, silent=True) <= settings.MAX_SILENT_PROMPTS:
        return False
    call_set_outcome(call=call, outcome=Call.Outcome.NO_INPUT)
    return True


def turn_add(
    *,
    call: Call,
    role: str,
    text: str,
    sequence: int | None = None,
    publish: bool = True,
    **fields: object,
) -> Turn:
    """Append a turn to the call; sequence numbers are assigned under the call's row lock.

    `sequence`: the number the caller expects the turn to get (a relay session writes its
    call's turns one after another): the turn is inserted at once, and only if that number is
    taken does the locked path assign the next free one. `publish=False` leaves the dashboard
    event to the caller (who may send it without blocking on it).
    """
    turn = None
    if sequence is not None:
        try:
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                turn = _insert_turn(call, sequence, role, text, fields)
        except IntegrityError:
            turn = None
    if turn is None:
        with transaction.atomic():
            Call.objects.select_for_update().only("pk").get(pk=call.pk, tenant_id=call.tenant_id)
            last = Turn.objects.filter(call=call).aggregate(last=Max("sequence"))["last"]
            turn = _insert_turn(call, (last or 0) + 1, role, text, fields)
    metrics.turn_observe(
        mode=call.mode,
        role=role,
        source=turn.source,
        timings=fields,
        fallbacks=turn.fallbacks or [],
        cache_hit=turn.cache_hit,
    )
    if publish:
        events.publish("turn", call=call, turn=turn_as_event(turn))
    if role == Turn.Role.CALLER:
        # What listens (the do-not-call list) never breaks the turn: its errors are logged.
        signals.caller_spoke.send_robust(sender=Turn, call=call, text=text)
    return turn


# Two turns per question (the caller's and the answer's): their insert is built once (core.rows).
_turn_rows = RowInserter(Turn)


def _insert_turn(call: Call, sequence: int, role: str, text: str, fields: dict) -> Turn:
    return _turn_rows.insert(
        tenant_id=call.tenant_id,
        call=call,
        sequence=sequence,
        role=role,
        text=text,
        created_at=timezone.now(),
        **fields,
    )


def turn_as_event(turn: Turn) -> dict:
    return {
        "id": str(turn.id),
        "sequence": turn.sequence,
        "role": turn.role,
        "text": turn.text[:2000],
        "interrupted": turn.interrupted,
        "heard_text": turn.heard_text[:2000],
        "language": turn.language,
        "transcript_final_ms": turn.transcript_final_ms,
        "llm_first_token_ms": turn.llm_first_token_ms,
        "llm_done_ms": turn.llm_done_ms,
        "first_audio_ms": turn.first_audio_ms,
        "response_sent_ms": turn.response_sent_ms,
        "last_token_sent_ms": turn.last_token_sent_ms,
        "source": turn.source,
        "cache_hit": turn.cache_hit,
        "model": turn.model_used,
        "route": turn.route,
        "route_reason": turn.route_reason,
        "fallbacks": turn.fallbacks,
        "tool_calls": turn.tool_calls,
        "passages": turn.passages,
        "error": turn.error[:500],
    }


def call_history(*, call: Call) -> list[tuple[str, str]]:
    """(role, text) of the call's turns in order; for an interrupted answer, what was heard."""
    return call_history_and_last(call=call)[0]


def call_history_and_last(*, call: Call) -> tuple[list[tuple[str, str]], int]:
    """`call_history()` and the sequence number of the call's last turn (0: none yet)."""
    rows = Turn.objects.filter(call=call).order_by("sequence")
    history, last = [], 0
    for role, text, heard, interrupted, sequence in rows.values_list(
        "role", "text", "heard_text", "interrupted", "sequence"
    ):
        history.append((role, heard if interrupted else text))
        last = sequence
    return history, last


# What a status callback or a call's end changes (the rest of the row, such as its snapshot,
# is not written again).
_CLOSING_FIELDS = [
    "status",
    "status_sequence",
    "ended_at",
    "duration_seconds",
    "outcome",
    "error",
]


def call_finish(*, call: Call, outcome: str = Call.Outcome.COMPLETED, error: str = "") -> bool:
    """Close a call we know has ended (a relay session over, or a failure on our side) before
    Twilio's status callback, and free its line.

    Idempotent: a call already closed is left as it is, and an outcome already noted (e.g.
    transferred) is kept. Returns whether anything changed.
    """
    with transaction.atomic():
        call = _locked_with_tenant(call)
        if call.status in Call.FINAL_STATUSES:
            return False
        call.status = Call.Status.COMPLETED
        call.ended_at = timezone.now()
        if call.answered_at:
            call.duration_seconds = int((call.ended_at - call.answered_at).total_seconds())
        call.outcome = call.outcome or outcome
        if error:
            call.error = error[:2000]
        call.save(update_fields=_CLOSING_FIELDS)
        signals.call_ended.send(sender=Call, call=call)
    ratelimits.call_release(tenant_id=call.tenant_id, call_sid=call.call_sid)
    events.publish(
        "ended",
        call=call,
        status=call.status,
        outcome=call.outcome,
        duration=call.duration_seconds,
    )
    return True


def calls_close_stale(*, quiet_for: timedelta) -> int:
    """Close calls still "in progress" with no sign of life (no new turn) for `quiet_for`: a
    server that died mid-call never said the call ended, and the call must neither show as
    live nor hold a line. Every tenant's calls; returns how many were closed."""
    cutoff = timezone.now() - quiet_for
    with scopes_disabled():  # a housekeeping pass over every tenant, one call at a time
        stale = (
            Call.objects.filter(status__in=Call.ACTIVE_STATUSES, started_at__lt=cutoff)
            .annotate(last_turn_at=Max("turns__created_at"))
            .filter(Q(last_turn_at__isnull=True) | Q(last_turn_at__lt=cutoff))
            .order_by()
        )
        closed = 0
        for call in stale:
            hours = quiet_for.total_seconds() / 3600
            error = f"closed after {hours:g} h without a sign of life (no status callback)"
            closed += call_finish(call=call, outcome=Call.Outcome.ERROR, error=error)
    return closed


class CallNotLive(Exception):
    """The call ended before its socket's conversation could start (the caller hung up)."""


def call_hold(*, call: Call, server: str) -> None:
    """`server` (a server process, `core.load.server_id()`) holds the call's socket: if it stops,
    the sweeper closes the call (`calls_close_orphaned`). Raises CallNotLive when the call is
    over by now. Nothing to write when the call already names `server` (its voice webhook was
    answered there, and the socket's handshake found it live)."""
    if call.server == server[:128]:
        return
    held = Call.objects.filter(
        pk=call.pk, tenant_id=call.tenant_id, status__in=Call.ACTIVE_STATUSES
    ).update(server=server[:128])
    if not held:
        raise CallNotLive(call.call_sid)
    call.server = server[:128]


def calls_close_orphaned() -> int:
    """Close the live calls held by server processes whose heartbeat stopped (killed, crashed):
    their sockets are gone, so the calls can only end here. Every tenant's calls; returns how
    many were closed. Does nothing where heartbeats are not shared between processes (no Redis
    cache: every other process would look dead)."""
    if not load.heartbeats_shared():
        return 0
    # A call just picked up gets the time to be held by a process that has beaten at least once.
    settled = timezone.now() - timedelta(seconds=settings.SERVER_HEARTBEAT_TTL)
    with scopes_disabled():  # a housekeeping pass over every tenant, one call at a time
        held = Call.objects.filter(
            status__in=Call.ACTIVE_STATUSES, answered_at__lt=settled
        ).exclude(server="")
        servers = list(held.values_list("server", flat=True).distinct().order_by())
        dead = set(servers) - load.servers_alive(servers)
        closed = 0
        for call in held.filter(server__in=dead).order_by():
            error = "the server process holding the call stopped"
            closed += call_finish(call=call, outcome=Call.Outcome.ERROR, error=error)
    if closed:
        logger.warning("closed the calls of stopped server processes", extra={"calls": closed})
    return closed


def turn_add_audio(*, turn: Turn, audio_urls: list[str], said_by_twilio: bool) -> None:
    """The rest of an answer was played later (an early reply's continuation): its audio joins
    the turn's, and Twilio's voice saying some of it is a fallback like any other."""
    urls = list(turn.audio_urls) + [url for url in audio_urls if url not in turn.audio_urls]
    fallbacks = list(turn.fallbacks)
    if said_by_twilio and "tts:say" not in fallbacks:
        fallbacks.append("tts:say")
    if urls != turn.audio_urls or fallbacks != turn.fallbacks:
        Turn.objects.filter(pk=turn.pk, tenant_id=turn.tenant_id).update(
            audio_urls=urls, fallbacks=fallbacks
        )
        turn.audio_urls, turn.fallbacks = urls, fallbacks


def turn_mark_interrupted(*, turn: Turn, heard_text: str) -> Turn:
    """The caller talked over an answer already sent: note what they actually heard."""
    Turn.objects.filter(pk=turn.pk, tenant_id=turn.tenant_id).update(
        interrupted=True, heard_text=heard_text
    )
    turn.interrupted, turn.heard_text = True, heard_text
    events.publish("interrupted", call=turn.call, turn=turn_as_event(turn))
    return turn
