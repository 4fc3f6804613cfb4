"""Phone numbers in E.164: validation and normalisation."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError


def normalize_e164(value: str) -> str:
    """Return `value` as E.164 (`+14155550100`), or raise ValidationError.

    Accepts common punctuation ("+1 (415) 555-0100"); requires the leading + and country code.
    """
    raw = (value or "").strip()
    if not raw.startswith("+"):
        raise ValidationError(
            "Enter the number in international format, starting with + and the country code.",
            code="e164",
        )
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError("Enter a valid phone number in E.164 format.", code="e164") from exc
    if parsed.extension:
        # E.164 has no extensions; dropping one silently would dial a different line.
        raise ValidationError("Enter the number without an extension.", code="e164")
    if not phonenumbers.is_possible_number(parsed):
        raise ValidationError("This phone number has an impossible length.", code="e164")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def validate_e164(value: str) -> None:
    normalize_e164(value)


def mask_number(number: str, visible: int = 4) -> str:
    """'+14155550100' -> '+*******0100'."""
    if not number:
        return ""
    head = "+" if number.startswith("+") else ""
    body = number[len(head) :]
    return head + "*" * max(len(body) - visible, 0) + body[-visible:]
