"""A tenant's knowledge base: documents, split into passages that PostgreSQL's full-text search
ranks (a word match stands in on SQLite, the embedded default)."""

from __future__ import annotations

import uuid

from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django_scopes import ScopedManager

from assistants.models import validate_language
from tenants.models import Tenant


class Document(models.Model):
    """Text the assistants of a tenant may answer from (read once: edits re-split it)."""

    class Kind(models.TextChoices):
        TEXT = "text", "Plain text"
        MARKDOWN = "markdown", "Markdown"
        URL = "url", "A web page or PDF (fetched once)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TEXT)
    source_url = models.URLField(blank=True, help_text="For a web page: its address.")
    language = models.CharField(
        max_length=35,
        default="en-US",
        validators=[validate_language],
        help_text="Decides the stemming of its words (en-US: 'bookings' finds 'booking').",
    )
    text = models.TextField(blank=True, max_length=500_000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Passage(models.Model):
    """A few sentences of a document: what a search finds and the model is given."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="passages")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="passages")
    position = models.PositiveIntegerField()
    text = models.TextField()
    # PostgreSQL only (GIN-indexed); empty on SQLite, where a word match ranks passages.
    search = SearchVectorField(null=True, editable=False)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["document", "position"]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"
