"""Lines the platform itself speaks (not an assistant's answers), said in the caller's language.

A `Phrase` is the English text of a line, marked for translation: `_("...")` makes one, and
`manage.py makemessages` finds it there (xgettext reads `_()` calls). Its translations live in
`locale/<language>/LC_MESSAGES/django.po`. Modules that define phrases register them by name
(the apps' `ready()` does it), which is how per-assistant overrides and
`manage.py check_translations` find every line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.utils import translation

logger = logging.getLogger(__name__)


class Phrase(str):
    """The English text of one of the platform's lines; `translate()` says it in another
    language. Being a `str`, it is still the English line wherever it is used as text."""

    __slots__ = ()


_ = Phrase

_registry: dict[str, Phrase] = {}


def register(lines: Mapping[str, object], *, prefix: str = "") -> None:
    """Register the phrases among `lines` (e.g. a module's `vars()`) under their lower-case
    names, so that they can be overridden and checked."""
    for name, value in lines.items():
        if isinstance(value, Phrase):
            _registry[prefix + name.lower()] = value


def registered() -> dict[str, Phrase]:
    """Every registered phrase, by name."""
    return dict(_registry)


def name_of(phrase: str) -> str | None:
    """The registered name of `phrase`, or None for text that is not one (e.g. a tenant's own
    message)."""
    if not isinstance(phrase, Phrase):
        return None
    return next((name for name, known in _registry.items() if known == phrase), None)


def base_language(tag: str) -> str:
    """The language of a BCP-47 tag, without region or script: "es-MX" -> "es"."""
    return (tag or "en").split("-")[0].lower()


def translate(phrase: Phrase, language: str) -> str:
    """`phrase` in `language` (a BCP-47 tag). A missing translation falls back to English and
    is logged: a caller should never hear English by accident, unnoticed."""
    code = base_language(language)
    text = _catalogue_text(phrase, code)
    if text == phrase and code != "en":
        logger.warning("phrase not translated", extra={"language": code, "phrase": phrase[:80]})
    return text


def is_translated(phrase: Phrase, language: str) -> bool:
    """Whether the compiled catalogue has `phrase` in `language` (English always has it)."""
    code = base_language(language)
    return code == "en" or _catalogue_text(phrase, code) != phrase


def _catalogue_text(phrase: Phrase, code: str) -> str:
    with translation.override(code):
        return translation.gettext(str(phrase))
