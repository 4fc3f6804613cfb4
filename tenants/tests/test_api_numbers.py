from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from tenants.models import PhoneNumber, RateLimit

pytestmark = pytest.mark.django_db

URL = "/api/v1/phone-numbers/"


def detail(number) -> str:
    return f"{URL}{number.id}/"


def test_the_owner_manages_numbers(api, alice, tenant_a, assistant_a, number_a):
    client = api(alice)
    assert [n["number"] for n in client.get(URL).json()["results"]] == ["+14155550100"]
    created = client.post(
        URL,
        {"number": "+1 (415) 555-0199", "assistant": str(assistant_a.id), "label": "Sales"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["number"] == "+14155550199"
    assert created.json()["assistant"] == str(assistant_a.id)
    number_url = f"{URL}{created.json()['id']}/"
    assert client.patch(number_url, {"assistant": None}, format="json").json()["assistant"] is None
    assert client.delete(number_url).status_code == 204
    with scopes_disabled():
        assert list(PhoneNumber.objects.filter(tenant=tenant_a)) == [number_a]


def test_a_number_is_pointed_at_another_assistant(api, alice, tenant_a, number_a):
    other = api(alice).post("/api/v1/assistants/", {"name": "Other"}, format="json").json()
    response = api(alice).patch(detail(number_a), {"assistant": other["id"]}, format="json")
    assert response.status_code == 200
    with scopes_disabled():
        assert str(PhoneNumber.objects.get(id=number_a.id).assistant_id) == other["id"]


@pytest.mark.parametrize(
    "bad", ["4155550100", "+1", "+1415555010012345", "+14155550100 ext. 7", ""]
)
def test_a_bad_e164_number_gets_400(api, alice, bad):
    response = api(alice).post(URL, {"number": bad}, format="json")
    assert response.status_code == 400
    assert "number" in response.json()


def test_a_number_another_tenant_holds_gets_400_without_revealing_whose(api, charlie, number_a):
    response = api(charlie).post(URL, {"number": "+1 415 555 0100"}, format="json")
    assert response.status_code == 400
    assert "number" in response.json()
    assert "Acme" not in response.content.decode()


def test_the_outsider_cannot_point_a_number_at_another_tenants_assistant(
    api, charlie, tenant_b, assistant_a, number_b
):
    client = api(charlie)
    response = client.post(
        URL, {"number": "+14155550299", "assistant": str(assistant_a.id)}, format="json"
    )
    assert response.status_code == 404
    response = client.patch(detail(number_b), {"assistant": str(assistant_a.id)}, format="json")
    assert response.status_code == 404
    with scopes_disabled():
        assert not PhoneNumber.objects.filter(number="+14155550299").exists()
        assert PhoneNumber.objects.get(id=number_b.id).assistant_id != assistant_a.id


@pytest.mark.parametrize("bad", ["not-a-uuid", 12, ["x"], {"id": "x"}])
def test_a_malformed_assistant_reference_is_refused(api, alice, bad):
    response = api(alice).post(URL, {"number": "+14155550198", "assistant": bad}, format="json")
    assert response.status_code in (400, 404)


def test_the_viewer_reads_but_gets_403_on_writes(api, bob, number_a):
    client = api(bob)
    assert client.get(detail(number_a)).status_code == 200
    assert client.post(URL, {"number": "+14155550197"}, format="json").status_code == 403
    assert client.patch(detail(number_a), {"label": "x"}, format="json").status_code == 403
    assert client.delete(detail(number_a)).status_code == 403


def test_the_outsider_gets_404_on_another_tenants_number(api, charlie, number_a, number_b):
    client = api(charlie)
    assert [n["number"] for n in client.get(URL).json()["results"]] == ["+14155550200"]
    assert client.get(detail(number_a)).status_code == 404
    assert client.patch(detail(number_a), {"label": "Mine"}, format="json").status_code == 404
    assert (
        client.put(detail(number_a), {"number": "+14155550100"}, format="json").status_code == 404
    )
    assert client.delete(detail(number_a)).status_code == 404
    with scopes_disabled():
        assert PhoneNumber.objects.get(id=number_a.id).label == "Main line"


# --- rate limits ----------------------------------------------------------------------------


@pytest.fixture
def limits(tenant_a):
    # Platform defaults (a migration may have made some already).
    RateLimit.objects.filter(tenant__isnull=True).delete()
    RateLimit.objects.create(kind=RateLimit.Kind.CONCURRENT_CALLS, limit=5)
    RateLimit.objects.create(
        kind=RateLimit.Kind.LLM_TOKENS_PER_DAY, limit=100000, window_seconds=86400
    )
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=2)


def test_members_read_their_effective_limits(api, bob, limits):
    response = api(bob).get("/api/v1/rate-limits/")
    assert response.status_code == 200
    rows = {row["kind"]: row for row in response.json()}
    assert rows["concurrent_calls"]["limit"] == 2
    assert rows["concurrent_calls"]["source"] == "tenant"
    assert rows["llm_tokens_per_day"]["source"] == "default"
    assert rows["calls_per_caller"] == {
        "kind": "calls_per_caller",
        "description": "Calls per caller number per window",
        "source": "none",
        "limit": None,
        "window_seconds": None,
        "action": None,
        "message": None,
    }


def test_the_outsider_sees_only_the_defaults(api, charlie, limits):
    rows = {row["kind"]: row for row in api(charlie).get("/api/v1/rate-limits/").json()}
    assert rows["concurrent_calls"]["limit"] == 5
    assert rows["concurrent_calls"]["source"] == "default"


def test_limits_cannot_be_changed_through_the_api(api, alice, limits):
    client = api(alice)
    assert client.post("/api/v1/rate-limits/", {"limit": 999}, format="json").status_code == 405
    assert client.put("/api/v1/rate-limits/", {"limit": 999}, format="json").status_code == 405
