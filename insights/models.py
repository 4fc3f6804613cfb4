"""After a call: what it cost (per call and per turn), and what an LLM made of it (summary,
success against the assistant's criteria, sentiment, the fields the tenant asked for)."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django_scopes import ScopedManager
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from assistants.models import AssistantConfig
from calls.models import Call, Turn
from tenants.models import Tenant

MONEY = {"max_digits": 14, "decimal_places": 6, "default": 0}


def validate_data_schema(value: object) -> None:
    """A JSON Schema of an object (the fields to extract), or nothing."""
    if value in (None, {}):
        return
    if not isinstance(value, dict):
        raise ValidationError("The schema must be a JSON object.")
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ValidationError(f"Not a valid JSON Schema: {exc.message}") from None
    if value.get("type") != "object" or not isinstance(value.get("properties"), dict):
        raise ValidationError(
            'The schema must describe an object: {"type": "object", "properties": {...}}.'
        )


class AnalysisPlan(models.Model):
    """How an assistant's calls are analysed once they end. An assistant without a plan gets
    the defaults (a summary, sentiment, and success judged by common sense)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.OneToOneField(
        AssistantConfig, on_delete=models.CASCADE, related_name="analysis_plan"
    )
    enabled = models.BooleanField(default=True)
    model = models.CharField(
        max_length=100, blank=True, help_text="Empty: the platform's ANALYSIS_MODEL."
    )
    prompt = models.TextField(
        blank=True, max_length=4000, help_text="Extra instructions for the analysis (optional)."
    )
    success_criteria = models.TextField(
        blank=True,
        max_length=4000,
        help_text="What makes a call a success, e.g. 'the caller booked an appointment'.",
    )
    data_schema = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_data_schema],
        help_text='JSON Schema of the fields to extract, e.g. {"type": "object", "properties": '
        '{"name": {"type": "string"}, "callback_number": {"type": "string"}}}.',
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(tenant="tenant")

    def __str__(self) -> str:
        return f"Analysis of {self.assistant}"


class Sentiment(models.TextChoices):
    POSITIVE = "positive", "Positive"
    NEUTRAL = "neutral", "Neutral"
    NEGATIVE = "negative", "Negative"


class CallReport(models.Model):
    """A call's cost and analysis, written when it ends (cost) and once analysed."""

    class Analysis(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="report")
    created_at = models.DateTimeField(auto_now_add=True)

    currency = models.CharField(max_length=3)
    llm_cost = models.DecimalField(**MONEY)
    telephony_cost = models.DecimalField(**MONEY)
    speech_cost = models.DecimalField(**MONEY)
    analysis_cost = models.DecimalField(**MONEY)
    total_cost = models.DecimalField(**MONEY)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    speech_characters = models.PositiveIntegerField(default=0)
    billed_minutes = models.PositiveIntegerField(default=0)

    analysis_status = models.CharField(
        max_length=16, choices=Analysis.choices, default=Analysis.PENDING
    )
    summary = models.TextField(blank=True)
    success = models.BooleanField(null=True, blank=True)
    success_reason = models.TextField(blank=True)
    sentiment = models.CharField(max_length=16, choices=Sentiment.choices, blank=True)
    data = models.JSONField(default=dict, blank=True)
    analysis_model = models.CharField(max_length=100, blank=True)
    analysis_attempts = models.PositiveSmallIntegerField(default=0)
    analysis_error = models.TextField(blank=True)
    analyzed_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="report_tenant_created"),
            models.Index(fields=["tenant", "success"], name="report_tenant_success"),
        ]

    def __str__(self) -> str:
        return f"Report of {self.call_id}"


class TurnCost(models.Model):
    """What one assistant turn cost: its LLM tokens and its speech."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    report = models.ForeignKey(CallReport, on_delete=models.CASCADE, related_name="turn_costs")
    turn = models.OneToOneField(Turn, on_delete=models.CASCADE, related_name="cost")
    llm_cost = models.DecimalField(**MONEY)
    speech_cost = models.DecimalField(**MONEY)
    speech_characters = models.PositiveIntegerField(default=0)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["turn__sequence"]

    def __str__(self) -> str:
        return f"Cost of {self.turn_id}"
