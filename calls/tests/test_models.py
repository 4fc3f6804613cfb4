from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_scopes import ScopeError, scope, scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call, Turn
from tenants.models import PhoneNumber, RateLimit, Tenant

pytestmark = pytest.mark.django_db


def make_call(tenant: Tenant | None, sid: str = "CA" + "1" * 32, **fields) -> Call:
    fields.setdefault("started_at", timezone.now())
    with scopes_disabled():
        return Call.objects.create(tenant=tenant, call_sid=sid, **fields)


def make_turn(call: Call, sequence: int, **fields) -> Turn:
    fields.setdefault("created_at", timezone.now())
    fields.setdefault("role", Turn.Role.CALLER)
    with scopes_disabled():
        return Turn.objects.create(tenant=call.tenant, call=call, sequence=sequence, **fields)


def test_a_new_call_is_ringing_and_active(tenant_a: Tenant) -> None:
    call = make_call(tenant_a)
    assert call.status == Call.Status.RINGING
    assert call.is_active
    assert call.outcome == ""
    assert str(call) == "CA" + "1" * 32


@pytest.mark.parametrize("status", Call.FINAL_STATUSES)
def test_a_call_in_a_final_status_is_not_active(tenant_a: Tenant, status: str) -> None:
    assert not make_call(tenant_a, status=status).is_active


def test_a_call_without_a_tenant_is_allowed_only_when_rejected(db) -> None:
    rejected = make_call(None, status=Call.Status.REJECTED)
    assert rejected.tenant_id is None
    with pytest.raises(IntegrityError), transaction.atomic():
        make_call(None, sid="CA" + "2" * 32, status=Call.Status.IN_PROGRESS)


def test_a_call_sid_is_stored_once(tenant_a: Tenant) -> None:
    make_call(tenant_a)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_call(tenant_a)


def test_a_call_keeps_the_settings_it_ran_with(
    number_a: PhoneNumber, assistant_a: AssistantConfig
) -> None:
    call = make_call(
        number_a.tenant,
        phone_number=number_a,
        assistant=assistant_a,
        config_snapshot=assistant_a.snapshot(),
    )
    assistant_a.greeting = "A later greeting"
    assistant_a.save()
    with scope(tenant=number_a.tenant):
        stored = Call.objects.get(pk=call.pk)
    assert stored.config_snapshot["greeting"] == "Acme Plumbing, how can I help?"
    assert stored.config_snapshot["id"] == str(assistant_a.id)


def test_calls_are_listed_newest_first(tenant_a: Tenant) -> None:
    now = timezone.now()
    old = make_call(tenant_a, sid="CAold", started_at=now - timedelta(minutes=5))
    new = make_call(tenant_a, sid="CAnew", started_at=now)
    with scope(tenant=tenant_a):
        assert list(Call.objects.all()) == [new, old]


def test_turns_are_ordered_by_sequence_and_unique_per_call(tenant_a: Tenant) -> None:
    call = make_call(tenant_a)
    second = make_turn(call, 2, role=Turn.Role.ASSISTANT, text="How can I help?")
    first = make_turn(call, 1, text="Hello")
    with scope(tenant=tenant_a):
        assert list(call.turns.all()) == [first, second]
    with pytest.raises(IntegrityError), transaction.atomic():
        make_turn(call, 2)


def test_a_turn_stores_its_timings_and_what_was_heard(tenant_a: Tenant) -> None:
    call = make_call(tenant_a)
    turn = make_turn(
        call,
        1,
        role=Turn.Role.ASSISTANT,
        text="We are open from eight to six.",
        interrupted=True,
        heard_text="We are open",
        llm_first_token_ms=180,
        llm_done_ms=420,
        first_audio_ms=510,
        response_sent_ms=530,
        model_used="llama-3.3-70b-versatile",
        tokens_in=120,
        tokens_out=12,
        source="llm",
        fallbacks=["llama-3.1-8b-instant"],
    )
    with scope(tenant=tenant_a):
        stored = Turn.objects.get(pk=turn.pk)
    assert (stored.llm_first_token_ms, stored.response_sent_ms) == (180, 530)
    assert stored.heard_text == "We are open"
    assert stored.fallbacks == ["llama-3.1-8b-instant"]
    assert str(stored) == f"{call.pk}#1 assistant"


def test_calls_and_turns_need_a_scope(tenant_a: Tenant, tenant_b: Tenant) -> None:
    call = make_call(tenant_a)
    make_turn(call, 1)
    with pytest.raises(ScopeError):
        Call.objects.count()
    with pytest.raises(ScopeError):
        Turn.objects.count()
    with scope(tenant=tenant_b):
        assert Call.objects.count() == 0
        assert Turn.objects.count() == 0
    with scope(tenant=tenant_a):
        assert Call.objects.count() == 1
        assert Turn.objects.count() == 1


def test_deleting_a_tenant_deletes_its_calls_and_turns(tenant_a: Tenant) -> None:
    call = make_call(tenant_a)
    make_turn(call, 1)
    tenant_a.delete()
    with scopes_disabled():
        assert not Call.objects.filter(call_sid=call.call_sid).exists()
        assert not Turn.objects.filter(call_id=call.pk).exists()


def test_turn_add_takes_the_expected_number_or_the_next_free_one(tenant_a: Tenant) -> None:
    from calls import services

    call = make_call(tenant_a)
    with scope(tenant=[tenant_a.id]):
        first = services.turn_add(call=call, role=Turn.Role.CALLER, text="Hello", sequence=1)
        # Another writer took number 2 meanwhile: the turn gets the next free number instead.
        make_turn(call, 2, text="written elsewhere")
        second = services.turn_add(call=call, role=Turn.Role.ASSISTANT, text="Hi", sequence=2)
        third = services.turn_add(call=call, role=Turn.Role.CALLER, text="Bye")
        ordered = list(Turn.objects.filter(call=call).values_list("sequence", "text"))
    assert (first.sequence, second.sequence, third.sequence) == (1, 3, 4)
    assert ordered == [(1, "Hello"), (2, "written elsewhere"), (3, "Hi"), (4, "Bye")]


def test_calls_with_no_sign_of_life_for_hours_are_closed_and_free_their_line(tenant_a, number_a):
    from calls.services import call_start
    from calls.tasks import close_stale_calls
    from tenants import ratelimits

    with scopes_disabled():
        RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=3)
        long_ago = timezone.now() - timedelta(hours=5)
        dead, _ = call_start(
            phone_number=number_a, call_sid="CAdead", from_number="+1", to_number="+2"
        )
        talking, _ = call_start(
            phone_number=number_a, call_sid="CAtalk", from_number="+1", to_number="+2"
        )
        fresh, _ = call_start(
            phone_number=number_a, call_sid="CAnew", from_number="+1", to_number="+2"
        )
        Call.objects.filter(pk__in=[dead.pk, talking.pk]).update(started_at=long_ago)
        # A long call that is still talking: its last turn is recent.
        Turn.objects.create(
            tenant=tenant_a,
            call=talking,
            sequence=1,
            role="caller",
            text="still here",
            created_at=timezone.now(),
        )
        for call in (dead, talking, fresh):
            assert ratelimits.call_admit(
                tenant=tenant_a, call_sid=call.call_sid, caller="+1"
            ).allowed

        assert close_stale_calls() == 1
        assert close_stale_calls() == 0  # once
        dead.refresh_from_db()
        assert (dead.status, dead.outcome) == ("completed", "error")
        assert "without a sign of life" in dead.error
        assert (
            Call.objects.get(pk=talking.pk).status
            == Call.objects.get(pk=fresh.pk).status
            == "in-progress"
        )
        # Its line is free again: a new call fits beside the two live ones (limit: three).
        assert ratelimits.call_admit(tenant=tenant_a, call_sid="CAnext", caller="+1").allowed
