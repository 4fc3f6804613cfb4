from django.urls import path

from tenants import views

urlpatterns = [
    path("console/api-keys/", views.api_keys, name="console-api-keys"),
    path(
        "console/api-keys/<uuid:key_id>/revoke/",
        views.api_key_revoke_view,
        name="console-api-key-revoke",
    ),
]
