"""Tools for tenant A's assistant (and tenant B's, the outsider's), served by a real HTTP
server on loopback: a booking tool, a stock check, a slow, a failing and a hanging tool, the
built-ins, and a knowledge base of each tenant."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from knowledge.services import document_create
from tools.models import HttpTool
from tools.services import builtin_tools_set, http_tool_create, transfer_destination_create

BOOKING_SCHEMA = {
    "type": "object",
    "properties": {
        "service": {"type": "string", "description": "What to book."},
        "day": {"type": "string", "description": "Which day."},
    },
    "required": ["service", "day"],
    "additionalProperties": False,
}
ITEM_SCHEMA = {
    "type": "object",
    "properties": {"item": {"type": "string"}},
    "required": ["item"],
}


def tool(
    assistant, tool_server, name: str, path: str, schema: dict = ITEM_SCHEMA, **kw
) -> HttpTool:
    with scopes_disabled():
        return http_tool_create(
            assistant=assistant,
            name=name,
            description=f"The {name} tool.",
            parameters=schema,
            url=tool_server.url(path),
            **kw,
        )


@pytest.fixture
def tools_a(assistant_a, tool_server) -> dict[str, HttpTool]:
    """Tenant A's assistant with its tools, built-ins and two transfer destinations."""
    tool_server.route(
        "/book",
        answer=lambda r: {
            "message": f"Booked: {r['arguments']['service']} "
            f"on {r['arguments']['day']}, reference AB12."
        },
    )
    tool_server.route("/stock", body={"message": "We have 3 boilers in stock."})
    tool_server.route("/slow", body={"message": "The van is 10 minutes away."}, delay=2.0)
    tool_server.route("/fail", body={"error": "database down"}, status=500)
    tool_server.route("/hang", body={"message": "too late"}, delay=30)
    tools = {
        "book": tool(
            assistant_a,
            tool_server,
            "book_appointment",
            "/book",
            BOOKING_SCHEMA,
            headers={"Authorization": "Bearer acme-secret-token"},
        ),
        "stock": tool(assistant_a, tool_server, "check_stock", "/stock"),
        "slow": tool(assistant_a, tool_server, "track_van", "/slow"),
        "fail": tool(assistant_a, tool_server, "check_invoice", "/fail"),
        "hang": tool(assistant_a, tool_server, "check_warranty", "/hang", timeout_seconds=1.0),
    }
    with scopes_disabled():
        builtin_tools_set(
            assistant=assistant_a, transfer_call=True, end_call=True, lookup_knowledge=True
        )
        transfer_destination_create(assistant=assistant_a, name="front desk", number="+15005550002")
        transfer_destination_create(assistant=assistant_a, name="billing", number="+15005550003")
        document_create(
            tenant=assistant_a.tenant,
            title="Parking",
            text="Customers park for free behind the workshop on Mill Lane.",
        )
    return tools


@pytest.fixture
def tools_b(assistant_b, tool_server) -> HttpTool:
    """Tenant B's own tool and knowledge, which tenant A's calls must never touch."""
    tool_server.route("/bravo", body={"message": "Bravo's secret order list."})
    with scopes_disabled():
        builtin_tools_set(assistant=assistant_b, lookup_knowledge=True)
        document_create(
            tenant=assistant_b.tenant,
            title="Bravo parking",
            text="Bravo Bakery customers park at the secret garage on Baker Street.",
        )
    return tool(assistant_b, tool_server, "book_appointment", "/bravo", BOOKING_SCHEMA)
