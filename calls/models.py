from __future__ import annotations

import uuid

from django.db import models
from django_scopes import ScopedManager

from tenants.models import Tenant


class Call(models.Model):
    """One phone (or web) conversation, with the assistant settings it ran with."""

    class Status(models.TextChoices):
        RINGING = "ringing", "Ringing"
        IN_PROGRESS = "in-progress", "In progress"
        COMPLETED = "completed", "Completed"
        BUSY = "busy", "Busy"
        NO_ANSWER = "no-answer", "No answer"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"
        REJECTED = "rejected", "Rejected"

    class Mode(models.TextChoices):
        GATHER = "gather", "Gather"
        RELAY = "relay", "Relay"
        STREAM = "stream", "Stream"
        WEB = "web", "Web"

    class Outcome(models.TextChoices):
        NONE = "", "—"
        COMPLETED = "completed", "Completed"
        CALLER_HUNG_UP = "caller_hung_up", "Caller hung up"
        TRANSFERRED = "transferred", "Transferred to a human"
        NO_INPUT = "no_input", "No speech from the caller"
        REJECTED_UNKNOWN_NUMBER = "rejected_unknown_number", "Rejected: unknown number"
        REJECTED_INACTIVE = "rejected_inactive", "Rejected: number or tenant inactive"
        REJECTED_RATE_LIMIT = "rejected_rate_limit", "Rejected: rate limit"
        REJECTED_OVERLOADED = "rejected_overloaded", "Rejected: server at capacity"
        FAILED = "failed", "Failed"
        ERROR = "error", "Error"

    ACTIVE_STATUSES = (Status.RINGING, Status.IN_PROGRESS)
    # Phone calls whose conversation runs on a socket of ours (Twilio's).
    SOCKET_MODES = (Mode.RELAY, Mode.STREAM)
    FINAL_STATUSES = (
        Status.COMPLETED,
        Status.BUSY,
        Status.NO_ANSWER,
        Status.FAILED,
        Status.CANCELED,
        Status.REJECTED,
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Empty only for calls rejected before a tenant was known (an unknown number).
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="calls", null=True, blank=True
    )
    phone_number = models.ForeignKey(
        "tenants.PhoneNumber", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    assistant = models.ForeignKey(
        "assistants.AssistantConfig",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
    )
    config_snapshot = models.JSONField(default=dict, blank=True)
    # The published version the call ran on (empty: an assistant never published, or older calls).
    version = models.ForeignKey(
        "assistants.AssistantVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
    )
    call_sid = models.CharField(max_length=64, unique=True)
    from_number = models.CharField(max_length=64, blank=True)
    to_number = models.CharField(max_length=64, blank=True)
    direction = models.CharField(max_length=32, default="inbound")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RINGING)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.GATHER)
    started_at = models.DateTimeField(db_index=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=Outcome.choices, blank=True, default="")
    error = models.TextField(blank=True)
    language = models.CharField(
        max_length=35, blank=True, help_text="The language the call is in now (BCP-47)."
    )
    silent_prompts = models.PositiveSmallIntegerField(
        default=0, help_text="Re-prompts in a row because the caller said nothing."
    )
    # Last status-callback SequenceNumber applied: repeats and late arrivals change nothing.
    status_sequence = models.IntegerField(default=-1)
    server = models.CharField(
        max_length=128,
        blank=True,
        help_text="The server process holding the call's socket (relay, stream, browser talk).",
    )

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["tenant", "-started_at"], name="call_tenant_started"),
            models.Index(fields=["tenant", "status"], name="call_tenant_status"),
            models.Index(fields=["assistant", "-started_at"], name="call_assistant_started"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(tenant__isnull=False) | models.Q(status="rejected"),
                name="call_tenant_required_unless_rejected",
            )
        ]

    def __str__(self) -> str:
        return self.call_sid

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    def tenant_if_read(self):
        """The call's tenant when it was read with the call (the dialled number's lookup a
        moment ago), else None: never a query. Its settings may then come from this process'
        copy (tenants.generations)."""
        return self.tenant if Call.tenant.is_cached(self) else None


class Turn(models.Model):
    """One utterance: the caller's words or the assistant's answer, with its timings."""

    class Role(models.TextChoices):
        CALLER = "caller", "Caller"
        ASSISTANT = "assistant", "Assistant"

    class Source(models.TextChoices):
        """Where an assistant turn's words came from (empty for the caller's turns)."""

        NONE = "", "—"
        FAQ = "faq", "FAQ answer"
        CACHE = "cache", "Answer cache"
        LLM = "llm", "Language model"
        APOLOGY = "apology", "Apology (the language model failed)"
        NOT_CONFIGURED = "not_configured", "No language model configured"
        SYSTEM = "system", "Platform message (e.g. a rate limit)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="turns")
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="turns")
    sequence = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField(blank=True)
    confidence = models.FloatField(null=True, blank=True)
    language = models.CharField(
        max_length=35, blank=True, help_text="The conversation's language at this turn."
    )
    interrupted = models.BooleanField(default=False)
    heard_text = models.TextField(
        blank=True, help_text="What the caller heard before interrupting."
    )
    created_at = models.DateTimeField(db_index=True)

    # Timings in milliseconds from the moment the caller's speech reached us (stream mode: from
    # the moment the caller stopped talking; the recognition provider's final transcript came
    # `transcript_final_ms` later).
    transcript_final_ms = models.PositiveIntegerField(null=True, blank=True)
    llm_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    llm_done_ms = models.PositiveIntegerField(null=True, blank=True)
    first_audio_ms = models.PositiveIntegerField(null=True, blank=True)
    response_sent_ms = models.PositiveIntegerField(null=True, blank=True)
    last_token_sent_ms = models.PositiveIntegerField(null=True, blank=True)

    class Route(models.TextChoices):
        """Which of the assistant's models the turn was sent to (calls.routing)."""

        NONE = "", "—"
        MAIN = "main", "Main model"
        FAST = "fast", "Fast model"

    model_used = models.CharField(max_length=100, blank=True)
    route = models.CharField(max_length=8, choices=Route.choices, blank=True, default="")
    route_reason = models.CharField(
        max_length=64, blank=True, help_text="Why the turn went to that model."
    )
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    cache_hit = models.BooleanField(default=False)
    source = models.CharField(max_length=16, choices=Source.choices, blank=True, default="")
    fallbacks = models.JSONField(default=list, blank=True)
    audio_urls = models.JSONField(default=list, blank=True)
    # The tools the model called: name, arguments, status, result excerpt, ms (tools.toolbox).
    tool_calls = models.JSONField(default=list, blank=True)
    # Knowledge passages put into the prompt for this answer: passage id, title, rank.
    passages = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["call", "sequence"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="turn_tenant_created"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["call", "sequence"], name="turn_unique_call_sequence")
        ]

    def __str__(self) -> str:
        return f"{self.call_id}#{self.sequence} {self.role}"
