"""Speech synthesis engines by name. Engines are imported on first use, so a missing optional
dependency only matters to the tenants that chose that engine."""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from providers.speech.base import Audio, Engine, TTSError

__all__ = ["Audio", "Engine", "TTSError", "get_engine", "ENGINES"]

ENGINES = {
    "gtts": "providers.speech.gtts_engine.GTTSEngine",
    "espeak": "providers.speech.espeak_engine.EspeakEngine",
    "say": "providers.speech.say_engine.SayEngine",
    # Not an assistant choice: a network-like engine for benchmarks and load tests.
    "simulated": "providers.speech.simulated_engine.SimulatedEngine",
}


@cache
def _engine_class(name: str) -> type[Engine]:
    return import_string(ENGINES[name])


def get_engine(name: str) -> Engine:
    """The engine called `name`; an unknown name is a permanent TTSError."""
    if name not in ENGINES:
        raise TTSError(f"unknown speech engine {name!r}", permanent=True)
    return _engine_class(name)()
