"""The REST API: /api/v1/..., its OpenAPI schema and interactive docs."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, include, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from analytics.api import AnalyticsView
from assistants.api import (
    AssistantViewSet,
    FAQEntryViewSet,
    PhoneNumberViewSet,
    VersionViewSet,
)
from calls.api import CallViewSet
from campaigns.api import (
    CallbackViewSet,
    CampaignViewSet,
    DoNotCallViewSet,
    OutboundCallViewSet,
    RecordingSettingsView,
    RecordingViewSet,
    TwilioNumbersView,
)
from insights.api import AnalysisPlanView, CallReportViewSet
from knowledge.api import DocumentViewSet
from rehearsals.api import ReplayRunViewSet, ScenarioViewSet
from tenants.api import ProviderKeysView, RateLimitView
from tools.api import BuiltinToolsView, HttpToolViewSet, TransferDestinationViewSet
from webhooks.api import DeliveryViewSet, EndpointViewSet, EventViewSet

router = SimpleRouter()
router.register("assistants", AssistantViewSet, basename="assistant")
router.register(
    r"assistants/(?P<assistant_pk>[^/.]+)/faq", FAQEntryViewSet, basename="assistant-faq"
)
router.register(
    r"assistants/(?P<assistant_pk>[^/.]+)/versions", VersionViewSet, basename="assistant-version"
)
router.register("phone-numbers", PhoneNumberViewSet, basename="phone-number")
router.register("calls", CallViewSet, basename="call")
router.register("outbound-calls", OutboundCallViewSet, basename="outbound-call")
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("do-not-call", DoNotCallViewSet, basename="do-not-call")
router.register("recordings", RecordingViewSet, basename="recording")
router.register("callbacks", CallbackViewSet, basename="callback")
router.register("call-reports", CallReportViewSet, basename="call-report")
router.register("webhook-endpoints", EndpointViewSet, basename="webhook-endpoint")
router.register("webhook-deliveries", DeliveryViewSet, basename="webhook-delivery")
router.register("webhook-events", EventViewSet, basename="webhook-event")
router.register(
    r"assistants/(?P<assistant_pk>[^/.]+)/tools", HttpToolViewSet, basename="assistant-tool"
)
router.register(
    r"assistants/(?P<assistant_pk>[^/.]+)/transfer-destinations",
    TransferDestinationViewSet,
    basename="assistant-transfer-destination",
)
router.register("knowledge/documents", DocumentViewSet, basename="knowledge-document")
router.register("replays", ReplayRunViewSet, basename="replay")
router.register(
    r"assistants/(?P<assistant_pk>[^/.]+)/scenarios", ScenarioViewSet, basename="assistant-scenario"
)

v1 = [
    *router.urls,
    path("analytics/", AnalyticsView.as_view(), name="analytics"),
    path("rate-limits/", RateLimitView.as_view(), name="rate-limits"),
    path("provider-keys/", ProviderKeysView.as_view(), name="provider-keys"),
    path("twilio-numbers/", TwilioNumbersView.as_view(), name="twilio-numbers"),
    path(
        "assistants/<str:assistant_pk>/analysis-plan/",
        AnalysisPlanView.as_view(),
        name="analysis-plan",
    ),
    path(
        "assistants/<str:assistant_pk>/recording-settings/",
        RecordingSettingsView.as_view(),
        name="assistant-recording-settings",
    ),
    path(
        "assistants/<str:assistant_pk>/builtin-tools/",
        BuiltinToolsView.as_view(),
        name="assistant-builtin-tools",
    ),
]


@csrf_exempt
def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Unknown /api/ addresses answer in JSON like the rest of the API, not with an HTML page."""
    detail = "Not found."
    if not request.path.endswith("/"):
        try:
            resolve(request.path + "/")
            detail = f"Not found. Did you mean {request.path}/ ?"
        except Resolver404:
            pass
    return JsonResponse({"detail": detail}, status=404)


urlpatterns = [
    path("v1/", include((v1, "api"), namespace="v1")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The page and its start-up script as two requests: the CSP allows no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^(?P<rest>[\s\S]*)\Z", not_found),  # any path, new lines included
]
