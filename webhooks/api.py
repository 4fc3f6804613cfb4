"""/api/v1/webhook-endpoints/, /api/v1/webhook-deliveries/ and /api/v1/webhook-events/."""

from __future__ import annotations

import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from tenants.api_base import TenantCursorPagination, TenantViewSet
from webhooks import services
from webhooks.models import Delivery, Endpoint, Event, EventType
from webhooks.serializers import (
    DeliveryDetailSerializer,
    DeliverySerializer,
    EndpointCreatedSerializer,
    EndpointSerializer,
    EventSerializer,
    ResendSerializer,
    RotateSerializer,
    SecretSerializer,
)


class _ByCreation(TenantCursorPagination):
    ordering = "created_at"


class _NewestFirst(TenantCursorPagination):
    ordering = "-created_at"


@extend_schema_view(
    list=extend_schema(summary="List webhook endpoints"),
    create=extend_schema(
        summary="Add a webhook endpoint",
        description="The answer carries the endpoint's signing secret.",
        responses={201: EndpointCreatedSerializer},
        examples=[
            OpenApiExample(
                "CRM",
                value={
                    "url": "https://crm.example.com/hooks/voice",
                    "description": "CRM",
                    "events": ["call.ended", "call.analyzed"],
                },
                request_only=True,
            )
        ],
    ),
    retrieve=extend_schema(summary="Read a webhook endpoint"),
    update=extend_schema(summary="Replace a webhook endpoint"),
    partial_update=extend_schema(
        summary="Change a webhook endpoint",
        description='`{"enabled": true}` switches an endpoint on again and forgets its failures.',
    ),
    destroy=extend_schema(summary="Delete a webhook endpoint (and its deliveries)"),
)
class EndpointViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantViewSet,
):
    """Where the tenant's systems receive call events, signed with Standard Webhooks."""

    model = Endpoint
    serializer_class = EndpointSerializer
    pagination_class = _ByCreation

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = EndpointSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = services.endpoint_create(tenant=self.tenant, **serializer.validated_data)
        data = {**EndpointSerializer(endpoint).data, "secret": secret}
        return Response(data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    def perform_update(self, serializer: EndpointSerializer) -> None:
        enabled = serializer.validated_data.pop("enabled", None)
        endpoint = serializer.save()
        if enabled is not None and enabled != endpoint.enabled:
            services.endpoint_enable(endpoint=endpoint, enabled=enabled)

    def _writer_only(self) -> None:
        if not self.access.can_write:
            raise exceptions.PermissionDenied("Only owners and admins may see signing secrets.")

    @extend_schema(summary="Read an endpoint's signing secret", responses=SecretSerializer)
    @action(detail=True, methods=["get"])
    def secret(self, request: Request, pk: str | None = None) -> Response:
        self._writer_only()
        endpoint = self.get_object()
        data = {
            "secret": endpoint.secret,
            "previous_secret_expires_at": endpoint.previous_secret_expires_at,
        }
        return Response(SecretSerializer(data).data, headers={"Cache-Control": "no-store"})

    @extend_schema(
        summary="Rotate an endpoint's signing secret",
        description="A new secret signs from now on; the old one keeps signing beside it for "
        "`overlap_hours`, so receivers can switch without losing a message.",
        request=RotateSerializer,
        responses=SecretSerializer,
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        endpoint = self.get_object()
        options = RotateSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        secret = services.endpoint_rotate_secret(
            endpoint=endpoint, overlap_hours=options.validated_data.get("overlap_hours")
        )
        data = {"secret": secret, "previous_secret_expires_at": endpoint.previous_secret_expires_at}
        return Response(SecretSerializer(data).data, headers={"Cache-Control": "no-store"})


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Delivery.Status.choices)
    endpoint = django_filters.UUIDFilter(field_name="endpoint_id")
    event_type = django_filters.ChoiceFilter(field_name="event__type", choices=EventType.choices)
    call = django_filters.UUIDFilter(field_name="event__call_id")

    class Meta:
        model = Delivery
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(summary="List webhook deliveries (newest first)"),
    retrieve=extend_schema(summary="Read a delivery with its body and every attempt"),
)
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Each event to each endpoint: pending, delivered or failed (given up), with its attempts."""

    model = Delivery
    pagination_class = _NewestFirst
    filter_backends = [DjangoFilterBackend]
    filterset_class = DeliveryFilter

    def scope_queryset(self, queryset):
        queryset = queryset.select_related("event")
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("attempt_log")
        return queryset

    def get_serializer_class(self):
        return DeliveryDetailSerializer if self.action == "retrieve" else DeliverySerializer

    @extend_schema(
        summary="Send a delivery again",
        description="From the start of the retry schedule, with the same `webhook-id`.",
        request=None,
        responses={202: ResendSerializer},
    )
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, pk: str | None = None) -> Response:
        delivery = self.get_object()
        services.deliveries_resend(deliveries=[delivery])
        return Response({"ids": [str(delivery.id)]}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="webhook_deliveries_resend_many",
        summary="Send several deliveries again",
        description="Any id that is not one of the tenant's deliveries answers 404 and nothing "
        "is resent.",
        request=ResendSerializer,
        responses={202: ResendSerializer},
    )
    @action(detail=False, methods=["post"], url_path="resend")
    def resend_many(self, request: Request) -> Response:
        body = ResendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids = set(body.validated_data["ids"])
        deliveries = list(self.get_queryset().filter(id__in=ids))
        if len(deliveries) != len(ids):
            raise exceptions.NotFound("No such delivery.")
        services.deliveries_resend(deliveries=deliveries)
        return Response({"ids": [str(i) for i in ids]}, status=status.HTTP_202_ACCEPTED)


class EventFilter(django_filters.FilterSet):
    type = django_filters.ChoiceFilter(choices=EventType.choices)
    call = django_filters.UUIDFilter(field_name="call_id")

    class Meta:
        model = Event
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(
        summary="List events (newest first)",
        description="What was sent to the tenant's endpoints, with the body's `data` as sent. "
        "Events are written only while an enabled endpoint subscribes to them.",
    ),
    retrieve=extend_schema(summary="Read an event"),
)
class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """The events of the tenant's calls, in the shape each webhook body has."""

    model = Event
    serializer_class = EventSerializer
    pagination_class = _NewestFirst
    filter_backends = [DjangoFilterBackend]
    filterset_class = EventFilter
