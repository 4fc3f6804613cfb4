"""Streaming speech recognition providers by name, imported on first use (like `speech`)."""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from providers.recognition.base import (
    RecognitionError,
    RecognitionEvent,
    RecognitionSettings,
    RecognitionStream,
    Recognizer,
)

__all__ = [
    "PROVIDERS",
    "RecognitionError",
    "RecognitionEvent",
    "RecognitionSettings",
    "RecognitionStream",
    "Recognizer",
    "get_recognizer",
]

PROVIDERS = {
    "deepgram": "providers.recognition.deepgram.DeepgramRecognizer",
    "assemblyai": "providers.recognition.assemblyai.AssemblyAIRecognizer",
}


@cache
def _recognizer_class(name: str) -> type[Recognizer]:
    return import_string(PROVIDERS[name])


def get_recognizer(name: str) -> Recognizer:
    """The provider called `name`; an unknown name is a permanent RecognitionError."""
    if name not in PROVIDERS:
        raise RecognitionError(f"unknown recognition provider {name!r}", permanent=True)
    return _recognizer_class(name)()
