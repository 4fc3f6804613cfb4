"""The format of API keys: `vpk_<prefix>.<secret>`, stored as a sha256 of the whole key.

The secret has 256 bits of entropy, so a fast hash is enough (no dictionary to attack); the
prefix finds the row, the hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_PREFIX = "vpk_"
PREFIX_LENGTH = 8
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def generate() -> tuple[str, str]:
    """A new (prefix, full key)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return prefix, f"{KEY_PREFIX}{prefix}.{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def split(key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX) or "." not in key or len(key) > 200:
        return None
    prefix = key[len(KEY_PREFIX) :].split(".", 1)[0]
    if len(prefix) != PREFIX_LENGTH or any(c not in _PREFIX_ALPHABET for c in prefix):
        return None
    return prefix


def matches(key: str, hashed: str) -> bool:
    return hmac.compare_digest(hash_key(key), hashed)
