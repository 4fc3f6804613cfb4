"""Signing what the platform sends to a tenant's servers (webhooks, tool calls) with the Standard
Webhooks scheme (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
`webhook-signature` headers, an HMAC-SHA256 of `id.timestamp.body` with the endpoint's secret.

A receiver verifies in three lines with any Standard Webhooks library, e.g. in Python:

    from standardwebhooks.webhooks import Webhook
    Webhook(secret).verify(request.body, request.headers)   # raises if forged or stale

Secrets are rotated with an overlap: while the old secret is still valid, every message carries a
signature by each valid secret (space-separated, as the scheme allows), so a receiver that still
has the old secret and one that already has the new one both accept it.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret, in the scheme's `whsec_<base64>` form (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def new_message_id() -> str:
    """A message id; the same id is sent with every retry of one message (idempotency)."""
    return f"msg_{uuid.uuid4().hex}"


def signed_headers(
    *,
    body: bytes,
    message_id: str,
    secrets_in_use: Iterable[str],
    at: datetime | None = None,
) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed by every secret in use."""
    timestamp = at or datetime.now(UTC)
    signatures = [
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)
        for secret in secrets_in_use
        if secret
    ]
    if not signatures:
        raise ValueError("a message needs at least one signing secret")
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
