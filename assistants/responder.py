"""The assistant's brain: FAQ answer, else cached answer, else the LLM, sentence by sentence."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings

from assistants import llm
from assistants.models import FAQEntry
from assistants.sentences import SentenceSplitter, split_sentences
from config import caching

logger = logging.getLogger(__name__)

APOLOGY = "I'm sorry, I'm having trouble answering right now. Could you say that again in a moment?"
NOT_CONFIGURED = (
    "I'm sorry, this assistant has no language model connected yet, "
    "so I can only answer a few common questions."
)


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


@dataclass
class Reply:
    """What the responder said and how it got there (filled in while sentences are consumed)."""

    source: str = ""  # faq, cache, llm, apology, not_configured
    sentences: list[str] = field(default_factory=list)
    cache_hit: bool = False
    llm: llm.LLMResult = field(default_factory=llm.LLMResult)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def ms_since_start(self, moment: float | None) -> int | None:
        return None if moment is None else max(0, round((moment - self.started_at) * 1000))


def build_messages(*, config: dict, history: list[tuple[str, str]], utterance: str) -> list[dict]:
    """System prompt, the last `context_turns` turns, then what the caller just said."""
    messages = [{"role": "system", "content": config["system_prompt"]}]
    keep = int(config.get("context_turns", 10))
    for role, text in history[-keep:] if keep else []:
        if text:
            messages.append({"role": "user" if role == "caller" else "assistant", "content": text})
    messages.append({"role": "user", "content": utterance[: settings.MAX_UTTERANCE_CHARS]})
    return messages


def _cache_key(*, tenant_id: object, config: dict, utterance: str) -> str:
    raw = "|".join(
        [str(tenant_id), config["id"], str(config.get("updated_at")), normalize(utterance)]
    )
    return "answer:" + hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class ReadyAnswer:
    """An answer found without the LLM (`source` faq or cache), or where to cache the LLM's."""

    source: str = ""
    text: str = ""
    cache_key: str = ""  # set when the LLM's answer to this question may be cached


def ready_answer(
    *, tenant_id: object, config: dict, history: list[tuple[str, str]], utterance: str,
    faq: FAQ | None = None,
) -> ReadyAnswer:  # fmt: skip
    """The FAQ answer, else the cached answer to the same first question, if any.

    `faq`: the assistant's entries when already loaded (else they are read now)."""
    faq = FAQ.load(config["id"]) if faq is None else faq
    if answer := faq.answer(utterance):
        return ReadyAnswer(source="faq", text=answer)
    cacheable = settings.ANSWER_CACHE_SECONDS > 0 and not any(r == "caller" for r, _ in history)
    if not cacheable:
        return ReadyAnswer()
    key = _cache_key(tenant_id=tenant_id, config=config, utterance=utterance)
    if cached := _cache_get(key):
        return ReadyAnswer(source="cache", text=cached)
    return ReadyAnswer(cache_key=key)


def remember_answer(*, cache_key: str, text: str) -> None:
    """Keep a complete LLM answer for the next caller asking the same first question."""
    if cache_key and text:
        _cache_set(cache_key, text)


def respond(
    *, tenant_id: object, config: dict, history: list[tuple[str, str]], utterance: str,
    deadline: float, reply: Reply,
) -> Iterator[str]:  # fmt: skip
    """Yield the answer sentence by sentence; `reply` records the source, timings and usage.

    FAQ first (no LLM call), then the answer cache for first questions, then the LLM stream,
    cut into sentences as it arrives. Always yields at least one sentence.
    """
    ready = ready_answer(tenant_id=tenant_id, config=config, history=history, utterance=utterance)
    if ready.text:
        reply.source, reply.cache_hit = ready.source, ready.source == "cache"
        yield from _record(reply, split_sentences(ready.text))
        return
    cacheable, key = bool(ready.cache_key), ready.cache_key

    reply.source = "llm"
    splitter = SentenceSplitter()
    messages = build_messages(config=config, history=history, utterance=utterance)
    for delta in llm.stream_reply(
        model=config["model"], fallback_model=config.get("fallback_model", ""),
        messages=messages, temperature=float(config["temperature"]),
        max_tokens=int(config["max_tokens"]), deadline=deadline, result=reply.llm,
    ):  # fmt: skip
        yield from _record(reply, splitter.feed(delta))
    yield from _record(reply, splitter.flush())

    if not reply.sentences:
        reply.source = "not_configured" if reply.llm.not_configured else "apology"
        yield from _record(reply, [NOT_CONFIGURED if reply.llm.not_configured else APOLOGY])
    elif cacheable and not (reply.llm.failed or reply.llm.truncated):
        remember_answer(cache_key=key, text=reply.text)


def _record(reply: Reply, sentences: list[str]) -> Iterator[str]:
    for sentence in sentences:
        reply.sentences.append(sentence)
        yield sentence


def _cache_get(key: str) -> str | None:
    try:
        return caching.shared_cache().get(key)
    except Exception:  # the cache is an optimisation: carry on without it
        logger.warning("answer cache unavailable", exc_info=True)
        return None


def _cache_set(key: str, value: str) -> None:
    try:
        caching.shared_cache().set(key, value, timeout=settings.ANSWER_CACHE_SECONDS)
    except Exception:
        logger.warning("answer cache unavailable", exc_info=True)
