"""Searching a tenant's knowledge base: PostgreSQL full-text search, ranked, with the stemming of
the assistant's language; on SQLite (the embedded default) passages are ranked by the share of
the question's words they contain."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection
from django.db.models import F

from knowledge.models import Passage

# PostgreSQL's text search configurations by language; others search without stemming.
_CONFIGS = {
    "da": "danish",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "hu": "hungarian",
    "it": "italian",
    "nl": "dutch",
    "no": "norwegian",
    "nb": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sv": "swedish",
    "tr": "turkish",
}
_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_WORDS = 30
MIN_FALLBACK_WORD = 3


def search_config(language: str) -> str:
    """The text search configuration for a BCP-47 tag ("en-US" -> "english")."""
    return _CONFIGS.get(language.split("-")[0].lower(), "simple")


@dataclass(frozen=True)
class Hit:
    """A passage found for a question, with its rank (higher is better) and document title."""

    passage_id: str
    title: str
    text: str
    rank: float

    def as_dict(self) -> dict:
        return {"passage": self.passage_id, "title": self.title, "rank": round(self.rank, 4)}


def passages_search(
    *, tenant_id: object, question: str, language: str, limit: int = 3
) -> list[Hit]:
    """The tenant's passages that best match `question`, best first (none for no words)."""
    words = _WORD.findall(question.lower())[:MAX_QUERY_WORDS]
    if not words:
        return []
    passages = Passage.objects.filter(tenant_id=tenant_id)
    if connection.vendor == "postgresql":
        return _ranked(passages, words, search_config(language), limit)
    return _word_matches(passages, words, limit)


def _ranked(passages, words: list[str], config: str, limit: int) -> list[Hit]:
    # Any of the words (the stemmer drops stop words); only \w+ pieces reach the raw query.
    query = SearchQuery(" | ".join(words), config=config, search_type="raw")
    rows = (
        passages.filter(search=query)
        .annotate(rank=SearchRank(F("search"), query), title=F("document__title"))
        .order_by("-rank", "position")
        .values_list("id", "title", "text", "rank")[:limit]
    )
    return [Hit(str(pk), title, text, float(rank)) for pk, title, text, rank in rows]


def _word_matches(passages, words: list[str], limit: int) -> list[Hit]:
    wanted = {w for w in words if len(w) >= MIN_FALLBACK_WORD}
    if not wanted:
        return []
    hits = []
    for pk, title, text in passages.values_list("id", "document__title", "text").iterator():
        found = wanted & set(_WORD.findall(text.lower()))
        if found:
            hits.append(Hit(str(pk), title, text, len(found) / len(wanted)))
    hits.sort(key=lambda hit: -hit.rank)
    return hits[:limit]
