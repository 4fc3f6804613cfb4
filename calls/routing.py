"""Model routing: an assistant with a fast model sends it the short, simple turns and its main
model the rest.

The rule is meant to be explained to a business in one breath. A turn goes to the fast model
when no tool of the assistant is named in it and it is either
- short: at most ROUTING_SHORT_WORDS words, or
- near an FAQ question: it holds most of the words of one of the FAQ's patterns (close to a
  canned answer, but not said exactly enough to be answered by it), in up to twice that many.
Every other turn goes to the main model, with the reason why. If the fast model fails, the
main model answers (it is the fast model's fallback).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from django.conf import settings

from assistants.faq import FAQ, normalize
from assistants.models import CallConfig
from calls.models import Turn

# Words of a tool's name that say nothing about what the caller wants from it.
GENERIC_TOOL_WORDS = frozenset(
    {"call", "caller", "check", "find", "get", "info", "lookup", "look", "search", "tool", "data"}
)
# Share of an FAQ pattern's words a turn must hold to be near that question.
FAQ_NEAR_SHARE = 0.6
MIN_TOOL_WORD = 4

SHORT = "short"
FAQ_NEAR = "faq-near"
LONG = "long"
TOOL_NAMED = "tool-named"


@dataclass(frozen=True)
class Route:
    """The model a turn goes to, and why (both stored on the assistant's turn)."""

    model: str
    fallback_model: str
    route: str = Turn.Route.NONE
    reason: str = ""


def tool_words(tools: list[dict]) -> frozenset[str]:
    """The telling words of the tools' names (`book_table`, `orderStatus` -> book, table,
    order, status)."""
    words = set()
    for tool in tools:
        name = (tool.get("function") or tool).get("name", "")
        spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
        words.update(
            word
            for word in normalize(spaced).split()
            if len(word) >= MIN_TOOL_WORD and word not in GENERIC_TOOL_WORDS
        )
    return frozenset(words)


def _names_tool(said: list[str], words: frozenset[str]) -> str:
    """The tool word the caller said (`booking` names `book`), or ""."""
    for word in said:
        for wanted in words:
            if word.startswith(wanted) or (len(word) >= MIN_TOOL_WORD and wanted.startswith(word)):
                return wanted
    return ""


def faq_nearness(faq: FAQ, said: set[str]) -> float:
    """The largest share of one FAQ pattern's words that the caller said."""
    best = 0.0
    for patterns, _ in faq.entries:
        for pattern in patterns:
            words = set(pattern.split())
            if words:
                best = max(best, len(words & said) / len(words))
    return best


def route(*, config: CallConfig, utterance: str, faq: FAQ, tool_names: frozenset[str]) -> Route:
    """Which model answers `utterance` (see the module's rule)."""
    main, fast = config["model"], config.get("fast_model", "")
    fallback = config.get("fallback_model", "")
    if not fast or fast == main:
        return Route(model=main, fallback_model=fallback)
    to_main = Route(model=main, fallback_model=fallback, route=Turn.Route.MAIN)
    to_fast = Route(model=fast, fallback_model=main, route=Turn.Route.FAST)
    said = normalize(utterance).split()
    if named := _names_tool(said, tool_names):
        return replace(to_main, reason=f"{TOOL_NAMED}: {named}"[:64])
    limit = settings.ROUTING_SHORT_WORDS
    if len(said) <= limit:
        return replace(to_fast, reason=SHORT)
    if len(said) <= 2 * limit and faq_nearness(faq, set(said)) >= FAQ_NEAR_SHARE:
        return replace(to_fast, reason=FAQ_NEAR)
    return replace(to_main, reason=LONG)
