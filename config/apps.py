from __future__ import annotations

from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """The composition root as an app: it registers the deployment's system checks."""

    name = "config"
    verbose_name = "Platform"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the checks)
