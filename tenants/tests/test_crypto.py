from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from tenants import crypto
from tenants.models import Tenant

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def test_it_round_trips_a_secret() -> None:
    token = crypto.encrypt("s3cret")
    assert "s3cret" not in token
    assert crypto.decrypt(token) == "s3cret"


def test_it_encrypts_the_same_secret_differently_each_time() -> None:
    assert crypto.encrypt("s3cret") != crypto.encrypt("s3cret")


@override_settings(FIELD_ENCRYPTION_KEY="", SECRET_KEY="the-secret-key-" + "x" * 40)
def test_without_a_field_key_it_derives_one_from_the_secret_key() -> None:
    token = crypto.encrypt("s3cret")
    with override_settings(SECRET_KEY="another-secret-key-" + "y" * 40):
        with pytest.raises(ValueError, match="cannot be decrypted"):
            crypto.decrypt(token)
    assert crypto.decrypt(token) == "s3cret"


def test_a_secret_encrypted_with_an_old_key_decrypts_when_the_key_is_a_fallback() -> None:
    with override_settings(FIELD_ENCRYPTION_KEY=OLD_KEY):
        token = crypto.encrypt("s3cret")
    with override_settings(FIELD_ENCRYPTION_KEY=NEW_KEY, FIELD_ENCRYPTION_KEY_FALLBACKS=[OLD_KEY]):
        assert crypto.decrypt(token) == "s3cret"
        # New secrets are written with the new key only.
        fresh = crypto.encrypt("fresh")
    with override_settings(FIELD_ENCRYPTION_KEY=NEW_KEY, FIELD_ENCRYPTION_KEY_FALLBACKS=[]):
        assert crypto.decrypt(fresh) == "fresh"


def test_a_secret_encrypted_with_an_old_key_fails_without_the_fallback() -> None:
    with override_settings(FIELD_ENCRYPTION_KEY=OLD_KEY):
        token = crypto.encrypt("s3cret")
    with override_settings(FIELD_ENCRYPTION_KEY=NEW_KEY, FIELD_ENCRYPTION_KEY_FALLBACKS=[]):
        with pytest.raises(ValueError, match="cannot be decrypted"):
            crypto.decrypt(token)


def test_a_passphrase_works_as_a_key_and_as_a_fallback() -> None:
    with override_settings(FIELD_ENCRYPTION_KEY="correct horse battery staple"):
        token = crypto.encrypt("s3cret")
    with override_settings(
        FIELD_ENCRYPTION_KEY=NEW_KEY,
        FIELD_ENCRYPTION_KEY_FALLBACKS=["correct horse battery staple"],
    ):
        assert crypto.decrypt(token) == "s3cret"


def test_a_key_derived_from_an_old_secret_key_still_decrypts_after_rotation() -> None:
    old_secret = "old-secret-key-" + "o" * 40
    with override_settings(FIELD_ENCRYPTION_KEY="", SECRET_KEY=old_secret):
        token = crypto.encrypt("s3cret")
    with override_settings(
        FIELD_ENCRYPTION_KEY="",
        SECRET_KEY="new-secret-key-" + "n" * 40,
        SECRET_KEY_FALLBACKS=[old_secret],
    ):
        assert crypto.decrypt(token) == "s3cret"


@pytest.mark.django_db
def test_a_tenant_token_saved_under_an_old_key_is_readable_after_rotation(
    tenant_a: Tenant,
) -> None:
    with override_settings(FIELD_ENCRYPTION_KEY=OLD_KEY):
        tenant_a.set_twilio_auth_token("twilio-token-of-acme")
        tenant_a.save()
    with override_settings(FIELD_ENCRYPTION_KEY=NEW_KEY, FIELD_ENCRYPTION_KEY_FALLBACKS=[OLD_KEY]):
        assert Tenant.objects.get(pk=tenant_a.pk).get_twilio_auth_token() == "twilio-token-of-acme"
    with override_settings(FIELD_ENCRYPTION_KEY=NEW_KEY, FIELD_ENCRYPTION_KEY_FALLBACKS=[]):
        with pytest.raises(ValueError):
            Tenant.objects.get(pk=tenant_a.pk).get_twilio_auth_token()


def test_moving_from_the_secret_key_to_a_field_key_keeps_old_secrets_readable() -> None:
    secret_key = "the-secret-key-" + "s" * 40
    with override_settings(FIELD_ENCRYPTION_KEY="", SECRET_KEY=secret_key):
        token = crypto.encrypt("s3cret")
    with override_settings(
        FIELD_ENCRYPTION_KEY=NEW_KEY, FIELD_ENCRYPTION_KEY_FALLBACKS=[secret_key]
    ):
        assert crypto.decrypt(token) == "s3cret"
