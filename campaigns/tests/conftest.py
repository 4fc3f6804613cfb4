"""Twilio's cloud, stood in for at the wire: the platform's REST client talks to a local
FakeTwilioServer, which plays each call against the platform served by `live_server`."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from devtools.fake_twilio import FakeTwilioServer

PLATFORM_SID = "AC" + "5" * 32


@pytest.fixture
def twilio_cloud(settings, live_server):
    server = FakeTwilioServer(ring_seconds=0.02, talk_seconds=0.05).start()
    settings.TWILIO_ACCOUNT_SID = PLATFORM_SID
    settings.TWILIO_API_BASE_URL = server.base_url
    settings.PUBLIC_BASE_URL = live_server.url
    server.add_account(PLATFORM_SID, settings.TWILIO_AUTH_TOKEN)
    yield server
    server.wait_idle(timeout=10)
    server.stop()


@pytest.fixture
def greeting_with_name(assistant_a):
    with scopes_disabled():
        assistant_a.greeting = "Hi {{first_name}}, this is Acme about your {{topic}}."
        assistant_a.system_prompt = "You call {{first_name}} about a {{topic}}."
        assistant_a.save()
    return assistant_a
