"""Hourly rollups of calls and turns, so the dashboard need not aggregate every turn it shows.

The rows are derived data: analytics.services recomputes whole hours of them from Call and Turn
(a beat task every ANALYTICS_ROLLUP_SECONDS, and `manage.py rollup_analytics`), and from those
hours the daily and all-tenant rows; nothing else writes them. RollupState says which hours
they cover.
"""

from __future__ import annotations

from django.db import models
from django_scopes import ScopedManager

# Bump when the histogram edges or what the rollups count change: rows of another version are
# ignored by the dashboard and rebuilt by the next rollup run.
ROLLUP_VERSION = 1


class Stats(models.Model):
    """What a rollup row counts, as the dashboard counts it: the calls that started in its
    time span and the turns made in it."""

    calls = models.PositiveIntegerField(default=0)
    answered = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Over the calls that were not rejected, like the figures: sum and number of known durations.
    duration_total = models.PositiveBigIntegerField(default=0)
    duration_count = models.PositiveIntegerField(default=0)

    turns = models.PositiveIntegerField(default=0)
    assistant_turns = models.PositiveIntegerField(default=0)
    fallback_turns = models.PositiveIntegerField(default=0)
    error_turns = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    # Histograms of the assistant turns' latencies (analytics.histograms): {lower edge ms: count}.
    first_token_ms = models.JSONField(default=dict, blank=True)
    turn_ms = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True


class HourlyStats(Stats):
    """One tenant's figures for one assistant and one hour (UTC)."""

    # Empty for calls rejected before a tenant was known (unknown numbers), as on Call.
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # The call's assistant (for turns too); empty when the call had none. SET_NULL like Call.
    assistant = models.ForeignKey(
        "assistants.AssistantConfig",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    hour = models.DateTimeField(help_text="Start of the hour, UTC.")

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name_plural = "hourly stats"
        indexes = [
            models.Index(fields=["tenant", "hour"], name="hourlystats_tenant_hour"),
            models.Index(fields=["hour"], name="hourlystats_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.assistant_id} {self.hour:%Y-%m-%d %H:00}"


class DailyStats(Stats):
    """The HourlyStats of one UTC day added up, per tenant and assistant: long periods read
    ~24 times fewer rows (and latency histograms) for their whole days."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    assistant = models.ForeignKey(
        "assistants.AssistantConfig",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    day = models.DateTimeField(help_text="Midnight UTC starting the day.")

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name_plural = "daily stats"
        indexes = [
            models.Index(fields=["tenant", "day"], name="dailystats_tenant_day"),
            models.Index(fields=["day"], name="dailystats_day"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.assistant_id} {self.day:%Y-%m-%d}"


class PlatformHourlyStats(Stats):
    """The HourlyStats of one hour added up over every tenant: the hourly charts of platform
    staff looking at all tenants read one row per hour. Not tenant data: read only for a
    viewer who may see every tenant."""

    hour = models.DateTimeField(unique=True, help_text="Start of the hour, UTC.")

    class Meta:
        verbose_name_plural = "platform hourly stats"

    def __str__(self) -> str:
        return f"all tenants {self.hour:%Y-%m-%d %H:00}"


class RollupState(models.Model):
    """Which hours the HourlyStats rows cover (a single row, also the rollups' write lock).

    Every hour in [covered_from, covered_until) has been computed from the calls and turns; the
    dashboard reads those hours from the rollups and everything else from the raw rows.
    """

    covered_from = models.DateTimeField(null=True, blank=True)
    covered_until = models.DateTimeField(null=True, blank=True)
    # Hours with calls still in progress at the last run: recomputed until those calls end.
    open_hours = models.JSONField(default=list, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # The ROLLUP_VERSION the rows were computed with.
    version = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"rollups [{self.covered_from}, {self.covered_until})"
