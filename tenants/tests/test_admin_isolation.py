"""Tenant isolation in the admin: Alice (owner of A), Bob (viewer of A), Charlie (admin of B)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, FAQEntry, SpeechAudio
from calls.models import Call, Turn
from tenants.models import Membership, PhoneNumber, RateLimit, Tenant
from tenants.tests.conftest import TenantRows
from tenants.tests.twilio_standin import give_own_account

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Case:
    """How one admin page shows one tenant's object."""

    model: type[Model]
    obj: Callable[[TenantRows], Model]
    marker: Callable[[TenantRows], str]

    def __str__(self) -> str:
        return self.model.__name__


CASES = [
    Case(PhoneNumber, lambda r: r.number, lambda r: r.number.number),
    Case(AssistantConfig, lambda r: r.assistant, lambda r: r.assistant.name),
    Case(FAQEntry, lambda r: r.faq, lambda r: str(r.faq)),
    Case(Call, lambda r: r.call, lambda r: r.call.call_sid),
    Case(Turn, lambda r: r.turn, lambda r: r.turn.text),
    Case(SpeechAudio, lambda r: r.speech, lambda r: r.speech.text),
    Case(Tenant, lambda r: r.tenant, lambda r: r.tenant.name),
]
WRITABLE = [c for c in CASES if c.model in (PhoneNumber, AssistantConfig, FAQEntry)]


def url(model: type[Model], view: str, *args: object) -> str:
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form_data(instance: Model, **overrides: object) -> dict[str, str]:
    """POST data for an admin form, from an instance's editable fields."""
    data: dict[str, str] = {}
    for field in instance._meta.concrete_fields:
        if not field.editable or field.primary_key:
            continue
        value = getattr(instance, field.attname)
        if isinstance(value, bool):
            if value:
                data[field.name] = "on"
        elif value is not None:
            data[field.name] = str(value)
    for name, value in overrides.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = str(value)
    return data


def reload(instance: Model) -> Model:
    with scopes_disabled():
        return type(instance)._base_manager.get(pk=instance.pk)


@pytest.fixture
def platform_staff(db):
    """Staff without superuser rights, granted every tenant and read access to the models."""
    user = get_user_model().objects.create_user(username="pat", password="x", is_staff=True)
    codenames = ["view_all_tenants"] + [f"view_{case.model._meta.model_name}" for case in CASES]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def loner(db):
    """A staff user with no membership at all."""
    return get_user_model().objects.create_user(username="lonely", password="x", is_staff=True)


# --- changelists ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_outsider_sees_only_own_tenant_rows_in_the_changelist(
    case: Case, charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    response = client_for(charlie).get(url(case.model, "changelist"))
    assert response.status_code == 200
    content = response.content.decode()
    assert case.marker(rows_b) in content
    assert case.marker(rows_a) not in content
    assert str(case.obj(rows_a).pk) not in content
    assert "Acme" not in content


@pytest.mark.parametrize("case", CASES, ids=str)
def test_owner_and_viewer_see_only_their_tenant_rows_in_the_changelist(
    case: Case, alice, bob, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    for user in (alice, bob):
        response = client_for(user).get(url(case.model, "changelist"))
        assert response.status_code == 200
        content = response.content.decode()
        assert case.marker(rows_a) in content
        assert case.marker(rows_b) not in content
        assert str(case.obj(rows_b).pk) not in content


@pytest.mark.parametrize("case", CASES, ids=str)
def test_superuser_sees_both_tenants_in_the_changelist(
    case: Case, superuser, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    response = client_for(superuser).get(url(case.model, "changelist"))
    assert response.status_code == 200
    assert case.marker(rows_a) in response.content.decode()
    assert case.marker(rows_b) in response.content.decode()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_staff_with_the_all_tenants_permission_see_both_tenants(
    case: Case, platform_staff, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    client = client_for(platform_staff)
    response = client.get(url(case.model, "changelist"))
    assert response.status_code == 200
    assert case.marker(rows_a) in response.content.decode()
    assert case.marker(rows_b) in response.content.decode()
    assert client.get(url(case.model, "change", case.obj(rows_a).pk)).status_code == 200


@pytest.mark.parametrize("case", CASES, ids=str)
def test_staff_without_a_membership_see_no_tenant_data(
    case: Case, loner, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    client = client_for(loner)
    assert client.get(url(case.model, "changelist")).status_code == 403
    assert client.get(url(case.model, "change", case.obj(rows_a).pk)).status_code in (403, 404)
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert case.model._meta.verbose_name_plural.title() not in index.content.decode()
    assert case.model._meta.verbose_name_plural.capitalize() not in index.content.decode()


def test_the_admin_index_lists_only_what_a_tenant_member_may_open(alice) -> None:
    content = client_for(alice).get(reverse("admin:index")).content.decode()
    names = (
        "Phone numbers",
        "Assistant configs",
        "FAQ entries",
        "Speech audio",
        "Calls",
        "Turns",
        "Tenants",
    )
    for name in names:
        assert name in content
    assert "Memberships" not in content
    assert "Rate limits" not in content


# --- another tenant's object pages: 404, never 403 ----------------------------------------------


@pytest.mark.parametrize("view", ["change", "delete", "history"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_outsider_gets_404_on_another_tenants_object_pages(
    case: Case, view: str, charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    client = client_for(charlie)
    assert client.get(url(case.model, view, case.obj(rows_a).pk)).status_code == 404
    # ... and the same answer as for an object that does not exist at all.
    assert (
        client.get(url(case.model, view, "00000000-0000-0000-0000-000000000000")).status_code == 404
    )
    # The own tenant's page exists (history is readable by every member).
    if view == "history":
        assert client.get(url(case.model, view, case.obj(rows_b).pk)).status_code == 200


@pytest.mark.parametrize("case", CASES, ids=str)
def test_outsider_gets_404_on_deleting_another_tenants_object(
    case: Case, charlie, rows_a: TenantRows
) -> None:
    target = case.obj(rows_a)
    response = client_for(charlie).post(url(case.model, "delete", target.pk), {"post": "yes"})
    assert response.status_code == 404
    assert reload(target)


@pytest.mark.parametrize("case", WRITABLE, ids=str)
def test_outsider_cannot_delete_another_tenants_rows_with_the_bulk_action(
    case: Case, charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    target = case.obj(rows_a)
    client_for(charlie).post(
        url(case.model, "changelist"),
        {"action": "delete_selected", "_selected_action": [str(target.pk)], "post": "yes"},
    )
    assert reload(target)


@pytest.mark.parametrize("case", WRITABLE, ids=str)
def test_outsider_gets_404_on_posting_a_change_to_another_tenants_object(
    case: Case, charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    target = case.obj(rows_a)
    data = form_data(target, tenant=rows_b.tenant.pk)
    response = client_for(charlie).post(url(case.model, "change", target.pk), data)
    assert response.status_code == 404
    assert reload(target).tenant_id == rows_a.tenant.pk


# --- foreign keys and the tenant field ---------------------------------------------------------


def test_outsider_cannot_attach_another_tenants_assistant_to_own_number(
    charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    number = rows_b.number
    data = form_data(number, assistant=rows_a.assistant.pk)
    response = client_for(charlie).post(url(PhoneNumber, "change", number.pk), data)
    assert response.status_code == 200
    assert "assistant" in response.context["adminform"].form.errors
    assert reload(number).assistant_id == rows_b.assistant.pk


def test_outsider_is_not_offered_another_tenants_assistants_or_tenant(
    charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    client = client_for(charlie)
    for page in (url(PhoneNumber, "add"), url(PhoneNumber, "change", rows_b.number.pk)):
        response = client.get(page)
        assert response.status_code == 200
        form = response.context["adminform"].form
        assert list(form.fields["assistant"].queryset) == [rows_b.assistant]
        assert list(form.fields["tenant"].queryset) == [rows_b.tenant]
        assert rows_a.assistant.name not in response.content.decode()
        assert "Acme" not in response.content.decode()
    faq_form = client.get(url(FAQEntry, "add")).context["adminform"].form
    assert list(faq_form.fields["assistant"].queryset) == [rows_b.assistant]


def test_outsider_cannot_move_own_number_to_another_tenant(
    charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    number = rows_b.number
    data = form_data(number, tenant=rows_a.tenant.pk, assistant=rows_a.assistant.pk)
    response = client_for(charlie).post(url(PhoneNumber, "change", number.pk), data)
    assert response.status_code == 200
    assert {"tenant", "assistant"} <= set(response.context["adminform"].form.errors)
    assert reload(number).tenant_id == rows_b.tenant.pk


def test_outsider_cannot_add_a_faq_entry_for_another_tenants_assistant(
    charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    data = {
        "tenant": rows_b.tenant.pk,
        "assistant": rows_a.assistant.pk,
        "patterns": "sneaky question",
        "answer": "Sneaky answer.",
        "active": "on",
    }
    response = client_for(charlie).post(url(FAQEntry, "add"), data)
    assert response.status_code == 200
    assert "assistant" in response.context["adminform"].form.errors
    with scopes_disabled():
        assert not FAQEntry.objects.filter(patterns="sneaky question").exists()


def _new_object_data(model: type[Model], rows: TenantRows) -> dict[str, object]:
    """Valid add-form data for an object of `rows.tenant` (with a recognisable marker)."""
    if model is PhoneNumber:
        return {
            "tenant": rows.tenant.pk,
            "number": "+14155550777",
            "label": "sneaky",
            "assistant": rows.assistant.pk,
            "active": "on",
        }
    if model is AssistantConfig:
        assistant = AssistantConfig(tenant=rows.tenant, name="sneaky")
        return form_data(assistant)
    return {
        "tenant": rows.tenant.pk,
        "assistant": rows.assistant.pk,
        "patterns": "sneaky",
        "answer": "An answer.",
        "active": "on",
    }


def _sneaky_exists(model: type[Model]) -> bool:
    field = {PhoneNumber: "label", AssistantConfig: "name", FAQEntry: "patterns"}[model]
    with scopes_disabled():
        return model.objects.filter(**{field: "sneaky"}).exists()


@pytest.mark.parametrize("case", WRITABLE, ids=str)
def test_outsider_cannot_create_an_object_in_another_tenant(
    case: Case, charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    response = client_for(charlie).post(
        url(case.model, "add"), _new_object_data(case.model, rows_a)
    )
    assert response.status_code == 200
    assert "tenant" in response.context["adminform"].form.errors
    assert not _sneaky_exists(case.model)


@pytest.mark.parametrize("case", WRITABLE, ids=str)
def test_tenant_admin_can_create_an_object_in_own_tenant(
    case: Case, charlie, rows_b: TenantRows, twilio_api
) -> None:
    if case.model is PhoneNumber:  # a number its own Twilio account holds (the stand-in's)
        sid = "AC" + "b" * 32
        give_own_account(rows_b.tenant, twilio_api, sid=sid, token="t", numbers=["+14155550777"])
    response = client_for(charlie).post(
        url(case.model, "add"), _new_object_data(case.model, rows_b)
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert _sneaky_exists(case.model)


def test_outsider_gets_a_form_error_for_a_number_another_tenant_uses(
    charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    data = _new_object_data(PhoneNumber, rows_b) | {"number": "+1 (415) 555-0100"}
    response = client_for(charlie).post(url(PhoneNumber, "add"), data)
    assert response.status_code == 200
    assert "number" in response.context["adminform"].form.errors
    assert reload(rows_a.number).tenant_id == rows_a.tenant.pk
    assert not _sneaky_exists(PhoneNumber)


def test_the_number_is_normalised_when_saved_through_the_admin(
    superuser, rows_a: TenantRows
) -> None:
    data = _new_object_data(PhoneNumber, rows_a) | {"number": "+1 (415) 555-0777"}
    response = client_for(superuser).post(url(PhoneNumber, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    with scopes_disabled():
        assert PhoneNumber.objects.get(label="sneaky").number == "+14155550777"


# --- viewers read, owners write ------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_viewer_can_view_own_tenants_objects(case: Case, bob, rows_a: TenantRows) -> None:
    response = client_for(bob).get(url(case.model, "change", case.obj(rows_a).pk))
    assert response.status_code == 200
    assert case.marker(rows_a) in response.content.decode()


@pytest.mark.parametrize("case", WRITABLE, ids=str)
def test_viewer_gets_403_on_add_change_and_delete(case: Case, bob, rows_a: TenantRows) -> None:
    client = client_for(bob)
    target = case.obj(rows_a)
    before = form_data(target)

    assert (
        client.post(url(case.model, "add"), _new_object_data(case.model, rows_a)).status_code == 403
    )
    assert not _sneaky_exists(case.model)

    changed = form_data(target, **{_text_field(case.model): "changed by bob"})
    assert client.post(url(case.model, "change", target.pk), changed).status_code == 403
    assert form_data(reload(target)) == before

    assert client.post(url(case.model, "delete", target.pk), {"post": "yes"}).status_code == 403
    assert client.get(url(case.model, "delete", target.pk)).status_code == 403
    assert reload(target)


def _text_field(model: type[Model]) -> str:
    return {PhoneNumber: "label", AssistantConfig: "greeting", FAQEntry: "answer"}[model]


def test_viewer_cannot_delete_with_the_bulk_action(bob, rows_a: TenantRows) -> None:
    client_for(bob).post(
        url(PhoneNumber, "changelist"),
        {"action": "delete_selected", "_selected_action": [str(rows_a.number.pk)], "post": "yes"},
    )
    assert reload(rows_a.number)


def test_owner_can_change_own_tenants_assistant(alice, rows_a: TenantRows) -> None:
    assistant = rows_a.assistant
    data = form_data(assistant, greeting="Acme, good morning!", temperature="0.4")
    response = client_for(alice).post(url(AssistantConfig, "change", assistant.pk), data)
    assert response.status_code == 302
    changed = reload(assistant)
    assert changed.greeting == "Acme, good morning!"
    assert changed.temperature == 0.4


def test_owner_gets_a_form_error_for_an_invalid_assistant(alice, rows_a: TenantRows) -> None:
    assistant = rows_a.assistant
    data = form_data(assistant, temperature="2.5", model="gpt-17", language="english")
    response = client_for(alice).post(url(AssistantConfig, "change", assistant.pk), data)
    assert response.status_code == 200
    assert {"temperature", "model", "language"} <= set(response.context["adminform"].form.errors)
    assert reload(assistant).temperature == 1.0


def test_calls_and_turns_are_read_only_records_even_for_the_owner(
    alice, rows_a: TenantRows
) -> None:
    client = client_for(alice)
    call = rows_a.call
    assert client.get(url(Call, "add")).status_code == 403
    assert client.get(url(Turn, "add")).status_code == 403
    data = form_data(call, status="completed")
    assert client.post(url(Call, "change", call.pk), data).status_code == 403
    assert client.post(url(Call, "delete", call.pk), {"post": "yes"}).status_code == 403
    assert reload(call).status == Call.Status.RINGING


def test_speech_audio_is_a_read_only_record_even_for_the_owner(alice, rows_a: TenantRows) -> None:
    client = client_for(alice)
    audio = rows_a.speech
    page = client.get(url(SpeechAudio, "change", audio.pk))
    assert page.status_code == 200
    assert audio.text in page.content.decode()
    assert client.get(url(SpeechAudio, "add")).status_code == 403
    changed = form_data(audio, text="changed by alice")
    assert client.post(url(SpeechAudio, "change", audio.pk), changed).status_code == 403
    assert client.post(url(SpeechAudio, "delete", audio.pk), {"post": "yes"}).status_code == 403
    assert reload(audio).text == audio.text


def test_owner_sees_the_turns_of_a_call(alice, bob, rows_a: TenantRows) -> None:
    for user in (alice, bob):
        response = client_for(user).get(url(Call, "change", rows_a.call.pk))
        assert response.status_code == 200
        assert rows_a.turn.text in response.content.decode()


# --- platform-only pages ---------------------------------------------------------------------------


@pytest.fixture
def limit_b(tenant_b: Tenant) -> RateLimit:
    return RateLimit.objects.create(tenant=tenant_b, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=5)


@pytest.mark.parametrize("model", [Membership, RateLimit], ids=lambda m: m.__name__)
def test_membership_and_rate_limit_pages_are_for_platform_staff_only(
    model: type[Model], alice, bob, charlie, superuser, limit_b
) -> None:
    membership = Membership.objects.get(user=alice)
    obj = membership if model is Membership else limit_b
    for user in (alice, bob, charlie):
        client = client_for(user)
        assert client.get(url(model, "changelist")).status_code == 403
        assert client.get(url(model, "add")).status_code == 403
        assert client.get(url(model, "change", obj.pk)).status_code == 403
        assert client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert reload(obj)
    client = client_for(superuser)
    assert client.get(url(model, "changelist")).status_code == 200
    assert client.get(url(model, "change", obj.pk)).status_code == 200


def test_a_tenant_admin_cannot_grant_themselves_another_tenant(charlie, tenant_a: Tenant) -> None:
    response = client_for(charlie).post(
        url(Membership, "add"), {"user": charlie.pk, "tenant": tenant_a.pk, "role": "owner"}
    )
    assert response.status_code == 403
    assert not Membership.objects.filter(user=charlie, tenant=tenant_a).exists()


def test_an_inactive_tenant_is_hidden_from_its_members(alice, rows_a: TenantRows) -> None:
    Tenant.objects.filter(pk=rows_a.tenant.pk).update(active=False)
    client = client_for(alice)
    assert client.get(url(PhoneNumber, "changelist")).status_code == 403
    assert client.get(url(PhoneNumber, "change", rows_a.number.pk)).status_code in (403, 404)


# --- a user with different roles in two tenants ----------------------------------------------------


@pytest.fixture
def alice_viewer_of_b(alice, tenant_b: Tenant):
    """Alice, owner of A, is also a viewer of B."""
    Membership.objects.create(user=alice, tenant=tenant_b, role="viewer")
    return alice


def test_a_viewer_role_in_one_tenant_stays_read_only_next_to_an_owner_role(
    alice_viewer_of_b, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    client = client_for(alice_viewer_of_b)
    listing = client.get(url(PhoneNumber, "changelist")).content.decode()
    assert rows_a.number.number in listing and rows_b.number.number in listing

    number_b = rows_b.number
    assert client.get(url(PhoneNumber, "change", number_b.pk)).status_code == 200
    changed = form_data(number_b, label="changed by alice")
    assert client.post(url(PhoneNumber, "change", number_b.pk), changed).status_code == 403
    assert client.post(url(PhoneNumber, "delete", number_b.pk), {"post": "yes"}).status_code == 403
    client.post(
        url(PhoneNumber, "changelist"),
        {"action": "delete_selected", "_selected_action": [str(number_b.pk)], "post": "yes"},
    )
    assert reload(number_b).label == "Orders"

    response = client.post(url(PhoneNumber, "add"), _new_object_data(PhoneNumber, rows_b))
    assert response.status_code == 200
    assert {"tenant", "assistant"} <= set(response.context["adminform"].form.errors)
    assert not _sneaky_exists(PhoneNumber)
    form = client.get(url(PhoneNumber, "add")).context["adminform"].form
    assert list(form.fields["tenant"].queryset) == [rows_a.tenant]


def test_the_own_tenant_cannot_be_combined_with_an_assistant_of_another_writable_tenant(
    alice, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    Membership.objects.create(user=alice, tenant=rows_b.tenant, role="admin")
    data = form_data(rows_a.number, assistant=rows_b.assistant.pk)
    response = client_for(alice).post(url(PhoneNumber, "change", rows_a.number.pk), data)
    assert response.status_code == 200
    assert "assistant" in response.context["adminform"].form.errors
    assert reload(rows_a.number).assistant_id == rows_a.assistant.pk


# --- side doors ----------------------------------------------------------------------------------


def test_list_filters_do_not_offer_another_tenants_values(
    charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    with scopes_disabled():
        AssistantConfig.objects.filter(pk=rows_a.assistant.pk).update(model="qwen/qwen3-32b")
    content = client_for(charlie).get(url(AssistantConfig, "changelist")).content.decode()
    assert "qwen/qwen3-32b" not in content
    assert rows_b.assistant.model in content


def test_searching_does_not_find_another_tenants_rows(
    charlie, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    response = client_for(charlie).get(url(PhoneNumber, "changelist"), {"q": "4155550100"})
    assert response.status_code == 200
    assert rows_a.number.number not in response.content.decode()
    assert response.context["cl"].result_count == 0


def test_autocomplete_does_not_offer_another_tenant(charlie, superuser, tenant_a, tenant_b) -> None:
    query = {"app_label": "tenants", "model_name": "membership", "field_name": "tenant"}
    response = client_for(charlie).get(reverse("admin:autocomplete"), query)
    names = (
        [r["text"] for r in response.json().get("results", [])]
        if response.status_code == 200
        else []
    )
    assert "Acme Plumbing" not in names
    everything = client_for(superuser).get(reverse("admin:autocomplete"), query).json()
    assert {r["text"] for r in everything["results"]} == {"Acme Plumbing", "Bravo Bakery"}


def test_a_malformed_object_id_is_a_404_for_a_tenant_member(charlie) -> None:
    assert client_for(charlie).get(url(PhoneNumber, "change", "not-a-uuid")).status_code == 404


@pytest.mark.parametrize("model", [PhoneNumber, FAQEntry], ids=lambda m: m.__name__)
def test_even_a_superuser_cannot_pair_a_tenant_with_another_tenants_assistant(
    model: type[Model], superuser, rows_a: TenantRows, rows_b: TenantRows
) -> None:
    data = _new_object_data(model, rows_a) | {"assistant": rows_b.assistant.pk}
    response = client_for(superuser).post(url(model, "add"), data)
    assert response.status_code == 200
    assert "assistant" in response.context["adminform"].form.errors
    assert not _sneaky_exists(model)
