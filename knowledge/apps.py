from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "knowledge"

    def ready(self) -> None:
        from assistants.versions import register_part
        from knowledge.versions import knowledge_freeze

        register_part("knowledge", knowledge_freeze)
