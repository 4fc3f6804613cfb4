"""What every speech engine looks like: one method, one result type, one error type."""

from __future__ import annotations

from dataclasses import dataclass


class TTSError(Exception):
    """Synthesis failed. `permanent` says that trying the same text again cannot help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class Audio:
    """Synthesised speech, ready to be stored."""

    data: bytes
    content_type: str
    extension: str


class Engine:
    """A speech engine. Subclasses set `name` and implement `synthesize`."""

    name: str = ""
    # False for engines that speak through Twilio itself and never make a file.
    produces_audio: bool = True

    def synthesize(self, text: str, *, language: str, voice: str) -> Audio:
        """Speak `text` in `language` (BCP-47) with `voice` (empty: the engine's default).

        Raises TTSError on any failure.
        """
        raise NotImplementedError
