from django.apps import AppConfig


class InsightsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "insights"
    verbose_name = "Call insights"

    def ready(self) -> None:
        from insights import receivers

        receivers.connect()
