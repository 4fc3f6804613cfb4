from __future__ import annotations

import time

import pytest
from django.test import Client
from django_scopes import scopes_disabled

from conftest import PASSWORD

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_dashboard_needs_a_login(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/dashboard/login/")


def test_a_member_logs_in_and_lands_on_the_dashboard(client, alice):
    response = client.post("/dashboard/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_alice_sees_her_tenant_only(book, alice):
    response = logged_in(alice).get("/dashboard/?period=7d")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme Plumbing" in html
    assert "Bravo" not in html
    assert response.context["figures"]["calls"] == 5
    assert [c.call_sid for c in response.context["live_calls"]] == ["CA5"]
    assert "••••••0042" in html  # the live caller, masked
    assert "+15559870042" not in html and "+15551230123" not in html
    assert "vendor/chartjs/chart.umd.min.js" in html


def test_charlie_cannot_pick_tenant_a(book, charlie, tenant_a):
    client = logged_in(charlie)
    assert client.get(f"/dashboard/?tenant={tenant_a.id}").status_code == 404
    assert client.get(f"/dashboard/figures/?tenant={tenant_a.id}").status_code == 404
    own = client.get("/dashboard/figures/?period=7d").json()
    assert own["figures"]["calls"] == 1  # tenant B's one call


def test_charlie_gets_404_for_a_call_of_tenant_a(book, charlie, alice):
    call = book.calls["c1"]
    assert logged_in(charlie).get(f"/dashboard/calls/{call.id}/").status_code == 404
    assert logged_in(alice).get(f"/dashboard/calls/{call.id}/").status_code == 200


def test_staff_see_all_tenants_and_can_filter(book, superuser, tenant_b):
    client = logged_in(superuser)
    everything = client.get("/dashboard/figures/?period=7d").json()
    assert everything["figures"]["calls"] == 6
    only_b = client.get(f"/dashboard/figures/?period=7d&tenant={tenant_b.id}").json()
    assert only_b["figures"]["calls"] == 1
    page = client.get(f"/dashboard/?tenant={tenant_b.id}")
    assert page.status_code == 200
    assert "Bravo Bakery" in page.content.decode()


def test_figures_json_has_figures_charts_and_assistants(book, alice):
    data = logged_in(alice).get("/dashboard/figures/?period=7d").json()
    assert data["period"]["key"] == "7d"
    assert data["figures"]["turn_p90"] == 900
    assert sum(data["charts"]["calls"]) == 5
    assert {a["name"] for a in data["assistants"]} == {"Acme front desk", "Acme night line"}


@pytest.mark.parametrize(
    "query", ["tenant=nope", "tenant=" + "9" * 3000, "tenant=00000000-0000-0000-0000-000000000000"]
)
def test_bad_tenant_ids_get_404_not_500(alice, query):
    assert logged_in(alice).get(f"/dashboard/figures/?{query}").status_code == 404


def test_a_bad_period_falls_back_to_today(alice):
    data = logged_in(alice).get("/dashboard/figures/?period=<script>").json()
    assert data["period"]["key"] == "today"


def test_a_user_without_tenant_gets_404(client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password=PASSWORD)
    client.force_login(user)
    assert client.get("/dashboard/").status_code == 404


def test_an_unknown_call_is_404(alice):
    client = logged_in(alice)
    assert client.get("/dashboard/calls/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/dashboard/calls/not-a-uuid/").status_code == 404


def test_the_call_page_shows_transcript_waterfall_audio_and_snapshot(book, alice):
    call = book.calls["c1"]
    response = logged_in(alice).get(f"/dashboard/calls/{call.id}/")
    html = response.content.decode()
    assert "what are your opening hours" in html
    assert '<audio controls preload="none" src="/media/speech/a.mp3">' in html
    assert "You are Acme Plumbing&#x27;s receptionist." in html  # the config snapshot
    assert "••••••0123" in html and "+15551230123" not in html
    assert response.context["waterfall"][0]["spans"][-1] == {
        "stage": "Response sent",
        "start": 350,
        "end": 400,
    }


def test_hostile_text_is_escaped(book, alice):
    from django_scopes import scopes_disabled

    from calls.models import Turn

    with scopes_disabled():
        Turn.objects.filter(call=book.calls["c5"], sequence=1).update(
            text="<script>alert(1)</script>" + "x" * 100_000
        )
    html = logged_in(alice).get("/dashboard/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.django_db(transaction=True)
def test_figures_are_cached_then_refreshed_in_the_background(book, alice, charlie, settings):
    from django.core.cache import cache

    from calls.models import Call

    cache.clear()
    settings.ANALYTICS_CACHE_SECONDS = 60
    first = logged_in(alice).get("/dashboard/figures/?period=7d").json()
    assert first["figures"]["calls"] == 5
    with scopes_disabled():
        Call.objects.filter(call_sid="CA1").delete()
    assert logged_in(alice).get("/dashboard/figures/?period=7d").json() == first
    # Another tenant never gets A's cached figures.
    assert logged_in(charlie).get("/dashboard/figures/?period=7d").json()["figures"]["calls"] == 1

    # Once stale, the old figures are served at once while a thread recomputes them.
    settings.ANALYTICS_CACHE_SECONDS = 1
    time.sleep(1.1)
    assert logged_in(alice).get("/dashboard/figures/?period=7d").json() == first
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        figures = logged_in(alice).get("/dashboard/figures/?period=7d").json()["figures"]
        if figures["calls"] == 4:
            break
        time.sleep(0.2)
    assert figures["calls"] == 4
    cache.clear()
