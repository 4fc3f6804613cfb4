"""`manage.py check_translations`: every line the platform speaks, in every language it speaks.

Fails (exit 1) naming each phrase without a translation in one of PHRASE_LANGUAGES, as the
compiled catalogues in `locale/` have it: a line missing there is one a caller would hear in
English. CI runs it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.phrases import is_translated, registered


class Command(BaseCommand):
    help = "Fail when one of the platform's spoken lines lacks a translation."

    def handle(self, *args: object, **options: object) -> None:
        phrases = registered()
        missing = [
            f"{language}: {name} ({phrase!r})"
            for language in settings.PHRASE_LANGUAGES
            for name, phrase in sorted(phrases.items())
            if not is_translated(phrase, language)
        ]
        if missing:
            raise CommandError(
                f"{len(missing)} missing translation(s) (add them to locale/<language>/LC_MESSAGES/"
                "django.po, then run manage.py compilemessages):\n" + "\n".join(missing)
            )
        self.stdout.write(
            f"{len(phrases)} phrases translated into {len(settings.PHRASE_LANGUAGES)} languages: "
            + ", ".join(settings.PHRASE_LANGUAGES)
        )
