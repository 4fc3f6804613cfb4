"""Which language a conversation is in, and when it switches to another.

An assistant starts a call in its `language` and accepts its `other_languages` too. A caller's
turn switches the conversation to another accepted language when the caller
- asks for it: names the language with a word such as "speak" ("¿habla español?", "parlez-vous
  français ?", "can we speak German"), or says little more than its name ("Español, por favor");
- speaks it: a turn of at least LANGUAGE_DETECTION_MIN_WORDS words that lingua, choosing among the
  accepted languages only, puts in it with at least LANGUAGE_DETECTION_MIN_CONFIDENCE. Shorter
  turns ("ok", "sí", a name) never switch: a word or two says too little about a language.

The switch changes what the LLM is told to answer in (`instruction`), the voice and speech
language (`speaking`), and the recognition language of the transport.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Mapping

from django.conf import settings
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

from calls.models import Call
from core.phrases import base_language

# How callers name each language, in the languages the platform speaks (lower case).
_NAMES_SAID = {
    "en": ["english", "inglés", "ingles", "anglais", "englisch", "inglês", "inglese",
           "अंग्रेज़ी", "अंग्रेजी", "इंग्लिश", "英語"],
    "es": ["spanish", "español", "espanol", "castellano", "espagnol", "spanisch", "espanhol",
           "spagnolo", "स्पेनिश", "スペイン語"],
    "fr": ["french", "francés", "frances", "français", "francais", "französisch", "francês",
           "francese", "फ़्रेंच", "फ्रेंच", "フランス語"],
    "de": ["german", "alemán", "aleman", "allemand", "deutsch", "alemão", "tedesco", "जर्मन",
           "ドイツ語"],
    "pt": ["portuguese", "portugués", "portugues", "portugais", "portugiesisch", "português",
           "portoghese", "पुर्तगाली", "ポルトガル語"],
    "it": ["italian", "italiano", "italien", "italienisch", "इतालवी", "イタリア語"],
    "hi": ["hindi", "हिंदी", "हिन्दी", "ヒンディー語"],
    "ja": ["japanese", "japonés", "japones", "japonais", "japanisch", "japonês", "giapponese",
           "जापानी", "日本語"],
}  # fmt: skip
# Beginnings of words that make naming a language a request to speak it.
_ASKING = re.compile(
    r"\b(speak|talk|habl|parl|sprech|sprich|rede|fala|falar|falamos|convers)"
    r"|बोल|बात|話"
)
# A turn this short that names a language asks for it ("Spanish, please").
_ASK_MAX_WORDS = 3
# Scripts written without spaces: this many characters count as a word.
_CHARACTERS_PER_WORD = 2
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def accepted(config: Mapping) -> list[str]:
    """The languages (BCP-47 tags) an assistant speaks: its own first, then the others."""
    primary = config.get("language") or "en-US"
    others = [tag for tag in config.get("other_languages") or [] if tag != primary]
    return [primary, *others]


def is_multilingual(config: Mapping) -> bool:
    return len(accepted(config)) > 1


def detect(text: str, *, config: Mapping) -> str | None:
    """The accepted language the caller asks for or speaks in `text` (a tag from
    `accepted(config)`), or None when the turn does not say."""
    languages = accepted(config)
    if len(languages) < 2 or not text:
        return None
    return asked_for(text, languages) or spoken_in(text, languages)


def asked_for(text: str, languages: list[str]) -> str | None:
    """The language of `languages` that `text` asks to speak, if it asks for one."""
    said = unicodedata.normalize("NFC", text.lower())
    asking = _ASKING.search(said) is not None or word_count(said) <= _ASK_MAX_WORDS
    if not asking:
        return None
    for tag in languages:
        for name in _NAMES_SAID.get(base_language(tag), []):
            if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", said) or (
                _UNSPACED.search(name) and name in said
            ):
                return tag
    return None


def spoken_in(text: str, languages: list[str]) -> str | None:
    """The language of `languages` that `text` is in, when it is long enough to tell and
    the detector is confident enough."""
    if word_count(text) < settings.LANGUAGE_DETECTION_MIN_WORDS:
        return None
    by_language = _known(languages)
    if len(by_language) < 2:
        return None
    best = _detector(frozenset(by_language)).compute_language_confidence_values(text)[0]
    if best.value < settings.LANGUAGE_DETECTION_MIN_CONFIDENCE:
        return None
    return by_language.get(best.language)


def word_count(text: str) -> int:
    """Words in `text`; in scripts without spaces (Japanese), every two characters count as
    one."""
    unspaced = len(_UNSPACED.findall(text))
    spaced = len(re.findall(r"\w+", _UNSPACED.sub(" ", text)))
    return spaced + unspaced // _CHARACTERS_PER_WORD


def _known(languages: list[str]) -> dict[Language, str]:
    """{lingua language: the first tag of `languages` in it}, for the languages lingua knows."""
    known: dict[Language, str] = {}
    for tag in languages:
        language = _lingua_language(base_language(tag))
        if language is not None:
            known.setdefault(language, tag)
    return known


def _lingua_language(code: str) -> Language | None:
    try:
        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def _detector(languages: frozenset[Language]) -> LanguageDetector:
    """A detector choosing among `languages` only, its models all loaded when it is built:
    lingua loads them holding the GIL, so loading one later, in the middle of a call, would
    stall every call of the process. Models are shared by every detector of the process (~0.5-0.9
    s and ~90-120 MB for two languages, ~2-2.6 s and ~170-195 MB for all eight: bench/
    language_detection.py). The small models (LANGUAGE_DETECTION_LOW_ACCURACY: under 20 MB for
    eight) are overconfident on
    short mixed turns ("Mañana, tomorrow, demain, morgen": 0.95 Spanish), so they are a choice,
    not the default."""
    builder = LanguageDetectorBuilder.from_languages(*languages)
    if settings.LANGUAGE_DETECTION_LOW_ACCURACY:
        builder = builder.with_low_accuracy_mode()
    return builder.with_preloaded_language_models().build()


def preload() -> None:
    """Load the models of every language the platform speaks, now (at a process' start, with
    LANGUAGE_DETECTION_PRELOAD), rather than at its first call of a multilingual assistant."""
    _detector(frozenset(_known(list(settings.PHRASE_LANGUAGES))))


_warming: set[frozenset[Language]] = set()
_warming_lock = threading.Lock()


def warm_up_soon(config: Mapping) -> None:
    """Load the detector's models for an assistant's languages (once per process) as the call
    starts, in a thread of their own, so that they are there by the caller's first words. The
    process still pauses while they load (lingua holds the GIL): LANGUAGE_DETECTION_PRELOAD
    moves that pause to the process' start."""
    languages = frozenset(_known(accepted(config)))
    with _warming_lock:
        if len(languages) < 2 or languages in _warming:
            return
        _warming.add(languages)
    threading.Thread(
        target=_detector, args=(languages,), name="language-detector-warm-up", daemon=True
    ).start()


def name(tag: str) -> str:
    """The English name of a tag's language ("es-MX" -> "Spanish")."""
    language = _lingua_language(base_language(tag))
    return language.name.title() if language is not None else tag


def instruction(tag: str) -> str:
    """What the LLM is told so that it answers in `tag`'s language."""
    return (
        f"The caller speaks {name(tag)}. Always answer in {name(tag)} ({tag}), "
        "whatever language earlier turns were in."
    )


def speaking(config: Mapping, tag: str) -> dict:
    """The config to speak `tag` with: that language (first of the accepted ones), and the
    assistant's voice for it (its `voices` entry; its main voice in its own language; else the
    engine's default)."""
    voices = config.get("voices") or {}
    voice = voices.get(tag) or voices.get(base_language(tag))
    if voice is None:
        voice = config.get("tts_voice", "") if tag == config.get("language") else ""
    # The same languages are accepted, the current one first.
    others = [language for language in accepted(config) if language != tag]
    return {**config, "language": tag, "other_languages": others, "tts_voice": voice}


def for_call(call: Call) -> dict:
    """The config to speak a call's current language with."""
    config = call.config_snapshot
    return speaking(config, call.language or config.get("language") or "en-US")
