"""PostgreSQL, with a connection pool that checks only the connections that sat idle.

Django has its pool check every connection it hands out (`CONN_HEALTH_CHECKS`): one more round
trip to the server for every webhook and for every turn a conversation stores, each a hand-off
between threads on a busy process. A connection handed back a moment ago is as good as it was
then; one idle for `DB_POOL_CHECK_IDLE_SECONDS` or longer is checked, so that connections broken
meanwhile (the database restarted, a firewall's idle timeout) are replaced before they are used.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

# When the pool last had the connection back (time.monotonic()), noted on the connection.
RETURNED_AT = "pool_returned_at"


def check_if_idle(connection) -> None:
    """The pool's check: a round trip to the server for a connection idle long enough."""
    idle = time.monotonic() - getattr(connection, RETURNED_AT, float("-inf"))
    if idle >= settings.DB_POOL_CHECK_IDLE_SECONDS:
        ConnectionPool.check_connection(connection)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias != NO_DB_ALIAS and options and self.alias not in self._connection_pools:
            # As Django makes it, with the check above.
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            connect_kwargs = {**self.get_connection_params(), "autocommit": True}
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check=check_if_idle if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return super().pool

    def _close(self) -> None:
        if self.connection is not None and self.pool:
            setattr(self.connection, RETURNED_AT, time.monotonic())
        super()._close()
