"""The dialler's beat tick runs every few seconds: Celery's own lines about it (sent, received,
succeeded) are DEBUG, so a worker at INFO logs only ticks that start something."""

from __future__ import annotations

import logging

# The tick's task and beat entry (settings.CELERY_BEAT_SCHEDULE["dial-campaigns"]).
TICK_MARKS = ("campaigns.tasks.dial_campaigns[", "Sending due task dial-campaigns ")


class QuietTick(logging.Filter):
    """Turns Celery's records about the tick into DEBUG records (kept only where DEBUG is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        if not any(mark in message for mark in TICK_MARKS):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
