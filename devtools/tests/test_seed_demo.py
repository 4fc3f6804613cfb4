from __future__ import annotations

import socket
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, FAQEntry, SpeechAudio
from tenants.models import Membership, PhoneNumber, Role, Tenant

pytestmark = pytest.mark.django_db

DEMO_PASSWORD = "demo password for tests"


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", DEMO_PASSWORD)
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def logged_in(username: str) -> Client:
    client = Client()
    response = client.post(
        reverse("admin:login"),
        {"username": username, "password": DEMO_PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == "/admin/"
    return client


def test_it_creates_the_demo_tenant_number_assistant_and_faq(seeded: str) -> None:
    tenant = Tenant.objects.get(slug="demo")
    with scopes_disabled():
        number = PhoneNumber.objects.get(number="+15005550006")
        assistant = AssistantConfig.objects.get(tenant=tenant)
        faq = list(FAQEntry.objects.filter(assistant=assistant))
        assistant.full_clean()
        number.full_clean()
    assert number.tenant == tenant
    assert number.assistant == assistant
    assert number.active
    assert len(faq) == 2
    assert all(entry.tenant == tenant for entry in faq)
    assert "+15005550006" in seeded
    assert DEMO_PASSWORD in seeded


def test_it_creates_a_superuser_and_a_staff_owner_of_the_demo_tenant(seeded: str) -> None:
    users = get_user_model().objects
    admin = users.get(username="admin")
    owner = users.get(username="demo-owner")
    assert admin.is_superuser and admin.is_staff
    assert owner.is_staff and not owner.is_superuser
    assert Membership.objects.get(user=owner).tenant.slug == "demo"
    assert Membership.objects.get(user=owner).role == Role.OWNER


def test_running_it_twice_changes_nothing(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    call_command("seed_demo", stdout=StringIO())
    assert Tenant.objects.filter(slug="demo").count() == 1
    assert get_user_model().objects.filter(username__in=["admin", "demo-owner"]).count() == 2
    assert Membership.objects.filter(user__username="demo-owner").count() == 1
    with scopes_disabled():
        assert AssistantConfig.objects.filter(tenant__slug="demo").count() == 1
        assert FAQEntry.objects.filter(tenant__slug="demo").count() == 2
        assert PhoneNumber.objects.filter(number="+15005550006").count() == 1


def test_the_superuser_can_log_in_and_sees_every_tenant(seeded: str, tenant_a: Tenant) -> None:
    client = logged_in("admin")
    response = client.get(reverse("admin:tenants_tenant_changelist"))
    assert response.status_code == 200
    assert "Demo Dental Clinic" in response.content.decode()
    assert "Acme Plumbing" in response.content.decode()


def test_the_demo_owner_can_log_in_and_sees_only_the_demo_tenant(
    seeded: str, number_a: PhoneNumber
) -> None:
    client = logged_in("demo-owner")
    pages = {
        "admin:tenants_tenant_changelist": "Demo Dental Clinic",
        "admin:tenants_phonenumber_changelist": "+15005550006",
        "admin:assistants_assistantconfig_changelist": "Reception",
    }
    for name, expected in pages.items():
        response = client.get(reverse(name))
        assert response.status_code == 200
        content = response.content.decode()
        assert expected in content
        assert "Acme" not in content
        assert number_a.number not in content
    demo = Tenant.objects.get(slug="demo")
    assert client.get(reverse("admin:tenants_tenant_change", args=[demo.pk])).status_code == 200
    acme = number_a.tenant
    assert client.get(reverse("admin:tenants_tenant_change", args=[acme.pk])).status_code == 404


def test_a_wrong_password_does_not_log_in(seeded: str) -> None:
    client = Client()
    response = client.post(
        reverse("admin:login"), {"username": "demo-owner", "password": "wrong", "next": "/admin/"}
    )
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("admin:index")).status_code == 302


def test_running_it_again_points_the_demo_number_back_at_the_assistant(seeded: str) -> None:
    with scopes_disabled():
        PhoneNumber.objects.filter(number="+15005550006").update(assistant=None, active=False)
    call_command("seed_demo", stdout=StringIO())
    with scopes_disabled():
        number = PhoneNumber.objects.get(number="+15005550006")
    assert number.assistant is not None and number.assistant.name == "Reception"
    assert number.active


def test_it_leaves_the_demo_number_alone_when_another_tenant_owns_it(
    monkeypatch: pytest.MonkeyPatch, assistant_b: AssistantConfig
) -> None:
    with scopes_disabled():
        PhoneNumber.objects.create(
            tenant=assistant_b.tenant, number="+15005550006", assistant=assistant_b
        )
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", DEMO_PASSWORD)
    errors = StringIO()
    call_command("seed_demo", stdout=StringIO(), stderr=errors)
    with scopes_disabled():
        number = PhoneNumber.objects.get(number="+15005550006")
    assert (number.tenant, number.assistant) == (assistant_b.tenant, assistant_b)
    assert "belongs to another tenant" in errors.getvalue()


# --- the demo's speech engine ------------------------------------------------------------------


@pytest.fixture
def google_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """gTTS's requests are refused at the wire: a local port nobody listens on, as its proxy."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, closed)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def seed(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", DEMO_PASSWORD)
    out, errors = StringIO(), StringIO()
    call_command("seed_demo", stdout=out, stderr=errors)
    return out.getvalue(), errors.getvalue()


def demo_engine() -> str:
    with scopes_disabled():
        return AssistantConfig.objects.get(tenant__slug="demo").tts_engine


def test_without_google_the_demo_speaks_with_espeak_ng_and_says_so_once(
    google_unreachable, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, errors = seed(monkeypatch)

    assert demo_engine() == AssistantConfig.TTSEngine.ESPEAK, errors
    assert "gTTS cannot reach Google" in errors
    assert "speaks with espeak-ng" in errors
    with scopes_disabled():
        greeting = SpeechAudio.objects.get(tenant__slug="demo")
    assert greeting.engine == "espeak"  # the greeting's audio is made with the engine it uses
    # Seeding again checks nothing more and says nothing more: the choice is made.
    _, again = seed(monkeypatch)
    assert demo_engine() == AssistantConfig.TTSEngine.ESPEAK
    assert again == ""


def test_without_google_or_espeak_ng_it_says_what_to_install(
    google_unreachable, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on it

    _, errors = seed(monkeypatch)

    assert demo_engine() == AssistantConfig.TTSEngine.GTTS
    assert "gTTS cannot reach Google" in errors
    assert "apt-get install espeak-ng" in errors
    assert "Twilio's voice" in errors


def test_the_demo_assistant_is_published_once(seeded: str) -> None:
    call_command("seed_demo", stdout=StringIO())
    with scopes_disabled():
        assistant = AssistantConfig.objects.get(tenant__slug="demo")
        assert assistant.published_version.number == 1
        assert assistant.versions.count() == 1
        assert (
            len(assistant.published_version.parts["faq"])
            == FAQEntry.objects.filter(assistant=assistant).count()
        )
