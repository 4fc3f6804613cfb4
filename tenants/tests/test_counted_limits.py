"""Limits counted as calls and turns come: a new call against the per-caller and the
concurrent-calls limits, a caller's turn against the turns-per-call limit and the token budget.
Counted in Redis (in one trip where both limits are set) and, without Redis, in the process."""

from __future__ import annotations

import uuid

import pytest

from tenants import ratelimits
from tenants.models import RateLimit


@pytest.fixture(params=["redis", "process"])
def counted_in(request, settings):
    if request.param == "process":
        settings.REDIS_URL = ""
    return request.param


def _limits(tenant, *, turns: int | None, tokens: int | None) -> None:
    if turns is not None:
        RateLimit.objects.create(
            tenant=tenant, kind=RateLimit.Kind.TURNS_PER_CALL, limit=turns, window_seconds=3600
        )
    if tokens is not None:
        RateLimit.objects.create(
            tenant=tenant,
            kind=RateLimit.Kind.LLM_TOKENS_PER_DAY,
            limit=tokens,
            window_seconds=86400,
        )


@pytest.mark.parametrize("turns, tokens", [(2, 10_000), (2, None), (None, 250)])
def test_turns_and_tokens_are_refused_past_their_limits(tenant_a, counted_in, turns, tokens):
    _limits(tenant_a, turns=turns, tokens=tokens)
    call_sid = "CA" + uuid.uuid4().hex
    verdicts = [
        ratelimits.turn_verdict(tenant=tenant_a, call_sid=call_sid, reserve_tokens=100)
        for _ in range(4)
    ]
    allowed = [verdict.allowed for verdict in verdicts]
    if turns is not None:  # the third turn of the call is one too many
        assert allowed == [True, True, False, False]
        assert verdicts[2].limit.kind == RateLimit.Kind.TURNS_PER_CALL
    else:  # 100 + 100 + 100 passes 250: refused once the budget is used up
        assert allowed == [True, True, True, False]
        assert verdicts[3].limit.kind == RateLimit.Kind.LLM_TOKENS_PER_DAY
    if tokens is not None:
        reservation = verdicts[0].reservation
        assert reservation is not None and reservation.amount == 100
    # Another call of the same tenant has turns of its own, and shares the token budget.
    other = ratelimits.turn_verdict(tenant=tenant_a, call_sid="CA" + uuid.uuid4().hex)
    assert other.allowed is (tokens is None or turns is not None)


def test_the_token_budget_refuses_a_turn_that_the_turns_limit_allows(tenant_a, counted_in):
    _limits(tenant_a, turns=10, tokens=150)
    call_sid = "CA" + uuid.uuid4().hex
    first = ratelimits.turn_verdict(tenant=tenant_a, call_sid=call_sid, reserve_tokens=200)
    second = ratelimits.turn_verdict(tenant=tenant_a, call_sid=call_sid, reserve_tokens=200)
    assert first.allowed and first.reservation.amount == 200
    assert not second.allowed and second.limit.kind == RateLimit.Kind.LLM_TOKENS_PER_DAY
    # What the first turn did not spend goes back to the budget.
    ratelimits.tokens_settle(reservation=first.reservation, spent=20)
    assert ratelimits.turn_verdict(tenant=tenant_a, call_sid=call_sid, reserve_tokens=50).allowed


def test_one_tenants_turns_and_tokens_are_not_anothers(tenant_a, tenant_b, counted_in):
    _limits(tenant_a, turns=1, tokens=100)
    _limits(tenant_b, turns=1, tokens=100)
    call_sid = "CA" + uuid.uuid4().hex
    assert ratelimits.turn_verdict(tenant=tenant_a, call_sid=call_sid, reserve_tokens=100).allowed
    assert ratelimits.turn_verdict(tenant=tenant_b, call_sid="CB" + uuid.uuid4().hex).allowed


def _call_limits(tenant, *, per_caller: int | None, concurrent: int | None) -> None:
    for kind, limit in (
        (RateLimit.Kind.CALLS_PER_CALLER, per_caller),
        (RateLimit.Kind.CONCURRENT_CALLS, concurrent),
    ):
        if limit is not None:
            RateLimit.objects.create(tenant=tenant, kind=kind, limit=limit, window_seconds=3600)


@pytest.mark.parametrize("per_caller, concurrent", [(2, 3), (2, None), (None, 3)])
def test_new_calls_are_refused_past_the_callers_and_the_concurrent_limits(
    tenant_a, tenant_b, counted_in, per_caller, concurrent
):
    _call_limits(tenant_a, per_caller=per_caller, concurrent=concurrent)
    caller = f"+1555{uuid.uuid4().int % 10**7:07d}"
    sids = ["CA" + uuid.uuid4().hex for _ in range(3)]
    verdicts = [ratelimits.call_admit(tenant=tenant_a, call_sid=sid, caller=caller) for sid in sids]
    if per_caller is not None:  # the caller's third call in the window
        assert [v.allowed for v in verdicts] == [True, True, False]
        assert verdicts[2].limit.kind == RateLimit.Kind.CALLS_PER_CALLER
    else:
        assert all(v.allowed for v in verdicts)
    others = [
        ratelimits.call_admit(tenant=tenant_a, call_sid="CA" + uuid.uuid4().hex, caller=f"+1666{n}")
        for n in range(3)
    ]
    if concurrent is not None:  # three lines, taken by the calls admitted so far
        live = sum(v.allowed for v in verdicts)
        assert [v.allowed for v in others] == [n + live < 3 for n in range(3)]
        refused = [v for v in others if not v.allowed]
        assert refused[0].limit.kind == RateLimit.Kind.CONCURRENT_CALLS
        # A call that ends gives its line back; the same call again is not counted twice.
        ratelimits.call_release(tenant_id=tenant_a.id, call_sid=sids[0])
        again = "CA" + uuid.uuid4().hex
        assert ratelimits.call_admit(tenant=tenant_a, call_sid=again, caller="+1777").allowed
        assert ratelimits.call_admit(tenant=tenant_a, call_sid=again, caller="+1778").allowed
    else:
        assert all(v.allowed for v in others)
    # Another tenant's lines and callers are its own.
    _call_limits(tenant_b, per_caller=per_caller, concurrent=concurrent)
    assert ratelimits.call_admit(
        tenant=tenant_b, call_sid="CB" + uuid.uuid4().hex, caller=caller
    ).allowed
