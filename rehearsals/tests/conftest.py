"""Recorded calls for the rehearsal tests: real calls made through the gather webhooks against the
fake Groq server and a real tool server, then ended by Twilio's status callback."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django_scopes import scopes_disabled

from assistants import versions
from calls.models import Call
from calls.tests.conftest import FakeTwilio
from calls.tests.tool_fixtures import tools_a, tools_b  # noqa: F401  (fixtures)

BOILER = "Can someone fix my boiler?"
HOURS = "what are your opening hours"
BOOKING = "Can I book a cleaning on Tuesday?"
RECORDED_BOILER_ANSWER = "A plumber can come tomorrow morning."


@pytest.fixture(autouse=True)
def _fresh_answer_cache():
    cache.clear()
    yield
    cache.clear()


def record_call(twilio: FakeTwilio, number, *lines: str) -> Call:
    """A call of `number` in which the caller says `lines`, ended normally."""
    call_sid, _ = twilio.voice(number.number)
    for line in lines:
        twilio.gather(call_sid, number.number, line)
    twilio.status(call_sid, number.number, "completed", sequence=5, duration=40)
    with scopes_disabled():
        return Call.objects.get(call_sid=call_sid)


@pytest.fixture
def published_a(assistant_a, tools_a):  # noqa: F811
    with scopes_disabled():
        return versions.version_publish(assistant=assistant_a, note="with tools")


@pytest.fixture
def recorded_a(twilio, number_a, published_a, fake_groq, tool_server) -> Call:
    """Tenant A's call: an LLM answer, a FAQ answer and a booking through its tool."""
    fake_groq.queue_answer(RECORDED_BOILER_ANSWER)
    call = record_call(twilio, number_a, BOILER, HOURS, BOOKING)
    assert len(tool_server.received("/book")) == 1
    fake_groq.reset()
    return call
