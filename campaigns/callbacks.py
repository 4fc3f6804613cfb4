"""Callbacks an assistant promises on a call ("call me back tomorrow at ten"), and the built-in
`schedule_callback` tool through which the model schedules them.

A callback is a row (`ScheduledCallback`) until it is due; the dialler's beat tick then places it
as an outbound call from the number that was called, with the same assistant. It waits for the
call that promised it to be over, honours the do-not-call list, the tenant's concurrent-call
limit, and the callback hours in the tenant's time zone.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from calls import services as call_services
from calls.models import Call
from campaigns import phrases, services, twilio_calls
from campaigns.models import ScheduledCallback
from tenants.models import RateLimit, Tenant
from tenants.phone import normalize_e164
from tenants.ratelimits import effective_limits
from tools import builtins

logger = logging.getLogger(__name__)

TOOL_NAME = "schedule_callback"
MAX_DELAY = dt.timedelta(days=14)
# When callbacks may ring, in the tenant's time zone, every day.
HOURS = (dt.time(8, 0), dt.time(21, 0))
# A due callback whose tenant has no free line waits this long before it is tried again.
BUSY_RETRY = dt.timedelta(seconds=60)
CLAIM_BATCH = 20


class CallbackRefused(Exception):
    """A callback that cannot be scheduled; the message tells the model why."""


# --- scheduling ---------------------------------------------------------------------------------
def _zone(tenant: Tenant) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(tenant.timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def callback_due_at(
    *, tenant: Tenant, at: str = "", in_minutes: int | None = None, now: dt.datetime
) -> dt.datetime:
    """When a callback asked for as a local date and time (`at`, "YYYY-MM-DD HH:MM" in the
    tenant's time zone) or `in_minutes` from now is due (neither: now, i.e. right after the
    call). Raises CallbackRefused for a time in the past, too far ahead or outside the hours."""
    zone = _zone(tenant)
    if at:
        try:
            local = dt.datetime.fromisoformat(at.strip().replace("T", " "))
        except ValueError as exc:
            raise CallbackRefused("Give the time as YYYY-MM-DD HH:MM.") from exc
        due = local.replace(tzinfo=zone) if local.tzinfo is None else local
        if due < now - dt.timedelta(minutes=5):
            raise CallbackRefused("That time has passed.")
    else:
        due = now + dt.timedelta(minutes=in_minutes or 0)
    due = max(due, now)
    if due - now > MAX_DELAY:
        raise CallbackRefused(f"Callbacks can be at most {MAX_DELAY.days} days ahead.")
    local_time = due.astimezone(zone).time()
    if not HOURS[0] <= local_time < HOURS[1]:
        raise CallbackRefused(
            f"Callbacks ring between {HOURS[0]:%H:%M} and {HOURS[1]:%H:%M} "
            f"({zone.key}); offer a time in those hours."
        )
    return due


def callback_schedule(
    *, call: Call, at: str = "", in_minutes: int | None = None, note: str = ""
) -> ScheduledCallback:
    """Promise the other party of `call` a call back (asked again: the promise moves). Raises
    CallbackRefused."""
    tenant = call.tenant
    if call.phone_number_id is None or call.assistant_id is None:
        raise CallbackRefused("This conversation is not a phone call.")
    other = call.to_number if call.direction == "outbound" else call.from_number
    try:
        number = normalize_e164(other)
    except ValidationError as exc:
        raise CallbackRefused("The caller's number is unknown.") from exc
    if services.dnc_contains(tenant=tenant, number=number):
        raise CallbackRefused("This number asked not to be called.")
    due = callback_due_at(tenant=tenant, at=at, in_minutes=in_minutes, now=timezone.now())
    fields = {
        "promised_on": call,
        "assistant_id": call.assistant_id,
        "phone_number_id": call.phone_number_id,
        "note": note.strip()[:200],
        "due_at": due,
    }
    with transaction.atomic():
        pending = ScheduledCallback.objects.select_for_update().filter(
            tenant=tenant, number=number, status=ScheduledCallback.Status.SCHEDULED
        )
        if (callback := pending.first()) is not None:
            for name, value in fields.items():
                setattr(callback, name, value)
            callback.save()
            return callback
        try:
            with transaction.atomic():
                return ScheduledCallback.objects.create(tenant=tenant, number=number, **fields)
        except IntegrityError as exc:  # scheduled at the same moment by another call
            raise CallbackRefused("A callback to this number is being scheduled.") from exc


def callback_cancel(*, callback: ScheduledCallback) -> bool:
    """Cancel a callback not yet placed; whether it was."""
    return bool(
        ScheduledCallback.objects.filter(
            pk=callback.pk, tenant_id=callback.tenant_id, status=ScheduledCallback.Status.SCHEDULED
        ).update(status=ScheduledCallback.Status.CANCELED, updated_at=timezone.now())
    )


def callbacks_promised_on(*, call: Call) -> list[ScheduledCallback]:
    """The callbacks promised on a call the viewer may see (checked by the caller)."""
    with scope(tenant=call.tenant_id):
        return list(ScheduledCallback.objects.filter(tenant_id=call.tenant_id, promised_on=call))


# --- placing ------------------------------------------------------------------------------------
def unscoped_callbacks_due_exist() -> bool:
    """Whether any tenant has a callback due (the beat tick's cheap look before a task)."""
    with scopes_disabled():
        return _due(timezone.now()).exists()


def _due(now: dt.datetime):
    return ScheduledCallback.objects.filter(
        status=ScheduledCallback.Status.SCHEDULED, due_at__lte=now, tenant__active=True
    ).exclude(promised_on__status__in=Call.ACTIVE_STATUSES)


def callbacks_place_due() -> int:
    """Place every due callback (all tenants); returns how many calls were placed. Each is
    claimed and its Call written in one transaction before Twilio is asked."""
    _reconcile()
    placed = 0
    while True:
        claimed = _claim_batch()
        if not claimed:
            return placed
        for callback in claimed:
            with scope(tenant=callback.tenant_id):
                placed += _dial(callback)


def _claim_batch() -> list[ScheduledCallback]:
    now = timezone.now()
    claimed = []
    with scopes_disabled(), transaction.atomic():
        rows = (
            _due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("tenant", "assistant", "phone_number")
            .order_by("due_at")[:CLAIM_BATCH]
        )
        for callback in rows:
            if _claim(callback, now):
                claimed.append(callback)
        return claimed


def _claim(callback: ScheduledCallback, now: dt.datetime) -> bool:
    """Write the callback's Call and mark it placed (True), or settle or postpone it."""
    tenant = callback.tenant
    if services.dnc_contains(tenant=tenant, number=callback.number):
        callback.status = ScheduledCallback.Status.DO_NOT_CALL
        callback.save(update_fields=["status", "updated_at"])
        return False
    if not callback.phone_number.active:
        callback.status = ScheduledCallback.Status.FAILED
        callback.error = f"{callback.phone_number.number} is switched off."
        callback.save(update_fields=["status", "error", "updated_at"])
        return False
    if not _line_free(tenant):
        callback.due_at = now + BUSY_RETRY
        callback.save(update_fields=["due_at", "updated_at"])
        return False
    callback.outbound = services.outbound_prepare(
        tenant=tenant,
        assistant=callback.assistant,
        phone_number=callback.phone_number,
        to=callback.number,
        variables={"callback_note": callback.note},
    )
    callback.status = ScheduledCallback.Status.PLACED
    callback.save(update_fields=["outbound", "status", "updated_at"])
    return True


def _reconcile() -> None:
    """Callbacks whose Call was written but never heard of from Twilio (the worker stopped
    between writing it and Twilio's answer): adopt the call if Twilio placed it, otherwise
    close it as never placed and schedule the callback again, due now."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.CAMPAIGN_DIAL_RECONCILE_SECONDS)
    with scopes_disabled():
        stuck = list(
            ScheduledCallback.objects.filter(
                status=ScheduledCallback.Status.PLACED,
                outbound__placed_at__isnull=True,
                outbound__created_at__lt=cutoff,
                outbound__call__call_sid__startswith=services.PLACEHOLDER_SID_PREFIX,
            ).select_related("tenant", "outbound__call")
        )
    for callback in stuck:
        with scope(tenant=callback.tenant_id):
            _reconcile_one(callback)


def _reconcile_one(callback: ScheduledCallback) -> None:
    outbound, call = callback.outbound, callback.outbound.call
    try:
        sid = twilio_calls.call_sid_placed(
            tenant=callback.tenant, to=call.to_number, from_=call.from_number, since=call.started_at
        )
    except twilio_calls.TwilioUnavailable:
        logger.warning("cannot reconcile an unplaced callback yet", exc_info=True)
        return
    if sid:
        services.outbound_adopt_sid(outbound=outbound, call_sid=sid)
        return
    with transaction.atomic():
        updated = ScheduledCallback.objects.filter(
            pk=callback.pk, status=ScheduledCallback.Status.PLACED, outbound=outbound
        ).update(
            status=ScheduledCallback.Status.SCHEDULED,
            outbound=None,
            due_at=timezone.now(),
            updated_at=timezone.now(),
        )
        if not updated:
            return
        call_services.call_status_update(
            call=call, status=Call.Status.FAILED, sequence=None, duration=0
        )
        call_services.call_set_outcome(
            call=call, outcome=Call.Outcome.FAILED, error="never placed: the worker stopped"
        )


def _line_free(tenant: Tenant) -> bool:
    limit = effective_limits(tenant).get(RateLimit.Kind.CONCURRENT_CALLS)
    if limit is None:
        return True
    active = Call.objects.filter(tenant=tenant, status__in=Call.ACTIVE_STATUSES).count()
    return active < limit.limit


def _dial(callback: ScheduledCallback) -> int:
    try:
        services.outbound_dial(outbound=callback.outbound)
    except services.OutboundError as exc:
        logger.warning("callback not placed: %s", exc)
        callback.status, callback.error = ScheduledCallback.Status.FAILED, str(exc)[:500]
        callback.save(update_fields=["status", "error", "updated_at"])
        return 0
    return 1


# --- the tool -----------------------------------------------------------------------------------
PARAMETERS = {
    "type": "object",
    "properties": {
        "at": {
            "type": "string",
            "description": "When to call back: local date and time, YYYY-MM-DD HH:MM.",
        },
        "in_minutes": {
            "type": "integer",
            "minimum": 0,
            "maximum": int(MAX_DELAY.total_seconds() // 60),
            "description": "Or: in how many minutes (0 or nothing: right after this call).",
        },
        "note": {"type": "string", "maxLength": 200, "description": "What it is about."},
    },
    "additionalProperties": False,
}


def _describe_now(*, tenant_id: object) -> str:
    tenant = Tenant.objects.get(pk=tenant_id)
    zone = _zone(tenant)
    local = timezone.now().astimezone(zone)
    return (
        f"It is now {local:%A %Y-%m-%d %H:%M} in the business's time zone ({zone.key}); "
        f"callbacks ring between {HOURS[0]:%H:%M} and {HOURS[1]:%H:%M}."
    )


def _schedule_for_call(context: builtins.BuiltinContext, arguments: dict) -> builtins.BuiltinResult:
    call = Call.objects.select_related("tenant").get(pk=context.call_id, tenant=context.tenant_id)
    try:
        callback = callback_schedule(
            call=call,
            at=str(arguments.get("at") or ""),
            in_minutes=arguments.get("in_minutes"),
            note=str(arguments.get("note") or ""),
        )
    except CallbackRefused as exc:
        line = phrases.say(phrases.CALLBACK_NOT_SCHEDULED, config={"language": context.language})
        return builtins.BuiltinResult({"error": str(exc), "tell_the_caller": line}, ok=False)
    local = callback.due_at.astimezone(_zone(call.tenant))
    after_call = callback.due_at <= timezone.now() + dt.timedelta(minutes=1)
    return builtins.BuiltinResult(
        {
            "scheduled": True,
            "when": "right after this call" if after_call else f"{local:%A %Y-%m-%d %H:%M}",
            "time_zone": local.tzinfo.key,
        }
    )


async def schedule_callback(
    context: builtins.BuiltinContext, arguments: dict
) -> builtins.BuiltinResult:
    """The tool's handler: schedule the promised callback (in a database thread)."""
    return await context.database(_schedule_for_call)(context, arguments)


TOOL = builtins.Builtin(
    name=TOOL_NAME,
    label="Schedule a callback the caller asks for",
    description=(
        "Promise the caller a call back from this number at a time they choose. On an error, "
        "tell the caller what `tell_the_caller` says, or offer another time if the error "
        "names the hours."
    ),
    parameters=PARAMETERS,
    handler=schedule_callback,
    describe_now=_describe_now,
)
