from django.apps import AppConfig


class CallsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "calls"

    def ready(self) -> None:
        # The platform's spoken lines, by name: for per-assistant overrides and the check that
        # every line is translated. The rate-limit messages are the tenants app's.
        from calls import phrases
        from calls.transports import gather, relay  # noqa: F401  (receivers of calls.signals)
        from core.phrases import register
        from tenants.ratelimits import DEFAULT_MESSAGES

        register(vars(phrases))
        register({kind.value: text for kind, text in DEFAULT_MESSAGES.items()}, prefix="limit_")
