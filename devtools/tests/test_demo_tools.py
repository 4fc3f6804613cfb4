"""The demo tenant's tools: what seed_demo creates, the platform's own booking endpoint (which
checks signatures with the Standard Webhooks library), and a simulated call that books through
it against a real daphne server."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from core.signing import new_message_id, signed_headers
from knowledge.models import Document
from tools.models import BuiltinTools, HttpTool, TransferDestination


def seed(base_url: str = "http://127.0.0.1:8000") -> str:
    out = io.StringIO()
    call_command("seed_demo", "--base-url", base_url, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_the_demo_assistant_gets_a_booking_tool_a_front_desk_and_documents(monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "demo password for tests")
    seed()
    seed("http://127.0.0.1:9000")  # a second run changes only the tool's address
    with scopes_disabled():
        [tool] = HttpTool.objects.filter(tenant__slug="demo")
        assert tool.name == "book_appointment"
        assert tool.url == "http://127.0.0.1:9000/devtools/demo/book"
        [desk] = TransferDestination.objects.filter(tenant__slug="demo")
        assert (desk.name, desk.number) == ("front desk", "+15005550001")
        builtin = BuiltinTools.objects.get(assistant__tenant__slug="demo")
        assert builtin.transfer_call and builtin.end_call and builtin.lookup_knowledge
        assert Document.objects.filter(tenant__slug="demo").count() == 3


@pytest.mark.django_db
def test_the_demo_endpoint_books_only_signed_requests(client, monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "demo password for tests")
    seed()
    with scopes_disabled():
        secret = HttpTool.objects.get(tenant__slug="demo").get_signing_secret()
    body = json.dumps({"arguments": {"service": "cleaning", "day": "tuesday"}}).encode()
    unsigned = client.post("/devtools/demo/book", body, content_type="application/json")
    assert unsigned.status_code == 401
    headers = signed_headers(body=body, message_id=new_message_id(), secrets_in_use=[secret])
    signed = client.post(
        "/devtools/demo/book",
        body,
        content_type="application/json",
        headers={k.replace("-", "_").upper(): v for k, v in headers.items()},
    )
    assert signed.status_code == 200, signed.content
    assert signed.json()["message"].startswith("You're booked in for a cleaning on Tuesday")


@pytest.mark.django_db(transaction=True)
def test_a_simulated_call_books_through_the_demo_endpoint(daphne_server, fake_groq, monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "demo password for tests")
    seed(daphne_server.base_url)
    with scopes_disabled():
        AssistantConfig.objects.filter(tenant__slug="demo").update(tts_engine="say")
    out = io.StringIO()
    call_command(
        "simulate_call",
        "--url",
        daphne_server.base_url,
        "--to",
        "+15005550006",
        "--say",
        "Can I book a cleaning on Tuesday?",
        stdout=out,
    )
    text = out.getvalue()
    assert "assistant: You're booked in for a cleaning on Tuesday at 10 a.m." in text, (
        text + daphne_server.log()
    )
    [tool_line] = [line for line in text.splitlines() if "tool book_appointment(" in line]
    assert '"service": "cleaning"' in tool_line and '"day": "tuesday"' in tool_line
    assert ") -> ok in " in tool_line
