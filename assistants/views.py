"""Pages about assistants."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from assistants.selectors import assistant_for_user


@login_required
def talk(request: HttpRequest, assistant_id) -> HttpResponse:
    """Talk to an assistant with the microphone (or a text box) before giving it a number."""
    assistant = assistant_for_user(user=request.user, assistant_id=assistant_id)
    if assistant is None:
        raise Http404("No such assistant.")
    return render(
        request,
        "assistants/talk.html",
        {
            "assistant": assistant,
            "socket_path": f"/ws/assistants/{assistant.id}/talk/",
            "config": assistant.snapshot(),
        },
    )
