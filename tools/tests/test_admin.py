"""The admin of tools and knowledge: a tenant's admin sees and picks only their tenant's rows,
another tenant's pages answer 404, and header values are never shown back."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled

from knowledge.models import Document
from knowledge.services import document_create
from tools.models import BuiltinTools, HttpTool, TransferDestination
from tools.services import builtin_tools_set, http_tool_create, transfer_destination_create

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {}}


@pytest.fixture
def rows_a(assistant_a):
    with scopes_disabled():
        return {
            HttpTool: http_tool_create(
                assistant=assistant_a,
                name="book_appointment",
                description="Book.",
                parameters=SCHEMA,
                url="https://hooks.example.com/book",
                headers={"Authorization": "Bearer very-secret-value"},
            ),
            TransferDestination: transfer_destination_create(
                assistant=assistant_a, name="front desk", number="+15005550002"
            ),
            BuiltinTools: builtin_tools_set(assistant=assistant_a, end_call=True),
            Document: document_create(
                tenant=assistant_a.tenant, title="Acme parking", text="Park on Mill Lane."
            ),
        }


def admin_url(model, view: str, *args) -> str:
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", [HttpTool, TransferDestination, BuiltinTools, Document])
def test_the_outsider_gets_404_and_an_empty_list(charlie, rows_a, model):
    client = logged_in(charlie)
    obj = rows_a[model]
    assert client.get(admin_url(model, "change", obj.pk)).status_code == 404
    assert client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 404
    listing = client.get(admin_url(model, "changelist"))
    assert listing.status_code == 200
    assert str(obj) not in listing.content.decode()


@pytest.mark.parametrize("model", [HttpTool, TransferDestination, BuiltinTools, Document])
def test_the_owner_sees_her_rows(alice, rows_a, model):
    response = logged_in(alice).get(admin_url(model, "change", rows_a[model].pk))
    assert response.status_code == 200


def test_header_values_are_never_shown_and_survive_an_edit(alice, rows_a, assistant_a):
    tool = rows_a[HttpTool]
    client = logged_in(alice)
    page = client.get(admin_url(HttpTool, "change", tool.pk)).content.decode()
    assert "very-secret-value" not in page and "Authorization" in page
    assert "whsec_" in page  # the signing secret, for the tenant's server
    response = client.post(
        admin_url(HttpTool, "change", tool.pk),
        {
            "tenant": assistant_a.tenant_id,
            "assistant": assistant_a.pk,
            "name": "book_appointment",
            "description": "Book a visit.",
            "parameters": '{"type": "object", "properties": {}}',
            "url": "https://hooks.example.com/book",
            "method": "POST",
            "timeout_seconds": "3",
            "active": "on",
            "headers": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with scopes_disabled():
        tool = HttpTool.objects.get(pk=tool.pk)
    assert tool.description == "Book a visit." and tool.timeout_seconds == 3
    assert tool.get_headers() == {"Authorization": "Bearer very-secret-value"}


def test_the_tool_form_offers_only_the_tenants_assistants(alice, assistant_a, assistant_b):
    page = logged_in(alice).get(admin_url(HttpTool, "add")).content.decode()
    assert assistant_a.name in page and assistant_b.name not in page


def test_a_document_added_in_the_admin_is_cut_into_passages(alice, tenant_a):
    response = logged_in(alice).post(
        admin_url(Document, "add"),
        {
            "tenant": tenant_a.pk,
            "title": "Prices",
            "kind": "text",
            "language": "en-US",
            "text": "A cleaning costs forty pounds.",
            "passages-TOTAL_FORMS": "0",
            "passages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with scopes_disabled():
        document = Document.objects.get(title="Prices")
        assert [p.text for p in document.passages.all()] == ["A cleaning costs forty pounds."]
