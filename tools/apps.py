from django.apps import AppConfig


class ToolsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tools"

    def ready(self) -> None:
        from assistants.versions import register_part
        from tools.versions import tools_freeze

        register_part("tools", tools_freeze)
