from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, FAQEntry
from tenants.models import PhoneNumber

pytestmark = pytest.mark.django_db

URL = "/api/v1/assistants/"


def detail(assistant) -> str:
    return f"{URL}{assistant.id}/"


def faq_url(assistant) -> str:
    return f"{URL}{assistant.id}/faq/"


# --- the owner ------------------------------------------------------------------------------


def test_the_owner_lists_reads_creates_updates_and_deletes(api, alice, assistant_a, number_a):
    client = api(alice)
    listed = client.get(URL).json()
    assert [a["name"] for a in listed["results"]] == ["Acme front desk"]
    assert listed["results"][0]["phone_numbers"] == ["+14155550100"]

    created = client.post(
        URL,
        {"name": "Night line", "temperature": 0.3, "greeting": "Hello at night."},
        format="json",
    )
    assert created.status_code == 201, created.json()
    new_id = created.json()["id"]
    assert created.json()["temperature"] == 0.3
    assert created.json()["model"] == "llama-3.3-70b-versatile"

    changed = client.patch(f"{URL}{new_id}/", {"language": "sv-SE"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["language"] == "sv-SE"
    assert client.get(f"{URL}{new_id}/").json()["language"] == "sv-SE"

    assert client.delete(f"{URL}{new_id}/").status_code == 204
    assert client.get(f"{URL}{new_id}/").status_code == 404


def test_creating_an_assistant_queues_its_greeting(api, alice, tenant_a):
    from assistants.models import SpeechAudio

    response = api(alice).post(
        URL, {"name": "Spoken", "tts_engine": "gtts", "greeting": "Hi there."}, format="json"
    )
    assert response.status_code == 201
    with scopes_disabled():
        assert SpeechAudio.objects.filter(tenant=tenant_a, text="Hi there.").exists()


def test_an_api_key_writes_too(api, key_a, tenant_a):
    response = api(key=key_a).post(URL, {"name": "Via key"}, format="json")
    assert response.status_code == 201
    with scopes_disabled():
        assert AssistantConfig.objects.get(id=response.json()["id"]).tenant == tenant_a


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "X", "temperature": 2.5}, "temperature"),
        ({"name": "X", "temperature": "hot"}, "temperature"),
        ({"name": "X", "model": "gpt-17"}, "model"),
        ({"name": "X", "fallback_model": "gpt-17"}, "fallback_model"),
        ({"name": "X", "system_prompt": "x" * 20001}, "system_prompt"),
        ({"name": "X", "transfer_number": "555-0100"}, "transfer_number"),
        ({"name": "X", "language": "english please"}, "language"),
        ({"name": "X", "mode": "telepathy"}, "mode"),
        ({"name": "X", "max_tokens": 0}, "max_tokens"),
        ({"name": "X", "speech_timeout": "forever"}, "speech_timeout"),
        ({"name": "X", "transfer_digit": "x"}, "transfer_digit"),
        ({}, "name"),
        ({"name": "x" * 101}, "name"),
    ],
)
def test_bad_settings_get_a_field_specific_400(api, alice, tenant_a, payload, field):
    response = api(alice).post(URL, payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    with scopes_disabled():
        assert not AssistantConfig.objects.filter(tenant=tenant_a).exists()


def test_a_duplicate_name_gets_400(api, alice, assistant_a):
    response = api(alice).post(URL, {"name": assistant_a.name}, format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'"a string"', b"null", '{"name": "\u0000"}'.encode()]
)
def test_malformed_bodies_get_400(api, alice, body):
    response = api(alice).post(URL, body, content_type="application/json")
    assert response.status_code == 400


def test_the_tenant_cannot_be_set_through_the_api(api, alice, tenant_a, tenant_b):
    response = api(alice).post(URL, {"name": "Mine", "tenant": str(tenant_b.id)}, format="json")
    assert response.status_code == 201
    with scopes_disabled():
        assert AssistantConfig.objects.get(id=response.json()["id"]).tenant == tenant_a


def test_deleting_an_assistant_that_a_number_uses_is_refused(api, alice, assistant_a, number_a):
    response = api(alice).delete(detail(assistant_a))
    assert response.status_code == 409
    assert "+14155550100" in response.json()["detail"]
    with scopes_disabled():
        assert AssistantConfig.objects.filter(id=assistant_a.id).exists()


# --- the viewer and the outsider ------------------------------------------------------------


def test_the_viewer_reads_but_gets_403_on_writes(api, bob, assistant_a):
    client = api(bob)
    assert client.get(URL).status_code == 200
    assert client.get(detail(assistant_a)).status_code == 200
    assert client.post(URL, {"name": "Nope"}, format="json").status_code == 403
    assert client.patch(detail(assistant_a), {"name": "Nope"}, format="json").status_code == 403
    assert client.put(detail(assistant_a), {"name": "Nope"}, format="json").status_code == 403
    assert client.delete(detail(assistant_a)).status_code == 403
    assert (
        client.post(
            faq_url(assistant_a), {"patterns": "a", "answer": "b"}, format="json"
        ).status_code
        == 403
    )
    with scopes_disabled():
        assert AssistantConfig.objects.get(id=assistant_a.id).name == "Acme front desk"


def test_the_outsider_gets_404_on_everything_of_another_tenant(
    api, charlie, assistant_a, assistant_b
):
    client = api(charlie)
    assert [a["name"] for a in client.get(URL).json()["results"]] == ["Bravo orders"]
    assert client.get(detail(assistant_a)).status_code == 404
    assert client.patch(detail(assistant_a), {"name": "Mine"}, format="json").status_code == 404
    assert client.put(detail(assistant_a), {"name": "Mine"}, format="json").status_code == 404
    assert client.delete(detail(assistant_a)).status_code == 404
    assert client.get(faq_url(assistant_a)).status_code == 404
    assert (
        client.post(
            faq_url(assistant_a), {"patterns": "a", "answer": "b"}, format="json"
        ).status_code
        == 404
    )
    with scopes_disabled():
        entry = FAQEntry.objects.get(assistant=assistant_a)
        assert AssistantConfig.objects.get(id=assistant_a.id).name == "Acme front desk"
        assert FAQEntry.objects.filter(assistant=assistant_a).count() == 1
    assert client.get(f"{faq_url(assistant_a)}{entry.id}/").status_code == 404
    assert client.delete(f"{faq_url(assistant_a)}{entry.id}/").status_code == 404
    # Through his own assistant's URL, A's entry is not found either.
    assert client.get(f"{faq_url(assistant_b)}{entry.id}/").status_code == 404


def test_the_outsiders_key_gets_404_too(api, key_b, assistant_a):
    assert api(key=key_b).get(detail(assistant_a)).status_code == 404


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "1"])
def test_unknown_and_malformed_ids_get_404(api, alice, bad_id):
    assert api(alice).get(f"{URL}{bad_id}/").status_code == 404
    assert api(alice).get(f"{URL}{bad_id}/faq/").status_code == 404


@pytest.mark.parametrize("bad_id", ["a.b", "line%0Abreak", "dot.%0A"])
def test_ids_no_route_takes_get_a_json_404(api, alice, bad_id):
    """Ids no route matches (a dot, an encoded new line) still get the API's JSON 404."""
    response = api(alice).get(f"{URL}{bad_id}/transfer-destinations/x/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


# --- FAQ entries ----------------------------------------------------------------------------


def test_the_owner_manages_faq_entries(api, alice, assistant_a, tenant_a):
    client = api(alice)
    listed = client.get(faq_url(assistant_a)).json()["results"]
    assert [e["answer"] for e in listed] == ["We are open from eight to six, Monday to Friday."]
    created = client.post(
        faq_url(assistant_a),
        {"patterns": "where are you\nwhat is your address", "answer": "On Main Street."},
        format="json",
    )
    assert created.status_code == 201
    entry_url = f"{faq_url(assistant_a)}{created.json()['id']}/"
    assert client.patch(entry_url, {"active": False}, format="json").json()["active"] is False
    with scopes_disabled():
        entry = FAQEntry.objects.get(id=created.json()["id"])
        assert (entry.tenant, entry.assistant) == (tenant_a, assistant_a)
    assert client.delete(entry_url).status_code == 204
    assert client.get(entry_url).status_code == 404


def test_an_faq_entry_without_patterns_gets_400(api, alice, assistant_a):
    response = api(alice).post(
        faq_url(assistant_a), {"patterns": " \n ", "answer": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "patterns" in response.json()


def test_a_number_still_points_at_its_assistant_after_updates(api, alice, assistant_a, number_a):
    api(alice).patch(detail(assistant_a), {"temperature": 0.2}, format="json")
    with scopes_disabled():
        assert PhoneNumber.objects.get(id=number_a.id).assistant_id == assistant_a.id
