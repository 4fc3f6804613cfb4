"""The tools API: HTTP tools, transfer destinations and built-in switches of an assistant."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from tools.models import HttpTool

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}


def tools_url(assistant) -> str:
    return f"/api/v1/assistants/{assistant.id}/tools/"


def new_tool(**changes) -> dict:
    return {
        "name": "book_appointment",
        "description": "Book a visit.",
        "parameters": SCHEMA,
        "url": "https://hooks.example.com/book",
        "headers": {"Authorization": "Bearer s3cret"},
        **changes,
    }


def test_the_owner_creates_a_tool_whose_header_values_are_never_shown(api, alice, assistant_a):
    client = api(alice)
    created = client.post(tools_url(assistant_a), new_tool(), format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["header_names"] == ["Authorization"] and "headers" not in body
    assert body["signing_secret"].startswith("whsec_")
    assert body["timeout_seconds"] == 5.0 and body["method"] == "POST"
    assert "s3cret" not in created.content.decode()
    with scopes_disabled():
        tool = HttpTool.objects.get(pk=body["id"])
        assert "s3cret" not in tool.headers_encrypted
        assert tool.get_headers() == {"Authorization": "Bearer s3cret"}

    listed = client.get(tools_url(assistant_a)).json()["results"]
    assert [t["name"] for t in listed] == ["book_appointment"]
    changed = client.patch(
        f"{tools_url(assistant_a)}{body['id']}/", {"timeout_seconds": 2}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["header_names"] == ["Authorization"]
    gone = client.delete(f"{tools_url(assistant_a)}{body['id']}/")
    assert gone.status_code == 204


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"parameters": {"type": "string"}}, "parameters"),
        ({"parameters": {"type": "object", "properties": {"x": {"type": 5}}}}, "parameters"),
        ({"name": "end_call"}, "name"),
        ({"name": "has spaces"}, "name"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"timeout_seconds": 120}, "timeout_seconds"),
        ({"headers": {"Content-Type": "text/plain"}}, "headers"),
        ({"headers": {"X-Bad": "two\nlines"}}, "headers"),
    ],
)
def test_bad_tools_get_a_field_specific_400(api, alice, assistant_a, changes, field):
    response = api(alice).post(tools_url(assistant_a), new_tool(**changes), format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_the_viewer_reads_but_cannot_write(api, bob, assistant_a):
    client = api(bob)
    assert client.get(tools_url(assistant_a)).status_code == 200
    assert client.post(tools_url(assistant_a), new_tool(), format="json").status_code == 403


def test_the_outsider_gets_404_for_another_tenants_assistant(api, alice, charlie, assistant_a):
    tool_id = api(alice).post(tools_url(assistant_a), new_tool(), format="json").json()["id"]
    client = api(charlie)
    base = f"/api/v1/assistants/{assistant_a.id}"
    assert client.get(tools_url(assistant_a)).status_code == 404
    assert client.get(f"{tools_url(assistant_a)}{tool_id}/").status_code == 404
    assert client.post(tools_url(assistant_a), new_tool(), format="json").status_code == 404
    assert client.delete(f"{tools_url(assistant_a)}{tool_id}/").status_code == 404
    assert client.get(f"{base}/transfer-destinations/").status_code == 404
    assert client.get(f"{base}/builtin-tools/").status_code == 404
    assert (
        client.patch(f"{base}/builtin-tools/", {"end_call": True}, format="json").status_code == 404
    )


def test_the_outsiders_key_cannot_reach_a_tool_through_its_own_assistant(
    api, alice, key_b, assistant_a, assistant_b
):
    tool_id = api(alice).post(tools_url(assistant_a), new_tool(), format="json").json()["id"]
    client = api(key=key_b)
    assert client.get(f"{tools_url(assistant_b)}{tool_id}/").status_code == 404


def test_destinations_and_builtins(api, alice, assistant_a):
    client = api(alice)
    base = f"/api/v1/assistants/{assistant_a.id}"
    created = client.post(
        f"{base}/transfer-destinations/",
        {"name": "billing", "number": "+1 415 555 0199"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["number"] == "+14155550199"
    bad = client.post(
        f"{base}/transfer-destinations/", {"name": "x", "number": "12"}, format="json"
    )
    assert bad.status_code == 400
    assert client.get(f"{base}/builtin-tools/").json()["transfer_call"] is False
    switched = client.patch(
        f"{base}/builtin-tools/", {"transfer_call": True, "end_call": True}, format="json"
    )
    assert switched.status_code == 200
    assert client.get(f"{base}/builtin-tools/").json() == {
        "end_call": True,
        "knowledge_in_prompt": False,
        "lookup_knowledge": False,
        "registered": [],
        "transfer_call": True,
    }
