"""What `insights` announces to the apps above it (webhooks). Sent inside the transaction that
stores the change; receivers get `report` (the CallReport)."""

from __future__ import annotations

from django.dispatch import Signal

call_analyzed = Signal()  # a call's analysis is stored (done, or failed for good)
