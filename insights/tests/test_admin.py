"""The admin's call reports and webhook pages: a tenant's admin sees only their own."""

from __future__ import annotations

from django.test import Client
from django_scopes import scopes_disabled

from insights.models import CallReport
from webhooks.tests.conftest import finished_call, subscribe


def _login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_reports_are_searched_by_an_extracted_field(alice, number_a):
    booked = finished_call(number_a, sid="CA" + "1" * 32)
    other = finished_call(number_a, sid="CA" + "2" * 32)
    with scopes_disabled():
        CallReport.objects.filter(call=booked).update(data={"reason": "repair"})
        CallReport.objects.filter(call=other).update(data={"reason": "quote"})
    page = _login(alice).get("/admin/insights/callreport/?q=reason:repair")
    assert page.status_code == 200
    assert booked.call_sid in page.content.decode()
    assert other.call_sid not in page.content.decode()


def test_an_outsider_admin_sees_none_of_our_reports_endpoints_or_deliveries(
    charlie, alice, number_a
):
    endpoint, secret = subscribe(number_a.tenant, "https://crm.example.com/hooks")
    call = finished_call(number_a)
    with scopes_disabled():
        report = CallReport.objects.get(call=call)
    outsider = _login(charlie)
    assert outsider.get(f"/admin/insights/callreport/{report.id}/change/").status_code == 404
    assert outsider.get(f"/admin/webhooks/endpoint/{endpoint.id}/change/").status_code == 404
    listing = outsider.get("/admin/webhooks/delivery/").content.decode()
    assert "msg_" not in listing
    owner_page = _login(alice).get(f"/admin/webhooks/endpoint/{endpoint.id}/change/")
    assert secret in owner_page.content.decode()


def test_a_viewer_does_not_see_the_signing_secret(bob, number_a):
    endpoint, secret = subscribe(number_a.tenant, "https://crm.example.com/hooks")
    page = _login(bob).get(f"/admin/webhooks/endpoint/{endpoint.id}/change/")
    assert page.status_code == 200
    assert secret not in page.content.decode()
