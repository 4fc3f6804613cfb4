"""What a call cost, per turn and in all, from its turns and the price table."""

from __future__ import annotations

from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import transaction

from calls.models import Call, Turn
from insights import pricing
from insights.models import CallReport, TurnCost
from tenants import ratelimits
from tenants.models import Tenant


def call_report_prepare(*, call: Call) -> CallReport:
    """The call's report with its costs, written once when the call ends (a second call
    returns the stored one). Runs inside the transaction that closes the call."""
    existing = CallReport.objects.filter(call=call, tenant_id=call.tenant_id).first()
    if existing is not None:
        return existing
    snapshot = call.config_snapshot or {}
    # Speech the platform makes is billed by engine in gather mode; ConversationRelay's speech
    # is in its per-minute price, and the browser speaks for itself.
    engine = snapshot.get("tts_engine", "") if call.mode == Call.Mode.GATHER else ""
    report = CallReport(
        tenant_id=call.tenant_id,
        call=call,
        currency=settings.PRICE_CURRENCY,
        billed_minutes=pricing.billed_minutes(call.duration_seconds),
    )
    report.telephony_cost = pricing.telephony_cost(call.mode, report.billed_minutes)
    turn_costs = []
    turns = Turn.objects.filter(call=call, tenant_id=call.tenant_id, role=Turn.Role.ASSISTANT).only(
        "id", "text", "heard_text", "interrupted", "model_used", "tokens_in", "tokens_out"
    )
    for turn in turns:
        characters = len(turn.heard_text if turn.interrupted else turn.text) if engine else 0
        cost = TurnCost(
            tenant_id=call.tenant_id,
            turn=turn,
            llm_cost=pricing.llm_cost(turn.model_used, turn.tokens_in or 0, turn.tokens_out or 0),
            speech_cost=pricing.speech_cost(engine, characters) if engine else Decimal(0),
            speech_characters=characters,
        )
        turn_costs.append(cost)
        report.tokens_in += turn.tokens_in or 0
        report.tokens_out += turn.tokens_out or 0
        report.speech_characters += characters
        report.llm_cost += cost.llm_cost
        report.speech_cost += cost.speech_cost
    report.total_cost = report.llm_cost + report.telephony_cost + report.speech_cost
    # Inside the call's closing transaction no savepoint is needed: a failure here fails the
    # close as a whole, which is rolled back.
    with transaction.atomic(savepoint=False):
        report.save()
        for cost in turn_costs:
            cost.report = report
        TurnCost.objects.bulk_create(turn_costs)
        spend_on_commit(
            tenant_id=call.tenant_id, tenant=call.tenant_if_read(), amount=report.total_cost
        )
    return report


def spend_on_commit(*, tenant_id: object, amount: Decimal, tenant: Tenant | None = None) -> None:
    """Count `amount` against the tenant's spend budget once the transaction commits (`tenant`:
    its row just read in the transaction, if it was)."""
    if amount > 0:
        count = partial(_spend, tenant_id=tenant_id, tenant=tenant, amount=amount)
        transaction.on_commit(count, robust=True)


def _spend(*, tenant_id: object, tenant: Tenant | None, amount: Decimal) -> None:
    ratelimits.spend_add(tenant=tenant or Tenant.objects.get(id=tenant_id), amount=amount)


def report_add_analysis_cost(*, report: CallReport, model: str, tokens_in: int, tokens_out: int):
    """Count the analysis' own LLM tokens in the call's cost."""
    report.analysis_cost = pricing.llm_cost(model, tokens_in, tokens_out)
    report.total_cost = (
        report.llm_cost + report.telephony_cost + report.speech_cost + report.analysis_cost
    )


def cost_as_payload(report: CallReport) -> dict:
    """The cost part of `call.ended` and the API (amounts as strings: exact decimals)."""
    return {
        "currency": report.currency,
        "total": str(report.total_cost),
        "llm": str(report.llm_cost),
        "telephony": str(report.telephony_cost),
        "speech": str(report.speech_cost),
        "analysis": str(report.analysis_cost),
        "llm_tokens_in": report.tokens_in,
        "llm_tokens_out": report.tokens_out,
        "speech_characters": report.speech_characters,
        "billed_minutes": report.billed_minutes,
    }
