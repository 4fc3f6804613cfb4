"""Built-in tools that higher apps give assistants, registered by name.

The conversation engine sits below the apps that know how to do some things a caller asks for
(campaigns places calls). Such an app registers a `Builtin` here from its `AppConfig.ready()`; an
assistant switches it on by name (`BuiltinTools.registered`), and the Toolbox offers it to the
model beside the tenant's HTTP tools and runs its handler when the model asks for it.

A handler is async, takes a `BuiltinContext` and the model's arguments (already checked against
the tool's JSON Schema), and returns a `BuiltinResult`. It runs database work through
`context.database` (the conversation's way off the event loop). A handler that raises is caught
by the Toolbox: the model hears that the tool failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BuiltinContext:
    """What a built-in tool knows about the call it runs for."""

    call_id: str
    tenant_id: object
    assistant_id: object
    language: str
    database: Callable[[Callable], Callable]


@dataclass(frozen=True)
class BuiltinResult:
    """What came of a built-in tool: `data` is what the model reads (JSON); `ok` False when
    the tool refused or failed (then `data` says why, and what to tell the caller)."""

    data: dict
    ok: bool = True


@dataclass(frozen=True)
class Builtin:
    name: str
    label: str  # for the admin and the API: what switching it on does
    description: str  # what the model reads
    parameters: dict  # JSON Schema of an object
    handler: Callable[[BuiltinContext, dict], Awaitable[BuiltinResult]]
    # Words added to the description when the call starts, e.g. the tenant's date and time
    # (runs in a database thread, inside the tenant's scope).
    describe_now: Callable[..., str] | None = field(default=None, compare=False)


_registry: dict[str, Builtin] = {}


def register(builtin: Builtin) -> None:
    """Offer `builtin` to assistants (again with the same name: replaced)."""
    _registry[builtin.name] = builtin


def unregister(name: str) -> None:
    """Offer `name` no more (an assistant that switched it on is simply not offered it)."""
    _registry.pop(name, None)


def get(name: str) -> Builtin | None:
    return _registry.get(name)


def names() -> list[str]:
    return sorted(_registry)


def choices() -> list[tuple[str, str]]:
    """(name, label) of every registered built-in, for forms."""
    return [(name, _registry[name].label) for name in names()]
