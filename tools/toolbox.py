"""An assistant's tools during a call: their definitions for the model, and running the calls
the model asks for.

The toolbox is read once when a conversation starts (like the FAQ and the config snapshot, edits
apply to the next call). Running a call never raises: a refused, invalid, failing or slow tool
gives an `Outcome` whose `content` tells the model what went wrong, so that it can say something
sensible.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from jsonschema.validators import Draft202012Validator

from core import outbound
from core.signing import new_message_id, signed_headers
from knowledge.search import Hit, passages_search
from providers.llm import ToolCall
from tools import builtins
from tools.models import (
    END_CALL,
    LOOKUP_KNOWLEDGE,
    TRANSFER_CALL,
    BuiltinTools,
    HttpTool,
    TransferDestination,
)

logger = logging.getLogger(__name__)

# What the model and the transcript keep of a tool's answer.
RESULT_CHARS = 2000
EXCERPT_CHARS = 300
KNOWLEDGE_HITS = 3


@dataclass(frozen=True)
class HttpToolSpec:
    """What running one HTTP tool needs, read (and decrypted) when the call starts."""

    name: str
    description: str
    parameters: dict
    url: str
    method: str
    timeout: float
    headers: dict[str, str]
    secret: str


@dataclass(frozen=True)
class CallFacts:
    """What a tool request says about the call it is made for."""

    id: str
    sid: str
    from_number: str
    to_number: str
    mode: str

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "sid": self.sid,
            "from": self.from_number,
            "to": self.to_number,
            "mode": self.mode,
        }


@dataclass
class Outcome:
    """One tool call, run: what the model is told (`content`) and what the transcript keeps."""

    call: ToolCall
    status: str  # ok | error | timeout | invalid | refused
    content: str
    ms: int = 0
    arguments: dict | None = None
    # For the conversation: a transfer ({"transfer": True, "destination", "number"}) or a
    # hang-up ({"hangup": True}).
    action: dict | None = None
    passages: list[dict] = field(default_factory=list)

    def record(self) -> dict:
        """The tool call as the turn stores it and the dashboards show it."""
        arguments = self.arguments
        return {
            "id": self.call.id[:64],
            "name": self.call.name[:64],
            # As the model wrote them when they were not a valid object (bounded).
            "arguments": arguments
            if arguments is not None
            else self.call.arguments[:EXCERPT_CHARS],
            "status": self.status,
            "result": self.content[:EXCERPT_CHARS],
            "ms": self.ms,
            **({"passages": self.passages} if self.passages else {}),
        }


def _registered_definition(builtin: builtins.Builtin, tenant_id: object) -> dict:
    description = builtin.description
    if builtin.describe_now is not None:
        try:
            description = f"{description} {builtin.describe_now(tenant_id=tenant_id)}"
        except Exception:  # the call goes on; the model reads the plain description
            logger.exception("built-in tool description failed", extra={"tool": builtin.name})
    return {"name": builtin.name, "description": description, "parameters": builtin.parameters}


def _failed(call: ToolCall, status: str, message: str, **extra: object) -> Outcome:
    return Outcome(call=call, status=status, content=json.dumps({"error": message}), **extra)


@dataclass
class Toolbox:
    """The tools an assistant may use on one call."""

    tenant_id: object = None
    assistant_id: object = None
    language: str = "en-US"
    transfer_call: bool = False
    end_call: bool = False
    lookup_knowledge: bool = False
    knowledge_in_prompt: bool = False
    destinations: dict[str, str] = field(default_factory=dict)  # name -> E.164 number
    http: dict[str, HttpToolSpec] = field(default_factory=dict)
    # Registered built-ins switched on: name -> their definition for the model.
    registered: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, *, assistant_id: object, tenant_id: object, language: str) -> Toolbox:
        """The assistant's tools, read from the database (inside the tenant's scope)."""
        box = cls(tenant_id=tenant_id, assistant_id=assistant_id, language=language)
        switches = BuiltinTools.objects.filter(tenant_id=tenant_id, assistant_id=assistant_id)
        if (builtin := switches.first()) is not None:
            box.transfer_call, box.end_call = builtin.transfer_call, builtin.end_call
            box.lookup_knowledge = builtin.lookup_knowledge
            box.knowledge_in_prompt = builtin.knowledge_in_prompt
            for name in builtin.registered or []:
                if (registered := builtins.get(name)) is not None:
                    box.registered[name] = _registered_definition(registered, tenant_id)
        if box.transfer_call:
            destinations = TransferDestination.objects.filter(
                tenant_id=tenant_id, assistant_id=assistant_id
            )
            box.destinations = dict(destinations.values_list("name", "number"))
        tools = HttpTool.objects.filter(tenant_id=tenant_id, assistant_id=assistant_id, active=True)
        for tool in tools:
            try:
                headers, secret = tool.get_headers(), tool.get_signing_secret()
            except ValueError:  # the encryption keys changed without a fallback: not offered
                logger.error("tool secrets unreadable; tool left out", extra={"tool": tool.name})
                continue
            box.http[tool.name] = HttpToolSpec(
                name=tool.name,
                description=tool.description,
                parameters=tool.parameters,
                url=tool.url,
                method=tool.method,
                timeout=tool.timeout_seconds,
                headers=headers,
                secret=secret,
            )
        return box

    def definitions(self) -> list[dict]:
        """The tools in OpenAI's `tools` form (empty: the model is offered none)."""
        functions = [
            {"name": s.name, "description": s.description, "parameters": s.parameters}
            for s in self.http.values()
        ]
        if self.transfer_call and self.destinations:
            functions.append(self._transfer_definition())
        if self.end_call:
            functions.append(
                {
                    "name": END_CALL,
                    "description": "End the call when the caller is done or says goodbye.",
                    "parameters": {"type": "object", "properties": {}},
                }
            )
        functions.extend(self.registered.values())
        if self.lookup_knowledge:
            functions.append(
                {
                    "name": LOOKUP_KNOWLEDGE,
                    "description": "Search the business's documents for facts to answer with.",
                    "parameters": {
                        "type": "object",
                        "properties": {"query": {"type": "string", "description": "What to find."}},
                        "required": ["query"],
                    },
                }
            )
        return [{"type": "function", "function": function} for function in functions]

    def _transfer_definition(self) -> dict:
        return {
            "name": TRANSFER_CALL,
            "description": "Transfer the caller to a person when they ask for one.",
            "parameters": {
                "type": "object",
                "properties": {
                    "destination": {"type": "string", "enum": sorted(self.destinations)}
                },
                "required": ["destination"],
            },
        }

    def schema_of(self, name: str) -> dict | None:
        for tool in self.definitions():
            if tool["function"]["name"] == name:
                return tool["function"]["parameters"]
        return None

    # --- running -------------------------------------------------------------------------------

    async def run(
        self,
        call: ToolCall,
        *,
        facts: CallFacts,
        deadline: float,
        database: Callable[[Callable], Callable],
    ) -> Outcome:
        """Run one tool call within `deadline` (monotonic). `database` runs a query from the
        event loop (the conversation's way). Never raises."""
        started = time.monotonic()
        outcome = await self._run(call, facts=facts, deadline=deadline, database=database)
        outcome.ms = round((time.monotonic() - started) * 1000)
        return outcome

    async def _run(
        self,
        call: ToolCall,
        *,
        facts: CallFacts,
        deadline: float,
        database: Callable[[Callable], Callable],
    ) -> Outcome:
        schema = self.schema_of(call.name)
        if schema is None:
            return _failed(call, "refused", f"There is no tool called {call.name[:64]!r}.")
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            return _failed(call, "invalid", "The arguments are not valid JSON.")
        if not isinstance(arguments, dict):
            return _failed(call, "invalid", "The arguments must be a JSON object.")
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(arguments)]
        if errors:
            return _failed(call, "invalid", "Invalid arguments: " + "; ".join(errors)[:500])
        if call.name == TRANSFER_CALL:
            destination = arguments["destination"]
            number = self.destinations[destination]
            action = {"transfer": True, "destination": destination, "number": number}
            content = json.dumps({"transferring_to": destination})
            return Outcome(
                call=call, status="ok", content=content, arguments=arguments, action=action
            )
        if call.name == END_CALL:
            content = json.dumps({"ending": True})
            return Outcome(call, "ok", content, arguments=arguments, action={"hangup": True})
        if call.name == LOOKUP_KNOWLEDGE:
            return await self._lookup(call, arguments, database)
        if call.name in self.registered:
            return await self._builtin(call, arguments, facts, deadline, database)
        return await self._request(self.http[call.name], call, arguments, facts, deadline)

    async def _lookup(
        self, call: ToolCall, arguments: dict, database: Callable[[Callable], Callable]
    ) -> Outcome:
        hits = await database(self.search)(str(arguments["query"]))
        content = json.dumps([{"title": h.title, "text": h.text} for h in hits])
        passages = [hit.as_dict() for hit in hits]
        return Outcome(call, "ok", content[:RESULT_CHARS], arguments=arguments, passages=passages)

    async def _builtin(
        self,
        call: ToolCall,
        arguments: dict,
        facts: CallFacts,
        deadline: float,
        database: Callable[[Callable], Callable],
    ) -> Outcome:
        """Run a registered built-in's handler within the deadline; a handler that raises is
        a failed tool."""
        builtin = builtins.get(call.name)
        if builtin is None:  # its app stopped offering it since the call started
            return _failed(call, "refused", f"There is no tool called {call.name[:64]!r}.")
        context = builtins.BuiltinContext(
            call_id=facts.id,
            tenant_id=self.tenant_id,
            assistant_id=self.assistant_id,
            language=self.language,
            database=database,
        )
        try:
            result = await asyncio.wait_for(
                builtin.handler(context, arguments), timeout=max(deadline - time.monotonic(), 0)
            )
        except TimeoutError:
            return _failed(call, "timeout", "The tool did not answer in time.", arguments=arguments)
        except Exception:
            logger.exception("built-in tool failed", extra={"tool": call.name})
            return _failed(call, "error", "The tool failed.", arguments=arguments)
        content = json.dumps(result.data)[:RESULT_CHARS]
        status = "ok" if result.ok else "error"
        return Outcome(call, status, content, arguments=arguments)

    def search(self, question: str) -> list[Hit]:
        """The tenant's passages for `question` (runs in a database thread)."""
        return passages_search(
            tenant_id=self.tenant_id,
            question=question,
            language=self.language,
            limit=KNOWLEDGE_HITS,
        )

    def prompt_passages(self, utterance: str) -> list[Hit]:
        """Passages that match the caller's words strongly enough to put in the prompt (only
        when switched on; runs in a database thread)."""
        if not self.knowledge_in_prompt:
            return []
        minimum = settings.KNOWLEDGE_PROMPT_MIN_RANK
        return [hit for hit in self.search(utterance) if hit.rank >= minimum]

    async def _request(
        self,
        spec: HttpToolSpec,
        call: ToolCall,
        arguments: dict,
        facts: CallFacts,
        deadline: float,
    ) -> Outcome:
        """Post the arguments to the tenant's server, signed; its answer is the result."""
        timeout = min(spec.timeout, deadline - time.monotonic())
        if timeout <= 0:
            return _failed(
                call, "timeout", "No time was left to run the tool.", arguments=arguments
            )
        body = json.dumps(
            {"tool": spec.name, "arguments": arguments, "call": facts.as_dict()},
            separators=(",", ":"),
        ).encode()
        headers = {
            **spec.headers,
            "Content-Type": "application/json",
            **signed_headers(body=body, message_id=new_message_id(), secrets_in_use=[spec.secret]),
        }
        try:
            answer = await outbound.arequest(
                spec.method, spec.url, headers=headers, content=body, timeout=timeout
            )
        except outbound.OutboundRefused as exc:
            return _failed(
                call, "refused", f"The tool's address is not allowed: {exc}", arguments=arguments
            )
        except TimeoutError:
            return _failed(call, "timeout", "The tool did not answer in time.", arguments=arguments)
        except httpx.HTTPError as exc:
            message = f"The tool could not be reached ({type(exc).__name__})."
            return _failed(call, "error", message, arguments=arguments)
        if not answer.ok:
            message = f"The tool answered HTTP {answer.status}."
            return _failed(call, "error", message, arguments=arguments)
        return Outcome(call, "ok", answer.text(RESULT_CHARS), arguments=arguments)


async def run_all(
    toolbox: Toolbox,
    calls: list[ToolCall],
    *,
    facts: CallFacts,
    deadline: float,
    database: Callable[[Callable], Callable],
) -> list[Outcome]:
    """Run the calls the model asked for at once, results in the model's order."""
    return list(
        await asyncio.gather(
            *(
                toolbox.run(call, facts=facts, deadline=deadline, database=database)
                for call in calls
            )
        )
    )
