"""Cut a stream of text deltas into sentences, so each can be spoken as soon as it is complete."""

from __future__ import annotations

import re

_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sr",
    "jr",
    "st",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "approx",
    "no",
    "mt",
    "ave",
    "inc",
    "ltd",
    "co",
    "a.m",
    "p.m",
}
# End of sentence: . ! ? or … with optional closing quotes/brackets, then a space; or a CJK full
# stop, which needs no space after it.
_END = re.compile(r"([.!?…]+[\"'”’)\]]*)(?=\s)\s*|([。！？]+[」』”’）]*)\s*")


class SentenceSplitter:
    """Feed text deltas with `feed()`; get back the sentences they completed."""

    def __init__(self, *, min_chars: int = 12) -> None:
        self._buffer = ""
        self._min_chars = min_chars

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        sentences: list[str] = []
        start = 0
        for match in _END.finditer(self._buffer):
            end = match.end(1) if match.group(1) else match.end(2)
            candidate = self._buffer[start:end].strip()
            if len(candidate) < self._min_chars or self._is_abbreviation(self._buffer[:end]):
                continue
            sentences.append(candidate)
            start = match.end()
        self._buffer = self._buffer[start:]
        return sentences

    def flush(self) -> list[str]:
        """The text left over at the end of the stream, as a last sentence."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    @staticmethod
    def _is_abbreviation(text: str) -> bool:
        if not text.endswith("."):
            return False
        word = re.split(r"\s", text[:-1])[-1].lower().lstrip("(\"'")
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return True
        return False


def split_sentences(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return splitter.feed(text + " ") + splitter.flush()
