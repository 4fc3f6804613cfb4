"""Moving the recording switches from the outbound settings to the recording settings keeps
every assistant's choices."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("campaigns", "0002_scheduled_callbacks")
AFTER = [("campaigns", "0003_recording_settings_for_every_call")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_each_assistants_recording_choices_move_with_it():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    # Every other app as it is now (so the historical models know every column), this app
    # just before the move.
    old = _migrate([BEFORE, *(node for node in latest if node[0] != "campaigns")])
    try:
        tenant = old.get_model("tenants", "Tenant").objects.create(name="Acme", slug="acme")
        assistants = old.get_model("assistants", "AssistantConfig")
        settings = old.get_model("campaigns", "OutboundSettings")
        recorded = assistants.objects.create(tenant=tenant, name="Recorded")
        kept_long = assistants.objects.create(tenant=tenant, name="Kept long")
        settings.objects.create(
            tenant=tenant, assistant=recorded, record_calls=True, announce_recording=False
        )
        settings.objects.create(
            tenant=tenant, assistant=kept_long, record_calls=False, recording_retention_days=90
        )

        new = _migrate(AFTER)

        moved = {
            row.assistant_id: (row.record_calls, row.announce_recording, row.retention_days)
            for row in new.get_model("campaigns", "RecordingSettings").objects.all()
        }
        assert moved == {recorded.pk: (True, False, None), kept_long.pk: (False, True, 90)}
    finally:
        _migrate(latest)
