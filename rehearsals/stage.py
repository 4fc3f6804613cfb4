"""The one conversation engine, played off the line: a candidate assistant (a draft or a version)
hears a caller's words as text and answers, without a phone call behind it.

Nothing of a rehearsal is live: no Call or Turn is stored, no dashboard event is sent, no rate
limit or line is taken, no webhook or analysis follows. The caller's words, the candidate's
answers and their timings, tokens and tool calls come back as `Reply` objects.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from jsonschema.validators import Draft202012Validator

from assistants.versions import Frozen
from calls.engine import Conversation, Prepared, Reply, equipment_load
from calls.models import Call, Turn
from core.asyncdb import database_async
from providers.llm import ToolCall
from tools.models import END_CALL, LOOKUP_KNOWLEDGE, TRANSFER_CALL
from tools.toolbox import Outcome, Toolbox

NOT_REPLAYED = "not_replayed"
# Built-in tools that change nothing outside the conversation (a transfer or hang-up is only
# noted by the rehearsal): they run as on a call. Any other tool is answered or not run.
HARMLESS_TOOLS = frozenset({TRANSFER_CALL, END_CALL, LOOKUP_KNOWLEDGE})


class TextSpeaker:
    """Gives the candidate's answer as text: what it says is what the caller would get."""

    streams_text = False
    read_every = 0.0  # each piece of the answer as it comes

    async def say(self, reply: Reply, text: str, *, complete: bool = False) -> None:
        if text:
            reply.parts.append(text)
            if reply.first_sent_at is None:
                reply.first_sent_at = time.monotonic()

    async def done(self, reply: Reply) -> None:
        reply.last_sent_at = time.monotonic()

    async def stop(self, reply: Reply) -> None:
        return None

    async def cut(self, reply: Reply) -> None:
        return None

    async def end(self, handoff: dict) -> None:
        return None

    async def switch_language(self, config: dict) -> None:
        return None


@dataclass
class StagedToolbox(Toolbox):
    """A toolbox that does not reach the tenant's servers where it should not.

    `canned`: answers given instead of running a tool (a scenario's). `records`: the tool calls
    of a recorded call, answered again for tools in `same` (unchanged since the recording).
    The harmless built-in tools (transfer, hang up, knowledge) run as they do on a call. Any
    other tool (a tenant's, or a built-in that acts outside the call) is never run.
    """

    canned: dict[str, str] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    same: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, box: Toolbox, **options: object) -> StagedToolbox:
        return cls(**{name: getattr(box, name) for name in Toolbox.__dataclass_fields__}, **options)

    async def _run(self, call: ToolCall, *, facts, deadline, database) -> Outcome:
        if call.name in HARMLESS_TOOLS or self.schema_of(call.name) is None:
            return await super()._run(call, facts=facts, deadline=deadline, database=database)
        arguments = _arguments(call)
        schema = self.schema_of(call.name) or {}
        if arguments is None or next(Draft202012Validator(schema).iter_errors(arguments), None):
            # Refused as on a call, before any request is made.
            return await super()._run(call, facts=facts, deadline=deadline, database=database)
        if call.name in self.canned:
            return Outcome(call, "ok", self.canned[call.name], arguments=arguments)
        if call.name in self.same and (record := self._take(call.name, arguments)) is not None:
            status = str(record.get("status") or "ok")
            return Outcome(call, status, str(record.get("result", "")), arguments=arguments)
        message = "This tool is not run in a rehearsal and was not used on the recorded call."
        content = json.dumps({"error": message})
        return Outcome(call, NOT_REPLAYED, content, arguments=arguments)

    def _take(self, name: str, arguments: dict | None) -> dict | None:
        """The recorded call of tool `name` with the same arguments, else its next one."""
        candidates = [r for r in self.records if r.get("name") == name]
        record = next((r for r in candidates if r.get("arguments") == arguments), None)
        record = record or (candidates[0] if candidates else None)
        if record is not None:
            self.records.remove(record)
        return record


def _arguments(call: ToolCall) -> dict | None:
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Rehearsal(Conversation):
    """A `Conversation` of a candidate assistant that stores, publishes and limits nothing."""

    def __init__(
        self,
        *,
        tenant_id: object,
        candidate: Frozen,
        from_number: str = "",
        to_number: str = "",
        database: Callable[[Callable], Callable] = database_async,
        **toolbox_options: object,
    ) -> None:
        call = Call(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            call_sid="REHEARSAL" + uuid.uuid4().hex,
            config_snapshot=dict(candidate.config),
            language=candidate.config.get("language", "en-US"),
            from_number=from_number,
            to_number=to_number,
            direction="rehearsal",
            mode=Call.Mode.WEB,
        )
        super().__init__(call=call, speaker=TextSpeaker(), database=database)
        self.candidate = candidate
        self.toolbox_options = toolbox_options
        self.outcome = ""

    def _load(self, held_by: str = "", first_socket: bool = False):
        # No call of its own to read (nor any server holding it): the candidate's parts only.
        faq, toolbox = equipment_load(
            config=self.config, parts=self.candidate.parts, tenant_id=self.call.tenant_id
        )
        return [], 0, faq, {}, StagedToolbox.of(toolbox, **self.toolbox_options)

    async def say(self, utterance: str) -> Reply:
        """One turn: the caller says `utterance`, the candidate answers (within the deadline a
        live line gives)."""
        now = time.monotonic()
        return await self.answer(
            utterance, received_at=now, deadline=now + settings.RELAY_ANSWER_SECONDS
        )

    def _prepare(self, *, utterance: str, faq_text: str | None, sequence: int, language: str, **_):
        turn = Turn(
            tenant_id=self.call.tenant_id,
            sequence=sequence,
            role=Turn.Role.CALLER,
            text=utterance,
            language=language,
        )
        prepared = Prepared(caller_turn=turn)
        if faq_text:
            prepared.source, prepared.text = Turn.Source.FAQ, faq_text
        return prepared

    def _store_sync(self, *, reply: Reply, sequence: int, **_) -> Turn:
        return Turn(
            tenant_id=self.call.tenant_id,
            sequence=sequence,
            role=Turn.Role.ASSISTANT,
            text=reply.text,
            source=reply.source,
        )

    async def _note_outcome(self, outcome: str) -> None:
        self.outcome = outcome

    def _publish_turn(self, turn: Turn) -> None:
        return None

    def _in_background(self, coroutine) -> None:
        coroutine.close()  # no dashboard hears a rehearsal
