"""The database pool checks only connections that sat idle (core/postgresql/base.py)."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import OperationalError, connection

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not connection.settings_dict["OPTIONS"].get("pool"),
        reason="the pool is PostgreSQL's",
    ),
]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate(pid: int) -> None:
    """End a server process from outside, as a database restart does."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)


@pytest.fixture
def one_connection():
    """A pool of one connection, so that the next query gets the connection just returned."""
    options = connection.settings_dict["OPTIONS"]
    configured = options["pool"]
    connection.close()
    connection.close_pool()
    options["pool"] = {**configured, "min_size": 1, "max_size": 1}
    yield
    connection.close()
    connection.close_pool()  # the next test gets a pool of the configured size
    options["pool"] = configured


def test_a_connection_broken_while_idle_is_replaced_before_use(one_connection, settings):
    settings.DB_POOL_CHECK_IDLE_SECONDS = 0.3
    broken = _backend_pid()
    connection.close()  # back to the pool
    _terminate(broken)
    time.sleep(0.3)  # idle past the threshold: checked, and replaced
    assert _backend_pid() != broken


def test_a_connection_handed_back_a_moment_ago_is_used_without_a_check(one_connection, settings):
    """No round trip for it; the price: broken in that moment, it fails once, and is dropped."""
    settings.DB_POOL_CHECK_IDLE_SECONDS = 60
    broken = _backend_pid()
    connection.close()
    _terminate(broken)
    with pytest.raises(OperationalError):
        _backend_pid()
    connection.close()  # as at the end of the request: the broken connection is let go
    assert _backend_pid() != broken
