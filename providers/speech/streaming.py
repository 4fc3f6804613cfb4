"""Streaming speech: text in, sentence by sentence; mu-law 8 kHz audio chunks out, the first one
as early as the provider can. Providers are imported on first use, by name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache

from django.utils.module_loading import import_string

from providers.speech.base import TTSError

STREAMING_VOICES = {
    "deepgram": "providers.speech.deepgram_aura.AuraVoice",
    "espeak": "providers.speech.espeak_stream.EspeakVoice",
}


@dataclass(frozen=True)
class VoiceSettings:
    """How one call is spoken: the assistant's voice and the key that pays for it."""

    api_key: str = ""
    voice: str = ""  # the provider's voice or model; empty: its default for `language`
    language: str = "en-US"


class VoiceStream:
    """One call's speech session: `speak()` one sentence at a time. Open with `async with`.
    Raises TTSError when the provider fails; closing a `speak()` early stops that sentence."""

    async def __aenter__(self) -> VoiceStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def speak(self, text: str) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the session holds (a provider connection)."""


class StreamingVoice:
    """A provider. Subclasses set `name` and implement `open`."""

    name: str = ""

    def open(self, settings: VoiceSettings) -> VoiceStream:
        raise NotImplementedError


@cache
def _voice_class(name: str) -> type[StreamingVoice]:
    return import_string(STREAMING_VOICES[name])


def get_streaming_voice(name: str) -> StreamingVoice:
    """The streaming speech provider called `name`; an unknown name is a permanent TTSError."""
    if name not in STREAMING_VOICES:
        raise TTSError(f"unknown streaming voice {name!r}", permanent=True)
    return _voice_class(name)()
