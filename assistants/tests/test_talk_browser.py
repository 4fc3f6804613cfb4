"""The talk page in real headless Chromium (Playwright) against a real daphne server: log in,
type a question in the fallback box, watch the answer stream in with its latency."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect, sync_playwright

from calls.models import Call, Turn
from conftest import PASSWORD
from devtools.testing import BASE_DIR

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
OUTPUT = BASE_DIR / "test-output"

pytestmark = pytest.mark.django_db(transaction=True)


def test_typing_a_question_streams_the_answer_with_its_latency(
    daphne_server, fake_groq, alice, assistant_a
):
    answer = "We can send a plumber this afternoon. Would two o'clock suit you?"
    fake_groq.set_answer(answer)
    fake_groq.set_latency(tokens_per_second=15)  # slow enough to see it stream
    OUTPUT.mkdir(exist_ok=True)
    talk_url = f"{daphne_server.base_url}/assistants/{assistant_a.id}/talk/"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(
                f"{daphne_server.base_url}/admin/login/?next=/assistants/{assistant_a.id}/talk/"
            )
            page.fill("#id_username", "alice")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(talk_url)
            expect(page.locator("#status")).to_have_text("Connected. Ask something.", timeout=15000)
            # The text box is always there, for browsers (like this one) without a microphone.
            expect(page.locator("#question")).to_be_visible()
            page.uncheck("#speak")

            # Note every text the answer's line shows, to see it grow piece by piece.
            page.evaluate(
                """() => {
                  window.seen = [];
                  new MutationObserver(() => {
                    const line = document.querySelectorAll('#transcript li.assistant .text')[1];
                    if (line) window.seen.push(line.textContent);
                  }).observe(document.getElementById('transcript'),
                             {childList: true, subtree: true, characterData: true});
                }"""
            )
            page.fill("#question", "Can someone come today?")
            page.press("#question", "Enter")
            reply = page.locator("#transcript li.assistant").nth(1)  # after the greeting
            expect(reply.locator(".text")).to_have_text(answer, timeout=15000)
            expect(reply.locator(".latency")).to_contain_text("first token", timeout=15000)
            page.screenshot(path=str(OUTPUT / "talk.png"), full_page=True)
            latency = reply.locator(".latency").inner_text()
            seen = page.evaluate("window.seen")
        finally:
            browser.close()

    growing = [text for text in dict.fromkeys(seen) if text and text != answer]
    assert len(growing) >= 3, seen  # it streamed in: several partial texts before the whole
    assert all(answer.startswith(text) for text in growing)
    assert "whole answer" in latency
    with scopes_disabled():
        call = Call.objects.get(mode=Call.Mode.WEB)
        texts = list(
            Turn.objects.filter(call=call).order_by("sequence").values_list("text", flat=True)
        )
    assert texts == ["Can someone come today?", answer]
    assert (OUTPUT / "talk.png").stat().st_size > 0
