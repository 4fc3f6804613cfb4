"""What an assistant can do besides talking: the built-in tools it has switched on, the people
it may transfer callers to, and the tenant's own HTTP tools."""

from __future__ import annotations

import json
import re
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
    URLValidator,
)
from django.db import models
from django_scopes import ScopedManager
from jsonschema import SchemaError
from jsonschema.validators import Draft202012Validator

from assistants.models import AssistantConfig
from core.signing import new_secret
from tenants import crypto
from tenants.models import Tenant
from tenants.phone import normalize_e164, validate_e164
from tools import builtins

TRANSFER_CALL = "transfer_call"
END_CALL = "end_call"
LOOKUP_KNOWLEDGE = "lookup_knowledge"
BUILTIN_NAMES = frozenset({TRANSFER_CALL, END_CALL, LOOKUP_KNOWLEDGE})

validate_tool_name = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
    "Letters, digits, _ and - only, starting with a letter (at most 64).",
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# Set by the platform on every tool request: a tenant's header never replaces them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def validate_parameters_schema(value: object) -> None:
    """A JSON Schema of an object (what OpenAI-compatible `tools` take as `parameters`)."""
    if not isinstance(value, dict) or value.get("type") != "object":
        raise ValidationError('Give a JSON Schema of an object: {"type": "object", ...}.')
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ValidationError(f"Not a valid JSON Schema: {exc.message}") from exc


class BuiltinTools(models.Model):
    """Which of the platform's own tools an assistant may use (none without this row)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.OneToOneField(
        AssistantConfig, on_delete=models.CASCADE, related_name="builtin_tools"
    )
    transfer_call = models.BooleanField(
        default=False, help_text="Transfer the caller to a named destination when asked."
    )
    end_call = models.BooleanField(
        default=False, help_text="Say goodbye and hang up when the caller is done."
    )
    lookup_knowledge = models.BooleanField(
        default=False, help_text="Search the tenant's knowledge base for an answer."
    )
    knowledge_in_prompt = models.BooleanField(
        default=False,
        help_text="Also put passages that match the caller's words strongly into the prompt.",
    )
    registered = models.JSONField(
        "more built-in tools",
        default=list,
        blank=True,
        help_text="The names of further built-in tools switched on (e.g. schedule_callback).",
    )

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = verbose_name_plural = "built-in tools"

    def __str__(self) -> str:
        return f"built-in tools of {self.assistant_id}"

    def clean(self) -> None:
        _same_tenant(self)
        self.registered = validate_registered(self.registered)


def validate_registered(value: object) -> list[str]:
    """Names of registered built-in tools, without repeats; raises ValidationError."""
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError({"registered": "Give a list of built-in tool names."})
    unknown = [name for name in value if builtins.get(name) is None]
    if unknown:
        raise ValidationError(
            {
                "registered": f"No built-in tool called {unknown[0][:64]!r} (choose from "
                f"{', '.join(builtins.names()) or 'none'})."
            }
        )
    return sorted(set(value))


class TransferDestination(models.Model):
    """A person or desk the assistant may transfer callers to, by name ("front desk")."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.ForeignKey(
        AssistantConfig, on_delete=models.CASCADE, related_name="transfer_destinations"
    )
    name = models.CharField(max_length=60, help_text='What callers ask for: "billing".')
    number = models.CharField(max_length=20, validators=[validate_e164], help_text="E.164.")
    description = models.CharField(max_length=200, blank=True, help_text="When to use it.")

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["assistant", "name"], name="transfer_destination_unique_name"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        _same_tenant(self)
        if self.number:
            try:
                self.number = normalize_e164(self.number)
            except ValidationError as exc:
                raise ValidationError({"number": exc.messages}) from exc


class HttpTool(models.Model):
    """A tool the tenant's own server answers: the model's arguments are posted to `url`,
    signed (Standard Webhooks), and the answer's body is what the model reads."""

    class Method(models.TextChoices):
        POST = "POST", "POST"
        PUT = "PUT", "PUT"
        PATCH = "PATCH", "PATCH"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.ForeignKey(
        AssistantConfig, on_delete=models.CASCADE, related_name="http_tools"
    )
    name = models.CharField(max_length=64, validators=[validate_tool_name])
    description = models.TextField(
        max_length=1000, help_text="What it does and when to use it (the model reads this)."
    )
    parameters = models.JSONField(
        default=dict,
        validators=[validate_parameters_schema],
        help_text="JSON Schema of the arguments (an object).",
    )
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    method = models.CharField(max_length=5, choices=Method.choices, default=Method.POST)
    timeout_seconds = models.FloatField(
        default=5.0, validators=[MinValueValidator(0.1), MaxValueValidator(30.0)]
    )
    active = models.BooleanField(default=True)
    # Encrypted at rest; never shown again (write-only): {"Authorization": "Bearer ..."}.
    headers_encrypted = models.TextField(blank=True, editable=False)
    # Encrypted at rest; the tenant's server verifies the requests' signatures with it.
    signing_secret_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["name"]
        verbose_name = "HTTP tool"
        constraints = [
            models.UniqueConstraint(fields=["assistant", "name"], name="http_tool_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        _same_tenant(self)
        if self.name in BUILTIN_NAMES or builtins.get(self.name) is not None:
            raise ValidationError({"name": f"{self.name!r} is a built-in tool's name."})

    def set_headers(self, headers: dict[str, str]) -> None:
        self.headers_encrypted = crypto.encrypt(json.dumps(headers)) if headers else ""

    def get_headers(self) -> dict[str, str]:
        return json.loads(crypto.decrypt(self.headers_encrypted)) if self.headers_encrypted else {}

    def header_names(self) -> list[str]:
        return sorted(self.get_headers())

    def ensure_signing_secret(self) -> None:
        if not self.signing_secret_encrypted:
            self.signing_secret_encrypted = crypto.encrypt(new_secret())

    def get_signing_secret(self) -> str:
        return crypto.decrypt(self.signing_secret_encrypted)


def validate_headers(headers: object) -> dict[str, str]:
    """Request headers a tenant may set on its tool's requests, checked; raises ValidationError."""
    if not isinstance(headers, dict) or len(headers) > 20:
        raise ValidationError("Give at most 20 headers as an object of names and values.")
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValidationError(f"Not a header name: {str(name)[:100]!r}.")
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(f"The platform sets {name!r} itself.")
        if not isinstance(value, str) or len(value) > 4000 or re.search(r"[\r\n\x00]", value):
            raise ValidationError(f"The value of {name!r} must be one line of text.")
    return dict(headers)


def _same_tenant(obj: BuiltinTools | TransferDestination | HttpTool) -> None:
    if obj.assistant_id and obj.tenant_id and obj.assistant.tenant_id != obj.tenant_id:
        raise ValidationError({"assistant": "Choose an assistant of this tenant."})
