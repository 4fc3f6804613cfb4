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
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
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


def test_the_page_switches_language_when_the_caller_asks(
    daphne_server, fake_groq, alice, assistant_a
):
    with scopes_disabled():
        assistant_a.other_languages = ["es-ES"]
        assistant_a.save()
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
            expect(page.locator("#talk")).to_have_attribute("data-language", "en-US")
            page.uncheck("#speak")
            page.fill("#question", "¿Habla español?")
            page.press("#question", "Enter")
            reply = page.locator("#transcript li.assistant").nth(1)
            expect(reply.locator(".text")).to_contain_text("Claro, con mucho gusto", timeout=15000)
            expect(page.locator("#talk")).to_have_attribute("data-language", "es-ES")
        finally:
            browser.close()


def test_every_answer_gets_its_own_bubble_with_its_own_latency(
    daphne_server, fake_groq, alice, assistant_a
):
    first_llm = "A plumber can come this afternoon. Shall I book two o'clock?"
    second_llm = "Yes, we fix boilers too. An engineer visits within a day."
    faq = "We are open from eight to six, Monday to Friday."
    fake_groq.queue_answer(first_llm)
    fake_groq.queue_answer(second_llm)
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
            answers = page.locator("#transcript li.assistant")

            # FAQ, then the LLM with speech off; the LLM, then FAQ again with speech on.
            questions = [
                ("When are you open?", faq, False),
                ("Can someone come today?", first_llm, False),
                ("Do you repair boilers?", second_llm, True),
                ("What are your opening hours?", faq, True),
            ]
            for number, (question, answer, speak) in enumerate(questions, start=1):
                page.set_checked("#speak", speak)
                page.fill("#question", question)
                page.press("#question", "Enter")
                reply = answers.nth(number)  # the greeting is the first assistant line
                expect(reply.locator(".text")).to_have_text(answer, timeout=15000)
                expect(reply.locator(".latency")).to_have_count(1, timeout=15000)
                expect(page.locator("#status")).to_have_text("Your turn.")
            page.screenshot(path=str(OUTPUT / "talk-conversation.png"), full_page=True)
            texts = answers.locator(".text").all_inner_texts()
            latencies = [answers.nth(i).locator(".latency").count() for i in range(answers.count())]
            callers = page.locator("#transcript li.caller .text").all_inner_texts()
        finally:
            browser.close()

    assert texts == [assistant_a.greeting, faq, first_llm, second_llm, faq]
    assert latencies == [0, 1, 1, 1, 1]
    assert callers == [question for question, _, _ in questions]
    assert (OUTPUT / "talk-conversation.png").stat().st_size > 0


@pytest.mark.parametrize("username", ["alice", "root"])
def test_the_talk_link_of_the_admin_assistant_list_fits_a_1366_pixel_screen(
    daphne_server, alice, superuser, assistant_a, assistant_b, username
):
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(
                f"{daphne_server.base_url}/admin/login/?next=/admin/assistants/assistantconfig/"
            )
            page.fill("#id_username", username)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/assistants/assistantconfig/")
            link = page.get_by_role("link", name="Talk to it").first
            expect(link).to_be_visible()
            page.screenshot(path=str(OUTPUT / f"admin-assistants-{username}.png"))
            # What a click in the middle of the link lands on: the link itself only when no
            # edge of the page or of the results table's scrolling box cuts it off.
            hit = link.evaluate(
                """link => {
                  const box = link.getBoundingClientRect();
                  const at = document.elementFromPoint(box.x + box.width / 2,
                                                       box.y + box.height / 2);
                  return {onLink: at === link || link.contains(at), right: box.right};
                }"""
            )
            href = link.get_attribute("href")
        finally:
            browser.close()

    assert hit["onLink"], hit
    assert href == f"/assistants/{assistant_a.id}/talk/"
