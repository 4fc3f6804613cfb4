"""The dashboard in real headless Chromium (Playwright) against a real daphne server: log in,
watch a simulated call arrive, grow turn by turn and end, without reloading the page."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django_scopes import scopes_disabled

from calls import events
from calls.models import Call
from calls.transports.signatures import sign
from conftest import PASSWORD
from devtools.testing import BASE_DIR

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
OUTPUT = BASE_DIR / "test-output"
WAIT_MS = 15_000

pytestmark = pytest.mark.django_db(transaction=True)


class Caller:
    """Plays Twilio's part against the daphne server: signed form posts."""

    def __init__(self, base_url: str, *, to: str, from_: str) -> None:
        self.base_url = base_url
        self.to = to
        self.from_ = from_
        self.call_sid = "CA" + os.urandom(16).hex()

    def post(self, path: str, **extra: str) -> str:
        params = {
            "CallSid": self.call_sid, "AccountSid": "AC" + "1" * 32, "From": self.from_,
            "To": self.to, "Direction": "inbound", "ApiVersion": "2010-04-01", **extra,
        }  # fmt: skip
        url = self.base_url + path
        signature = sign(url=url, params=params, auth_token=settings.TWILIO_AUTH_TOKEN)
        response = requests.post(
            url, data=params, headers={"X-Twilio-Signature": signature}, timeout=20
        )
        assert response.status_code in (200, 204), response.text
        return response.text

    def say(self, speech: str) -> str:
        return self.post(
            "/twilio/gather", CallStatus="in-progress", SpeechResult=speech, Confidence="0.9"
        )


def off_loop(function, *args, **kwargs):
    """Run Django code outside the event loop that Playwright's sync API keeps in this thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result(timeout=30)


def find_call(call_sid: str) -> Call:
    with scopes_disabled():
        return Call.objects.get(call_sid=call_sid)


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        try:
            yield page
        finally:
            browser.close()


def test_a_call_appears_grows_and_ends_live(
    daphne_server, fake_groq, alice, number_a, browser_page, monkeypatch
):
    page = browser_page
    fake_groq.set_answer("A plumber can come this afternoon between two and four.")

    page.goto(daphne_server.base_url + "/dashboard/")
    page.fill("input[name=username]", alice.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(daphne_server.base_url + "/dashboard/")
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)
    assert page.text_content("[data-figure=calls]") == "0"

    caller = Caller(daphne_server.base_url, to=number_a.number, from_="+15551230123")
    caller.post("/twilio/voice", CallStatus="ringing")
    card = page.locator(".live-call").first
    card.wait_for(timeout=WAIT_MS)
    assert card.locator(".from").text_content() == "••••••0123"
    assert card.locator(".assistant").text_content() == "Acme front desk"
    page.wait_for_function(
        "document.querySelector('[data-figure=calls]').textContent === '1'", timeout=WAIT_MS
    )

    caller.say("what are your opening hours")
    page.locator(".live-call .turn.caller", has_text="what are your opening hours").wait_for(
        timeout=WAIT_MS
    )
    page.locator(".live-call .turn.assistant", has_text="We are open from eight to six").wait_for(
        timeout=WAIT_MS
    )

    # Streaming text (relay mode) replaces the in-progress line until the turn is stored.
    call = off_loop(find_call, caller.call_sid)
    off_loop(events.publish, "partial", call=call, text="A plumber can")
    page.locator(".live-call .partial", has_text="A plumber can").wait_for(timeout=WAIT_MS)
    off_loop(events.publish, "partial", call=call, text="A plumber can come this afternoon")
    page.locator(".live-call .partial", has_text="come this afternoon").wait_for(timeout=WAIT_MS)
    assert page.locator(".live-call .partial").count() == 1

    caller.say("can someone come today to fix a leak")
    page.locator(".live-call .turn.assistant", has_text="between two and four").wait_for(
        timeout=WAIT_MS
    )
    assert page.locator(".live-call .partial").count() == 0
    lines = page.locator(".live-call .transcript li").all_text_contents()
    assert len(lines) == 4
    assert page.evaluate("document.querySelector('.live-call .duration').textContent") != ""
    page.screenshot(path=str(OUTPUT / "dashboard-live.png"), full_page=True)

    caller.post("/twilio/status", CallStatus="completed", SequenceNumber="1", CallDuration="42")
    page.locator("#ended-calls tr", has_text="42 s").wait_for(timeout=WAIT_MS)
    page.wait_for_function("document.querySelectorAll('.live-call').length === 0", timeout=WAIT_MS)
    page.wait_for_function(
        "document.querySelector('[data-figure=turns_per_call]').textContent === '4'",
        timeout=WAIT_MS,
    )
    page.locator("#assistants tbody tr", has_text="Acme front desk").wait_for(timeout=WAIT_MS)
    # The charts are drawn by Chart.js with the call in them.
    calls_in_chart = page.evaluate(
        "Chart.getChart(document.getElementById('calls-chart')).data.datasets[0].data"
        ".reduce((a, b) => a + b, 0)"
    )
    assert calls_in_chart == 1
    assert page.evaluate("!!Chart.getChart(document.getElementById('latency-chart'))")
    assert page.evaluate("document.getElementById('calls-chart').width") > 0
    page.screenshot(path=str(OUTPUT / "dashboard-ended.png"), full_page=True)

    page.click(f"#ended-calls tr[data-call='{call.id}'] a")
    page.wait_for_selector("#waterfall-chart[data-rendered=true]", timeout=WAIT_MS)
    assert "between two and four" in page.text_content("#transcript")
    assert '"name": "Acme front desk"' in page.text_content("#snapshot")
    page.screenshot(path=str(OUTPUT / "call-page.png"), full_page=True)
    assert page.errors == []
    assert Path(OUTPUT / "dashboard-live.png").stat().st_size > 10_000
