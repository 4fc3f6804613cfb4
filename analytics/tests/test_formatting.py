"""The dashboard templates print figures as its JavaScript does."""

from __future__ import annotations

import pytest

from analytics.templatetags.dashboard import figure, percent


@pytest.mark.parametrize(
    "value, shown",
    [
        (None, "—"),
        (0, "0 %"),
        (0.0, "0 %"),
        (0.5, "50 %"),
        (0.3333, "33.3 %"),
        (1.0, "100 %"),
        (0.0005, "0.1 %"),
        (0.00049, "0 %"),
        (0.1235, "12.4 %"),
    ],
)
def test_a_rate_is_a_percentage_with_one_decimal_at_most(value, shown):
    assert percent(value) == shown


@pytest.mark.parametrize(
    "value, shown", [(None, "—"), (0, "0"), (120.0, "120"), (2.5, "2.5"), (353, "353")]
)
def test_a_whole_figure_has_no_decimals(value, shown):
    assert figure(value) == shown
