"""Calls kept by the voice webhook for their socket's handshake in the same process."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call
from calls.transports import answered

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay_call(twilio, assistant_a, number_a):
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.RELAY
        assistant_a.save()

    def start() -> Call:
        call_sid, response = twilio.voice(number_a.number)
        assert response.has("ConversationRelay")
        with scopes_disabled():
            return Call.objects.get(call_sid=call_sid)

    return start


def test_a_kept_call_is_taken_once_with_its_tenant_and_no_query(
    relay_call, django_assert_num_queries
):
    call = relay_call()
    with django_assert_num_queries(0):
        taken = answered.take(call.id)
        assert taken == call and taken.tenant.slug == "acme" and taken.is_active
        assert taken.config_snapshot == call.config_snapshot
    assert answered.take(call.id) is None  # a second handshake reads the database


def test_calls_whose_socket_went_elsewhere_are_let_go(relay_call, monkeypatch):
    first = relay_call()
    later = answered.time.monotonic() + answered.HANDOFF_SECONDS + 1
    monkeypatch.setattr(answered.time, "monotonic", lambda: later)
    second = relay_call()  # keeping it lets the first go: past its time
    assert first.id not in answered._kept
    assert answered.take(second.id) == second


def test_a_call_ended_here_is_forgotten(relay_call, twilio, number_a):
    call = relay_call()
    twilio.status(call.call_sid, number_a.number, "completed", sequence=5)
    assert answered.take(call.id) is None
