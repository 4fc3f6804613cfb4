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

# The site's icon (browsers ask every site for /favicon.ico): sound bars on the dashboard's ink.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#1d2330"/>'
    '<g fill="#59a14f"><rect x="6" y="13" width="4" height="6" rx="2"/>'
    '<rect x="12" y="8" width="4" height="16" rx="2"/><rect x="18" y="5" width="4" height="22" rx="2"/>'
    '<rect x="24" y="11" width="4" height="10" rx="2"/></g></svg>'
)


def favicon(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(FAVICON, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/", permanent=False)),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("dashboard/", include("analytics.urls")),
    path("api/", include("config.api_urls")),
    path("", include("tenants.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("calls.urls")),
    path("", include("campaigns.urls")),
    path("", include("assistants.urls")),
]


def media(request: HttpRequest, path: str) -> HttpResponse:
    """Generated speech audio (MEDIA_ROOT read per request). Production puts media on an object
    store / CDN instead."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)


# The demo tenant's booking tool (devtools: development and demos only).
if settings.DEVTOOLS:
    urlpatterns.append(path("devtools/", include("devtools.urls")))

if settings.SERVE_MEDIA:
    urlpatterns.append(path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", media))
