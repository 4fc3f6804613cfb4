"""An assistant's tools in its versions: frozen when the draft is published, and made into the
`Toolbox` of a call that runs on the version.

A version keeps each tool's definition (what the model is offered and where it is sent); the
headers and signing secret stay encrypted on the tool and are read when the call starts, so a
version holds no secret. A tool deleted since the version was published is left out.
"""

from __future__ import annotations

import logging

from assistants.models import AssistantConfig
from tools.models import BuiltinTools, HttpTool, TransferDestination
from tools.toolbox import HttpToolSpec, Toolbox

logger = logging.getLogger(__name__)


def tools_freeze(assistant: AssistantConfig) -> dict:
    """The assistant's tools as a version keeps them (JSON)."""
    tenant_id = assistant.tenant_id
    builtin = BuiltinTools.objects.filter(tenant_id=tenant_id, assistant=assistant).first()
    destinations = TransferDestination.objects.filter(tenant_id=tenant_id, assistant=assistant)
    http = HttpTool.objects.filter(tenant_id=tenant_id, assistant=assistant, active=True)
    return {
        "builtin": {
            "transfer_call": bool(builtin and builtin.transfer_call),
            "end_call": bool(builtin and builtin.end_call),
            "lookup_knowledge": bool(builtin and builtin.lookup_knowledge),
            "knowledge_in_prompt": bool(builtin and builtin.knowledge_in_prompt),
        },
        "destinations": dict(sorted(destinations.values_list("name", "number"))),
        "http": [
            {
                "id": str(tool.id),
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "url": tool.url,
                "method": tool.method,
                "timeout": tool.timeout_seconds,
            }
            for tool in http.order_by("name")
        ],
    }


def toolbox_thaw(frozen: dict, *, tenant_id: object, language: str) -> Toolbox:
    """The toolbox of a call on a version whose tools part is `frozen` (inside the tenant's
    scope; reads the tools' secrets)."""
    builtin = frozen.get("builtin") or {}
    box = Toolbox(
        tenant_id=tenant_id,
        language=language,
        transfer_call=bool(builtin.get("transfer_call")),
        end_call=bool(builtin.get("end_call")),
        lookup_knowledge=bool(builtin.get("lookup_knowledge")),
        knowledge_in_prompt=bool(builtin.get("knowledge_in_prompt")),
        destinations=dict(frozen.get("destinations") or {}) if builtin.get("transfer_call") else {},
    )
    specs = frozen.get("http") or []
    if not specs:
        return box
    rows = HttpTool.objects.filter(tenant_id=tenant_id, id__in=[spec["id"] for spec in specs])
    secrets = {str(row.id): row for row in rows}
    for spec in specs:
        row = secrets.get(spec["id"])
        if row is None:
            logger.warning("a version's tool was deleted; left out", extra={"tool": spec["name"]})
            continue
        try:
            headers, secret = row.get_headers(), row.get_signing_secret()
        except ValueError:
            logger.error("tool secrets unreadable; tool left out", extra={"tool": spec["name"]})
            continue
        box.http[spec["name"]] = HttpToolSpec(
            name=spec["name"],
            description=spec["description"],
            parameters=spec["parameters"],
            url=spec["url"],
            method=spec["method"],
            timeout=float(spec["timeout"]),
            headers=headers,
            secret=secret,
        )
    return box
