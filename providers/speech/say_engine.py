"""Twilio's own voice: TwiML <Say> speaks the text, so there is nothing to synthesise here."""

from __future__ import annotations

from providers.speech.base import Audio, Engine, TTSError


class SayEngine(Engine):
    name = "say"
    produces_audio = False

    def synthesize(self, text: str, *, language: str, voice: str) -> Audio:
        raise TTSError("Twilio speaks this text itself; there is no audio file", permanent=True)
