from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.static import serve

from config import health
from config.metrics import metrics_view

admin.site.site_header = "Voice assistant platform"
admin.site.site_title = "Voice assistant platform"

urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/", permanent=False)),
    path("admin/", admin.site.urls),
    path("dashboard/", include("analytics.urls")),
    path("api/", include("config.api_urls")),
    path("", include("tenants.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("calls.urls")),
    path("", include("assistants.urls")),
]


def media(request: HttpRequest, path: str) -> HttpResponse:
    """Generated speech audio (MEDIA_ROOT read per request). Production puts media on an object
    store / CDN instead."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)


if settings.SERVE_MEDIA:
    urlpatterns.append(path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", media))
