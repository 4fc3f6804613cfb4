"""Built-in tools registered by the apps above the engine: switched on per assistant, offered
to the model beside the others, run by the toolbox; a handler that fails is a failed tool."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from django.core.exceptions import ValidationError
from django_scopes import scopes_disabled

from providers.llm import ToolCall
from tools import builtins
from tools.services import builtin_tools_set, http_tool_create
from tools.toolbox import CallFacts, Toolbox

pytestmark = pytest.mark.django_db

SCHEMA = {
    "type": "object",
    "properties": {"thing": {"type": "string"}},
    "required": ["thing"],
    "additionalProperties": False,
}
seen: list[builtins.BuiltinContext] = []


async def _echo(context: builtins.BuiltinContext, arguments: dict) -> builtins.BuiltinResult:
    seen.append(context)
    if arguments["thing"] == "nothing":
        return builtins.BuiltinResult({"error": "nothing to echo"}, ok=False)
    return builtins.BuiltinResult({"echo": arguments["thing"]})


async def _broken(context: builtins.BuiltinContext, arguments: dict) -> builtins.BuiltinResult:
    raise RuntimeError("the back office is down")


@pytest.fixture(autouse=True)
def registered():
    seen.clear()
    builtins.register(
        builtins.Builtin(
            name="echo_thing",
            label="Echo",
            description="Say a thing back.",
            parameters=SCHEMA,
            handler=_echo,
            describe_now=lambda *, tenant_id: f"Tenant {tenant_id}.",
        )
    )
    builtins.register(
        builtins.Builtin(
            name="broken_thing",
            label="Broken",
            description="Always fails.",
            parameters=SCHEMA,
            handler=_broken,
        )
    )
    yield
    builtins.unregister("echo_thing")
    builtins.unregister("broken_thing")


def _load(assistant) -> Toolbox:
    with scopes_disabled():
        return Toolbox.load(
            assistant_id=assistant.id, tenant_id=assistant.tenant_id, language="de-DE"
        )


def _run(box: Toolbox, name: str, arguments: str):
    facts = CallFacts(id="call-1", sid="CA1", from_number="+1", to_number="+2", mode="gather")
    call = ToolCall(id="t1", name=name, arguments=arguments)

    def database(fn):
        async def run(*args, **kwargs):
            return fn(*args, **kwargs)

        return run

    return asyncio.run(box.run(call, facts=facts, deadline=time.monotonic() + 5, database=database))


def test_a_registered_tool_is_offered_only_when_switched_on(assistant_a, assistant_b):
    with scopes_disabled():
        builtin_tools_set(assistant=assistant_a, registered=["echo_thing"])
        builtin_tools_set(assistant=assistant_b, end_call=True)

    offered = {t["function"]["name"]: t["function"] for t in _load(assistant_a).definitions()}
    assert set(offered) == {"echo_thing"}
    assert offered["echo_thing"]["description"] == (
        f"Say a thing back. Tenant {assistant_a.tenant_id}."
    )
    assert offered["echo_thing"]["parameters"] == SCHEMA
    assert "echo_thing" not in [t["function"]["name"] for t in _load(assistant_b).definitions()]


def test_the_toolbox_runs_it_with_the_calls_context(assistant_a):
    with scopes_disabled():
        builtin_tools_set(assistant=assistant_a, registered=["echo_thing"])
    box = _load(assistant_a)

    done = _run(box, "echo_thing", '{"thing": "hello"}')
    refused = _run(box, "echo_thing", '{"thing": "nothing"}')
    invalid = _run(box, "echo_thing", '{"thing": 3}')

    assert (done.status, json.loads(done.content)) == ("ok", {"echo": "hello"})
    assert (refused.status, json.loads(refused.content)) == ("error", {"error": "nothing to echo"})
    assert invalid.status == "invalid"
    assert done.action is None  # neither a transfer nor a hang-up
    context = seen[0]
    assert (context.call_id, context.language) == ("call-1", "de-DE")
    assert (context.tenant_id, context.assistant_id) == (assistant_a.tenant_id, assistant_a.id)


def test_a_handler_that_raises_is_a_failed_tool(assistant_a):
    with scopes_disabled():
        builtin_tools_set(assistant=assistant_a, registered=["broken_thing"])

    outcome = _run(_load(assistant_a), "broken_thing", '{"thing": "x"}')

    assert outcome.status == "error"
    assert json.loads(outcome.content) == {"error": "The tool failed."}
    assert "back office" not in outcome.content  # internals stay out of the model's context


def test_a_tool_no_longer_registered_is_not_offered(assistant_a):
    with scopes_disabled():
        builtin_tools_set(assistant=assistant_a, registered=["echo_thing"])
    builtins.unregister("echo_thing")

    box = _load(assistant_a)
    assert box.definitions() == []
    assert _run(box, "echo_thing", '{"thing": "x"}').status == "refused"


def test_unknown_names_and_clashing_http_tools_are_refused(assistant_a, tool_server):
    with scopes_disabled(), pytest.raises(ValidationError, match="launch_rockets"):
        builtin_tools_set(assistant=assistant_a, registered=["launch_rockets"])
    with scopes_disabled(), pytest.raises(ValidationError, match="built-in tool"):
        http_tool_create(
            assistant=assistant_a,
            name="echo_thing",
            description="Mine.",
            parameters=SCHEMA,
            url=tool_server.url("/echo"),
        )


def test_a_handler_slower_than_the_turns_deadline_is_a_timeout(assistant_a):
    async def _slow(context, arguments):
        await asyncio.sleep(5)
        return builtins.BuiltinResult({"late": True})

    builtins.register(
        builtins.Builtin(
            name="slow_thing", label="Slow", description="Slow.", parameters=SCHEMA, handler=_slow
        )
    )
    try:
        with scopes_disabled():
            builtin_tools_set(assistant=assistant_a, registered=["slow_thing"])
        box = _load(assistant_a)
        facts = CallFacts(id="c", sid="CA1", from_number="+1", to_number="+2", mode="gather")
        call = ToolCall(id="t1", name="slow_thing", arguments='{"thing": "x"}')
        started = time.monotonic()
        outcome = asyncio.run(
            box.run(call, facts=facts, deadline=time.monotonic() + 0.3, database=lambda fn: fn)
        )
    finally:
        builtins.unregister("slow_thing")

    assert outcome.status == "timeout"
    assert time.monotonic() - started < 2
