"""Reads of the tools app."""

from __future__ import annotations

from tools.models import TransferDestination


def transfer_number(*, tenant_id: object, assistant_id: object, destination: object) -> str:
    """The number of the assistant's transfer destination called `destination` ("" if none)."""
    if not isinstance(destination, str) or not destination:
        return ""
    found = TransferDestination.objects.filter(
        tenant_id=tenant_id, assistant_id=assistant_id, name=destination
    ).values_list("number", flat=True)
    return found.first() or ""
