"""What the toolbox offers the model for one call, read from the assistant's settings."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from tools.models import HttpTool
from tools.services import builtin_tools_set, http_tool_create, transfer_destination_create
from tools.toolbox import Toolbox

pytestmark = pytest.mark.django_db


def load(assistant) -> Toolbox:
    with scopes_disabled():
        return Toolbox.load(
            assistant_id=assistant.id, tenant_id=assistant.tenant_id, language="en-US"
        )


def offered(assistant) -> dict[str, dict]:
    return {t["function"]["name"]: t["function"] for t in load(assistant).definitions()}


def test_nothing_is_offered_until_switched_on(assistant_a):
    assert offered(assistant_a) == {}


def test_transfers_are_offered_only_with_destinations(assistant_a, assistant_b):
    with scopes_disabled():
        builtin_tools_set(assistant=assistant_a, transfer_call=True, end_call=True)
        assert set(offered(assistant_a)) == {"end_call"}
        transfer_destination_create(assistant=assistant_a, name="billing", number="+15005550003")
        transfer_destination_create(assistant=assistant_b, name="kitchen", number="+15005550004")
    schema = offered(assistant_a)["transfer_call"]["parameters"]
    assert schema["properties"]["destination"]["enum"] == ["billing"]
    assert load(assistant_a).destinations == {"billing": "+15005550003"}


def test_inactive_and_other_assistants_tools_are_not_offered(assistant_a, assistant_b):
    with scopes_disabled():
        for assistant, name, active in [
            (assistant_a, "on", True),
            (assistant_a, "off", False),
            (assistant_b, "theirs", True),
        ]:
            http_tool_create(
                assistant=assistant,
                name=name,
                description=name,
                parameters={"type": "object", "properties": {}},
                url="https://hooks.example.com/x",
                active=active,
            )
    assert set(offered(assistant_a)) == {"on"}


def test_a_tool_whose_secrets_cannot_be_read_is_left_out_not_fatal(assistant_a):
    with scopes_disabled():
        builtin_tools_set(assistant=assistant_a, end_call=True)
        tool = http_tool_create(
            assistant=assistant_a,
            name="book",
            description="Book.",
            parameters={"type": "object", "properties": {}},
            url="https://hooks.example.com/book",
        )
        HttpTool.objects.filter(pk=tool.pk).update(signing_secret_encrypted="garbage")
    assert set(offered(assistant_a)) == {"end_call"}
