from __future__ import annotations

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django_scopes import ScopedManager, scopes_disabled

from tenants import crypto
from tenants.phone import normalize_e164, validate_e164


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone {value!r}.", code="timezone")


class Tenant(models.Model):
    """A business using the platform. Everything it owns points here with a `tenant` FK."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    active = models.BooleanField(default=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    recording_retention_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Call recordings are deleted after this many days (an assistant may keep "
        "its own for fewer or more).",
    )
    twilio_account_sid = models.CharField(
        max_length=64, blank=True, help_text="The tenant's own Twilio account, if it brings one."
    )
    # Encrypted at rest (tenants.crypto); never rendered back. Use set_twilio_auth_token().
    twilio_auth_token_encrypted = models.TextField(blank=True, editable=False)
    # Stream mode's recognition and voice provider (Deepgram); encrypted and write-only too.
    deepgram_api_key_encrypted = models.TextField(blank=True, editable=False)
    # Stream mode's other recognition provider (AssemblyAI); encrypted and write-only too.
    assemblyai_api_key_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Counts changes to the tenant's call settings (rate limits, webhook endpoints, recording
    # settings): a process keeps its own copy of them while this is unchanged
    # (tenants.generations). Only tenants.generations writes it.
    settings_generation = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]
        permissions = [("view_all_tenants", "Platform staff: sees and manages every tenant")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # A tenant read before its settings changed must not write its old generation back.
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name != "settings_generation"
            ]
        super().save(*args, **kwargs)

    def set_twilio_auth_token(self, token: str) -> None:
        self.twilio_auth_token_encrypted = crypto.encrypt(token) if token else ""

    @property
    def has_twilio_auth_token(self) -> bool:
        return bool(self.twilio_auth_token_encrypted)

    def get_twilio_auth_token(self) -> str:
        if not self.twilio_auth_token_encrypted:
            return ""
        return crypto.decrypt(self.twilio_auth_token_encrypted)

    def set_deepgram_api_key(self, key: str) -> None:
        self.deepgram_api_key_encrypted = crypto.encrypt(key) if key else ""

    @property
    def has_deepgram_api_key(self) -> bool:
        return bool(self.deepgram_api_key_encrypted)

    def get_deepgram_api_key(self) -> str:
        if not self.deepgram_api_key_encrypted:
            return ""
        return crypto.decrypt(self.deepgram_api_key_encrypted)

    def set_assemblyai_api_key(self, key: str) -> None:
        self.assemblyai_api_key_encrypted = crypto.encrypt(key) if key else ""

    @property
    def has_assemblyai_api_key(self) -> bool:
        return bool(self.assemblyai_api_key_encrypted)

    def get_assemblyai_api_key(self) -> str:
        if not self.assemblyai_api_key_encrypted:
            return ""
        return crypto.decrypt(self.assemblyai_api_key_encrypted)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    VIEWER = "viewer", "Viewer"


WRITE_ROLES = frozenset({Role.OWNER, Role.ADMIN})


class Membership(models.Model):
    """A user's role in a tenant. Read before any scope exists, so it has a plain manager."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class PhoneNumber(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="phone_numbers")
    number = models.CharField(
        max_length=20,
        unique=True,
        validators=[validate_e164],
        help_text="E.164, e.g. +14155550100.",
    )
    assistant = models.ForeignKey(
        "assistants.AssistantConfig",
        on_delete=models.PROTECT,
        related_name="phone_numbers",
        null=True,
        blank=True,
    )
    pinned_version = models.ForeignKey(
        "assistants.AssistantVersion",
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
        help_text="Answer with this version of the assistant instead of its published one.",
    )
    active = models.BooleanField(default=True)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.number} {self.label}".strip()

    def clean(self) -> None:
        if self.number:
            try:
                self.number = normalize_e164(self.number)
            except ValidationError as exc:
                raise ValidationError({"number": exc.messages}) from exc
        if self.assistant_id and self.tenant_id and self.assistant.tenant_id != self.tenant_id:
            raise ValidationError({"assistant": "Choose an assistant of this number's tenant."})
        if self.pinned_version_id and self.pinned_version.assistant_id != self.assistant_id:
            raise ValidationError({"pinned_version": "Choose a version of the number's assistant."})

    def validate_unique(self, exclude=None) -> None:
        # A number is unique across all tenants, so the check must see every tenant's numbers
        # (the scoped manager would hide them). It reveals only that the number is taken.
        with scopes_disabled():
            super().validate_unique(exclude=exclude)


class RateLimit(models.Model):
    """A limit, either the platform default (no tenant) or a tenant's own override."""

    class Kind(models.TextChoices):
        CONCURRENT_CALLS = "concurrent_calls", "Concurrent calls per tenant"
        CALLS_PER_CALLER = "calls_per_caller", "Calls per caller number per window"
        TURNS_PER_CALL = "turns_per_call", "Caller turns per call per window"
        LLM_TOKENS_PER_DAY = "llm_tokens_per_day", "LLM tokens per tenant per day"
        SPEND_PER_DAY = "spend_per_day", "Spend per tenant per day (cents of PRICE_CURRENCY)"

    class Action(models.TextChoices):
        SPEAK_AND_HANG_UP = "speak_hangup", "Speak the message, then hang up"
        REJECT = "reject", "Reject the call unanswered (busy)"
        SPEAK_AND_CONTINUE = (
            "speak_continue",
            "Speak the message, keep the call (turn/token limits)",
        )

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="rate_limits",
        null=True,
        blank=True,
        help_text="Empty: the platform default for every tenant without its own limit.",
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    limit = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    window_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1)],
        help_text="Ignored for concurrent calls; 86400 for per-day limits.",
    )
    action = models.CharField(
        max_length=16, choices=Action.choices, default=Action.SPEAK_AND_HANG_UP
    )
    message = models.CharField(
        max_length=500,
        blank=True,
        help_text="What the caller hears; empty for the default polite message.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind"], name="ratelimit_unique_tenant_kind"),
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(tenant__isnull=True),
                name="ratelimit_unique_default_kind",
            ),
        ]

    def __str__(self) -> str:
        who = self.tenant.name if self.tenant_id else "default"
        return f"{self.get_kind_display()} = {self.limit} ({who})"


class ApiKey(models.Model):
    """A tenant's key for the REST API. Only a sha256 of the secret is stored.

    The full key reads `vpk_<prefix>.<secret>`; the prefix is shown in lists to tell keys apart.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, e.g. 'CRM sync'.")
    role = models.CharField(
        max_length=16,
        choices=[(Role.ADMIN, "Read and write"), (Role.VIEWER, "Read only")],
        default=Role.ADMIN,
        help_text="Read-only keys can list and read; read-and-write keys can also change.",
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.name} (vpk_{self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
