"""Turning a document into passages: plain text from Markdown or HTML, cut at sentence ends."""

from __future__ import annotations

import io
import re

from django.utils.html import strip_tags
from pypdf import PdfReader
from pypdf.errors import PyPdfError

PASSAGE_CHARS = 600

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKDOWN_MARKS = re.compile(r"^\s{0,3}(#{1,6}|[-*+]|\d+\.|>)\s+|[*_`~]{1,3}", re.MULTILINE)
_HTML_SKIPPED = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def markdown_text(markdown: str) -> str:
    """What Markdown says, without its marks (headings, emphasis, links keep their words)."""
    return _MARKDOWN_MARKS.sub("", _MARKDOWN_LINK.sub(r"\1", markdown))


def html_text(html: str) -> str:
    """The readable text of a web page (scripts and styles dropped), one block per line."""
    html = _HTML_SKIPPED.sub(" ", html)
    html = re.sub(r"<(br|/p|/div|/li|/h\d|/tr)\b[^>]*>", "\n\n", html, flags=re.IGNORECASE)
    return strip_tags(html)


def pdf_text(data: bytes) -> str:
    """The text of a PDF's pages, a paragraph per page (raises ValueError for a broken PDF)."""
    try:
        reader = PdfReader(io.BytesIO(data))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a readable PDF ({type(exc).__name__})") from exc


def split(text: str, *, limit: int = PASSAGE_CHARS) -> list[str]:
    """Passages of at most about `limit` characters: paragraphs, joined while they fit, and
    long paragraphs cut between sentences (a sentence longer than `limit` is cut by length)."""
    passages: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
            for piece in _by_length(sentence, limit):
                if current and len(current) + 1 + len(piece) > limit:
                    passages.append(current)
                    current = ""
                current = f"{current} {piece}".strip()
        if current and len(current) > limit // 2:
            passages.append(current)
            current = ""
    if current:
        passages.append(current)
    return passages


def _by_length(sentence: str, limit: int) -> list[str]:
    return [sentence[i : i + limit] for i in range(0, len(sentence), limit)] if sentence else []
