from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "analytics"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from analytics.aggregates import register_sqlite_functions

        connection_created.connect(register_sqlite_functions, dispatch_uid="analytics_sqlite")
