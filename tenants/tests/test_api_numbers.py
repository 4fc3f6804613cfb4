from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from tenants.models import PhoneNumber, RateLimit
from tenants.tests.twilio_standin import TwilioStandIn, give_own_account

pytestmark = pytest.mark.django_db

URL = "/api/v1/phone-numbers/"
SID_A = "AC" + "a" * 32
TOKEN_A = "a-tenant-auth-token"


def detail(number) -> str:
    return f"{URL}{number.id}/"


@pytest.fixture
def own_account(tenant_a, twilio_api) -> TwilioStandIn:
    """Tenant A brings its own Twilio account, which holds +14155550199 and +14155550198."""
    give_own_account(
        tenant_a, twilio_api, sid=SID_A, token=TOKEN_A, numbers=["+14155550199", "+14155550198"]
    )
    return twilio_api


def test_the_owner_manages_numbers(api, alice, tenant_a, assistant_a, number_a, own_account):
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


# --- who may add which number ---------------------------------------------------------------


def test_a_tenant_cannot_take_the_number_another_tenant_released(api, alice, charlie, number_a):
    with scopes_disabled():
        released = PhoneNumber.objects.create(tenant=number_a.tenant, number="+14155550111")
    # Tenant A releases a number of the platform's account; tenant B (Charlie) grabs it.
    assert api(alice).delete(detail(released)).status_code == 204
    client = api(charlie)
    response = client.post(URL, {"number": "+14155550111"}, format="json")
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]
    with scopes_disabled():
        assert not PhoneNumber.objects.filter(number="+14155550111").exists()


def test_a_tenant_cannot_move_its_number_onto_another(api, alice, charlie, number_a, number_b):
    response = api(charlie).patch(detail(number_b), {"number": "+14155550111"}, format="json")
    assert response.status_code == 403
    with scopes_disabled():
        assert PhoneNumber.objects.get(id=number_b.id).number == "+14155550200"
    # Label, assistant and active stay the tenant's to change.
    response = api(charlie).patch(detail(number_b), {"label": "Shop"}, format="json")
    assert response.status_code == 200


def test_a_held_and_a_free_number_get_the_same_answer(api, charlie, number_a):
    held = api(charlie).post(URL, {"number": "+1 415 555 0100"}, format="json")
    free = api(charlie).post(URL, {"number": "+1 415 555 0177"}, format="json")
    assert (held.status_code, held.json()) == (free.status_code, free.json())
    assert "Acme" not in held.content.decode()


def test_a_tenant_adds_a_number_its_own_twilio_account_holds(
    api, alice, tenant_a, own_account, key_a
):
    response = api(key=key_a).post(URL, {"number": "+1 415 555 0198"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["number"] == "+14155550198"
    assert own_account.requests == [
        f"/2010-04-01/Accounts/{SID_A}/IncomingPhoneNumbers.json"
        "?PhoneNumber=%2B14155550198&PageSize=50"
    ]


def test_numbers_not_on_the_tenants_account_get_one_answer_held_or_free(
    api, alice, number_b, own_account
):
    held = api(alice).post(URL, {"number": number_b.number}, format="json")
    free = api(alice).post(URL, {"number": "+14155550177"}, format="json")
    assert held.status_code == 400
    assert (held.status_code, held.json()) == (free.status_code, free.json())
    assert "does not list" in held.json()["number"][0]
    assert "Bravo" not in held.content.decode()


def test_twilio_is_asked_for_the_exact_number_not_a_pattern(api, alice, own_account):
    # Twilio's PhoneNumber filter matches partial numbers: +4930123456 finds +49301234567.
    own_account.add_account(SID_A, TOKEN_A, ["+49301234567"])
    response = api(alice).post(URL, {"number": "+4930123456"}, format="json")
    assert response.status_code == 400
    assert own_account.requests  # Twilio was asked, and its partial match was not taken


def test_wrong_twilio_credentials_are_refused_clearly(api, alice, tenant_a, own_account):
    tenant_a.set_twilio_auth_token("not-the-token")
    tenant_a.save()
    response = api(alice).post(URL, {"number": "+14155550199"}, format="json")
    assert response.status_code == 400
    assert "auth token" in response.json()["number"][0]


@pytest.mark.parametrize("status", [500, 429])
def test_twilio_failing_answers_503_and_adds_nothing(api, alice, own_account, status):
    own_account.status = status
    response = api(alice).post(URL, {"number": "+14155550199"}, format="json")
    assert response.status_code == 503
    assert "try again" in response.json()["detail"]
    with scopes_disabled():
        assert not PhoneNumber.objects.filter(number="+14155550199").exists()


def test_twilio_unreachable_answers_503(api, alice, own_account, settings):
    own_account.stop()
    response = api(alice).post(URL, {"number": "+14155550199"}, format="json")
    assert response.status_code == 503


def test_platform_staff_assign_any_number_through_the_api(api, superuser, tenant_b, number_a):
    client = api(superuser)
    client.credentials(HTTP_X_TENANT=tenant_b.slug)
    response = client.post(URL, {"number": "+14155550111"}, format="json")
    assert response.status_code == 201
    # A number another tenant holds is refused, to staff by name.
    assert client.post(URL, {"number": number_a.number}, format="json").status_code == 400


def test_in_the_admin_a_tenant_admin_cannot_add_a_number_and_staff_can(
    alice, superuser, tenant_a, assistant_a, number_b
):
    from django.test import Client

    tenant_admin = Client()
    tenant_admin.force_login(alice)
    for number in ("+14155550111", number_b.number):
        response = tenant_admin.post(
            "/admin/tenants/phonenumber/add/",
            {"tenant": str(tenant_a.id), "number": number, "label": "", "active": "on"},
        )
        assert response.status_code == 200  # the form again, with the error
        page = response.content.decode()
        assert "assigned by platform staff" in page
        assert "already in use" not in page
    with scopes_disabled():
        assert not PhoneNumber.objects.filter(number="+14155550111").exists()
    staff = Client()
    staff.force_login(superuser)
    response = staff.post(
        "/admin/tenants/phonenumber/add/",
        {"tenant": str(tenant_a.id), "number": "+14155550111", "label": "", "active": "on"},
    )
    assert response.status_code == 302
    with scopes_disabled():
        assert PhoneNumber.objects.get(number="+14155550111").tenant == tenant_a


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
