"""Fixtures shared by every app's tests: two tenants and the three actors.

Alice owns tenant A, Bob is a viewer of tenant A, Charlie is an admin of tenant B (the outsider).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, FAQEntry
from tenants import directory
from tenants.models import Membership, PhoneNumber, Role, Tenant

pytest_plugins = ["devtools.testing", "tenants.tests.api_fixtures"]

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _numbers_read_afresh():
    """A test's rows are rolled back without a signal: the dialled numbers kept by any process
    (tenants.directory) are read afresh for each test."""
    directory.changed()


@pytest.fixture
def unscoped():
    """Run a test body with tenant scopes disabled (fixtures and assertions only)."""
    with scopes_disabled():
        yield


def _user(username: str, **extra):
    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, email=f"{username}@example.com", **extra
    )
    return user


@pytest.fixture
def tenant_a(db) -> Tenant:
    return Tenant.objects.create(name="Acme Plumbing", slug="acme")


@pytest.fixture
def tenant_b(db) -> Tenant:
    return Tenant.objects.create(name="Bravo Bakery", slug="bravo")


@pytest.fixture
def assistant_a(tenant_a) -> AssistantConfig:
    with scopes_disabled():
        assistant = AssistantConfig.objects.create(
            tenant=tenant_a,
            name="Acme front desk",
            system_prompt="You are Acme Plumbing's receptionist.",
            greeting="Acme Plumbing, how can I help?",
            tts_engine=AssistantConfig.TTSEngine.SAY,
            transfer_number="+15005550001",
        )
        FAQEntry.objects.create(
            tenant=tenant_a,
            assistant=assistant,
            patterns="what are your opening hours\nwhen are you open",
            answer="We are open from eight to six, Monday to Friday.",
        )
    return assistant


@pytest.fixture
def assistant_b(tenant_b) -> AssistantConfig:
    with scopes_disabled():
        return AssistantConfig.objects.create(
            tenant=tenant_b,
            name="Bravo orders",
            system_prompt="You are Bravo Bakery's order line.",
            greeting="Bravo Bakery, hello!",
            tts_engine=AssistantConfig.TTSEngine.SAY,
        )


@pytest.fixture
def number_a(tenant_a, assistant_a) -> PhoneNumber:
    with scopes_disabled():
        return PhoneNumber.objects.create(
            tenant=tenant_a, number="+14155550100", assistant=assistant_a, label="Main line"
        )


@pytest.fixture
def number_b(tenant_b, assistant_b) -> PhoneNumber:
    with scopes_disabled():
        return PhoneNumber.objects.create(
            tenant=tenant_b, number="+14155550200", assistant=assistant_b, label="Orders"
        )


@pytest.fixture
def alice(tenant_a):
    """Owner of tenant A (staff, so she can use the admin)."""
    user = _user("alice", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant_a, role=Role.OWNER)
    return user


@pytest.fixture
def bob(tenant_a):
    """Viewer of tenant A."""
    user = _user("bob", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant_a, role=Role.VIEWER)
    return user


@pytest.fixture
def charlie(tenant_b):
    """Admin of tenant B: the outsider for everything of tenant A."""
    user = _user("charlie", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant_b, role=Role.ADMIN)
    return user


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser(
        username="root", password=PASSWORD, email="root@example.com"
    )


@pytest.fixture
def twilio(client):
    """Twilio's side of a call (signed webhooks) against the test client."""
    from calls.tests.conftest import FakeTwilio

    return FakeTwilio(client)
