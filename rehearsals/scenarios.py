"""Running test scenarios against a candidate (the draft, or a version): the caller says its
lines (or an LLM plays the caller), the candidate answers through the conversation engine, and
the checks are evaluated. Runs are stored with their transcript."""

from __future__ import annotations

import functools
import json
import logging

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings

from assistants.models import AssistantConfig, AssistantVersion
from assistants.versions import Frozen, draft_freeze
from calls.engine import Reply
from providers import llm
from rehearsals.checks import Transcript, Verdict, evaluate
from rehearsals.models import Scenario, ScenarioRun
from rehearsals.stage import Rehearsal

logger = logging.getLogger(__name__)

on_this_thread = functools.partial(sync_to_async, thread_sensitive=True)
DONE = "DONE"
CALLER_PROMPT = (
    "You are playing a caller who phones a business's phone assistant, to test it. Your goal: "
    "{goal}\nWho you are and how you talk: {persona}\nSay only your next words to the "
    "assistant: one or two short sentences. When your goal is reached, or the assistant has "
    f"ended the call, answer exactly {DONE}."
)
JUDGE_PROMPT = (
    "You judge a phone conversation between a caller and a business's phone assistant. Answer "
    'the question about it with "yes" or "no", and give a one-sentence reason.'
)
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["yes", "no"]},
        "reason": {"type": "string"},
    },
    "required": ["answer", "reason"],
}


def llm_judge(question: str, transcript: Transcript) -> Verdict:
    """Ask the scenario model a yes-no question about the conversation."""
    result = llm.LLMResult()
    messages = [
        {"role": "system", "content": JUDGE_PROMPT},
        {"role": "user", "content": f"{transcript.as_text()}\n\nQuestion: {question}"},
    ]
    try:
        text = llm.complete(
            model=settings.SCENARIO_MODEL,
            messages=messages,
            max_tokens=300,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": JUDGE_SCHEMA, "strict": False},
            },
            timeout=settings.ANALYSIS_TIMEOUT_SECONDS,
            result=result,
        )
        data = json.loads(text)
        answer, reason = str(data["answer"]).strip().lower(), str(data.get("reason", ""))
    except (llm.LLMError, ValueError, KeyError, TypeError) as exc:
        return Verdict(False, f"the judge could not answer ({type(exc).__name__}: {exc})"[:500])
    tokens = (result.tokens_in or 0) + (result.tokens_out or 0)
    return Verdict(answer == "yes", f"judge: {answer}. {reason}"[:1000], tokens)


class Performance:
    """One scenario played against one candidate."""

    def __init__(self, *, scenario: Scenario, candidate: Frozen) -> None:
        self.scenario = scenario
        self.candidate = candidate
        self.transcript = Transcript()
        self.tokens = 0
        self.rehearsal = Rehearsal(
            tenant_id=scenario.tenant_id,
            candidate=candidate,
            from_number="+15550000000",
            canned=dict(scenario.tool_answers or {}),
            database=on_this_thread,
        )

    async def play(self) -> None:
        await self.rehearsal.start()
        if greeting := self.candidate.config.get("greeting"):
            self.transcript.lines.append({"role": "assistant", "text": greeting, "greeting": True})
        if self.scenario.lines:
            for line in self.scenario.lines[: self.scenario.max_turns]:
                if not await self._turn(line):
                    return
            return
        for _ in range(self.scenario.max_turns):
            line = await sync_to_async(self._caller_says, thread_sensitive=False)()
            if not line or line.strip().rstrip(".").upper() == DONE:
                return
            if not await self._turn(line):
                return

    async def _turn(self, line: str) -> bool:
        """The caller says `line`; False when the assistant ended the call."""
        self.transcript.lines.append({"role": "caller", "text": line})
        reply: Reply = await self.rehearsal.say(line)
        self.tokens += reply.llm.tokens
        self.transcript.lines.append(
            {"role": "assistant", "text": reply.text, "tool_calls": reply.tool_calls}
        )
        if reply.handoff is None:
            return True
        if reply.handoff.get("transfer"):
            self.transcript.transferred = True
        else:
            self.transcript.ended = True
        return False

    def _caller_says(self) -> str:
        """The LLM-played caller's next words."""
        scenario = self.scenario
        system = CALLER_PROMPT.format(
            goal=scenario.caller_goal, persona=scenario.caller_persona or "an ordinary caller"
        )
        messages = [{"role": "system", "content": system}]
        for line in self.transcript.lines:  # the assistant is the "user" the caller answers
            role = "user" if line["role"] == "assistant" else "assistant"
            messages.append({"role": role, "content": line["text"] or "..."})
        if messages[-1]["role"] != "user":
            messages.append({"role": "user", "content": "..."})
        result = llm.LLMResult()
        text = llm.complete(
            model=settings.SCENARIO_MODEL,
            messages=messages,
            max_tokens=200,
            timeout=settings.ANALYSIS_TIMEOUT_SECONDS,
            result=result,
        )
        self.tokens += (result.tokens_in or 0) + (result.tokens_out or 0)
        return text.strip()[: settings.MAX_UTTERANCE_CHARS]


def scenario_run(
    *,
    scenario: Scenario,
    candidate: Frozen,
    label: str,
    version: AssistantVersion | None = None,
    user=None,
) -> ScenarioRun:
    """Play `scenario` against `candidate`, evaluate its checks and store the run."""
    performance = Performance(scenario=scenario, candidate=candidate)
    error = ""
    try:
        async_to_sync(performance.play)()
    except llm.LLMError as exc:
        error = f"the LLM-played caller could not speak ({exc})"
    except Exception as exc:
        logger.exception("a scenario failed to run", extra={"scenario": str(scenario.id)})
        error = f"{type(exc).__name__}: {exc}"
    results = []
    for check in scenario.checks:
        verdict = evaluate(check, performance.transcript, judge=llm_judge)
        performance.tokens += verdict.tokens
        results.append({"check": check, "passed": verdict.passed, "reason": verdict.reason})
    return ScenarioRun.objects.create(
        tenant_id=scenario.tenant_id,
        scenario=scenario,
        version=version,
        candidate_label=label,
        passed=not error and all(r["passed"] for r in results),
        transcript=performance.transcript.lines,
        results=results,
        error=error[:2000],
        tokens=performance.tokens,
        created_by=user if user is not None and user.is_authenticated else None,
    )


def candidate_named(
    *, assistant: AssistantConfig, name: str
) -> tuple[Frozen, AssistantVersion | None, str]:
    """The candidate a user names: "draft", "published" or a version number. Raises
    LookupError for a version the assistant does not have."""
    if name in ("", "draft"):
        return draft_freeze(assistant=assistant), None, "draft"
    if name == "published":
        version = assistant.published_version
        if version is None:
            raise LookupError("The assistant has no published version.")
    else:
        version = (
            AssistantVersion.objects.filter(
                tenant_id=assistant.tenant_id, assistant=assistant, number=int(name)
            ).first()
            if name.isdigit()
            else None
        )
        if version is None:
            raise LookupError(f'No version {name!r}: give a number, "draft" or "published".')
    return Frozen.of(version), version, f"v{version.number}"


def scenarios_select(
    *, assistant: AssistantConfig, suite: str = "", ids: list[str] | None = None
) -> list[Scenario]:
    scenarios = Scenario.objects.filter(
        tenant_id=assistant.tenant_id, assistant=assistant, active=True
    )
    if suite:
        scenarios = scenarios.filter(suite=suite)
    if ids:
        scenarios = scenarios.filter(id__in=ids)
    return list(scenarios.order_by("suite", "name")[: settings.SCENARIO_MAX_PER_RUN])


def scenarios_run(
    *,
    assistant: AssistantConfig,
    scenarios: list[Scenario],
    candidate: Frozen,
    label: str,
    version: AssistantVersion | None = None,
    user=None,
) -> list[ScenarioRun]:
    return [
        scenario_run(
            scenario=scenario, candidate=candidate, label=label, version=version, user=user
        )
        for scenario in scenarios
    ]


def scenarios_must_pass(assistant: AssistantConfig, frozen: Frozen) -> list[str]:
    """A publish check: with "scenarios required" on, every active scenario must pass on the
    draft about to be published."""
    if not assistant.scenarios_required:
        return []
    scenarios = scenarios_select(assistant=assistant)
    runs = scenarios_run(assistant=assistant, scenarios=scenarios, candidate=frozen, label="draft")
    return [
        f"scenario {run.scenario.name!r} failed: "
        + "; ".join(r["reason"] for r in run.results if not r["passed"])[:300]
        + (f" {run.error}" if run.error else "")
        for run in runs
        if not run.passed
    ]
