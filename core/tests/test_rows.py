"""`RowInserter`: a row inserted with a prepared statement is the row `create()` would make."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_scopes import scopes_disabled

from calls.models import Call, Turn
from core.rows import RowInserter

pytestmark = pytest.mark.django_db

FIELDS = {
    "role": "assistant",
    "text": "We can come on Friday.",
    "language": "en-GB",
    "source": "llm",
    "tokens_out": 12,
    "fallbacks": ["tts:say"],
    "tool_calls": [{"name": "book", "arguments": {"day": "friday"}}],
}


def test_an_inserted_row_reads_back_as_created_and_keeps_the_constraints(number_a):
    with scopes_disabled():
        call = Call.objects.create(
            tenant=number_a.tenant,
            phone_number=number_a,
            call_sid="CArows",
            from_number="+15550001111",
            to_number=number_a.number,
            started_at=timezone.now(),
        )
        inserter = RowInserter(Turn)
        turn = inserter.insert(
            tenant_id=call.tenant_id, call=call, sequence=1, created_at=timezone.now(), **FIELDS
        )
        created = Turn.objects.create(
            tenant_id=call.tenant_id, call=call, sequence=2, created_at=timezone.now(), **FIELDS
        )
        stored = Turn.objects.get(pk=turn.pk)
        for name in (*FIELDS, "tenant_id", "call_id", "interrupted", "passages", "error"):
            assert getattr(stored, name) == getattr(created, name), name
        assert not turn._state.adding
        # The database's own rules still hold: one turn per sequence number of a call.
        with pytest.raises(IntegrityError), transaction.atomic():
            inserter.insert(
                tenant_id=call.tenant_id, call=call, sequence=1, created_at=timezone.now()
            )
