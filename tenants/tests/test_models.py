from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django_scopes import scope, scopes_disabled

from tenants.models import PhoneNumber, Tenant
from tenants.phone import mask_number, normalize_e164

pytestmark = pytest.mark.django_db


def errors_of(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-0100", "+14155550100"),
        ("+14155550100", "+14155550100"),
        ("  +44 20 7946 0958 ", "+442079460958"),
        ("+49 30 901820", "+4930901820"),
    ],
)
def test_it_normalises_numbers_to_e164(raw: str, expected: str) -> None:
    assert normalize_e164(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("4155550100", "international format, starting with + and the country code"),
        ("", "international format, starting with + and the country code"),
        ("+1 415", "impossible length"),
        ("+not a number", "valid phone number"),
        ("+1 415 555 0100 ext. 12", "without an extension"),
        ("+14155550100x5", "without an extension"),
    ],
)
def test_it_rejects_numbers_that_are_not_e164_with_a_clear_message(raw: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_e164(raw)
    assert message in caught.value.messages[0]


def test_it_masks_all_but_the_last_digits() -> None:
    assert mask_number("+14155550100") == "+*******0100"
    assert mask_number("") == ""


def test_full_clean_normalises_the_number(tenant_a: Tenant, assistant_a) -> None:
    number = PhoneNumber(tenant=tenant_a, number="+1 (415) 555-0100", assistant=assistant_a)
    with scopes_disabled():
        number.full_clean()
    assert number.number == "+14155550100"


def test_full_clean_rejects_a_bad_number_on_the_number_field(tenant_a: Tenant) -> None:
    number = PhoneNumber(tenant=tenant_a, number="415 555 0100")
    with scopes_disabled():
        errors = errors_of(number)
    assert list(errors) == ["number"]
    assert "starting with + and the country code" in errors["number"][0]


def test_full_clean_rejects_a_number_already_in_use(number_a: PhoneNumber, tenant_a) -> None:
    duplicate = PhoneNumber(tenant=tenant_a, number="+1 (415) 555-0100")
    with scope(tenant=tenant_a):
        errors = errors_of(duplicate)
    assert errors["number"] == ["Phone number with this Number already exists."]


def test_full_clean_rejects_a_number_another_tenant_uses(number_a: PhoneNumber, tenant_b) -> None:
    duplicate = PhoneNumber(tenant=tenant_b, number="+14155550100")
    with scopes_disabled():
        errors = errors_of(duplicate)
    assert "number" in errors


def test_the_database_refuses_a_duplicate_number(number_a: PhoneNumber, tenant_b) -> None:
    with scopes_disabled(), pytest.raises(IntegrityError), transaction.atomic():
        PhoneNumber.objects.create(tenant=tenant_b, number="+14155550100")


def test_full_clean_rejects_an_assistant_of_another_tenant(tenant_b: Tenant, assistant_a) -> None:
    number = PhoneNumber(tenant=tenant_b, number="+14155550999", assistant=assistant_a)
    with scopes_disabled():
        errors = errors_of(number)
    assert errors == {"assistant": ["Choose an assistant of this number's tenant."]}


def test_full_clean_accepts_a_number_without_an_assistant(tenant_a: Tenant) -> None:
    number = PhoneNumber(tenant=tenant_a, number="+14155550999")
    with scopes_disabled():
        number.full_clean()


def test_full_clean_rejects_an_unknown_timezone(db) -> None:
    tenant = Tenant(name="Mars Base", slug="mars", timezone="Mars/Olympus_Mons")
    errors = errors_of(tenant)
    assert errors == {"timezone": ["Unknown time zone 'Mars/Olympus_Mons'."]}


def test_full_clean_accepts_a_real_timezone(db) -> None:
    Tenant(name="London Office", slug="london", timezone="Europe/London").full_clean()


def test_it_stores_the_twilio_auth_token_encrypted(tenant_a: Tenant) -> None:
    tenant_a.set_twilio_auth_token("0123456789abcdef0123456789abcdef")
    tenant_a.save()
    tenant_a.refresh_from_db()
    assert tenant_a.has_twilio_auth_token
    assert "0123456789abcdef" not in tenant_a.twilio_auth_token_encrypted
    assert tenant_a.get_twilio_auth_token() == "0123456789abcdef0123456789abcdef"


def test_setting_an_empty_token_removes_it(tenant_a: Tenant) -> None:
    tenant_a.set_twilio_auth_token("secret-token")
    tenant_a.set_twilio_auth_token("")
    assert not tenant_a.has_twilio_auth_token
    assert tenant_a.get_twilio_auth_token() == ""


def test_full_clean_in_one_tenants_scope_rejects_a_number_another_tenant_uses(
    number_a: PhoneNumber, tenant_b: Tenant
) -> None:
    duplicate = PhoneNumber(tenant=tenant_b, number="+14155550100")
    with scope(tenant=tenant_b):
        errors = errors_of(duplicate)
    assert "number" in errors
