"""The whole OpenAPI schema, fuzzed with Schemathesis against the Django app (WSGI, in-process).

Generated requests (with a read-and-write API key of tenant A) must never get a 5xx, and every
response must match the schema: documented status code, content type, headers and body.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test import override_settings
from django_scopes import scopes_disabled
from hypothesis import HealthCheck, settings
from schemathesis import checks

from config.wsgi import application
from tenants.services import api_key_create

# Bounded so that the whole suite stays within minutes (operations x examples).
MAX_EXAMPLES = 25

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


# Loaded from the app itself (the schema view needs no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def api_key(db, tenant_a, alice, number_a, assistant_a) -> str:
    """A read-and-write key of tenant A, which has an assistant, a number and an FAQ entry."""
    with scopes_disabled():
        return api_key_create(tenant=tenant_a, name="fuzz", created_by=alice)[1]


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Requests go straight to the WSGI handler, which closes database connections when a
    request ends; like Django's test client, keep it from closing the test's connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
@override_settings(API_THROTTLE_RATE="")
def test_the_api_answers_every_generated_request_within_its_schema(case, api_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=CHECKS)


def test_the_schema_and_the_docs_are_served(client):
    schema_response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema_response.status_code == 200
    paths = schema_response.json()["paths"]
    assert {
        "/api/v1/assistants/",
        "/api/v1/assistants/{id}/",
        "/api/v1/assistants/{assistant_pk}/faq/",
        "/api/v1/phone-numbers/",
        "/api/v1/calls/",
        "/api/v1/calls/{id}/audio/",
        "/api/v1/analytics/",
        "/api/v1/rate-limits/",
    } <= set(paths)
    assert {"401", "404"} <= set(paths["/api/v1/assistants/{id}/"]["delete"]["responses"])
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
