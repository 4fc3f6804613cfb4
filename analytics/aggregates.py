"""A nearest-rank percentile aggregate for PostgreSQL and SQLite.

PostgreSQL has `percentile_disc(f) WITHIN GROUP (ORDER BY x)`; SQLite has no percentile, so the
same aggregate is registered on each SQLite connection (see AnalyticsConfig.ready). Both return
the smallest value whose cumulative share reaches the fraction (nearest rank), ignoring NULLs.
"""

from __future__ import annotations

import math

from django.db.models import Aggregate, FloatField


class Percentile(Aggregate):
    function = "PERCENTILE_DISC"
    output_field = FloatField()
    allow_distinct = False

    def __init__(self, expression, fraction: float, **extra) -> None:
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("a percentile fraction is between 0 and 1")
        self.fraction = fraction
        # SQLite: the two-argument aggregate registered on each connection.
        self.template = f"%(function)s(%(distinct)s%(expressions)s, {fraction!r})"
        super().__init__(expression, **extra)

    def as_postgresql(self, compiler, connection, **extra_context):
        clone = self.copy()
        clone.template = f"%(function)s({self.fraction!r}) WITHIN GROUP (ORDER BY %(expressions)s)"
        return super(Percentile, clone).as_sql(compiler, connection, **extra_context)


class SQLitePercentileDisc:
    """`PERCENTILE_DISC(value, fraction)` for SQLite connections (nearest rank)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fraction = 0.5

    def step(self, value, fraction) -> None:
        if fraction is not None:
            self.fraction = float(fraction)
        if value is not None:
            self.values.append(value)

    def finalize(self):
        if not self.values:
            return None
        self.values.sort()
        rank = max(math.ceil(self.fraction * len(self.values)), 1)
        return self.values[rank - 1]


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate("PERCENTILE_DISC", 2, SQLitePercentileDisc)
