"""Languages: detecting the caller's language (the real lingua detector), the platform's lines in
every supported language, per-assistant overrides, and the missing-translation check."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.core.management import CommandError, call_command

from calls import languages, phrases
from core import phrases as core_phrases
from tenants.ratelimits import DEFAULT_MESSAGES

MULTILINGUAL = {"language": "en-US", "other_languages": ["es-ES", "fr-FR", "ja-JP", "de-DE"]}


# --- detection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "language"),
    [
        ("¿Habla español?", "es-ES"),
        ("Can we speak German, please?", "de-DE"),
        ("Parlez-vous français ?", "fr-FR"),
        ("Español, por favor", "es-ES"),
        ("日本語で話せますか", "ja-JP"),
        ("Quisiera reservar una cita para mañana por la tarde", "es-ES"),
        ("Je voudrais prendre rendez-vous pour demain matin", "fr-FR"),
        ("予約をお願いしたいのですが", "ja-JP"),
        ("Can I book a cleaning for next week?", "en-US"),
    ],
)
def test_the_callers_language_is_detected_from_an_ask_or_a_sentence(said, language):
    assert languages.detect(said, config=MULTILINGUAL) == language


@pytest.mark.parametrize("said", ["Hola", "sí claro", "Merci", "ok", "Danke schön"])
def test_turns_of_a_word_or_two_never_switch(said):
    assert languages.detect(said, config=MULTILINGUAL) is None


def test_a_sentence_below_the_confidence_threshold_does_not_switch(settings):
    said = "Quisiera reservar una cita para mañana por la tarde"
    settings.LANGUAGE_DETECTION_MIN_CONFIDENCE = 1.01  # no detection is ever this sure
    assert languages.detect(said, config=MULTILINGUAL) is None
    settings.LANGUAGE_DETECTION_MIN_CONFIDENCE = 0.8
    assert languages.detect(said, config=MULTILINGUAL) == "es-ES"


def test_a_mixed_sentence_the_detector_is_unsure_of_does_not_switch():
    # Half English, half Spanish: no language reaches the default confidence.
    said = "Hello buenos días, I would like una cita por favor"
    assert languages.detect(said, config=MULTILINGUAL) is None


def test_naming_a_language_in_passing_is_not_an_ask():
    said = "I really love Spanish food on Friday evenings"
    assert languages.detect(said, config=MULTILINGUAL) == "en-US"


def test_only_the_assistants_languages_are_detected():
    english_and_french = {"language": "en-US", "other_languages": ["fr-FR"]}
    assert languages.detect("¿Habla español?", config=english_and_french) is None
    spanish = "Quisiera reservar una cita para mañana por la tarde"
    assert languages.detect(spanish, config=english_and_french) != "es-ES"


def test_an_assistant_with_one_language_never_switches():
    assert languages.detect("¿Habla español?", config={"language": "en-US"}) is None


def test_japanese_words_are_counted_without_spaces():
    assert (
        languages.word_count("予約をお願いしたいのですが") >= settings.LANGUAGE_DETECTION_MIN_WORDS
    )
    assert languages.word_count("はい") < settings.LANGUAGE_DETECTION_MIN_WORDS


# --- voices and the LLM's instruction --------------------------------------------------------------


def test_each_language_is_spoken_with_its_own_voice():
    config = {
        "language": "en-US",
        "tts_voice": "Polly.Joanna",
        "voices": {"es-ES": "Polly.Lucia", "fr": "Polly.Lea"},
    }
    assert languages.speaking(config, "en-US")["tts_voice"] == "Polly.Joanna"
    assert languages.speaking(config, "es-ES")["tts_voice"] == "Polly.Lucia"
    assert languages.speaking(config, "fr-FR")["tts_voice"] == "Polly.Lea"  # by its language
    # No voice for German: the engine's default German voice, never the English one.
    german = languages.speaking(config, "de-DE")
    assert (german["language"], german["tts_voice"]) == ("de-DE", "")


def test_speaking_another_language_keeps_the_same_languages_accepted():
    spanish = languages.speaking(MULTILINGUAL, "es-ES")
    assert languages.accepted(spanish) == ["es-ES", "en-US", "fr-FR", "ja-JP", "de-DE"]
    assert languages.detect("Can we speak English, please?", config=spanish) == "en-US"


def test_the_llm_is_told_which_language_to_answer_in():
    assert "Always answer in Spanish (es-ES)" in languages.instruction("es-ES")
    assert languages.name("ja-JP") == "Japanese"


# --- the platform's lines ------------------------------------------------------------------------


def _phrase_modules():
    """The `phrases` module of every installed app that has one (calls and the apps above it)."""
    for app in django_apps.get_app_configs():
        if importlib.util.find_spec(f"{app.name}.phrases") is not None:
            yield importlib.import_module(f"{app.name}.phrases")


def test_every_platform_line_is_registered_by_name():
    names = core_phrases.registered()
    assert names["goodbye"] == phrases.GOODBYE
    assert names["limit_concurrent_calls"] == DEFAULT_MESSAGES["concurrent_calls"]
    lines = {
        name.lower()
        for module in _phrase_modules()
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, core_phrases.Phrase)
    }
    assert set(names) == lines | {f"limit_{kind}" for kind in DEFAULT_MESSAGES}


@pytest.mark.parametrize("language", settings.PHRASE_LANGUAGES)
def test_every_line_is_said_in_every_supported_language(language):
    for name, phrase in core_phrases.registered().items():
        said = phrases.say(phrase, config={"language": f"{language}-XX"})
        if language == "en":
            assert said == phrase
        else:
            assert said and said != phrase, f"{name} in {language}"


def test_a_spanish_line_is_spanish():
    assert phrases.say(phrases.GOODBYE, config={"language": "es-MX"}) == (
        "Gracias por llamar. Adiós."
    )
    assert phrases.say(phrases.REPROMPT, config={"language": "fr-CA"}) == (
        "Pardon, je n'ai pas bien compris. Pourriez-vous répéter ?"
    )


def test_an_assistants_own_wording_wins_for_its_language_only():
    config = {
        "language": "es-ES",
        "phrases": {"es": {"goodbye": "¡Hasta pronto, gracias por llamar!"}},
    }
    assert phrases.say(phrases.GOODBYE, config=config) == "¡Hasta pronto, gracias por llamar!"
    assert phrases.say(phrases.REPROMPT, config=config) == (
        "Perdone, no le he entendido. ¿Podría repetirlo?"
    )
    in_french = {**config, "language": "fr-FR"}
    assert phrases.say(phrases.GOODBYE, config=in_french) == "Merci de votre appel. Au revoir."


def test_a_full_tag_override_wins_over_its_language():
    config = {
        "language": "es-MX",
        "phrases": {"es": {"goodbye": "Adiós."}, "es-MX": {"goodbye": "¡Hasta luego!"}},
    }
    assert phrases.say(phrases.GOODBYE, config=config) == "¡Hasta luego!"


def test_a_tenants_own_message_is_said_as_written():
    assert phrases.say("Cerrado por vacaciones.", config={"language": "de-DE"}) == (
        "Cerrado por vacaciones."
    )


def test_a_missing_translation_falls_back_to_english_and_is_logged(caplog):
    untranslated = core_phrases.Phrase("A line nobody has translated yet.")
    assert phrases.say(untranslated, config={"language": "es-ES"}) == untranslated
    assert any(r.getMessage() == "phrase not translated" for r in caplog.records)


# --- the check ------------------------------------------------------------------------------------


def test_the_translation_check_passes_on_the_shipped_catalogues(capsys):
    call_command("check_translations")
    count = len(core_phrases.registered())
    assert f"{count} phrases translated into 8 languages" in capsys.readouterr().out


@pytest.fixture
def new_untranslated_phrase():
    new = core_phrases.Phrase("Please hold while I transfer you.")
    core_phrases.register({"TRANSFERRING": new})
    yield new
    core_phrases._registry.pop("transferring")


def test_the_translation_check_fails_on_a_new_untranslated_phrase(new_untranslated_phrase):
    with pytest.raises(CommandError) as failure:
        call_command("check_translations")
    message = str(failure.value)
    for language in ("es", "fr", "de", "pt", "it", "hi", "ja"):
        assert f"{language}: transferring" in message
    assert "en: transferring" not in message


def test_preloading_builds_the_detector_of_every_language_the_platform_speaks():
    languages.preload()
    everything = frozenset(languages._known(list(settings.PHRASE_LANGUAGES)))
    assert len(everything) == len(settings.PHRASE_LANGUAGES)
    hits = languages._detector.cache_info().hits
    languages._detector(everything)  # already built: no second load
    assert languages._detector.cache_info().hits == hits + 1
