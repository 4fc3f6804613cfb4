from django.db import migrations

DEFAULTS = [
    # kind, limit, window seconds, action
    ("concurrent_calls", 20, 60, "speak_hangup"),
    ("calls_per_caller", 20, 3600, "speak_hangup"),
    ("turns_per_call", 30, 60, "speak_continue"),
    ("llm_tokens_per_day", 500_000, 86400, "speak_continue"),
]


def add_defaults(apps, schema_editor):
    RateLimit = apps.get_model("tenants", "RateLimit")
    for kind, limit, window, action in DEFAULTS:
        RateLimit.objects.get_or_create(
            tenant=None,
            kind=kind,
            defaults={"limit": limit, "window_seconds": window, "action": action},
        )


def remove_defaults(apps, schema_editor):
    apps.get_model("tenants", "RateLimit").objects.filter(tenant=None).delete()


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [migrations.RunPython(add_defaults, remove_defaults)]
