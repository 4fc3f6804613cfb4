"""Latency histograms of the rollups: bucket edges and nearest-rank percentiles, by hand."""

from __future__ import annotations

from analytics import histograms


def test_buckets_are_whole_milliseconds_about_five_percent_wide():
    assert histograms.EDGES[:22] == tuple(range(22))  # every ms up to 21 ms has its own bucket
    assert histograms.EDGES[-1] == 60_000
    widths = [b / a for a, b in zip(histograms.EDGES[30:], histograms.EDGES[31:], strict=False)]
    assert all(1.02 < w < 1.07 for w in widths)
    assert (histograms.bucket(-5), histograms.bucket(0), histograms.bucket(17)) == (0, 0, 17)
    # 1.05**141 = 972.2 and 1.05**142 = 1020.8: 1000 ms falls in [973, 1021), shown as 996.
    assert histograms.bucket(1000) == 973 and histograms.representative(973) == 996
    assert histograms.bucket(10**9) == 60_000 and histograms.representative(60_000) == 60_000


def test_histogram_percentiles_use_nearest_rank():
    counts = histograms.histogram([10, 20, 30, 40, 1000, None])
    assert counts == {10: 1, 20: 1, 29: 1, 39: 1, 973: 1}  # 30 ms is in [29, 31), 40 in [39, 41)
    assert histograms.percentile(counts, 0.5) == 29  # rank 3 of 5: 30 ms, in the middle of [29, 31)
    assert histograms.percentile(counts, 0.9) == 996  # rank 5: 1000 ms
    assert histograms.percentile(counts, 0.0) == 10 and histograms.percentile(counts, 0.2) == 10
    assert histograms.percentile({}, 0.5) is None

    # Merging adds counts (stored JSON histograms have string edges).
    merged = histograms.merge(dict(counts), {"10": 4, "973": 1})
    assert merged == {10: 5, 20: 1, 29: 1, 39: 1, 973: 2}
    assert histograms.percentile(merged, 0.5) == 10  # rank 5 of 10
    assert histograms.percentile(merged, 0.6) == 20
    assert histograms.percentile(merged, 0.9) == 996
    assert histograms.as_json(merged) == {"10": 5, "20": 1, "29": 1, "39": 1, "973": 2}
