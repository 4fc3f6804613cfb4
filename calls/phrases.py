"""What the platform itself says on a call (not the assistant's answers): one copy of each line.

The conversation engine and every transport take their spoken lines from here, through
`say(line, config=...)`, in `config["language"]`: the assistant's own wording for that language
if it set one (`AssistantConfig.phrases`), else the line translated (Django i18n, `locale/`), else English
(logged, and reported by `manage.py check_translations`).

Adding a line is one line here, in the form `NAME = _("English text.")` (an older plain string
`NAME = "English text."` becomes one by wrapping its text in `_()`); then
`manage.py makemessages --all` and its translation in every `locale/*/LC_MESSAGES/django.po`,
and `manage.py compilemessages` (README: "Languages"). Its override name is `name` in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.phrases import Phrase, base_language, name_of, translate
from core.phrases import _ as _

APOLOGY = _(
    "I'm sorry, I'm having trouble answering right now. Could you say that again in a moment?"
)
NOT_CONFIGURED = _(
    "I'm sorry, this assistant has no language model connected yet, "
    "so I can only answer a few common questions."
)
GOODBYE = _("Thank you for calling. Goodbye.")
SORRY_ERROR = _("We're sorry, something went wrong on our side. Please call again later. Goodbye.")
UNKNOWN_NUMBER = _("Sorry, the number you have called is not in service. Goodbye.")
NOT_AVAILABLE = _(
    "Sorry, this line is not available at the moment. Please try again later. Goodbye."
)
# Said to a new caller while the server is at capacity (calls in progress go on).
LINES_BUSY = _(
    "Sorry, all of our lines are busy right now. Please call again in a few minutes. Goodbye."
)
REPROMPT = _("Sorry, I didn't catch that. Could you say it again?")
# Said on a live line when the language model has not started answering after a moment.
ONE_MOMENT = _("One moment, please.")
# Said after an answer that broke off mid-sentence (the model's stream was cut).
CUT_SHORT = _("Sorry, I lost my train of thought. Could you ask me that again?")
# Said before the greeting of a call that is recorded, when the assistant announces it.
CALL_IS_RECORDED = _("This call is recorded.")
# Stream mode: the recognition provider failed, so the call cannot go on.
CANNOT_HEAR = _(
    "I'm sorry, I can't hear you right now because of a technical problem. "
    "Please call again later. Goodbye."
)
# Said on a live line (and before the answer in gather mode) while a tool takes a while.
CHECKING = _("One moment while I check.")
# Said before the caller is transferred to a destination the assistant named.
TRANSFERRING = _("Let me transfer you to {destination} now.")
# Said when the tools the model asked for gave it nothing to answer with.
TOOL_TROUBLE = _(
    "I'm sorry, I couldn't check that just now. Is there anything else I can help with?"
)


def say(line: str, *, config: Mapping) -> str:
    """`line` as the caller should hear it in `config["language"]` (BCP-47; default English).
    Text that is not a phrase (a tenant's own message) is said as it is."""
    if not isinstance(line, Phrase):
        return line
    language = config.get("language") or "en-US"
    overrides = config.get("phrases") or {}
    name = name_of(line)
    for key in (language, base_language(language)):
        own = overrides.get(key) or {}
        if name and isinstance(own, dict) and own.get(name):
            return own[name]
    return translate(line, language)
