"""The dashboard in real headless Chromium (Playwright) against a real daphne server: log in,
watch a simulated call arrive, grow turn by turn and end, without reloading the page."""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connections
from django_scopes import scopes_disabled

from calls import events
from calls.models import Call
from calls.transports.signatures import sign
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
            "CallSid": self.call_sid,
            "AccountSid": "AC" + "1" * 32,
            "From": self.from_,
            "To": self.to,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **extra,
        }
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

    def run():
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()  # the thread's own connection, or it outlives the test

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)


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
        # The browser's time zone differs from the server's (UTC): dates must be the server's.
        page = browser.new_page(
            viewport={"width": 1400, "height": 1600}, timezone_id="America/New_York"
        )
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
        "() => document.querySelector('[data-figure=calls]').textContent === '1'", timeout=WAIT_MS
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
    page.wait_for_function(
        "() => document.querySelectorAll('.live-call').length === 0", timeout=WAIT_MS
    )
    page.wait_for_function(
        "() => document.querySelector('[data-figure=turns_per_call]').textContent === '4'",
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


def test_a_language_switch_shows_live_in_the_transcript(
    daphne_server, fake_groq, alice, assistant_a, number_a, browser_page
):
    def speak_spanish_too():
        with scopes_disabled():
            assistant_a.other_languages = ["es-ES"]
            assistant_a.save()

    off_loop(speak_spanish_too)
    page = browser_page
    log_in(page, daphne_server.base_url, alice)
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)
    caller = Caller(daphne_server.base_url, to=number_a.number, from_="+15551230124")
    caller.post("/twilio/voice", CallStatus="ringing")
    page.locator(".live-call").first.wait_for(timeout=WAIT_MS)

    caller.say("Hola, quisiera reservar una cita para mañana por la tarde")
    page.locator(".live-call .language-switch", has_text="en-US → es-ES").wait_for(timeout=WAIT_MS)
    page.locator(".live-call .turn.assistant", has_text="Claro, con mucho gusto").wait_for(
        timeout=WAIT_MS
    )
    assert page.errors == []


def log_in(page, base_url: str, user) -> None:
    page.goto(base_url + "/dashboard/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/dashboard/")


def row_cells(page, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).locator("td").all_inner_texts()]


def set_mode(assistant, mode: str) -> None:
    with scopes_disabled():
        type(assistant).objects.filter(pk=assistant.pk).update(mode=mode)


def test_the_tables_show_rates_as_percentages_and_the_modes_the_calls_ran_in(
    daphne_server, alice, book, browser_page
):
    page = browser_page
    # The night line answers in relay mode from today on; its calls of the week were gather calls.
    off_loop(set_mode, book.assistant_a2, "relay")
    log_in(page, daphne_server.base_url, alice)
    page.goto(daphne_server.base_url + "/dashboard/?period=7d")
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)
    headers = page.locator("#assistants thead th").all_inner_texts()

    def cells(name: str) -> dict[str, str]:
        row = page.locator("#assistants tbody tr", has_text=name)
        return dict(zip(headers, row.locator("td").all_inner_texts(), strict=True))

    served = {name: cells(name) for name in ("Acme front desk", "Acme night line")}
    # The same figures as the cards: 1 of 3 replies of the front desk had an error, 1 of 2 of
    # the night line needed a fallback and 1 of 2 came from the cache.
    assert served["Acme front desk"]["Errors"] == "33.3 %"
    assert served["Acme front desk"]["Fallback"] == "0 %"
    assert served["Acme night line"]["Fallback"] == "50 %"
    assert served["Acme night line"]["Cache hits"] == "50 %"
    assert served["Acme night line"]["Mode"] == "gather"
    assert page.text_content("[data-figure=error_rate]") == "20 %"

    # After a live event the page redraws the table from /dashboard/figures/: the same text.
    page.evaluate("document.querySelector('#assistants tbody').replaceChildren()")
    live = book.calls["c5"]
    off_loop(
        events.publish,
        "started",
        call=live,
        from_number="••••••0042",
        to_number=live.to_number,
        assistant="Acme front desk",
        mode=live.mode,
    )
    page.locator("#assistants tbody tr", has_text="Acme night line").wait_for(timeout=WAIT_MS)
    assert {name: cells(name) for name in served} == served
    page.screenshot(path=str(OUTPUT / "dashboard-assistants.png"), full_page=True)
    assert page.errors == []


def test_the_charts_count_calls_per_day_over_7_and_30_days(
    daphne_server, alice, book, browser_page
):
    page = browser_page
    log_in(page, daphne_server.base_url, alice)
    for period, days, calls in (("7d", 8, 5), ("30d", 31, 6)):
        page.goto(f"{daphne_server.base_url}/dashboard/?period={period}")
        page.wait_for_selector("#calls-chart[data-rendered=true]", timeout=WAIT_MS)
        assert page.text_content("#calls-caption") == "Calls per day"
        chart = page.evaluate(
            "(() => { const c = Chart.getChart(document.getElementById('calls-chart'));"
            " return {labels: c.data.labels, calls: c.data.datasets[0].data}; })()"
        )
        assert days - 1 <= len(chart["labels"]) <= days, chart["labels"]
        assert len(set(chart["labels"])) == len(chart["labels"])
        assert sum(chart["calls"]) == calls
        page.screenshot(path=str(OUTPUT / f"dashboard-{period}.png"), full_page=True)
    page.goto(f"{daphne_server.base_url}/dashboard/?period=today")
    page.wait_for_selector("#calls-chart[data-rendered=true]", timeout=WAIT_MS)
    assert page.text_content("#calls-caption") == "Calls per hour"
    assert page.errors == []


def test_a_call_that_ends_live_is_listed_as_the_server_lists_it(
    daphne_server, alice, number_a, browser_page
):
    page = browser_page
    log_in(page, daphne_server.base_url, alice)
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)

    caller = Caller(daphne_server.base_url, to=number_a.number, from_="+15551230123")
    caller.post("/twilio/voice", CallStatus="ringing")
    page.locator(".live-call").first.wait_for(timeout=WAIT_MS)
    caller.post("/twilio/status", CallStatus="completed", SequenceNumber="1", CallDuration="42")
    call = off_loop(find_call, caller.call_sid)
    row = f"#ended-calls tr[data-call='{call.id}']"
    page.locator(row).wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(OUTPUT / "dashboard-ended-live.png"), full_page=True)
    live = row_cells(page, row)

    page.reload()
    served = row_cells(page, row)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", served[0])
    assert live[1:] == served[1:]
    assert served[5:8] == ["Completed", "Completed", "42 s"]
    # The live row shows when the call started, in the server's time zone (a second apart at most).
    started = [datetime.strptime(text, "%Y-%m-%d %H:%M:%S") for text in (live[0], served[0])]
    assert abs((started[0] - started[1]).total_seconds()) <= 1
    assert page.errors == []


def relay_call_with_a_streamed_turn(tenant, assistant) -> Call:
    """A relay call in progress whose answer streamed: first token sent right after the LLM's
    first token, the last one right when the LLM was done. Its snapshot has a long prompt."""
    from django.utils import timezone

    from calls.models import Turn

    now = timezone.now()
    snapshot = {**assistant.snapshot(), "system_prompt": "Be brief and kind. " * 40}
    with scopes_disabled():
        call = Call.objects.create(
            tenant=tenant,
            assistant=assistant,
            call_sid="CA" + "7" * 32,
            mode=Call.Mode.RELAY,
            status=Call.Status.IN_PROGRESS,
            started_at=now,
            answered_at=now,
            from_number="+15551230123",
            to_number="+14155550100",
            config_snapshot=snapshot,
        )
        Turn.objects.create(
            tenant=tenant,
            call=call,
            sequence=1,
            role=Turn.Role.CALLER,
            text="Hello?",
            created_at=now,
        )
        Turn.objects.create(
            tenant=tenant,
            call=call,
            sequence=2,
            role=Turn.Role.ASSISTANT,
            created_at=now,
            text="Hello! How can I help?",
            source="llm",
            llm_first_token_ms=350,
            response_sent_ms=352,
            llm_done_ms=900,
            last_token_sent_ms=901,
        )
    return call


def test_the_call_page_of_a_relay_call_in_progress(
    daphne_server, alice, tenant_a, assistant_a, browser_page
):
    page = browser_page
    call = off_loop(relay_call_with_a_streamed_turn, tenant_a, assistant_a)
    log_in(page, daphne_server.base_url, alice)
    page.goto(f"{daphne_server.base_url}/dashboard/calls/{call.id}/")
    page.wait_for_selector("#waterfall-chart[data-rendered=true]", timeout=WAIT_MS)
    page.screenshot(path=str(OUTPUT / "call-page-relay.png"), full_page=True)

    facts = dict(
        zip(
            page.locator(".call-facts dt").all_inner_texts(),
            page.locator(".call-facts dd").all_inner_texts(),
            strict=True,
        )
    )
    assert facts["Duration"] == "in progress"
    # The snapshot's long lines wrap inside the page instead of running off it.
    snapshot = page.evaluate(
        "(() => { const s = document.getElementById('snapshot');"
        " return {scroll: s.scrollWidth, client: s.clientWidth,"
        " right: s.getBoundingClientRect().right, page: document.documentElement.scrollWidth,"
        " width: window.innerWidth}; })()"
    )
    assert snapshot["scroll"] <= snapshot["client"], snapshot
    assert snapshot["right"] <= snapshot["width"] and snapshot["page"] <= snapshot["width"]
    # Every stage the legend names is drawn as a visible bar, in the order it happened.
    bars = page.evaluate(
        """(() => {
          const chart = Chart.getChart(document.getElementById('waterfall-chart'));
          return chart.data.datasets.map((dataset, i) => {
            const bar = chart.getDatasetMeta(i).data[0];
            return {stage: dataset.label, span: dataset.data[0],
                    pixels: Math.abs(bar.x - bar.base), hidden: !chart.isDatasetVisible(i)};
          });
        })()"""
    )
    assert [bar["stage"] for bar in bars] == [
        "LLM first token",
        "First token sent",
        "LLM done",
        "Last token sent",
    ]
    assert [bar["span"] for bar in bars] == [[0, 350], [350, 352], [352, 900], [900, 901]]
    assert all(bar["pixels"] >= 3 and not bar["hidden"] for bar in bars), bars
    assert page.errors == []


def test_no_page_asks_for_something_that_is_not_there(daphne_server, alice, browser_page):
    page = browser_page
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    log_in(page, daphne_server.base_url, alice)
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)
    page.goto(daphne_server.base_url + "/admin/")
    page.wait_for_load_state("networkidle")
    icon = page.request.get(daphne_server.base_url + "/favicon.ico")

    assert missing == []
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/")
