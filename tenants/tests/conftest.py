"""Rows of every tenant-owned model for tenants A and B (created with scopes disabled)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, FAQEntry, SpeechAudio
from calls.models import Call, Turn
from tenants.models import PhoneNumber, Tenant
from tenants.tests.twilio_standin import TwilioStandIn


@dataclass
class TenantRows:
    tenant: Tenant
    number: PhoneNumber
    assistant: AssistantConfig
    faq: FAQEntry
    speech: SpeechAudio
    call: Call
    turn: Turn


def _rows(
    tenant: Tenant, number: PhoneNumber, assistant: AssistantConfig, *, tag: str
) -> TenantRows:
    now = timezone.now()
    with scopes_disabled():
        faq = FAQEntry.objects.filter(assistant=assistant).first() or FAQEntry.objects.create(
            tenant=tenant, assistant=assistant, patterns=f"question of {tag}", answer="An answer."
        )
        speech = SpeechAudio.objects.create(
            tenant=tenant, key=f"key-{tag}", engine="say", language="en-US", text=f"spoken {tag}"
        )
        call = Call.objects.create(
            tenant=tenant,
            phone_number=number,
            assistant=assistant,
            call_sid=f"CA{tag}{'0' * 30}",
            from_number="+15551230000",
            to_number=number.number,
            started_at=now,
        )
        turn = Turn.objects.create(
            tenant=tenant,
            call=call,
            sequence=1,
            role=Turn.Role.CALLER,
            text=f"caller words of {tag}",
            created_at=now,
        )
    return TenantRows(tenant, number, assistant, faq, speech, call, turn)


@pytest.fixture
def rows_a(tenant_a, number_a, assistant_a) -> TenantRows:
    return _rows(tenant_a, number_a, assistant_a, tag="acme")


@pytest.fixture
def rows_b(tenant_b, number_b, assistant_b) -> TenantRows:
    return _rows(tenant_b, number_b, assistant_b, tag="bravo")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """Users are created in nearly every test here; the production hasher is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def twilio_api(settings):
    """Twilio's REST API, stood in for on loopback; the platform's client is pointed at it."""
    stand_in = TwilioStandIn().start()
    settings.TWILIO_API_BASE_URL = stand_in.base_url
    yield stand_in
    stand_in.stop()
