from django.apps import AppConfig


class RehearsalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "rehearsals"

    def ready(self) -> None:
        from assistants.versions import register_publish_check
        from rehearsals.scenarios import scenarios_must_pass

        register_publish_check(scenarios_must_pass)
