"""Writes for webhooks: endpoints and their secrets, events (the outbox), deliveries.

An event is written in the transaction of the change that caused it, with one Delivery per
enabled endpoint that subscribes to it; the deliveries are queued once that transaction commits.
A delivery is sent by whichever worker claims it (a lease as long as one attempt, so a worker
that dies mid-delivery lets it go), tried again on the retry schedule, then given up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial

import httpx
from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from calls.models import Call
from core import outbound
from core.signing import new_message_id, new_secret, signed_headers
from tenants import crypto, generations
from tenants.models import WRITE_ROLES, Membership, Tenant
from webhooks import payloads
from webhooks.models import Attempt, Delivery, Endpoint, Event

logger = logging.getLogger(__name__)

# A claim outlives one attempt by this much (the time to record its outcome).
LEASE_MARGIN_SECONDS = 5.0
# Retries due sooner than this are queued with a countdown; later ones by the sweep.
MAX_COUNTDOWN_SECONDS = 600.0
RESPONSE_EXCERPT_BYTES = 500
DELIVER_TASK = "webhooks.tasks.deliver"


# --- endpoints ------------------------------------------------------------------------------


def endpoint_create(
    *, tenant: Tenant, url: str, events: list[str], description: str = "", enabled: bool = True
) -> tuple[Endpoint, str]:
    """A new endpoint and its signing secret (shown once to whoever created it)."""
    secret = new_secret()
    endpoint = Endpoint.objects.create(
        tenant=tenant,
        url=url,
        events=list(dict.fromkeys(events)),
        description=description,
        enabled=enabled,
        secret_encrypted=crypto.encrypt(secret),
    )
    return endpoint, secret


def endpoint_enable(*, endpoint: Endpoint, enabled: bool) -> None:
    """Switch an endpoint on (forgetting its failures) or off."""
    endpoint.enabled = enabled
    if enabled:
        endpoint.failures_in_a_row, endpoint.disabled_reason = 0, ""
    endpoint.save(update_fields=["enabled", "failures_in_a_row", "disabled_reason"])


def endpoint_rotate_secret(*, endpoint: Endpoint, overlap_hours: float | None = None) -> str:
    """A new secret for the endpoint; the current one keeps signing beside it for the overlap
    (WEBHOOK_SECRET_OVERLAP_HOURS by default; 0 ends it at once). Returns the new secret."""
    hours = settings.WEBHOOK_SECRET_OVERLAP_HOURS if overlap_hours is None else overlap_hours
    secret = new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = timezone.now() + timedelta(hours=hours)
    endpoint.secret_encrypted = crypto.encrypt(secret)
    endpoint.save(
        update_fields=[
            "secret_encrypted",
            "previous_secret_encrypted",
            "previous_secret_expires_at",
        ]
    )
    return secret


# --- events (the outbox) --------------------------------------------------------------------


def event_emit(
    *,
    tenant_id: object,
    event_type: str,
    call: Call | None,
    data: Callable[[], dict],
    tenant: Tenant | None = None,
) -> Event | None:
    """Record an event for every enabled endpoint of the tenant that subscribes to it, inside
    the caller's transaction; the deliveries are queued when it commits. `data` builds the
    payload (only when someone subscribes). None when nobody does. With the `tenant` row just
    read, its endpoints come from this process' copy while they are unchanged."""
    endpoints = [
        endpoint_id
        for endpoint_id, events in _enabled_endpoints(tenant_id, tenant)
        if event_type in events
    ]
    if not endpoints:
        return None
    now = timezone.now()
    with transaction.atomic():
        event = Event.objects.create(
            tenant_id=tenant_id, type=event_type, call=call, payload=data(), created_at=now
        )
        deliveries = Delivery.objects.bulk_create(
            Delivery(
                tenant_id=tenant_id,
                event=event,
                endpoint_id=endpoint_id,
                message_id=new_message_id(),
                next_attempt_at=now,
                created_at=now,
            )
            for endpoint_id in endpoints
        )
    _queue_on_commit(deliveries)
    return event


def _enabled_endpoints(tenant_id: object, tenant: Tenant | None) -> list[tuple[object, list]]:
    """(id, subscribed event types) of the tenant's enabled endpoints."""

    def read() -> list[tuple[object, list]]:
        rows = Endpoint.objects.filter(tenant_id=tenant_id, enabled=True)
        return [(row.id, list(row.events or [])) for row in rows.only("id", "events")]

    return generations.cached(tenant, "webhook_endpoints", read) if tenant else read()


def event_body(event: Event) -> bytes:
    """The bytes sent for an event: the same on every attempt."""
    document = payloads.body(event.type, event.created_at, event.payload)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _queue_on_commit(deliveries: Iterable[Delivery], countdown: float = 0) -> None:
    """Queue `webhooks.tasks.deliver` for each delivery once the transaction commits (by name:
    the tasks module calls these services)."""
    for delivery in deliveries:
        # A broker that is down loses nothing: the sweep queues the delivery again.
        transaction.on_commit(
            partial(
                current_app.send_task,
                DELIVER_TASK,
                args=(str(delivery.id), str(delivery.tenant_id)),
                countdown=countdown,
            ),
            robust=True,
        )


# --- deliveries -----------------------------------------------------------------------------


def delivery_send(*, delivery_id: object, tenant_id: object) -> str:
    """Make one attempt at a due delivery, if this worker can claim it. Returns what happened:
    "not due" (delivered, given up, not due yet or claimed by another worker), "succeeded",
    "retry" or "failed"."""
    now = timezone.now()
    lease = timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
    claimed = (
        Delivery.objects.filter(
            id=delivery_id,
            tenant_id=tenant_id,
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=now,
        )
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(locked_until=now + lease)
    )
    if not claimed:
        return "not due"
    delivery = Delivery.objects.select_related("endpoint", "event").get(id=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        return _give_up(delivery, error="the endpoint is disabled", count_failure=False)
    status, excerpt, error, latency_ms = _post(endpoint, delivery)
    Attempt.objects.create(
        tenant_id=delivery.tenant_id,
        delivery=delivery,
        number=delivery.attempt_log.count() + 1,
        sent_at=now,
        status_code=status,
        latency_ms=latency_ms,
        response_excerpt=excerpt,
        error=error[:500],
    )
    if status is not None and 200 <= status < 300:
        return _succeed(delivery, status)
    error = error or f"HTTP {status}"
    if error.startswith("refused:"):  # the address is not allowed: retrying cannot help
        return _give_up(delivery, error=error, status=status)
    return _retry_or_give_up(delivery, error=error, status=status)


def _post(endpoint: Endpoint, delivery: Delivery) -> tuple[int | None, str, str, int | None]:
    """Send the delivery once: (status, response excerpt, error, latency in ms)."""
    body = event_body(delivery.event)
    headers = signed_headers(
        body=body, message_id=delivery.message_id, secrets_in_use=endpoint.secrets_in_use()
    )
    headers["Content-Type"] = "application/json"
    started = time.monotonic()
    try:
        answer = asyncio.run(
            outbound.arequest(
                "POST",
                endpoint.url,
                headers=headers,
                content=body,
                timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                max_bytes=RESPONSE_EXCERPT_BYTES,
            )
        )
    except outbound.OutboundRefused as exc:
        return None, "", f"refused: {exc}", None
    except TimeoutError:
        error = f"no answer within {settings.WEBHOOK_TIMEOUT_SECONDS:g} s"
        return None, "", error, _ms_since(started)
    except (httpx.HTTPError, OSError) as exc:
        return None, "", f"{type(exc).__name__}: {exc}", _ms_since(started)
    return answer.status, answer.text(RESPONSE_EXCERPT_BYTES), "", _ms_since(started)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _succeed(delivery: Delivery, status: int) -> str:
    with transaction.atomic():
        Delivery.objects.filter(id=delivery.id).update(
            status=Delivery.Status.SUCCEEDED,
            attempts=F("attempts") + 1,
            delivered_at=timezone.now(),
            locked_until=None,
            last_status_code=status,
            last_error="",
        )
        Endpoint.objects.filter(id=delivery.endpoint_id, failures_in_a_row__gt=0).update(
            failures_in_a_row=0
        )
    return "succeeded"


def retry_delay(attempts: int) -> float | None:
    """Seconds before the next attempt after `attempts` failed ones (None: give up): the
    schedule's delay, with jitter so that many failed deliveries do not all come back at once."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1]
    jitter = settings.WEBHOOK_RETRY_JITTER
    return max(0.0, delay * (1 + random.uniform(-jitter, jitter)))


def _retry_or_give_up(delivery: Delivery, *, error: str, status: int | None) -> str:
    attempts = delivery.attempts + 1
    delay = retry_delay(attempts)
    if delay is None:
        return _give_up(delivery, error=error, status=status)
    with transaction.atomic():
        Delivery.objects.filter(id=delivery.id).update(
            attempts=attempts,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            locked_until=None,
            last_status_code=status,
            last_error=error[:500],
        )
        if delay <= MAX_COUNTDOWN_SECONDS:
            _queue_on_commit([delivery], countdown=delay)
    return "retry"


def _give_up(
    delivery: Delivery, *, error: str, status: int | None = None, count_failure: bool = True
) -> str:
    """Mark the delivery failed (a dead letter, which may be resent); an endpoint that keeps
    failing is switched off."""
    with transaction.atomic():
        Delivery.objects.filter(id=delivery.id).update(
            status=Delivery.Status.FAILED,
            attempts=F("attempts") + (1 if count_failure else 0),
            next_attempt_at=None,
            locked_until=None,
            last_status_code=status,
            last_error=error[:500],
        )
        if count_failure:
            _count_endpoint_failure(delivery.endpoint_id)
    logger.warning(
        "webhook delivery given up",
        extra={"delivery": str(delivery.id), "endpoint": str(delivery.endpoint_id), "error": error},
    )
    return "failed"


def _count_endpoint_failure(endpoint_id: object) -> None:
    endpoint = Endpoint.objects.select_for_update().get(id=endpoint_id)
    endpoint.failures_in_a_row += 1
    fields = ["failures_in_a_row"]
    if endpoint.enabled and endpoint.failures_in_a_row >= settings.WEBHOOK_DISABLE_AFTER:
        endpoint.enabled = False
        endpoint.disabled_reason = (
            f"Switched off on {timezone.now():%Y-%m-%d %H:%M} UTC after "
            f"{endpoint.failures_in_a_row} deliveries in a row were given up."
        )
        fields += ["enabled", "disabled_reason"]
        transaction.on_commit(partial(_notify_disabled, endpoint), robust=True)
    endpoint.save(update_fields=fields)


def _notify_disabled(endpoint: Endpoint) -> None:
    """Tell the tenant's owners and admins that an endpoint was switched off."""
    recipients = list(
        Membership.objects.filter(tenant_id=endpoint.tenant_id, role__in=WRITE_ROLES)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    logger.warning(
        "webhook endpoint switched off",
        extra={"endpoint": str(endpoint.id), "reason": endpoint.disabled_reason},
    )
    if recipients:
        send_mail(
            subject="A webhook endpoint was switched off",
            message=(
                f"The webhook endpoint {endpoint.url} ({endpoint.description or 'no description'})"
                f" was switched off. {endpoint.disabled_reason}\n\nFix the receiver, switch the "
                "endpoint on again and resend the failed deliveries (admin or API)."
            ),
            from_email=None,
            recipient_list=recipients,
            fail_silently=True,
        )


def deliveries_resend(*, deliveries: Iterable[Delivery]) -> int:
    """Send deliveries again from the start of the retry schedule, with the same `webhook-id`
    (delivered ones too: a receiver may have lost what it got). Returns how many."""
    ids = [delivery.id for delivery in deliveries]
    with transaction.atomic():
        resent = list(
            Delivery.objects.filter(id__in=ids).select_for_update().only("id", "tenant_id")
        )
        Delivery.objects.filter(id__in=[d.id for d in resent]).update(
            status=Delivery.Status.PENDING,
            attempts=0,
            next_attempt_at=timezone.now(),
            locked_until=None,
            delivered_at=None,
        )
        _queue_on_commit(resent)
    return len(resent)


def deliveries_requeue_due(*, limit: int = 1000) -> int:
    """Queue again the pending deliveries whose task was lost: due for longer than a sweep
    interval and not claimed (or claimed by a worker that died). Every tenant's."""
    now = timezone.now()
    overdue = now - timedelta(seconds=settings.WEBHOOK_SWEEP_SECONDS)
    due = list(
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=overdue)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .order_by("next_attempt_at")
        .only("id", "tenant_id")[:limit]
    )
    with transaction.atomic():
        _queue_on_commit(due)
    return len(due)
