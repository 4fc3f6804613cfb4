"""What every streaming recognition provider looks like: audio frames in, events out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field


class RecognitionError(Exception):
    """Recognition failed. `permanent` says that trying again cannot help (e.g. a wrong key)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class RecognitionSettings:
    """How one call is recognised: the assistant's choices and the key that pays for them."""

    api_key: str
    model: str = ""
    language: str = "en-US"
    endpointing_ms: int = 300  # silence that ends the caller's turn
    utterance_end_ms: int = 1000  # the backstop when noise keeps endpointing from firing
    keywords: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RecognitionEvent:
    """One thing the recogniser noticed.

    kinds: "speech_started" (the caller began talking), "interim" (words so far, may change),
    "final" (a stretch of speech that will not change), "end_of_turn" (the caller is done;
    `text` is the whole turn). `speech_end`: where the last word heard ended, in seconds of the
    audio sent on this stream, when the provider says (words with their times).
    """

    kind: str
    text: str = ""
    confidence: float | None = None
    speech_end: float | None = None


class RecognitionStream:
    """One call's recognition session. Open with `async with`; `send()` mu-law 8 kHz audio;
    iterate `events()`. A provider that fails raises RecognitionError out of `events()`."""

    async def __aenter__(self) -> RecognitionStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send(self, audio: bytes, *, voiced: bool = False, quiet: bool = False) -> None:
        """Send caller audio. `voiced`: it is the caller's voice, `quiet`: nobody has spoken
        for a while; either way it may wait a little longer before it goes."""
        raise NotImplementedError

    def events(self) -> AsyncIterator[RecognitionEvent]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Recognizer:
    """A provider. Subclasses set `name` and implement `stream`."""

    name: str = ""

    def stream(self, settings: RecognitionSettings) -> RecognitionStream:
        raise NotImplementedError
