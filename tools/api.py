"""/api/v1/assistants/<id>/tools/, .../transfer-destinations/ and .../builtin-tools/."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from assistants.api import OfAssistant
from tenants.api_base import TenantAPIView, TenantCursorPagination, TenantViewSet
from tools import services
from tools.models import BuiltinTools, HttpTool, TransferDestination
from tools.serializers import (
    BuiltinToolsSerializer,
    HttpToolSerializer,
    TransferDestinationSerializer,
)

ASSISTANT_PARAMETER = OpenApiParameter(
    "assistant_pk", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The assistant's id."
)


class _ByName(TenantCursorPagination):
    ordering = "name"


_CRUD = (
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
)


@extend_schema_view(
    list=extend_schema(summary="List an assistant's HTTP tools"),
    create=extend_schema(summary="Add an HTTP tool"),
    retrieve=extend_schema(summary="Read an HTTP tool"),
    update=extend_schema(summary="Replace an HTTP tool"),
    partial_update=extend_schema(summary="Change an HTTP tool"),
    destroy=extend_schema(summary="Delete an HTTP tool"),
)
@extend_schema(parameters=[ASSISTANT_PARAMETER])
class HttpToolViewSet(OfAssistant, *_CRUD, TenantViewSet):
    """Tools the tenant's own server answers: the model's arguments are posted to the tool's
    URL, signed with its `signing_secret` (Standard Webhooks); the answer is what it reads."""

    model = HttpTool
    serializer_class = HttpToolSerializer
    pagination_class = _ByName

    def perform_create(self, serializer: HttpToolSerializer) -> None:
        serializer.instance = services.http_tool_create(
            assistant=self.assistant(), **serializer.validated_data
        )

    def perform_update(self, serializer: HttpToolSerializer) -> None:
        serializer.instance = services.http_tool_update(
            tool=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: HttpTool) -> None:
        services.http_tool_delete(tool=instance)


@extend_schema_view(
    list=extend_schema(summary="List an assistant's transfer destinations"),
    create=extend_schema(summary="Add a transfer destination"),
    retrieve=extend_schema(summary="Read a transfer destination"),
    update=extend_schema(summary="Replace a transfer destination"),
    partial_update=extend_schema(summary="Change a transfer destination"),
    destroy=extend_schema(summary="Delete a transfer destination"),
)
@extend_schema(parameters=[ASSISTANT_PARAMETER])
class TransferDestinationViewSet(OfAssistant, *_CRUD, TenantViewSet):
    """People the assistant may transfer callers to when they ask (`transfer_call`)."""

    model = TransferDestination
    serializer_class = TransferDestinationSerializer
    pagination_class = _ByName

    def perform_create(self, serializer: TransferDestinationSerializer) -> None:
        serializer.instance = services.transfer_destination_create(
            assistant=self.assistant(), **serializer.validated_data
        )

    def perform_update(self, serializer: TransferDestinationSerializer) -> None:
        serializer.instance = services.transfer_destination_update(
            destination=serializer.instance, **serializer.validated_data
        )


@extend_schema(parameters=[ASSISTANT_PARAMETER])
class BuiltinToolsView(OfAssistant, TenantAPIView):
    """The platform's own tools an assistant uses: transfer_call, end_call, lookup_knowledge
    (and knowledge put into the prompt)."""

    model = BuiltinTools
    serializer_class = BuiltinToolsSerializer

    @extend_schema(summary="Read which built-in tools are on")
    def get(self, request: Request, assistant_pk: str) -> Response:
        builtin = self.get_queryset().first() or BuiltinTools(assistant=self.assistant())
        return Response(BuiltinToolsSerializer(builtin).data)

    @extend_schema(summary="Switch built-in tools on or off")
    def patch(self, request: Request, assistant_pk: str) -> Response:
        serializer = BuiltinToolsSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        builtin = services.builtin_tools_set(
            assistant=self.assistant(), **serializer.validated_data
        )
        return Response(BuiltinToolsSerializer(builtin).data)
