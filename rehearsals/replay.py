"""Replay recorded calls against a candidate (the draft, or a version): each caller's words are
said again, in order, to the candidate, and its answers are set beside the recorded ones, turn by
turn, with a word-level diff, the latency, tokens and cost of each.

A run is shared out to Celery workers in `concurrency` lanes; each lane takes the next waiting
call until none is left. Tool calls are answered from the record where the candidate has the
same tool as the recorded call. The run stops politely when its token budget is spent: the
calls replayed so far keep their results, the others are marked as not replayed.
"""

from __future__ import annotations

import difflib
import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, AssistantVersion
from assistants.versions import Frozen, draft_freeze
from calls.engine import Reply
from calls.models import Call, Turn
from insights import pricing
from rehearsals.models import ReplayCall, ReplayRun
from rehearsals.stage import Rehearsal

logger = logging.getLogger(__name__)

HTTP_TOOL_KEYS = ("description", "parameters", "url", "method")
# The rehearsal's database work runs on the lane's own thread (its connection and scope).
on_this_thread = functools.partial(sync_to_async, thread_sensitive=True)


class NothingToReplay(ValueError):
    """The selection matched no recorded call with something the caller said."""


# --- choosing the calls --------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which recorded calls of the assistant to replay (every filter optional)."""

    since: datetime | None = None
    until: datetime | None = None
    outcome: str = ""
    success: bool | None = None
    call_ids: tuple[str, ...] = ()
    limit: int = 0  # 0: REPLAY_MAX_CALLS

    def as_dict(self) -> dict:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "outcome": self.outcome,
            "success": self.success,
            "call_ids": list(self.call_ids),
            "limit": self.limit,
        }


def call_ids_parse(values: list[str]) -> tuple[str, ...]:
    """Call ids as given by a person (one per item, spaces ignored); ValueError names a bad one."""
    ids = []
    for value in (v.strip() for v in values):
        if value:
            try:
                ids.append(str(uuid.UUID(value)))
            except ValueError:
                raise ValueError(f"Not a call id: {value[:60]!r}.") from None
    return tuple(ids)


def calls_select(*, assistant: AssistantConfig, selection: Selection) -> list[Call]:
    """The assistant's ended calls that match, oldest first, in which the caller said something."""
    calls = Call.objects.filter(
        tenant_id=assistant.tenant_id,
        assistant=assistant,
        status=Call.Status.COMPLETED,
        turns__role=Turn.Role.CALLER,
    ).distinct()
    if selection.since:
        calls = calls.filter(started_at__gte=selection.since)
    if selection.until:
        calls = calls.filter(started_at__lt=selection.until)
    if selection.outcome:
        calls = calls.filter(outcome=selection.outcome)
    if selection.success is not None:
        calls = calls.filter(report__success=selection.success)
    if selection.call_ids:
        calls = calls.filter(id__in=selection.call_ids)
    limit = min(selection.limit or settings.REPLAY_MAX_CALLS, settings.REPLAY_MAX_CALLS)
    return list(calls.order_by("started_at")[:limit])


def candidate_of(*, assistant: AssistantConfig, version: AssistantVersion | None) -> Frozen:
    return Frozen.of(version) if version is not None else draft_freeze(assistant=assistant)


def replay_start(
    *,
    assistant: AssistantConfig,
    version: AssistantVersion | None,
    selection: Selection,
    concurrency: int = 2,
    budget_tokens: int | None = None,
    user=None,
) -> ReplayRun:
    """Create the run with its calls (`services.replay_begin` queues its lanes). Raises
    NothingToReplay when no call matches."""
    calls = calls_select(assistant=assistant, selection=selection)
    if not calls:
        raise NothingToReplay("No ended call of this assistant matches, with a caller's words.")
    candidate = candidate_of(assistant=assistant, version=version)
    with transaction.atomic():
        run = ReplayRun.objects.create(
            tenant_id=assistant.tenant_id,
            assistant=assistant,
            version=version,
            candidate_label=f"v{version.number}" if version else "draft",
            candidate={"config": candidate.config, "parts": candidate.parts},
            selection=selection.as_dict(),
            concurrency=max(1, min(concurrency, settings.REPLAY_MAX_CONCURRENCY)),
            budget_tokens=budget_tokens or settings.REPLAY_DEFAULT_BUDGET_TOKENS,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        ReplayCall.objects.bulk_create(
            ReplayCall(tenant_id=run.tenant_id, run=run, call=call, position=index)
            for index, call in enumerate(calls)
        )
    return run


# --- one lane --------------------------------------------------------------------------------


def replay_lane_run(*, run: ReplayRun) -> int:
    """Replay waiting calls of the run until none is left (or the budget is spent); the last
    lane out writes the report. Returns how many calls this lane replayed."""
    ReplayRun.objects.filter(pk=run.pk, status=ReplayRun.Status.PENDING).update(
        status=ReplayRun.Status.RUNNING
    )
    # One event loop for the whole lane (the LLM client keeps its connections from call to
    # call); the database work goes back to this thread.
    done = async_to_sync(_lane)(run)
    replay_finish(run=run)
    return done


async def _lane(run: ReplayRun) -> int:
    done = 0
    while (item := await on_this_thread(_claim)(run)) is not None:
        if await on_this_thread(_budget_left)(run) <= 0:
            await on_this_thread(_skip_rest)(run, item)
            break
        await replay_one(run=run, item=item)
        done += 1
    return done


def _claim(run: ReplayRun) -> ReplayCall | None:
    with transaction.atomic():
        claimed = (
            ReplayCall.objects.select_for_update(skip_locked=True)
            .filter(run=run, tenant_id=run.tenant_id, status=ReplayCall.Status.PENDING)
            .order_by("position")
            .values_list("pk", flat=True)
            .first()
        )
        if claimed is None:
            return None
        ReplayCall.objects.filter(pk=claimed).update(
            status=ReplayCall.Status.RUNNING, touched_at=timezone.now()
        )
    return ReplayCall.objects.select_related("call", "call__version").get(
        pk=claimed, tenant_id=run.tenant_id
    )


def _budget_left(run: ReplayRun) -> int:
    spent = ReplayRun.objects.filter(pk=run.pk).values_list("tokens_spent", flat=True).first()
    return run.budget_tokens - (spent or 0)


def _skip_rest(run: ReplayRun, item: ReplayCall) -> None:
    waiting = ReplayCall.objects.filter(
        run=run, tenant_id=run.tenant_id, status=ReplayCall.Status.PENDING
    )
    waiting.update(status=ReplayCall.Status.SKIPPED)
    item.status = ReplayCall.Status.SKIPPED
    item.save(update_fields=["status"])


# --- one call --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """What the caller said, and what the recorded assistant answered."""

    caller: str
    answer: Turn | None


def exchanges_of(call: Call) -> tuple[list[Exchange], list[dict]]:
    """The call's caller turns with the answer recorded after each, and its tool calls."""
    turns = list(Turn.objects.filter(call=call, tenant_id=call.tenant_id).order_by("sequence"))
    exchanges: list[Exchange] = []
    records: list[dict] = []
    for index, turn in enumerate(turns):
        if turn.role == Turn.Role.ASSISTANT:
            records.extend(record for record in turn.tool_calls or [] if isinstance(record, dict))
        elif turn.text.strip():
            following = turns[index + 1] if index + 1 < len(turns) else None
            answer = following if following and following.role == Turn.Role.ASSISTANT else None
            exchanges.append(Exchange(caller=turn.text, answer=answer))
    return exchanges, records


def same_tools(*, candidate: Frozen, call: Call) -> set[str]:
    """The candidate's HTTP tools that are the ones the call had (same name and definition; a
    call without a version is compared by name)."""
    mine = {t["name"]: t for t in (candidate.parts.get("tools") or {}).get("http", [])}
    if call.version is None:
        return set(mine)
    theirs = {t["name"]: t for t in (call.version.parts.get("tools") or {}).get("http", [])}
    return {
        name
        for name, tool in mine.items()
        if name in theirs and all(tool.get(k) == theirs[name].get(k) for k in HTTP_TOOL_KEYS)
    }


async def replay_one(*, run: ReplayRun, item: ReplayCall) -> None:
    """Replay one recorded call, turn by turn, within what is left of the budget."""
    call = item.call
    candidate = Frozen(config=run.candidate["config"], parts=run.candidate["parts"])
    exchanges, records = await on_this_thread(exchanges_of)(call)
    rehearsal = Rehearsal(
        tenant_id=run.tenant_id,
        candidate=candidate,
        from_number=call.from_number,
        to_number=call.to_number,
        records=records,
        same=same_tools(candidate=candidate, call=call),
        database=on_this_thread,
    )
    item.turns, item.status = [], ReplayCall.Status.DONE
    try:
        await _replay_turns(run, item, rehearsal, exchanges)
    except Exception as exc:
        logger.exception("replaying a call failed", extra={"call": str(call.id)})
        item.status, item.error = ReplayCall.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    item.turns_changed = sum(1 for turn in item.turns if turn["changed"])
    await on_this_thread(item.save)(
        update_fields=["turns", "turns_changed", "tokens", "status", "error"]
    )


async def _replay_turns(
    run: ReplayRun, item: ReplayCall, rehearsal: Rehearsal, exchanges: list[Exchange]
) -> None:
    await rehearsal.start()
    for exchange in exchanges:
        if await on_this_thread(_budget_left)(run) <= 0:
            item.status = ReplayCall.Status.STOPPED
            return
        reply = await rehearsal.say(exchange.caller)
        result = turn_result(exchange, reply)
        item.turns.append(result)
        spent = result["candidate"]["tokens_in"] + result["candidate"]["tokens_out"]
        item.tokens += spent
        await on_this_thread(_spend)(run, item, spent)
        if reply.handoff is not None:  # the candidate ended the call here
            return


def _spend(run: ReplayRun, item: ReplayCall, tokens: int) -> None:
    ReplayRun.objects.filter(pk=run.pk).update(tokens_spent=F("tokens_spent") + tokens)
    ReplayCall.objects.filter(pk=item.pk).update(touched_at=timezone.now())


def replays_revive(*, quiet_for: timedelta) -> list[ReplayRun]:
    """Runs with a call no lane has touched for `quiet_for` (its worker died): that call waits
    again, and the run is returned so that a lane can be queued for it. Every tenant's runs."""
    cutoff = timezone.now() - quiet_for
    with scopes_disabled():  # a housekeeping pass over every tenant
        lost = ReplayCall.objects.filter(
            status=ReplayCall.Status.RUNNING, touched_at__lt=cutoff, run__status__in=[
                ReplayRun.Status.PENDING, ReplayRun.Status.RUNNING]
        )  # fmt: skip
        run_ids = set(lost.values_list("run_id", flat=True))
        lost.update(status=ReplayCall.Status.PENDING)
        return list(ReplayRun.objects.filter(id__in=run_ids))


def word_diff(before: str, after: str) -> list[list[str]]:
    """[["equal" | "delete" | "insert", words], ...]: how `after` differs from `before`."""
    old, new = before.split(), after.split()
    pieces: list[list[str]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            pieces.append(["delete", " ".join(old[a1:a2])])
        if op in ("insert", "replace"):
            pieces.append(["insert", " ".join(new[b1:b2])])
        if op == "equal":
            pieces.append(["equal", " ".join(old[a1:a2])])
    return pieces


def _side(
    *, text: str, source: str, ms: int | None, model: str, tokens_in: int, tokens_out: int, tools
) -> dict:
    cost = pricing.llm_cost(model, tokens_in, tokens_out) if model else Decimal(0)
    return {
        "text": text,
        "source": source,
        "ms": ms,
        "model": model,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": str(cost),
        "tools": tools,
    }


def turn_result(exchange: Exchange, reply: Reply) -> dict:
    """One caller turn of the replay: both answers side by side.

    Latency is the time to the answer's first words (the model's first token; the whole
    answer for a FAQ or cached one), which both sides have whatever the call's mode was.
    """
    answer = exchange.answer
    if answer is not None:
        original = _side(
            text=answer.heard_text if answer.interrupted else answer.text,
            source=answer.source,
            ms=answer.llm_first_token_ms
            if answer.llm_first_token_ms is not None
            else answer.response_sent_ms,
            model=answer.model_used,
            tokens_in=answer.tokens_in or 0,
            tokens_out=answer.tokens_out or 0,
            tools=[t.get("name") for t in answer.tool_calls or [] if isinstance(t, dict)],
        )
    else:
        original = _side(text="", source="", ms=None, model="", tokens_in=0, tokens_out=0, tools=[])
    result = reply.llm
    first = result.first_token_at if result.first_token_at is not None else reply.first_sent_at
    candidate = _side(
        text=reply.text,
        source=reply.source,
        ms=reply.ms(first),
        model=result.model_used if reply.source == Turn.Source.LLM else "",
        tokens_in=result.tokens_in or 0,
        tokens_out=result.tokens_out or 0,
        tools=[{k: t.get(k) for k in ("name", "arguments", "status")} for t in reply.tool_calls],
    )
    return {
        "caller": exchange.caller,
        "original": original,
        "candidate": candidate,
        "changed": " ".join(original["text"].split()) != " ".join(candidate["text"].split()),
        "diff": word_diff(original["text"], candidate["text"]),
    }


# --- the report ------------------------------------------------------------------------------


def percentile(values: list[int], share: float) -> int | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def report_build(run: ReplayRun) -> dict:
    items = list(ReplayCall.objects.filter(run=run, tenant_id=run.tenant_id))
    counts = {status: 0 for status in ReplayCall.Status.values}
    for item in items:
        counts[item.status] += 1
    turns = [turn for item in items for turn in item.turns]
    sides = {"original": [], "candidate": []}
    for turn in turns:
        for side in sides:
            sides[side].append(turn[side])
    return {
        "calls": {"total": len(items), **counts},
        "turns": len(turns),
        "turns_changed": sum(1 for turn in turns if turn["changed"]),
        "latency_ms": {
            side: {
                "p50": percentile([s["ms"] for s in values if s["ms"] is not None], 0.5),
                "p90": percentile([s["ms"] for s in values if s["ms"] is not None], 0.9),
            }
            for side, values in sides.items()
        },
        "cost": {
            side: str(sum((Decimal(s["cost"]) for s in values), Decimal(0)))
            for side, values in sides.items()
        },
        "tokens": {
            side: sum(s["tokens_in"] + s["tokens_out"] for s in values)
            for side, values in sides.items()
        },
        "currency": settings.PRICE_CURRENCY,
    }


def replay_finish(*, run: ReplayRun) -> bool:
    """Write the report once no call is waiting or running (the last lane does it)."""
    with transaction.atomic():
        locked = ReplayRun.objects.select_for_update().get(pk=run.pk, tenant_id=run.tenant_id)
        if locked.status in ReplayRun.FINAL:
            return False
        busy = ReplayCall.objects.filter(
            run=run,
            tenant_id=run.tenant_id,
            status__in=[ReplayCall.Status.PENDING, ReplayCall.Status.RUNNING],
        )
        if busy.exists():
            return False
        report = report_build(locked)
        stopped = (
            report["calls"][ReplayCall.Status.STOPPED] + report["calls"][ReplayCall.Status.SKIPPED]
        )
        locked.report, locked.finished_at = report, timezone.now()
        if stopped:
            locked.status = ReplayRun.Status.BUDGET_REACHED
            locked.message = (
                f"Stopped politely: the budget of {locked.budget_tokens} tokens was spent. "
                f"{report['calls'][ReplayCall.Status.DONE]} of {report['calls']['total']} calls "
                "were replayed in full; their results are below. Raise the budget and start a "
                "new run for the rest."
            )
        else:
            locked.status = ReplayRun.Status.DONE
            locked.message = (
                f"{report['turns_changed']} of {report['turns']} turns answered differently."
            )
        locked.save(update_fields=["report", "finished_at", "status", "message"])
    return True
