"""A stand-in for a network TTS service, for benchmarks and load tests.

It takes as long as a cloud engine would (`TTS_SIMULATED_BASE_MS` + `TTS_SIMULATED_PER_CHAR_MS` per
character; by default 300 ms + 4 ms per character) and returns a silent WAV as long as the text
would take to say. Assistants cannot pick it in the admin; benchmarks set it directly.
"""

from __future__ import annotations

import io
import time
import wave

from django.conf import settings

from providers.speech.base import Audio, Engine

SAMPLE_RATE = 8000
SECONDS_PER_CHAR = 0.06  # about 150 words a minute


class SimulatedEngine(Engine):
    name = "simulated"

    def synthesize(self, text: str, *, language: str, voice: str) -> Audio:
        cost_ms = settings.TTS_SIMULATED_BASE_MS + settings.TTS_SIMULATED_PER_CHAR_MS * len(text)
        time.sleep(cost_ms / 1000)
        frames = int(len(text) * SECONDS_PER_CHAR * SAMPLE_RATE)
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(1)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(b"\x80" * frames)
        return Audio(data=buffer.getvalue(), content_type="audio/wav", extension="wav")
