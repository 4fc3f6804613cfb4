"""Encryption of secrets stored in the database (Fernet, keys rotatable)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _fernet_key(material: str) -> bytes:
    try:
        Fernet(material)
        return material.encode()
    except ValueError:
        digest = hashlib.sha256(f"field-encryption:{material}".encode()).digest()
        return base64.urlsafe_b64encode(digest)


def _fernet() -> MultiFernet:
    primary = settings.FIELD_ENCRYPTION_KEY or settings.SECRET_KEY
    others = list(settings.FIELD_ENCRYPTION_KEY_FALLBACKS)
    if not settings.FIELD_ENCRYPTION_KEY:
        others += list(settings.SECRET_KEY_FALLBACKS)
    return MultiFernet([Fernet(_fernet_key(k)) for k in [primary, *others]])


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt a stored secret; raises ValueError if no configured key can read it."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with the configured keys") from exc
