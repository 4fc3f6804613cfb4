from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django_scopes import scope, scopes_disabled

from assistants.models import AssistantConfig, FAQEntry
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def errors_of(instance) -> dict[str, list[str]]:
    """full_clean's errors, in the scope of the instance's tenant (unique checks query)."""
    with scope(tenant=instance.tenant), pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


def make_assistant(tenant: Tenant, **fields) -> AssistantConfig:
    return AssistantConfig(tenant=tenant, name=fields.pop("name", "Night line"), **fields)


def test_defaults_are_the_documented_ones(tenant_a: Tenant) -> None:
    assistant = make_assistant(tenant_a)
    assert assistant.model == "llama-3.3-70b-versatile"
    assert assistant.temperature == 1.0
    assert assistant.max_tokens == 1024
    assert assistant.context_turns == 10
    assert assistant.mode == AssistantConfig.Mode.GATHER
    assert assistant.language == "en-US"
    assert assistant.speech_timeout == "auto"
    with scope(tenant=tenant_a):
        assistant.full_clean()


def test_defaults_survive_a_round_trip_through_the_database(tenant_a: Tenant) -> None:
    with scope(tenant=tenant_a):
        created = AssistantConfig.objects.create(tenant=tenant_a, name="Plain")
        stored = AssistantConfig.objects.get(pk=created.pk)
    assert (stored.model, stored.temperature, stored.max_tokens, stored.context_turns) == (
        "llama-3.3-70b-versatile",
        1.0,
        1024,
        10,
    )


@pytest.mark.parametrize("temperature", [-0.1, 2.01, 5])
def test_full_clean_rejects_a_temperature_outside_0_to_2(
    tenant_a: Tenant, temperature: float
) -> None:
    errors = errors_of(make_assistant(tenant_a, temperature=temperature))
    assert "temperature" in errors


@pytest.mark.parametrize("temperature", [0, 0.7, 2])
def test_full_clean_accepts_a_temperature_from_0_to_2(tenant_a: Tenant, temperature: float) -> None:
    with scope(tenant=tenant_a):
        make_assistant(tenant_a, temperature=temperature).full_clean()


@pytest.mark.parametrize("temperature", [-1.0, 2.5])
def test_the_database_refuses_a_temperature_outside_0_to_2(
    assistant_a: AssistantConfig, temperature: float
) -> None:
    with scopes_disabled(), pytest.raises(IntegrityError), transaction.atomic():
        AssistantConfig.objects.filter(pk=assistant_a.pk).update(temperature=temperature)


def test_full_clean_rejects_an_unknown_llm_model(tenant_a: Tenant) -> None:
    errors = errors_of(make_assistant(tenant_a, model="gpt-17-ultra"))
    assert list(errors) == ["model"]
    assert "Unknown model 'gpt-17-ultra'" in errors["model"][0]
    assert "llama-3.3-70b-versatile" in errors["model"][0]


def test_full_clean_rejects_an_unknown_fallback_model_and_accepts_none(tenant_a: Tenant) -> None:
    assert "fallback_model" in errors_of(make_assistant(tenant_a, fallback_model="nope"))
    assert "fast_model" in errors_of(make_assistant(tenant_a, fast_model="nope"))
    with scope(tenant=tenant_a):
        make_assistant(tenant_a, fallback_model="").full_clean()


def test_the_list_of_models_comes_from_settings(tenant_a: Tenant, settings) -> None:
    settings.LLM_MODELS = ["llama-3.3-70b-versatile", "my-own-model"]
    with scope(tenant=tenant_a):
        make_assistant(tenant_a, model="my-own-model", fallback_model="").full_clean()
    assert "model" in errors_of(make_assistant(tenant_a, model="qwen/qwen3-32b"))


@pytest.mark.parametrize("language", ["english", "en_US", "e", "en-USA-x", "en-", "12-US"])
def test_full_clean_rejects_a_language_that_is_not_bcp47(tenant_a: Tenant, language: str) -> None:
    errors = errors_of(make_assistant(tenant_a, language=language))
    assert errors == {"language": ["Enter a BCP-47 language tag such as en-US."]}


@pytest.mark.parametrize("language", ["en-US", "en", "es-419", "zh-Hans-CN", "fil-PH"])
def test_full_clean_accepts_bcp47_languages(tenant_a: Tenant, language: str) -> None:
    with scope(tenant=tenant_a):
        make_assistant(tenant_a, language=language).full_clean()


@pytest.mark.parametrize("timeout", ["0", "61", "fast", "2.5", "-1", " 3"])
def test_full_clean_rejects_a_bad_speech_timeout(tenant_a: Tenant, timeout: str) -> None:
    errors = errors_of(make_assistant(tenant_a, speech_timeout=timeout))
    assert errors == {"speech_timeout": ['Use "auto" or a number of seconds from 1 to 60.']}


@pytest.mark.parametrize("timeout", ["auto", "1", "5", "60"])
def test_full_clean_accepts_auto_or_seconds_as_speech_timeout(
    tenant_a: Tenant, timeout: str
) -> None:
    with scope(tenant=tenant_a):
        make_assistant(tenant_a, speech_timeout=timeout).full_clean()


def test_full_clean_normalises_the_transfer_number(tenant_a: Tenant) -> None:
    assistant = make_assistant(tenant_a, transfer_number="+1 (415) 555-0101")
    with scope(tenant=tenant_a):
        assistant.full_clean()
    assert assistant.transfer_number == "+14155550101"


@pytest.mark.parametrize("number", ["415-555-0101", "+1 415", "call bob"])
def test_full_clean_rejects_a_bad_transfer_number(tenant_a: Tenant, number: str) -> None:
    errors = errors_of(make_assistant(tenant_a, transfer_number=number))
    assert list(errors) == ["transfer_number"]


def test_full_clean_rejects_a_transfer_digit_that_is_not_a_key(tenant_a: Tenant) -> None:
    errors = errors_of(make_assistant(tenant_a, transfer_digit="x"))
    assert errors == {"transfer_digit": ["Use one keypad key: 0-9, * or #."]}


def test_full_clean_rejects_a_second_assistant_with_the_same_name(
    assistant_a: AssistantConfig,
) -> None:
    errors = errors_of(make_assistant(assistant_a.tenant, name=assistant_a.name))
    assert "__all__" in errors


def test_two_tenants_may_use_the_same_assistant_name(
    assistant_a: AssistantConfig, tenant_b: Tenant
) -> None:
    with scope(tenant=tenant_b):
        make_assistant(tenant_b, name=assistant_a.name).full_clean()


def test_snapshot_holds_the_settings_a_call_runs_with(assistant_a: AssistantConfig) -> None:
    snapshot = assistant_a.snapshot()
    assert snapshot == {
        "id": str(assistant_a.id),
        "name": "Acme front desk",
        "mode": "gather",
        "model": "llama-3.3-70b-versatile",
        "fallback_model": "llama-3.1-8b-instant",
        "fast_model": "",
        "temperature": 1.0,
        "max_tokens": 1024,
        "context_turns": 10,
        "system_prompt": "You are Acme Plumbing's receptionist.",
        "greeting": "Acme Plumbing, how can I help?",
        "language": "en-US",
        "other_languages": [],
        "transcription_provider": "",
        "tts_engine": "say",
        "tts_voice": "",
        "voices": {},
        "phrases": {},
        "speech_timeout": "auto",
        "interruptible": True,
        "transfer_number": "+15005550001",
        "transfer_digit": "0",
        "recognition_provider": "deepgram",
        "recognition_model": "nova-3",
        "endpointing_ms": 300,
        "recognition_keywords": "",
        "voice_provider": "deepgram",
        "stream_voice": "aura-2-thalia-en",
        "updated_at": assistant_a.updated_at.isoformat(),
    }
    assert json.loads(json.dumps(snapshot)) == snapshot


def test_snapshot_does_not_change_when_the_assistant_is_edited_later(
    assistant_a: AssistantConfig,
) -> None:
    before = assistant_a.snapshot()
    assistant_a.greeting = "Something new"
    assistant_a.save()
    assert before["greeting"] == "Acme Plumbing, how can I help?"
    assert assistant_a.snapshot()["greeting"] == "Something new"


def test_full_clean_rejects_a_faq_entry_for_another_tenants_assistant(
    tenant_b: Tenant, assistant_a: AssistantConfig
) -> None:
    entry = FAQEntry(tenant=tenant_b, assistant=assistant_a, patterns="hi", answer="Hello.")
    errors = errors_of(entry)
    assert errors == {"assistant": ["Choose an assistant of this entry's tenant."]}


def test_full_clean_rejects_a_faq_entry_without_questions(assistant_a: AssistantConfig) -> None:
    entry = FAQEntry(
        tenant=assistant_a.tenant, assistant=assistant_a, patterns=" \n\n ", answer="x"
    )
    errors = errors_of(entry)
    assert "patterns" in errors


def test_a_faq_entry_lists_its_questions_one_per_line(assistant_a: AssistantConfig) -> None:
    entry = FAQEntry(
        tenant=assistant_a.tenant,
        assistant=assistant_a,
        patterns="  where are you \n\nwhat is your address\n",
        answer="At 42 Harbour Street.",
    )
    assert entry.pattern_list() == ["where are you", "what is your address"]
    assert str(entry) == "where are you"
    with scope(tenant=assistant_a.tenant):
        entry.full_clean()
