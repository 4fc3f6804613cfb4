"""Post-call analysis: a summary, success against the assistant's own criteria, sentiment and
the fields the tenant asked for, from an LLM in structured-output mode.

The answer is validated against the schema asked for (jsonschema); an answer that is not valid
JSON, or not valid against it, is asked for once more, then the analysis is stored as failed.
Provider trouble (timeouts, 5xx) is raised to the task, which retries it later.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from calls.models import Call, Turn
from insights import signals
from insights.costs import report_add_analysis_cost, spend_on_commit
from insights.models import AnalysisPlan, CallReport, Sentiment
from providers import llm

logger = logging.getLogger(__name__)

ATTEMPTS_ON_INVALID_OUTPUT = 2  # the first answer, and one more when it is not valid
MAX_ANSWER_TOKENS = 1500

DEFAULT_INSTRUCTIONS = (
    "You analyse a finished phone call between a business's AI assistant and a caller. "
    "Answer with one JSON object and nothing else, with these keys: "
    '"summary": two or three sentences on what the caller wanted and what happened; '
    '"success": true or false, whether the call met the success criteria; '
    '"success_reason": one sentence saying why; '
    '"sentiment": the caller\'s mood, one of "positive", "neutral", "negative"; '
    '"data": the fields described by the data schema, taken from the conversation '
    "(leave a field out when the caller did not give it; never invent values)."
)
DEFAULT_SUCCESS_CRITERIA = "The caller got what they called for, or a clear next step."


@dataclass(frozen=True)
class Plan:
    """The analysis to run for one call (the assistant's plan, or the defaults)."""

    enabled: bool
    model: str
    prompt: str
    success_criteria: str
    data_schema: dict


def plan_for(call: Call) -> Plan:
    stored = (
        AnalysisPlan.objects.filter(
            assistant_id=call.assistant_id, tenant_id=call.tenant_id
        ).first()
        if call.assistant_id
        else None
    )
    return Plan(
        enabled=stored.enabled if stored else True,
        model=(stored.model if stored else "") or settings.ANALYSIS_MODEL,
        prompt=stored.prompt if stored else "",
        success_criteria=(stored.success_criteria if stored else "") or DEFAULT_SUCCESS_CRITERIA,
        data_schema=(stored.data_schema if stored else None) or {"type": "object"},
    )


def answer_schema(plan: Plan) -> dict:
    """The JSON Schema of the whole answer: the fixed keys, and the tenant's data schema."""
    return {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "success": {"type": "boolean"},
            "success_reason": {"type": "string"},
            "sentiment": {"type": "string", "enum": list(Sentiment.values)},
            "data": plan.data_schema,
        },
        "required": ["summary", "success", "success_reason", "sentiment", "data"],
    }


def transcript(call: Call) -> str:
    """The conversation as text ("Caller: ..." / "Assistant: ..."), bounded: a long one keeps
    its beginning and its end."""
    lines = []
    turns = Turn.objects.filter(call=call, tenant_id=call.tenant_id).order_by("sequence")
    for role, text, heard, interrupted in turns.values_list(
        "role", "text", "heard_text", "interrupted"
    ):
        said = heard if interrupted else text
        lines.append(f"{'Caller' if role == Turn.Role.CALLER else 'Assistant'}: {said}")
    text = "\n".join(lines)
    limit = settings.ANALYSIS_MAX_TRANSCRIPT_CHARS
    if len(text) > limit:
        text = f"{text[: limit // 2]}\n[...]\n{text[-limit // 2 :]}"
    return text


def messages_for(plan: Plan, call: Call) -> list[dict]:
    system = DEFAULT_INSTRUCTIONS
    if plan.prompt:
        system += f"\n\nThe business adds: {plan.prompt}"
    user = (
        f"Success criteria: {plan.success_criteria}\n\n"
        f'Data schema (JSON Schema of "data"): {json.dumps(plan.data_schema)}\n\n'
        f"Transcript:\n{transcript(call)}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def read_answer(text: str, schema: dict) -> tuple[dict | None, str]:
    """(the answer, "") when `text` is valid JSON valid against `schema`; else (None, why)."""
    try:
        answer = json.loads(text)
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    errors = sorted(Draft202012Validator(schema).iter_errors(answer), key=lambda e: e.path)
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path) or "the answer"
        return None, f"invalid at {where}: {errors[0].message[:300]}"
    return answer, ""


def call_analyze(*, report: CallReport) -> CallReport:
    """Analyse the report's call and store the outcome (done, failed or skipped). Raises
    LLMError for provider trouble a later retry may overcome."""
    call = report.call
    plan = plan_for(call)
    if (
        not plan.enabled
        or not Turn.objects.filter(
            call=call, tenant_id=call.tenant_id, role=Turn.Role.CALLER
        ).exists()
    ):
        return _store(report, status=CallReport.Analysis.SKIPPED)
    schema = answer_schema(plan)
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "call_analysis", "schema": schema, "strict": False},
    }
    messages = messages_for(plan, call)
    tokens_in = tokens_out = 0
    problem = ""
    for _ in range(ATTEMPTS_ON_INVALID_OUTPUT):
        result = llm.LLMResult()
        try:
            text = llm.complete(
                model=plan.model,
                messages=messages,
                max_tokens=MAX_ANSWER_TOKENS,
                response_format=response_format,
                timeout=settings.ANALYSIS_TIMEOUT_SECONDS,
                result=result,
            )
        finally:
            report.analysis_attempts += 1
            tokens_in += result.tokens_in or 0
            tokens_out += result.tokens_out or 0
        answer, problem = read_answer(text, schema)
        if answer is not None:
            report_add_analysis_cost(
                report=report, model=plan.model, tokens_in=tokens_in, tokens_out=tokens_out
            )
            return _store(report, status=CallReport.Analysis.DONE, model=plan.model, **answer)
        logger.warning("call analysis: the model's answer was invalid", extra={"why": problem})
    report_add_analysis_cost(
        report=report, model=plan.model, tokens_in=tokens_in, tokens_out=tokens_out
    )
    return call_analysis_fail(report=report, error=f"the model's answer was {problem}")


def call_analysis_fail(*, report: CallReport, error: str) -> CallReport:
    """Give up on a call's analysis (the reason is kept; `call.analyzed` says it failed)."""
    return _store(report, status=CallReport.Analysis.FAILED, error=error)


def _store(
    report: CallReport,
    *,
    status: str,
    model: str = "",
    error: str = "",
    summary: str = "",
    success: bool | None = None,
    success_reason: str = "",
    sentiment: str = "",
    data: dict | None = None,
) -> CallReport:
    report.analysis_status = status
    report.analysis_model = model
    report.analysis_error = error[:2000]
    report.summary = summary[:10000]
    report.success = success
    report.success_reason = success_reason[:2000]
    report.sentiment = sentiment
    report.data = data or {}
    report.analyzed_at = timezone.now()
    with transaction.atomic():
        report.save()
        spend_on_commit(tenant_id=report.tenant_id, amount=report.analysis_cost)
        if status != CallReport.Analysis.SKIPPED:
            signals.call_analyzed.send(sender=CallReport, report=report)
    return report


def analysis_as_payload(report: CallReport) -> dict:
    """The analysis part of `call.analyzed` and the API."""
    return {
        "status": report.analysis_status,
        "summary": report.summary,
        "success": report.success,
        "success_reason": report.success_reason,
        "sentiment": report.sentiment,
        "data": report.data,
        "model": report.analysis_model,
        "error": report.analysis_error,
        "analyzed_at": report.analyzed_at.isoformat() if report.analyzed_at else None,
    }
