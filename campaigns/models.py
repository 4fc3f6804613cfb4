"""Outbound calls, campaigns of them, and the numbers that must never be called."""

from __future__ import annotations

import datetime as dt
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django_scopes import ScopedManager

from tenants.models import Tenant, validate_timezone
from tenants.phone import validate_e164


class DoNotCall(models.Model):
    """A number the tenant must not call: every outbound path checks this list first."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Added by the tenant"
        CALL = "call", "Asked on a call"
        IMPORT = "import", "Opted out in a contact list"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="do_not_call")
    number = models.CharField(max_length=20, validators=[validate_e164])
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.MANUAL)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = verbose_name_plural = "do-not-call number"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="dnc_unique_tenant_number")
        ]

    def __str__(self) -> str:
        return self.number


class OutboundSettings(models.Model):
    """How an assistant's outbound calls go: answering machines, and recording."""

    class Action(models.TextChoices):
        HANG_UP = "hang_up", "Hang up"
        LEAVE_MESSAGE = "leave_message", "Leave a message after the beep"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.OneToOneField(
        "assistants.AssistantConfig", on_delete=models.CASCADE, related_name="outbound_settings"
    )
    detect_machines = models.BooleanField(
        default=True, help_text="Ask Twilio to detect answering machines (billed per call)."
    )
    action = models.CharField(
        "on a machine", max_length=16, choices=Action.choices, default=Action.HANG_UP
    )
    message = models.TextField(
        max_length=2000,
        blank=True,
        help_text="Spoken after the beep; {{first_name}} and other contact variables are filled.",
    )

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = verbose_name_plural = "outbound settings"

    def __str__(self) -> str:
        return str(self.assistant)


class RecordingSettings(models.Model):
    """Whether an assistant's calls are recorded — inbound and outbound, in every mode — and
    for how long the recordings are kept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.OneToOneField(
        "assistants.AssistantConfig", on_delete=models.CASCADE, related_name="recording_settings"
    )
    record_calls = models.BooleanField(
        default=False, help_text="Twilio records each call; the file is kept on the platform."
    )
    announce_recording = models.BooleanField(
        default=True, help_text="Recorded calls begin by saying so, before the greeting."
    )
    retention_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Recordings are deleted after this many days; empty: the tenant's period.",
    )

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = verbose_name_plural = "recording settings"

    def __str__(self) -> str:
        return str(self.assistant)

    @property
    def announced(self) -> bool:
        return self.record_calls and self.announce_recording

    def clean(self) -> None:
        if self.assistant_id and self.tenant_id and self.assistant.tenant_id != self.tenant_id:
            raise ValidationError({"assistant": "Choose an assistant of this tenant."})


class Campaign(models.Model):
    """A list of contacts called by one assistant from one number, inside calling windows."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELED = "canceled", "Canceled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=100)
    assistant = models.ForeignKey(
        "assistants.AssistantConfig", on_delete=models.PROTECT, related_name="campaigns"
    )
    phone_number = models.ForeignKey(
        "tenants.PhoneNumber",
        on_delete=models.PROTECT,
        related_name="campaigns",
        help_text="The tenant's number the calls come from.",
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="For contacts whose row names no time zone.",
    )
    window_start = models.TimeField(default=dt.time(9, 0))
    window_end = models.TimeField(default=dt.time(18, 0))
    window_days = models.CharField(
        max_length=7, default="12345", help_text="ISO weekdays to call on: 1 Monday ... 7 Sunday."
    )
    max_concurrent = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(500)]
    )
    calls_per_second = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.01), MaxValueValidator(100)]
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Calls per contact at most, for busy, no answer and failed calls.",
    )
    retry_delay_seconds = models.PositiveIntegerField(
        default=1800, validators=[MaxValueValidator(7 * 86400)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"], name="campaign_status")]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    """One person a campaign calls, with the variables filled into the assistant's words."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be called"
        DIALLING = "dialling", "Call in progress"
        DONE = "done", "Done"

    class Outcome(models.TextChoices):
        NONE = "", "—"
        ANSWERED = "answered", "Answered"
        VOICEMAIL = "voicemail", "Voicemail"
        BUSY = "busy", "Busy"
        NO_ANSWER = "no-answer", "No answer"
        FAILED = "failed", "Failed"
        DO_NOT_CALL = "do-not-call", "On the do-not-call list"
        CANCELED = "canceled", "Campaign canceled"

    RETRIED = (Outcome.BUSY, Outcome.NO_ANSWER, Outcome.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="contacts")
    number = models.CharField(max_length=20)
    timezone = models.CharField(max_length=64, blank=True)
    variables = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_call = models.ForeignKey(
        "calls.Call", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["campaign", "next_attempt_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "number"], name="contact_unique_campaign_number"
            )
        ]
        indexes = [
            models.Index(
                fields=["campaign", "state", "next_attempt_at"], name="contact_campaign_due"
            )
        ]

    def __str__(self) -> str:
        return self.number


class OutboundCall(models.Model):
    """The outbound side of a Call: what was asked of Twilio, and what answered.

    Written before Twilio is asked, in the same transaction that claims a campaign's contact,
    so a dialler that dies mid-request leaves a trace to reconcile instead of a second call.
    """

    class AnsweredBy(models.TextChoices):
        UNKNOWN = "", "—"
        HUMAN = "human", "A person"
        MACHINE = "machine", "An answering machine"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    call = models.OneToOneField("calls.Call", on_delete=models.CASCADE, related_name="outbound")
    contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )
    variables = models.JSONField(default=dict, blank=True)
    placed_at = models.DateTimeField(null=True, blank=True, help_text="Twilio accepted the call.")
    answered_by = models.CharField(max_length=8, choices=AnsweredBy.choices, blank=True, default="")
    voicemail_left = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return str(self.call_id)


class Recording(models.Model):
    """A call's recording, fetched from Twilio into the platform's media storage."""

    class Status(models.TextChoices):
        PENDING = "pending", "Being fetched"
        STORED = "stored", "Stored"
        FAILED = "failed", "Could not be fetched"
        DELETED = "deleted", "Deleted (retention)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    call = models.ForeignKey("calls.Call", on_delete=models.CASCADE, related_name="recordings")
    recording_sid = models.CharField(max_length=64, unique=True)
    source_url = models.URLField(max_length=500)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # Storage name under an unguessable random path; empty until fetched and after deletion.
    file = models.CharField(max_length=255, blank=True)
    error = models.CharField(max_length=500, blank=True)
    delete_after = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.recording_sid


class ScheduledCallback(models.Model):
    """A call back an assistant promised a caller: placed by the dialler's tick once due and
    once the call that promised it is over. Claimed with its Call written before Twilio is
    asked, so a worker that stops loses it neither nor places it twice."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        PLACED = "placed", "Placed"
        FAILED = "failed", "Could not be placed"
        DO_NOT_CALL = "do-not-call", "On the do-not-call list"
        CANCELED = "canceled", "Canceled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    promised_on = models.ForeignKey(
        "calls.Call",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="callbacks_promised",
        help_text="The call on which the assistant promised it.",
    )
    assistant = models.ForeignKey(
        "assistants.AssistantConfig", on_delete=models.CASCADE, related_name="+"
    )
    phone_number = models.ForeignKey(
        "tenants.PhoneNumber",
        on_delete=models.CASCADE,
        related_name="+",
        help_text="The tenant's number the call comes from.",
    )
    number = models.CharField(max_length=20, validators=[validate_e164])
    note = models.CharField(max_length=200, blank=True)
    due_at = models.DateTimeField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SCHEDULED)
    outbound = models.OneToOneField(
        OutboundCall, on_delete=models.SET_NULL, null=True, blank=True, related_name="callback"
    )
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["due_at"]
        indexes = [models.Index(fields=["status", "due_at"], name="callback_status_due")]
        constraints = [
            # One promise per person at a time: asking again moves it.
            models.UniqueConstraint(
                fields=["tenant", "number"],
                condition=models.Q(status="scheduled"),
                name="callback_one_scheduled_per_number",
            )
        ]

    def __str__(self) -> str:
        return f"{self.number} at {self.due_at:%Y-%m-%d %H:%M}"
