"""Rehearsals of an assistant before it goes live: replays of recorded calls against a
candidate (a draft or a version), and test scenarios with checks."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django_scopes import ScopedManager

from assistants.models import AssistantConfig, AssistantVersion
from calls.models import Call
from tenants.models import Tenant


class ReplayRun(models.Model):
    """Recorded calls replayed against a candidate: the callers' words, turn by turn."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        BUDGET_REACHED = "budget_reached", "Stopped: budget reached"
        FAILED = "failed", "Failed"

    FINAL = (Status.DONE, Status.BUDGET_REACHED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.ForeignKey(
        AssistantConfig, on_delete=models.CASCADE, related_name="replay_runs"
    )
    # The candidate: a version, or (empty) the draft as it was when the run started.
    version = models.ForeignKey(
        AssistantVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    candidate_label = models.CharField(max_length=40)
    candidate = models.JSONField(default=dict, editable=False)  # {"config", "parts"}
    selection = models.JSONField(default=dict, blank=True, help_text="How the calls were picked.")
    concurrency = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(16)]
    )
    budget_tokens = models.PositiveIntegerField(
        help_text="The most LLM tokens the replay may spend; it stops politely there."
    )
    tokens_spent = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Replay of {self.assistant} on {self.candidate_label}"


class ReplayCall(models.Model):
    """One recorded call of a replay run, and how the candidate answered each of its turns."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        STOPPED = "stopped", "Stopped by the budget"
        SKIPPED = "skipped", "Not replayed (budget reached)"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(ReplayRun, on_delete=models.CASCADE, related_name="calls")
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # When a lane last took it or replayed a turn of it (a lane lost with its worker goes quiet).
    touched_at = models.DateTimeField(null=True, blank=True)
    # Per caller turn: the caller's words, the original and the candidate's answers, the word
    # diff, latency, tokens and cost of each, the tools used (rehearsals.replay.turn_result).
    turns = models.JSONField(default=list, blank=True)
    turns_changed = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "call"], name="replaycall_unique_run_call")
        ]

    def __str__(self) -> str:
        return f"{self.call_id} in {self.run_id}"


def validate_lines(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValidationError('Give the caller\'s lines as a list of text: ["Hello", "..."].')
    if len(value) > 50:
        raise ValidationError("At most 50 lines.")


def validate_checks(value: object) -> None:
    from rehearsals.checks import check_problems

    if problems := check_problems(value):
        raise ValidationError(problems)


def validate_tool_answers(value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError('Give {"<tool name>": "<what it answers>"}.')


class Scenario(models.Model):
    """A test conversation for an assistant: a caller (scripted lines, or an LLM playing one
    with a goal and a persona) and checks the conversation must pass."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.ForeignKey(
        AssistantConfig, on_delete=models.CASCADE, related_name="scenarios"
    )
    name = models.CharField(max_length=100)
    suite = models.CharField(max_length=60, blank=True, help_text="Run related scenarios together.")
    active = models.BooleanField(default=True)
    lines = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_lines],
        help_text="The caller's lines, in order.",
    )
    caller_goal = models.TextField(
        max_length=2000, blank=True, help_text="Instead of lines: what an LLM-played caller wants."
    )
    caller_persona = models.TextField(
        max_length=2000, blank=True, help_text="Who the LLM-played caller is and how they talk."
    )
    max_turns = models.PositiveSmallIntegerField(
        default=6, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
    checks = models.JSONField(
        default=list,
        validators=[validate_checks],
        help_text='e.g. [{"kind": "contains", "text": "booked"}, {"kind": "tool_called", '
        '"name": "book_appointment", "arguments": {"day": "tuesday"}}]. Kinds: see README.',
    )
    tool_answers = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_tool_answers],
        help_text="What the tenant's tools answer in the scenario (a tool not named here is not run).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["suite", "name"]
        constraints = [
            models.UniqueConstraint(fields=["assistant", "name"], name="scenario_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.assistant_id and self.tenant_id and self.assistant.tenant_id != self.tenant_id:
            raise ValidationError({"assistant": "Choose an assistant of this scenario's tenant."})
        if not self.lines and not self.caller_goal.strip():
            raise ValidationError("Give the caller's lines, or a goal for an LLM-played caller.")


class ScenarioRun(models.Model):
    """One run of a scenario against a candidate, with its transcript and check results."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    scenario = models.ForeignKey(Scenario, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(
        AssistantVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    candidate_label = models.CharField(max_length=40)
    passed = models.BooleanField(default=False)
    transcript = models.JSONField(default=list)  # [{"role", "text", "tool_calls"?}]
    results = models.JSONField(default=list)  # [{"check", "passed", "reason"}]
    error = models.TextField(blank=True)
    tokens = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.scenario} on {self.candidate_label}: {'passed' if self.passed else 'failed'}"
