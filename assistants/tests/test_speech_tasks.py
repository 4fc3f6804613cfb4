"""Speech audio services and tasks, made by a real Celery worker process with espeak-ng."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery.signals import before_task_publish
from django.core.files.storage import default_storage
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from assistants.models import AssistantConfig, SpeechAudio
from assistants.services import assistant_create, assistant_update
from assistants.speech import (
    PERMANENT_ERROR_PREFIX,
    speech_cleanup,
    speech_key,
    speech_prepare,
    speech_synthesize,
    speech_url,
)
from assistants.tasks import cleanup_speech_audio, synthesize_speech

WAIT_SECONDS = 30
RANDOM_NAME = re.compile(r"^tts/[A-Za-z0-9_-]{24}\.wav$")
SENTENCE = "Thanks for calling Acme Plumbing."

worker_test = pytest.mark.django_db(transaction=True)


@pytest.fixture
def published() -> Iterator[list[str]]:
    """Names of the Celery tasks this test process publishes while the test runs."""
    names: list[str] = []

    def note(sender: str | None = None, **_: object) -> None:
        names.append(sender or "")

    before_task_publish.connect(note, weak=False)
    yield names
    before_task_publish.disconnect(note)


def prepare(
    tenant,
    text: str = SENTENCE,
    *,
    engine: str = "espeak",
    voice: str = "",
    language: str = "en-US",
):
    with scope(tenant=tenant):
        return speech_prepare(
            tenant=tenant, engine=engine, voice=voice, language=language, text=text
        )


def wait_until_settled(audio: SpeechAudio, worker) -> SpeechAudio:
    """Poll the row until the worker stored its file or its error."""
    deadline = time.monotonic() + WAIT_SECONDS
    with scopes_disabled():
        while time.monotonic() < deadline:
            row = SpeechAudio.objects.get(pk=audio.pk)
            if row.file or row.error:
                return row
            time.sleep(0.05)
    raise AssertionError(f"no audio after {WAIT_SECONDS} s; worker log:\n{worker.log()}")


def stored_files(media_root) -> list[str]:
    return sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())


def make_old(audio: SpeechAudio, *, age: timedelta) -> None:
    with scopes_disabled():
        SpeechAudio.objects.filter(pk=audio.pk).update(created_at=timezone.now() - age)


# --- made by the worker ----------------------------------------------------------------------


@worker_test
def test_the_worker_makes_a_prepared_sentence_into_a_wav_file_under_a_random_name(
    celery_worker_process, tenant_a, media_root
):
    audio = prepare(tenant_a)

    made = wait_until_settled(audio, celery_worker_process)

    assert made.error == ""
    assert RANDOM_NAME.match(made.file)
    assert made.content_type == "audio/wav"
    assert made.synth_ms is not None
    assert default_storage.exists(made.file)
    assert (media_root / made.file).read_bytes()[:4] == b"RIFF"
    assert stored_files(media_root) == [made.file]


@worker_test
def test_preparing_the_same_sentence_again_reuses_the_row_and_queues_nothing(
    celery_worker_process, tenant_a, media_root, published
):
    first = wait_until_settled(prepare(tenant_a), celery_worker_process)
    assert len(published) == 1

    again = prepare(tenant_a)

    assert again.pk == first.pk
    assert again.file == first.file
    assert len(published) == 1
    with scopes_disabled():
        assert SpeechAudio.objects.count() == 1
    assert stored_files(media_root) == [first.file]


@worker_test
def test_a_sentence_repeated_while_it_is_being_made_is_queued_once(
    celery_worker_process, tenant_a, media_root, published
):
    first = prepare(tenant_a)
    second = prepare(tenant_a)

    assert second.pk == first.pk
    assert published == ["assistants.tasks.synthesize_speech"]
    made = wait_until_settled(first, celery_worker_process)
    assert stored_files(media_root) == [made.file]


@worker_test
def test_the_same_text_for_another_tenant_gets_its_own_row_and_file(
    celery_worker_process, tenant_a, tenant_b, media_root
):
    for_a = wait_until_settled(prepare(tenant_a), celery_worker_process)
    for_b = wait_until_settled(prepare(tenant_b), celery_worker_process)

    assert for_b.pk != for_a.pk
    assert for_b.tenant_id == tenant_b.id
    assert for_b.key != for_a.key
    assert for_b.file and for_b.file != for_a.file
    assert stored_files(media_root) == sorted([for_a.file, for_b.file])


@worker_test
def test_a_failing_engine_stores_its_error_and_no_file(
    celery_worker_process, tenant_a, media_root, published
):
    audio = prepare(tenant_a, voice="nosuchvoice")

    failed = wait_until_settled(audio, celery_worker_process)

    assert failed.file == ""
    assert failed.error.startswith(PERMANENT_ERROR_PREFIX)
    assert "espeak-ng" in failed.error
    assert stored_files(media_root) == []


@worker_test
def test_a_permanent_failure_is_not_retried(celery_worker_process, tenant_a, published):
    failed = wait_until_settled(prepare(tenant_a, voice="nosuchvoice"), celery_worker_process)
    make_old(failed, age=timedelta(minutes=5))

    again = prepare(tenant_a, voice="nosuchvoice")

    assert again.error == failed.error
    assert len(published) == 1


@worker_test
def test_a_transient_failure_is_retried_by_a_later_request_after_a_minute(
    celery_worker_process, tenant_a, media_root, published
):
    with scopes_disabled():
        audio = SpeechAudio.objects.create(
            tenant=tenant_a,
            key=speech_key(
                tenant_id=tenant_a.id, engine="espeak", voice="", language="en-US", text=SENTENCE
            ),
            engine="espeak",
            language="en-US",
            text=SENTENCE,
            error="espeak-ng took longer than 10.0 s",
        )
    assert prepare(tenant_a).error != ""  # too recent: not retried yet
    assert published == []

    make_old(audio, age=timedelta(minutes=2))
    retried = prepare(tenant_a)

    assert retried.pk == audio.pk
    assert retried.error == ""
    assert len(published) == 1
    made = wait_until_settled(retried, celery_worker_process)
    assert made.file and made.error == ""


@worker_test
def test_a_sentence_whose_task_never_ran_is_queued_again_after_a_minute(
    celery_worker_process, tenant_a, media_root, published
):
    with scopes_disabled():
        audio = SpeechAudio.objects.create(
            tenant=tenant_a,
            key=speech_key(
                tenant_id=tenant_a.id, engine="espeak", voice="", language="en-US", text=SENTENCE
            ),
            engine="espeak",
            language="en-US",
            text=SENTENCE,
        )
    make_old(audio, age=timedelta(minutes=2))

    prepare(tenant_a)

    assert len(published) == 1
    assert wait_until_settled(audio, celery_worker_process).file


# --- tenant isolation of the task ------------------------------------------------------------


@worker_test
def test_a_task_naming_another_tenant_changes_nothing(
    celery_worker_process, tenant_a, tenant_b, media_root
):
    with scopes_disabled():
        audio = SpeechAudio.objects.create(
            tenant=tenant_a, key="k" * 64, engine="espeak", language="en-US", text=SENTENCE
        )

    outcome = synthesize_speech.delay(str(tenant_b.id), str(audio.id)).get(
        timeout=WAIT_SECONDS, interval=0.05
    )

    assert outcome == "not found"
    with scopes_disabled():
        untouched = SpeechAudio.objects.get(pk=audio.pk)
    assert (untouched.file, untouched.error, untouched.synth_ms) == ("", "", None)
    assert stored_files(media_root) == []

    outcome = synthesize_speech.delay(str(tenant_a.id), str(audio.id)).get(
        timeout=WAIT_SECONDS, interval=0.05
    )
    assert outcome == "made"


@worker_test
def test_a_task_for_a_row_that_is_gone_or_garbage_finds_nothing(celery_worker_process, tenant_a):
    gone = "00000000-0000-0000-0000-000000000000"

    assert (
        synthesize_speech.delay(str(tenant_a.id), gone).get(timeout=WAIT_SECONDS, interval=0.05)
        == "not found"
    )
    assert (
        synthesize_speech.delay("garbage", "garbage").get(timeout=WAIT_SECONDS, interval=0.05)
        == "not found"
    )


# --- cleanup ---------------------------------------------------------------------------------


def _made_in_process(tenant, text: str) -> SpeechAudio:
    with scope(tenant=tenant):
        audio = SpeechAudio.objects.create(
            tenant=tenant,
            key=speech_key(
                tenant_id=tenant.id, engine="espeak", voice="", language="en-US", text=text
            ),
            engine="espeak",
            language="en-US",
            text=text,
        )
        return speech_synthesize(audio=audio)


@pytest.mark.django_db
def test_cleanup_removes_files_and_rows_older_than_the_ttl_of_every_tenant(
    tenant_a, tenant_b, media_root
):
    old_a = _made_in_process(tenant_a, "Old news from Acme.")
    old_b = _made_in_process(tenant_b, "Old news from Bravo.")
    fresh = _made_in_process(tenant_a, "Fresh news from Acme.")
    with scopes_disabled():
        failed_old = SpeechAudio.objects.create(
            tenant=tenant_a,
            key="f" * 64,
            engine="gtts",
            language="en-US",
            text="x",
            error="gTTS: x",
        )
    for audio in (old_a, old_b, failed_old):
        make_old(audio, age=timedelta(hours=25))

    deleted = speech_cleanup(older_than=timedelta(hours=24))

    assert deleted == 3
    with scopes_disabled():
        assert list(SpeechAudio.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert stored_files(media_root) == [fresh.file]


@worker_test
def test_the_cleanup_task_runs_through_the_worker(celery_worker_process, tenant_a, media_root):
    old = wait_until_settled(prepare(tenant_a, "Yesterday's special."), celery_worker_process)
    fresh = wait_until_settled(prepare(tenant_a, "Today's special."), celery_worker_process)
    make_old(old, age=timedelta(hours=25))

    deleted = cleanup_speech_audio.delay().get(timeout=WAIT_SECONDS, interval=0.05)

    assert deleted == 1
    assert stored_files(media_root) == [fresh.file]
    with scopes_disabled():
        assert list(SpeechAudio.objects.values_list("pk", flat=True)) == [fresh.pk]


def _espeak_assistant(tenant, greeting: str) -> AssistantConfig:
    with scope(tenant=tenant):
        return assistant_create(
            tenant=tenant,
            name=f"Espeaking {tenant.slug}",
            greeting=greeting,
            tts_engine=AssistantConfig.TTSEngine.ESPEAK,
        )


def greeting_audio(assistant: AssistantConfig, worker) -> SpeechAudio:
    """The audio row of the assistant's greeting once the worker made it (or failed to)."""
    key = speech_key(
        tenant_id=assistant.tenant_id,
        engine=assistant.tts_engine,
        voice=assistant.tts_voice,
        language=assistant.language,
        text=assistant.greeting,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    with scopes_disabled():
        while time.monotonic() < deadline:
            row = SpeechAudio.objects.filter(tenant=assistant.tenant, key=key).first()
            if row is not None and (row.file or row.error):
                return row
            time.sleep(0.05)
    raise AssertionError(f"no greeting audio after {WAIT_SECONDS} s; worker log:\n{worker.log()}")


@worker_test
def test_the_cleanup_keeps_the_audio_of_every_current_greeting(
    celery_worker_process, tenant_a, tenant_b, media_root
):
    acme = _espeak_assistant(tenant_a, "Acme Plumbing, how can I help?")
    bravo = _espeak_assistant(tenant_b, "Bravo Bakery, hello!")
    greetings = [greeting_audio(a, celery_worker_process) for a in (acme, bravo)]
    sentence = wait_until_settled(prepare(tenant_a, "Yesterday's special."), celery_worker_process)
    # A greeting the assistant no longer uses expires like any sentence.
    with scope(tenant=tenant_a):
        assistant_update(assistant=acme, greeting="Acme Plumbing, good morning!")
    replaced = greeting_audio(acme, celery_worker_process)
    for audio in (*greetings, sentence, replaced):
        make_old(audio, age=timedelta(hours=25))

    deleted = cleanup_speech_audio.delay().get(timeout=WAIT_SECONDS, interval=0.05)

    assert deleted == 2
    with scopes_disabled():
        kept = set(SpeechAudio.objects.values_list("pk", flat=True))
    assert kept == {greetings[1].pk, replaced.pk}
    assert stored_files(media_root) == sorted([greetings[1].file, replaced.file])


@worker_test
def test_the_cleanup_makes_a_greeting_whose_audio_is_gone(
    celery_worker_process, tenant_a, media_root
):
    acme = _espeak_assistant(tenant_a, "Acme Plumbing, how can I help?")
    made = greeting_audio(acme, celery_worker_process)
    with scopes_disabled():
        SpeechAudio.objects.filter(pk=made.pk).delete()  # expired before greetings were kept
    default_storage.delete(made.file)

    assert cleanup_speech_audio.delay().get(timeout=WAIT_SECONDS, interval=0.05) == 0

    remade = greeting_audio(acme, celery_worker_process)
    assert remade.file and remade.pk != made.pk
    assert stored_files(media_root) == [remade.file]


# --- in-process services ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_transient_engine_failure_is_stored_without_the_permanent_mark(
    tenant_a, media_root, monkeypatch
):
    # gTTS's connection is refused at the wire: a local port nobody listens on, as its proxy.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, closed)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with scope(tenant=tenant_a):
        audio = SpeechAudio.objects.create(
            tenant=tenant_a, key="g" * 64, engine="gtts", language="en-US", text=SENTENCE
        )
        failed = speech_synthesize(audio=audio)
        stored = SpeechAudio.objects.get(pk=audio.pk)

    assert failed.file == stored.file == ""
    assert stored.error.startswith("gTTS")
    assert stored_files(media_root) == []


@pytest.mark.django_db
def test_twilios_voice_and_empty_text_make_no_rows(tenant_a, published):
    assert prepare(tenant_a, engine="say", voice="Polly.Joanna") is None
    assert prepare(tenant_a, text="   ") is None
    with scopes_disabled():
        assert SpeechAudio.objects.count() == 0
    assert published == []


def test_the_key_depends_on_the_tenant_and_on_every_field():
    base = dict(tenant_id="a", engine="espeak", voice="", language="en-US", text="Hi")
    key = speech_key(**base)

    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert speech_key(**base) == key
    for field, other in [
        ("tenant_id", "b"),
        ("engine", "gtts"),
        ("voice", "en-us+f3"),
        ("language", "en-GB"),
        ("text", "Hi!"),
    ]:
        assert speech_key(**{**base, field: other}) != key
    # Fields cannot run into each other.
    assert speech_key(**{**base, "voice": "x", "language": "y"}) != speech_key(
        **{**base, "voice": "", "language": "xy"}
    )


def test_the_url_is_absolute_when_a_public_base_url_is_set(settings):
    settings.PUBLIC_BASE_URL = "https://voice.example.com"

    assert (
        speech_url(SpeechAudio(file="tts/abc.wav")) == "https://voice.example.com/media/tts/abc.wav"
    )


def test_the_url_stays_relative_without_a_public_base_url(settings):
    settings.PUBLIC_BASE_URL = ""

    assert speech_url(SpeechAudio(file="tts/abc.wav")) == "/media/tts/abc.wav"


def test_the_url_of_a_storage_with_absolute_urls_is_kept(settings):
    settings.PUBLIC_BASE_URL = "https://voice.example.com"
    settings.MEDIA_URL = "https://cdn.example.net/media/"

    assert (
        speech_url(SpeechAudio(file="tts/abc.wav")) == "https://cdn.example.net/media/tts/abc.wav"
    )


@pytest.mark.django_db
def test_a_file_saved_by_a_raced_second_synthesis_is_deleted(tenant_a, media_root):
    with scope(tenant=tenant_a):
        audio = SpeechAudio.objects.create(
            tenant=tenant_a, key="r" * 64, engine="espeak", language="en-US", text=SENTENCE
        )
        stale_copy = SpeechAudio.objects.get(pk=audio.pk)
        made = speech_synthesize(audio=audio)

        second = speech_synthesize(audio=stale_copy)

    assert second.file == made.file
    assert stored_files(media_root) == [made.file]


@pytest.mark.django_db
def test_a_file_made_for_a_row_deleted_meanwhile_is_not_kept(tenant_a, media_root):
    with scope(tenant=tenant_a):
        audio = SpeechAudio.objects.create(
            tenant=tenant_a, key="d" * 64, engine="espeak", language="en-US", text=SENTENCE
        )
        SpeechAudio.objects.filter(pk=audio.pk).delete()

        result = speech_synthesize(audio=audio)

    assert result.file == ""
    assert stored_files(media_root) == []


@pytest.mark.django_db
def test_a_failure_is_logged_with_its_reason(tenant_a, media_root, caplog):
    with scope(tenant=tenant_a):
        audio = SpeechAudio.objects.create(
            tenant=tenant_a,
            key="v" * 64,
            engine="espeak",
            voice="nosuchvoice",
            language="en-US",
            text=SENTENCE,
        )
        with caplog.at_level("WARNING", logger="assistants.speech"):
            failed = speech_synthesize(audio=audio)

    assert failed.error.startswith(PERMANENT_ERROR_PREFIX)
    [record] = [r for r in caplog.records if r.name == "assistants.speech"]
    # The message itself carries the reason: a worker's plain log format shows no extra fields.
    assert "espeak" in record.getMessage()
    assert failed.error in record.getMessage()
