"""Writes of the tools app: an assistant's HTTP tools, transfer destinations and built-ins."""

from __future__ import annotations

from assistants.models import AssistantConfig
from tools.models import BuiltinTools, HttpTool, TransferDestination, validate_headers

HTTP_TOOL_FIELDS = frozenset(
    {"name", "description", "parameters", "url", "method", "timeout_seconds", "active"}
)
BUILTIN_FIELDS = frozenset(
    {"transfer_call", "end_call", "lookup_knowledge", "knowledge_in_prompt", "registered"}
)


def http_tool_create(
    *, assistant: AssistantConfig, headers: dict[str, str] | None = None, **fields: object
) -> HttpTool:
    """A new HTTP tool with its own signing secret; `headers` are stored encrypted."""
    tool = HttpTool(tenant_id=assistant.tenant_id, assistant=assistant, **fields)
    tool.set_headers(validate_headers(headers or {}))
    tool.ensure_signing_secret()
    tool.full_clean()
    tool.save()
    return tool


def http_tool_update(
    *, tool: HttpTool, headers: dict[str, str] | None = None, **fields: object
) -> HttpTool:
    """Change a tool; `headers` (when given) replace the stored ones, else they stay."""
    for name, value in fields.items():
        setattr(tool, name, value)
    if headers is not None:
        tool.set_headers(validate_headers(headers))
    tool.full_clean()
    tool.save()
    return tool


def http_tool_delete(*, tool: HttpTool) -> None:
    tool.delete()


def transfer_destination_create(
    *, assistant: AssistantConfig, name: str, number: str, description: str = ""
) -> TransferDestination:
    destination = TransferDestination(
        tenant_id=assistant.tenant_id,
        assistant=assistant,
        name=name,
        number=number,
        description=description,
    )
    destination.full_clean()
    destination.save()
    return destination


def transfer_destination_update(
    *, destination: TransferDestination, **fields: object
) -> TransferDestination:
    for name, value in fields.items():
        setattr(destination, name, value)
    destination.full_clean()
    destination.save()
    return destination


def builtin_tools_set(*, assistant: AssistantConfig, **switches: object) -> BuiltinTools:
    """Switch the assistant's built-in tools on or off (the ones not named keep their state);
    `registered` lists the registered built-ins switched on (`tools.builtins`)."""
    builtin, _ = BuiltinTools.objects.get_or_create(
        assistant=assistant, defaults={"tenant_id": assistant.tenant_id}
    )
    for name, value in switches.items():
        setattr(builtin, name, value)
    builtin.full_clean()
    builtin.save()
    return builtin
