"""The admin's "Place a call": Alice (owner of A) calls from her numbers through the Twilio
stand-in; bad input and refusals come back on the form; Bob (viewer) may not; Charlie (admin
of B) cannot pick tenant A's number or assistant."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_scopes import scopes_disabled

from calls.models import Call
from campaigns.models import DoNotCall, OutboundCall

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/admin/campaigns/outboundcall/place/"
CALLEE = "+14155550123"


def _as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(number, assistant, *, to=CALLEE, variables=None) -> dict:
    return {
        "phone_number": str(number.pk),
        "assistant": str(assistant.pk),
        "to": to,
        "variables": json.dumps(variables or {}),
    }


def test_alice_places_a_call_and_lands_on_it(
    alice, greeting_with_name, number_a, number_b, twilio_cloud
):
    client = _as(alice)
    assert "Place a call" in client.get("/admin/campaigns/outboundcall/").content.decode()
    page = client.get(PAGE).content.decode()
    assert number_a.number in page and number_b.number not in page

    response = client.post(
        PAGE,
        _form(number_a, greeting_with_name, to="+1 415 555 0123", variables={"first_name": "Ada"}),
        follow=True,
    )

    assert twilio_cloud.wait_idle(timeout=15)
    with scopes_disabled():
        outbound = OutboundCall.objects.select_related("call").get()
    assert response.redirect_chain[-1][0] == f"/admin/campaigns/outboundcall/{outbound.pk}/change/"
    assert (
        f"Calling {CALLEE} from {number_a.number}: Twilio accepted it." in response.content.decode()
    )
    [fake] = twilio_cloud.calls.values()
    assert (fake.to, fake.from_) == (CALLEE, number_a.number)
    assert "Hi Ada, this is Acme about your ." in fake.twiml[0]
    assert outbound.call.call_sid == fake.sid


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"to": "12"}, "E.164"),
        ({"variables": '{"first name": "Ada"}'}, "is not a variable name"),
        ({"variables": "[1, 2]"}, "object of names and values"),
    ],
)
def test_bad_input_comes_back_on_the_form(
    alice, assistant_a, number_a, twilio_cloud, change, error
):
    response = _as(alice).post(PAGE, {**_form(number_a, assistant_a), **change})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert twilio_cloud.calls == {}


def test_a_number_on_the_do_not_call_list_is_refused_on_the_form(
    alice, assistant_a, number_a, tenant_a, twilio_cloud
):
    with scopes_disabled():
        DoNotCall.objects.create(tenant=tenant_a, number=CALLEE)

    response = _as(alice).post(PAGE, _form(number_a, assistant_a))

    assert response.status_code == 200
    assert "is on the do-not-call list" in response.content.decode()
    assert twilio_cloud.calls == {}


def test_twilio_out_of_reach_is_said_and_the_call_stored_as_failed(
    alice, assistant_a, number_a, twilio_cloud
):
    twilio_cloud.stop()

    response = _as(alice).post(PAGE, _form(number_a, assistant_a))

    assert response.status_code == 200
    assert "Twilio did not place the call" in response.content.decode()
    with scopes_disabled():
        assert Call.objects.get(direction="outbound").status == Call.Status.FAILED


def test_staff_cannot_mix_one_tenants_number_with_anothers_assistant(
    superuser, assistant_b, number_a, twilio_cloud
):
    response = _as(superuser).post(PAGE, _form(number_a, assistant_b))

    assert "Choose an assistant of the number&#x27;s tenant." in response.content.decode()
    assert twilio_cloud.calls == {}


def test_a_viewer_may_not_place_calls(bob, assistant_a, number_a, twilio_cloud):
    client = _as(bob)

    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, _form(number_a, assistant_a)).status_code == 403
    assert "Place a call" not in client.get("/admin/campaigns/outboundcall/").content.decode()
    assert twilio_cloud.calls == {}


def test_an_outsider_cannot_call_from_our_number(
    charlie, assistant_a, assistant_b, number_a, number_b, twilio_cloud
):
    client = _as(charlie)
    page = client.get(PAGE).content.decode()
    assert number_b.number in page and number_a.number not in page

    for form in (_form(number_a, assistant_a), _form(number_b, assistant_a)):
        response = client.post(PAGE, form)
        assert response.status_code == 200
        assert "Select a valid choice" in response.content.decode()
    assert twilio_cloud.calls == {}
    with scopes_disabled():
        assert not OutboundCall.objects.exists()
