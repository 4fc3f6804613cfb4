"""Google Translate's text-to-speech through gTTS: MP3 over the network."""

from __future__ import annotations

import io

import requests
from django.conf import settings
from gtts import gTTS, gTTSError
from gtts.lang import tts_langs

from providers.speech.base import Audio, Engine, TTSError

# BCP-47 primary tags that gTTS spells differently.
_LANGUAGE_ALIASES = {"he": "iw", "jv": "jw", "nb": "no", "nn": "no", "fil": "tl"}

# Regional accents: gTTS picks them by the Google Translate domain it talks to.
_TLDS = {
    ("en", "gb"): "co.uk",
    ("en", "au"): "com.au",
    ("en", "in"): "co.in",
    ("en", "ca"): "ca",
    ("en", "ie"): "ie",
    ("en", "za"): "co.za",
    ("en", "ng"): "com.ng",
    ("fr", "ca"): "ca",
    ("fr", "fr"): "fr",
    ("pt", "br"): "com.br",
    ("pt", "pt"): "pt",
    ("es", "mx"): "com.mx",
    ("es", "es"): "es",
    ("es", "us"): "us",
}


def gtts_language(tag: str) -> tuple[str, str]:
    """gTTS's (lang, tld) for a BCP-47 tag: en-GB -> ("en", "co.uk"); unknown region -> "com"."""
    parts = tag.replace("_", "-").split("-")
    lang = _LANGUAGE_ALIASES.get(parts[0].lower(), parts[0].lower())
    script = next((p.lower() for p in parts[1:] if len(p) == 4), "")
    region = next((p.lower() for p in parts[1:] if len(p) in (2, 3)), "")
    if lang == "zh":
        if region == "hk":
            return "yue", "com"
        if region in ("tw", "mo") or script == "hant":
            return "zh-TW", "com"
        return "zh-CN", "com"
    return lang, _TLDS.get((lang, region), "com")


def _timeout() -> float:
    return float(getattr(settings, "GTTS_TIMEOUT", 4.0))


class GTTSEngine(Engine):
    name = "gtts"

    def synthesize(self, text: str, *, language: str, voice: str) -> Audio:
        """MP3 of `text`. gTTS has no voices, so `voice` is ignored."""
        lang, tld = gtts_language(language)
        if lang not in tts_langs():
            raise TTSError(f"gTTS does not speak {language!r}", permanent=True)
        buffer = io.BytesIO()
        try:
            # Without a timeout gTTS waits forever on a server that accepts and never answers.
            gTTS(text, lang=lang, tld=tld, lang_check=False, timeout=_timeout()).write_to_fp(buffer)
        except (gTTSError, requests.RequestException) as exc:
            raise TTSError(f"gTTS: {exc}") from exc
        except AssertionError as exc:  # gTTS asserts that there is something to speak
            raise TTSError(f"gTTS: {exc or 'nothing to speak'}", permanent=True) from exc
        if not buffer.getvalue():
            raise TTSError("gTTS returned no audio")
        return Audio(data=buffer.getvalue(), content_type="audio/mpeg", extension="mp3")
