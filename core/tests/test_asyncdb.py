"""Database work from the event loop: what `database_async` promises, and that it keeps it."""

from __future__ import annotations

import threading
import typing
from collections.abc import Awaitable

from asgiref.sync import async_to_sync
from django_scopes import get_scope, scope

from core.asyncdb import database_async
from core.logging import current_log_context, log_context


def test_its_annotation_says_it_returns_something_to_await():
    returns = typing.get_type_hints(database_async)["return"]
    assert typing.get_origin(typing.get_args(returns)[1]) is Awaitable


def test_it_runs_the_function_in_a_pool_thread_with_the_callers_scope_and_log_context():
    def work(x: int) -> tuple[int, str, dict, dict]:
        return x * 2, threading.current_thread().name, dict(get_scope()), current_log_context()

    async def run():
        with scope(tenant=["t1"]), log_context(call_sid="CA1"):
            return await database_async(work)(21)

    value, thread, scopes, context = async_to_sync(run)()
    assert value == 42 and thread.startswith("db")
    assert scopes.get("tenant") == ["t1"] and context.get("call_sid") == "CA1"
