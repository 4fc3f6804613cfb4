"""/api/v1/knowledge/documents/: the tenant's knowledge base."""

from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers

from knowledge import services
from knowledge.models import Document
from tenants.api_base import TenantCursorPagination, TenantViewSet

DOCUMENT_FIELDS = ["title", "kind", "source_url", "language", "text"]


class DocumentSerializer(serializers.ModelSerializer):
    passage_count = serializers.IntegerField(read_only=True, help_text="Passages it was cut into.")

    class Meta:
        model = Document
        fields = ["id", *DOCUMENT_FIELDS, "passage_count", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "text": {"required": False, "help_text": "For a web page: filled in when fetched."}
        }


class _ByTitle(TenantCursorPagination):
    ordering = "title"


def _stored(write):
    """Run a service; a web page that cannot be fetched answers 400 (as invalid fields do)."""
    try:
        return write()
    except services.DocumentUnreadable as exc:
        raise serializers.ValidationError({"source_url": [str(exc)]}) from exc


@extend_schema_view(
    list=extend_schema(summary="List knowledge documents"),
    create=extend_schema(
        summary="Add a knowledge document",
        description="Text or Markdown as `text`, or a web page (`kind: url`, `source_url`), "
        "fetched once. It is cut into passages that assistants with `lookup_knowledge` search.",
    ),
    retrieve=extend_schema(summary="Read a knowledge document"),
    update=extend_schema(summary="Replace a knowledge document"),
    partial_update=extend_schema(summary="Change a knowledge document"),
    destroy=extend_schema(summary="Delete a knowledge document"),
)
class DocumentViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantViewSet,
):
    """What the tenant's assistants may answer from."""

    model = Document
    serializer_class = DocumentSerializer
    pagination_class = _ByTitle

    def scope_queryset(self, queryset):
        return queryset.annotate(passage_count=Count("passages"))

    def perform_create(self, serializer: DocumentSerializer) -> None:
        document = _stored(
            lambda: services.document_create(tenant=self.tenant, **serializer.validated_data)
        )
        serializer.instance = self.get_queryset().get(pk=document.pk)

    def perform_update(self, serializer: DocumentSerializer) -> None:
        document = _stored(
            lambda: services.document_update(
                document=serializer.instance, **serializer.validated_data
            )
        )
        serializer.instance = self.get_queryset().get(pk=document.pk)

    def perform_destroy(self, instance: Document) -> None:
        services.document_delete(document=instance)
