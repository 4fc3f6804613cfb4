"""The REST API: /api/v1/..., its OpenAPI schema and interactive docs."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from assistants.api import AssistantViewSet, FAQEntryViewSet
from calls.api import AnalyticsView, CallViewSet
from tenants.api import PhoneNumberViewSet, RateLimitView

router = SimpleRouter()
router.register("assistants", AssistantViewSet, basename="assistant")
router.register(
    r"assistants/(?P<assistant_pk>[^/.]+)/faq", FAQEntryViewSet, basename="assistant-faq"
)
router.register("phone-numbers", PhoneNumberViewSet, basename="phone-number")
router.register("calls", CallViewSet, basename="call")

v1 = [
    *router.urls,
    path("analytics/", AnalyticsView.as_view(), name="analytics"),
    path("rate-limits/", RateLimitView.as_view(), name="rate-limits"),
]

urlpatterns = [
    path("v1/", include((v1, "api"), namespace="v1")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
