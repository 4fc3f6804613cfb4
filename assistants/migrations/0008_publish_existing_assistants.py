"""Every existing assistant gets version 1, frozen from its current settings, FAQ, tools and
knowledge references, and published: callers hear exactly what they heard before."""

from django.db import migrations
from django.utils import timezone

# The call settings (`CallConfig`) as they are at this migration.
CONFIG_FIELDS = [
    "name", "mode", "model", "fallback_model", "fast_model", "temperature", "max_tokens", "context_turns",
    "system_prompt", "greeting", "language", "other_languages", "transcription_provider",
    "tts_engine", "tts_voice", "voices", "phrases", "speech_timeout", "interruptible",
    "transfer_number", "transfer_digit", "recognition_provider", "recognition_model",
    "endpointing_ms", "recognition_keywords", "voice_provider", "stream_voice",
]  # fmt: skip


def _tools(apps, assistant, db):
    builtin = apps.get_model("tools", "BuiltinTools").objects.using(db).filter(assistant=assistant).first()
    destinations = apps.get_model("tools", "TransferDestination").objects.using(db).filter(
        assistant=assistant
    )
    http = apps.get_model("tools", "HttpTool").objects.using(db).filter(assistant=assistant, active=True)
    return {
        "builtin": {
            name: bool(builtin and getattr(builtin, name))
            for name in ("transfer_call", "end_call", "lookup_knowledge", "knowledge_in_prompt")
        },
        "destinations": dict(sorted(destinations.values_list("name", "number"))),
        "http": [
            {
                "id": str(tool.id),
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "url": tool.url,
                "method": tool.method,
                "timeout": tool.timeout_seconds,
            }
            for tool in http.order_by("name")
        ],
    }


def publish_existing(apps, schema_editor):
    db = schema_editor.connection.alias  # the database being migrated, not always "default"
    Assistant = apps.get_model("assistants", "AssistantConfig")
    Version = apps.get_model("assistants", "AssistantVersion")
    FAQEntry = apps.get_model("assistants", "FAQEntry")
    Document = apps.get_model("knowledge", "Document")
    now = timezone.now()
    for assistant in Assistant.objects.using(db).filter(published_version__isnull=True):
        version = Version(tenant_id=assistant.tenant_id, assistant=assistant, number=1)
        config = {name: getattr(assistant, name) for name in CONFIG_FIELDS}
        updated = assistant.updated_at.isoformat() if assistant.updated_at else None
        config.update(
            id=str(assistant.id),
            updated_at=f"{updated}#v1",
            version=1,
            version_id=str(version.id),
        )
        faq = FAQEntry.objects.using(db).filter(assistant=assistant, active=True).order_by("created_at")
        documents = Document.objects.using(db).filter(tenant_id=assistant.tenant_id).order_by("title", "id")
        version.config = config
        version.parts = {
            "faq": [{"patterns": e.patterns, "answer": e.answer} for e in faq],
            "tools": _tools(apps, assistant, db),
            "knowledge": [
                {"id": str(d.id), "title": d.title, "updated_at": d.updated_at.isoformat()}
                for d in documents
            ],
        }
        version.note = "The settings before versions"
        version.published_at = now
        version.save(using=db)
        Assistant.objects.using(db).filter(pk=assistant.pk).update(published_version=version)


class Migration(migrations.Migration):
    dependencies = [
        ("assistants", "0007_versions"),
        ("assistants", "0007_assistant_fast_model"),
        ("tools", "0001_initial"),
        ("knowledge", "0001_initial"),
    ]

    operations = [migrations.RunPython(publish_existing, migrations.RunPython.noop)]
