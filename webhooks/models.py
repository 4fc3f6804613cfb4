"""A tenant's webhook endpoints, the events the platform sends them (an outbox written in the
transaction of the change), and every delivery and attempt."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models
from django.utils import timezone
from django_scopes import ScopedManager

from tenants import crypto
from tenants.models import Tenant


class EventType(models.TextChoices):
    CALL_STARTED = "call.started", "A call was answered"
    CALL_ENDED = "call.ended", "A call ended (transcript, timings, outcome, cost)"
    CALL_ANALYZED = "call.analyzed", "A call's analysis is ready (summary, success, data)"
    CALL_TRANSFERRED = "call.transferred", "A caller is handed to a human"


class Endpoint(models.Model):
    """A URL of the tenant's own systems that receives the events it subscribes to, signed with
    the endpoint's secret (Standard Webhooks)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000, help_text="An http(s) address of your own systems.")
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(
        default=list, help_text='The event types sent here, e.g. ["call.ended"].'
    )
    enabled = models.BooleanField(default=True)
    # Encrypted at rest (tenants.crypto). During a rotation the previous secret keeps signing
    # (beside the new one) until `previous_secret_expires_at`.
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Deliveries given up in a row (dead letters); the endpoint is switched off at a limit.
    failures_in_a_row = models.PositiveIntegerField(default=0, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.description or self.url

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    def secrets_in_use(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign a message now: the current one, and the previous one while
        its overlap lasts."""
        now = now or timezone.now()
        secrets = [self.secret]
        expires = self.previous_secret_expires_at
        if self.previous_secret_encrypted and expires and expires > now:
            secrets.append(crypto.decrypt(self.previous_secret_encrypted))
        return secrets

    def subscribes_to(self, event_type: str) -> bool:
        return event_type in (self.events or [])


class Event(models.Model):
    """Something that happened, as it is sent: written with the change that caused it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=32, choices=EventType.choices)
    call = models.ForeignKey(
        "calls.Call", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.created_at:%Y-%m-%d %H:%M:%S}"


class Delivery(models.Model):
    """One event to one endpoint, tried until it is accepted or given up (dead letter)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed (given up)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    # The `webhook-id` header: the same on every attempt and resend (receivers deduplicate by it).
    message_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker sending this delivery holds it until then; a worker that died lets it go.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="delivery_pending_due",
            ),
            models.Index(fields=["tenant", "-created_at"], name="delivery_tenant_created"),
        ]

    def __str__(self) -> str:
        return self.message_id


class Attempt(models.Model):
    """One request to an endpoint: what it answered, and how long it took."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    sent_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
