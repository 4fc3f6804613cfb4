from django.apps import AppConfig


class AssistantsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "assistants"

    def ready(self) -> None:
        from assistants.models import AssistantConfig, AssistantVersion
        from tenants import directory

        # A dialled number is kept per process with its assistant and versions.
        directory.invalidate_on_change(AssistantConfig)
        directory.invalidate_on_change(AssistantVersion)
