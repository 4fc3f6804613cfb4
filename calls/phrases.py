"""What the platform itself says on a call (not the assistant's answers): one copy of each line.

The conversation engine and every transport take their spoken lines from here.
"""

from __future__ import annotations

APOLOGY = "I'm sorry, I'm having trouble answering right now. Could you say that again in a moment?"
NOT_CONFIGURED = (
    "I'm sorry, this assistant has no language model connected yet, "
    "so I can only answer a few common questions."
)
GOODBYE = "Thank you for calling. Goodbye."
SORRY_ERROR = "We're sorry, something went wrong on our side. Please call again later. Goodbye."
UNKNOWN_NUMBER = "Sorry, the number you have called is not in service. Goodbye."
NOT_AVAILABLE = "Sorry, this line is not available at the moment. Please try again later. Goodbye."
REPROMPT = "Sorry, I didn't catch that. Could you say it again?"
# Said on a live line when the language model has not started answering after a moment.
ONE_MOMENT = "One moment, please."
# Said after an answer that broke off mid-sentence (the model's stream was cut).
CUT_SHORT = "Sorry, I lost my train of thought. Could you ask me that again?"
# Said on a live line (and before the answer in gather mode) while a tool takes a while.
CHECKING = "One moment while I check."
# Said before the caller is transferred to a destination the assistant named.
TRANSFERRING = "Let me transfer you to {destination} now."
# Said when the tools the model asked for gave it nothing to answer with.
TOOL_TROUBLE = "I'm sorry, I couldn't check that just now. Is there anything else I can help with?"
