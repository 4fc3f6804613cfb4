from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from core.logging import current_log_context, log_context


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the configured JSON console handler writes, redirected to a buffer."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def records(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_a_log_line_inside_a_context_carries_tenant_and_call_sid(json_lines: io.StringIO) -> None:
    with log_context(tenant="acme", call_sid="CA123"):
        logging.getLogger("calls.webhooks").warning("call answered")
    (record,) = records(json_lines)
    assert record["message"] == "call answered"
    assert record["tenant"] == "acme"
    assert record["call_sid"] == "CA123"
    assert record["level"] == "WARNING"
    assert record["logger"] == "calls.webhooks"
    assert "time" in record


def test_a_log_line_outside_any_context_has_no_tenant(json_lines: io.StringIO) -> None:
    with log_context(tenant="acme"):
        pass
    logging.getLogger("calls.webhooks").warning("no call")
    (record,) = records(json_lines)
    assert "tenant" not in record and "call_sid" not in record


def test_nested_contexts_add_to_each_other_and_unwind(json_lines: io.StringIO) -> None:
    logger = logging.getLogger("calls.pipeline")
    with log_context(tenant="acme"):
        with log_context(call_sid="CA123", turn=3):
            logger.warning("inner")
        logger.warning("outer")
    inner, outer = records(json_lines)
    assert (inner["tenant"], inner["call_sid"], inner["turn"]) == ("acme", "CA123", "3")
    assert outer["tenant"] == "acme" and "call_sid" not in outer
    assert current_log_context() == {}


def test_empty_values_are_left_out_and_explicit_extras_win(json_lines: io.StringIO) -> None:
    with log_context(tenant="acme", call_sid=None):
        logging.getLogger("calls").warning("explicit", extra={"tenant": "bravo"})
    (record,) = records(json_lines)
    assert record["tenant"] == "bravo"
    assert "call_sid" not in record


def test_the_context_follows_a_call_into_sync_code_run_from_async(
    json_lines: io.StringIO,
) -> None:
    def handle() -> None:
        logging.getLogger("calls.consumers").warning("from a thread")

    async def consumer() -> None:
        with log_context(tenant="acme", call_sid="CA999"):
            await sync_to_async(handle)()

    async_to_sync(consumer)()
    (record,) = records(json_lines)
    assert (record["tenant"], record["call_sid"]) == ("acme", "CA999")
