"""Versions: the draft is frozen when published; calls run on the published (or pinned) version
and keep it; roll back; diff; the API and the admin, with the outsider getting 404."""

from __future__ import annotations

import html
import importlib

import pytest
from django.apps import apps as django_apps
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled

from assistants import versions
from assistants.models import AssistantConfig, AssistantVersion, FAQEntry
from assistants.services import assistant_create, assistant_update, faq_entry_update
from calls.models import Call
from tools.models import HttpTool
from tools.services import http_tool_create

pytestmark = pytest.mark.django_db

OLD_PROMPT = "You are Acme Plumbing's receptionist."
NEW_PROMPT = "You are Acme Plumbing's cheerful receptionist. Mention the spring offer."
HOURS = "what are your opening hours"


@pytest.fixture(autouse=True)
def _fresh_answer_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def v1(assistant_a, unscoped) -> AssistantVersion:
    return versions.version_publish(assistant=assistant_a, note="first")


def _edit_draft(assistant: AssistantConfig) -> None:
    with scopes_disabled():
        assistant_update(assistant=assistant, system_prompt=NEW_PROMPT)
        entry = FAQEntry.objects.get(assistant=assistant)
        faq_entry_update(entry=entry, answer="We are open around the clock now.")


def _system_prompt(request) -> str:
    return request.messages[0]["content"]


def _call(call_sid: str) -> Call:
    with scopes_disabled():
        return Call.objects.select_related("version").get(call_sid=call_sid)


def test_editing_the_draft_changes_no_live_call(twilio, number_a, assistant_a, v1, fake_groq):
    _edit_draft(assistant_a)

    call_sid, _ = twilio.voice(number_a.number)
    faq = twilio.gather(call_sid, number_a.number, HOURS)
    twilio.gather(call_sid, number_a.number, "Can someone fix my boiler?")

    assert faq.said == "We are open from eight to six, Monday to Friday."
    assert _system_prompt(fake_groq.requests[-1]) == OLD_PROMPT
    call = _call(call_sid)
    assert call.version == v1
    assert call.config_snapshot["version"] == 1
    assert call.config_snapshot["system_prompt"] == OLD_PROMPT


def test_publishing_makes_the_draft_live_for_new_calls(
    twilio, number_a, assistant_a, v1, fake_groq, unscoped
):
    _edit_draft(assistant_a)
    v2 = versions.version_publish(assistant=assistant_a, note="spring offer")

    call_sid, _ = twilio.voice(number_a.number)
    faq = twilio.gather(call_sid, number_a.number, HOURS)
    twilio.gather(call_sid, number_a.number, "Can someone fix my boiler?")

    assert (v2.number, v2.note) == (2, "spring offer")
    assert faq.said == "We are open around the clock now."
    assert _system_prompt(fake_groq.requests[-1]) == NEW_PROMPT
    assert _call(call_sid).version == v2


def test_a_call_during_a_publish_finishes_on_its_version(
    twilio, number_a, assistant_a, v1, fake_groq
):
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "Can someone fix my boiler?")
    _edit_draft(assistant_a)
    with scopes_disabled():
        versions.version_publish(assistant=assistant_a)

    faq = twilio.gather(call_sid, number_a.number, HOURS)
    twilio.gather(call_sid, number_a.number, "And the price?")

    assert faq.said == "We are open from eight to six, Monday to Friday."
    assert _system_prompt(fake_groq.requests[-1]) == OLD_PROMPT
    assert _call(call_sid).version == v1


def test_rolling_back_makes_an_old_version_live_again_and_keeps_the_draft(
    twilio, number_a, assistant_a, v1, fake_groq, unscoped
):
    _edit_draft(assistant_a)
    versions.version_publish(assistant=assistant_a)

    versions.version_rollback(version=v1)

    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "Can someone fix my boiler?")
    assert _system_prompt(fake_groq.requests[-1]) == OLD_PROMPT
    assert _call(call_sid).version == v1
    assistant_a.refresh_from_db()
    assert assistant_a.published_version == v1
    assert assistant_a.system_prompt == NEW_PROMPT  # the draft is kept
    assert assistant_a.versions.count() == 2


def test_a_number_pinned_to_a_version_answers_with_it(
    twilio, number_a, assistant_a, v1, fake_groq, unscoped
):
    _edit_draft(assistant_a)
    versions.version_publish(assistant=assistant_a)
    number_a.pinned_version = v1
    number_a.full_clean()
    number_a.save()

    call_sid, _ = twilio.voice(number_a.number)
    assert _call(call_sid).version == v1


def test_a_tool_edited_in_the_draft_keeps_its_published_definition(
    twilio, number_a, assistant_a, tool_server, fake_groq, unscoped
):
    tool_server.route("/stock", body={"message": "We have 3 boilers in stock."})
    tool = http_tool_create(
        assistant=assistant_a,
        name="check_stock",
        description="What is in stock.",
        parameters={"type": "object", "properties": {"item": {"type": "string"}}},
        url=tool_server.url("/stock"),
    )
    versions.version_publish(assistant=assistant_a)
    HttpTool.objects.filter(pk=tool.pk).update(description="Changed in the draft.")

    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "Can someone fix my boiler?")

    [offered] = fake_groq.requests[-1].body["tools"]
    assert offered["function"]["description"] == "What is in stock."


def test_a_versions_parts_are_read_once_per_process_and_only_by_its_tenant(
    assistant_a, v1, tenant_b, django_assert_num_queries
):
    with django_assert_num_queries(1):
        parts = versions.version_parts(tenant_id=assistant_a.tenant_id, version_id=v1.id)
    assert [entry["answer"] for entry in parts["faq"]] == [
        "We are open from eight to six, Monday to Friday."
    ]
    with django_assert_num_queries(0):
        again = versions.version_parts(tenant_id=assistant_a.tenant_id, version_id=v1.id)
    assert again == parts
    # Another tenant naming the version gets nothing, cached or not.
    assert versions.version_parts(tenant_id=tenant_b.id, version_id=v1.id) is None


def test_an_assistant_never_published_answers_with_its_settings(twilio, number_a, fake_groq):
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "Can someone fix my boiler?")
    assert _call(call_sid).version is None
    assert _system_prompt(fake_groq.requests[-1]) == OLD_PROMPT


def test_a_new_assistant_is_published_as_version_1(tenant_a, unscoped):
    assistant = assistant_create(tenant=tenant_a, name="Night line")
    assert assistant.published_version.number == 1
    assert assistant.published_version.config["name"] == "Night line"


def test_existing_assistants_get_a_published_version_1(assistant_a, assistant_b, unscoped):
    migration = importlib.import_module("assistants.migrations.0008_publish_existing_assistants")
    with connection.schema_editor() as editor:
        migration.publish_existing(django_apps, editor)

    assistant_a.refresh_from_db()
    version = assistant_a.published_version
    assert version.number == 1
    assert version.config["system_prompt"] == OLD_PROMPT
    assert version.parts["faq"][0]["answer"].startswith("We are open from eight")
    assert version.config == {
        **version.config,
        **assistant_a.snapshot(),
        "updated_at": version.config["updated_at"],
        "version": 1,
        "version_id": str(version.id),
    }  # noqa: E501
    assert AssistantConfig.objects.filter(published_version__isnull=True).count() == 0


def test_the_diff_names_each_changed_field(assistant_a, v1, unscoped):
    _edit_draft(assistant_a)
    changes = versions.versions_diff(
        versions.Frozen.of(v1), versions.draft_freeze(assistant=assistant_a)
    )
    by_field = {change.field: change for change in changes}
    assert set(by_field) == {"system_prompt", "faq"}
    assert by_field["system_prompt"].before == OLD_PROMPT
    assert by_field["system_prompt"].after == NEW_PROMPT
    assert "around the clock" in by_field["faq"].after


def test_a_failing_publish_check_refuses_and_changes_nothing(assistant_a, v1, unscoped):
    def refuse(assistant, frozen):
        return ["scenario 'booking' failed"] if "offer" in frozen.config["system_prompt"] else []

    versions.register_publish_check(refuse)
    try:
        _edit_draft(assistant_a)
        with pytest.raises(versions.PublishRefused, match="booking"):
            versions.version_publish(assistant=assistant_a)
    finally:
        versions._checks.remove(refuse)
    assistant_a.refresh_from_db()
    assert assistant_a.published_version == v1
    assert assistant_a.versions.count() == 1


# --- API -------------------------------------------------------------------------------------


def test_the_api_publishes_lists_diffs_and_rolls_back(api, alice, assistant_a, v1):
    _edit_draft(assistant_a)
    client = api(alice)
    base = f"/api/v1/assistants/{assistant_a.id}"

    published = client.post(f"{base}/publish/", {"note": "spring offer"}, format="json")
    listing = client.get(f"{base}/versions/")
    diff = client.get(f"{base}/versions/1/diff/?against=2")
    detail = client.get(f"{base}/versions/2/")
    rollback = client.post(f"{base}/versions/1/publish/")
    after = client.get(f"{base}/")

    assert published.status_code == 201, published.content
    assert published.json()["number"] == 2 and published.json()["created_by"] == "alice"
    assert [v["number"] for v in listing.json()["results"]] == [2, 1]
    assert {c["field"] for c in diff.json()} == {"system_prompt", "faq"}
    assert detail.json()["config"]["system_prompt"] == NEW_PROMPT
    assert rollback.status_code == 200 and rollback.json()["live"] is True
    assert after.json()["published_version"] == 1


def test_the_api_answers_a_bad_diff_with_400(api, alice, assistant_a, v1):
    response = api(alice).get(f"/api/v1/assistants/{assistant_a.id}/versions/1/diff/?against=x")
    assert response.status_code == 400


def test_the_outsider_cannot_see_publish_or_roll_back(api, charlie, assistant_a, v1):
    client = api(charlie)
    base = f"/api/v1/assistants/{assistant_a.id}"
    assert client.post(f"{base}/publish/", {}, format="json").status_code == 404
    assert client.get(f"{base}/versions/").status_code == 404
    assert client.post(f"{base}/versions/1/publish/").status_code == 404
    assert client.get(f"{base}/versions/1/diff/").status_code == 404
    with scopes_disabled():
        assert AssistantVersion.objects.filter(assistant=assistant_a).count() == 1


def test_a_viewer_cannot_publish(api, bob, assistant_a, v1):
    response = api(bob).post(f"/api/v1/assistants/{assistant_a.id}/publish/", {}, format="json")
    assert response.status_code == 403


# --- admin -----------------------------------------------------------------------------------


def _admin(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_shows_the_changes_and_publishes(alice, assistant_a, v1):
    _edit_draft(assistant_a)
    client = _admin(alice)
    url = reverse("admin:assistants_assistantconfig_publish", args=[assistant_a.pk])

    page = client.get(url)
    posted = client.post(url, {"note": "spring offer"})

    assert page.status_code == 200
    assert html.escape(NEW_PROMPT) in page.content.decode()
    assert html.escape(OLD_PROMPT) in page.content.decode()
    assert posted.status_code == 302
    with scopes_disabled():
        assistant_a.refresh_from_db()
        assert assistant_a.published_version.number == 2
        assert assistant_a.published_version.created_by == alice


def test_the_admin_diff_and_roll_back(alice, assistant_a, v1):
    _edit_draft(assistant_a)
    with scopes_disabled():
        versions.version_publish(assistant=assistant_a)
    client = _admin(alice)

    diff = client.get(
        reverse("admin:assistants_assistantversion_diff", args=[v1.pk]) + "?against=2"
    )
    rolled = client.post(
        reverse("admin:assistants_assistantversion_changelist"),
        {"action": "make_live", "_selected_action": [str(v1.pk)]},
    )

    assert diff.status_code == 200 and html.escape(NEW_PROMPT) in diff.content.decode()
    assert rolled.status_code == 302
    with scopes_disabled():
        assistant_a.refresh_from_db()
        assert assistant_a.published_version == v1


def test_the_outsider_gets_404_in_the_admin(charlie, assistant_a, v1):
    client = _admin(charlie)
    publish = reverse("admin:assistants_assistantconfig_publish", args=[assistant_a.pk])
    diff = reverse("admin:assistants_assistantversion_diff", args=[v1.pk])
    listing = client.get(reverse("admin:assistants_assistantversion_changelist"))

    assert client.get(publish).status_code == 404
    assert client.post(publish, {"note": "x"}).status_code == 404
    assert client.get(diff).status_code == 404
    assert str(v1.pk) not in listing.content.decode()
    with scopes_disabled():
        assert assistant_a.versions.count() == 1


def test_a_draft_switched_to_another_mode_changes_no_live_call(
    twilio, number_a, assistant_a, v1, fake_groq
):
    with scopes_disabled():
        assistant_update(assistant=assistant_a, mode=AssistantConfig.Mode.RELAY)

    call_sid, answer = twilio.voice(number_a.number)

    assert _call(call_sid).mode == Call.Mode.GATHER
    assert answer.has("Gather") and not answer.has("ConversationRelay")


def test_the_api_pins_a_number_and_re_pointing_it_unpins_it(
    api, alice, assistant_a, number_a, v1, tenant_a
):
    client = api(alice)
    url = f"/api/v1/phone-numbers/{number_a.id}/"
    with scopes_disabled():
        other = assistant_create(tenant=tenant_a, name="Night line")

    pinned = client.patch(url, {"pinned_version": 1}, format="json")
    unknown = client.patch(url, {"pinned_version": 5}, format="json")
    repointed = client.patch(url, {"assistant": str(other.id)}, format="json")

    assert pinned.status_code == 200 and pinned.json()["pinned_version"] == 1
    assert unknown.status_code == 400 and "no version 5" in str(unknown.json())
    assert repointed.status_code == 200, repointed.content
    assert repointed.json()["pinned_version"] is None


def test_the_admin_says_why_a_publish_was_refused(alice, assistant_a, v1):
    def refuse(assistant, frozen):
        return ["scenario 'booking' failed: no answer containing 'ZZ9'"]

    versions.register_publish_check(refuse)
    try:
        url = reverse("admin:assistants_assistantconfig_publish", args=[assistant_a.pk])
        page = _admin(alice).post(url, {"note": "try"})
    finally:
        versions._checks.remove(refuse)
    assert page.status_code == 200
    assert html.escape("scenario 'booking' failed") in page.content.decode()
    with scopes_disabled():
        assert assistant_a.versions.count() == 1
