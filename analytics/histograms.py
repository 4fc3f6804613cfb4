"""Latency histograms of the hourly rollups: fixed, log-spaced buckets about 5 % wide.

A histogram is a dict {lower edge in ms: count} holding only the buckets that are not empty (in
JSON the edges are strings). Bucket edges are whole milliseconds: every millisecond up to 20 ms
has a bucket of its own, then each bucket is ~5 % wider than the one before, up to 60 s; the last
bucket holds everything from 60 s up. Percentiles of a histogram use nearest rank, like the exact
ones, and report the bucket's middle value: the true percentile lies in the same bucket.

Changing the edges changes what stored histograms mean: bump ROLLUP_VERSION (analytics.models)
so the rollups are rebuilt.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping

MAX_MS = 60_000
GROWTH = 1.05


def _edges() -> tuple[int, ...]:
    edges, i = {0, MAX_MS}, 0
    while (edge := math.ceil(GROWTH**i)) < MAX_MS:
        edges.add(edge)
        i += 1
    return tuple(sorted(edges))


EDGES = _edges()
_NEXT = dict(zip(EDGES, EDGES[1:], strict=False))


def bucket(value: int | float) -> int:
    """The lower edge of the bucket holding `value` (ms; negative values count as 0)."""
    return EDGES[max(bisect_right(EDGES, value) - 1, 0)]


def representative(edge: int) -> int:
    """The value a percentile in the bucket starting at `edge` is reported as: the middle
    whole millisecond of the bucket (the edge itself for one-millisecond buckets and for the
    last, open-ended one)."""
    upper = _NEXT.get(edge)
    return edge if upper is None else (edge + upper - 1) // 2


def histogram(values: Iterable[int | float | None]) -> dict[int, int]:
    """The histogram of `values`, ignoring None."""
    counts: dict[int, int] = {}
    for value in values:
        if value is not None:
            edge = bucket(value)
            counts[edge] = counts.get(edge, 0) + 1
    return counts


def merge(into: dict[int, int], other: Mapping) -> dict[int, int]:
    """Add the counts of `other` (edges as ints or JSON strings) to `into`; return `into`."""
    for edge, count in other.items():
        edge = int(edge)
        into[edge] = into.get(edge, 0) + count
    return into


def percentile(counts: Mapping[int, int], fraction: float) -> int | None:
    """The nearest-rank percentile of a histogram as its bucket's representative value, or
    None for an empty histogram."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(math.ceil(fraction * total), 1)
    seen = 0
    for edge in sorted(counts):
        seen += counts[edge]
        if seen >= rank:
            return representative(edge)
    raise AssertionError("unreachable: the ranks add up to the total")


def as_json(counts: Mapping[int, int]) -> dict[str, int]:
    """A histogram as stored in a JSONField: string edges, ascending, no empty buckets."""
    return {str(edge): counts[edge] for edge in sorted(counts) if counts[edge]}
