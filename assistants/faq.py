"""An assistant's FAQ: canned answers matched against what the caller said, without the LLM."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from assistants.models import FAQEntry


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: how FAQ patterns and questions are compared."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class FAQ:
    """An assistant's active FAQ entries, ready to match: (normalized patterns, answer)."""

    entries: tuple[tuple[tuple[str, ...], str], ...] = ()

    @classmethod
    def load(cls, assistant_id: object) -> FAQ:
        rows = FAQEntry.objects.filter(assistant_id=assistant_id, active=True)
        return cls(
            tuple(
                (tuple(p for p in map(normalize, row.pattern_list()) if p), row.answer)
                for row in rows
            )
        )

    @classmethod
    def of_entries(cls, entries: list[dict]) -> FAQ:
        """From a version's frozen entries ({"patterns", "answer"})."""
        return cls(
            tuple(
                (
                    tuple(p for p in (normalize(line) for line in e["patterns"].splitlines()) if p),
                    e["answer"],
                )
                for e in entries
            )
        )

    def answer(self, utterance: str) -> str | None:
        """The canned answer whose pattern the caller said (whole words, anywhere; the
        longest pattern wins), if any."""
        said = f" {normalize(utterance)} "
        if not said.strip():
            return None
        best: tuple[int, str] | None = None
        for patterns, answer in self.entries:
            for wanted in patterns:
                if f" {wanted} " in said and (best is None or len(wanted) > best[0]):
                    best = (len(wanted), answer)
        return best[1] if best else None
