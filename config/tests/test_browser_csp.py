"""The Content-Security-Policy in real headless Chromium (Playwright) against a real daphne
server: every page works under it without a single violation, and a script slipped into a page
does not run."""

from __future__ import annotations

import shutil

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect, sync_playwright

from analytics.tests.test_browser import off_loop, relay_call_with_a_streamed_turn
from conftest import PASSWORD
from tenants.models import Membership, Role

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
WAIT_MS = 15_000

pytestmark = pytest.mark.django_db(transaction=True)

# Reported by the page itself (the event) and by Chromium (its console message).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
}, true);
"""


@pytest.fixture
def page():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.violations = []
            page.errors = []
            page.add_init_script(REPORT_VIOLATIONS)
            page.on(
                "console",
                lambda message: (
                    page.violations.append(message.text)
                    if "Content Security Policy" in message.text or "CSP violation" in message.text
                    else None
                ),
            )
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))
            yield page
        finally:
            browser.close()


def clean(page) -> None:
    """No violation and no script error so far (fails with what there was)."""
    page.wait_for_timeout(200)  # let late reports of the page arrive
    assert page.violations == [], page.violations
    assert page.errors == [], page.errors


def second_membership(user, tenant) -> None:
    with scopes_disabled():
        Membership.objects.create(user=user, tenant=tenant, role=Role.VIEWER)


def test_every_page_works_under_the_policy_and_injected_script_does_not_run(
    daphne_server, fake_groq, alice, tenant_a, tenant_b, assistant_a, page
):
    base = daphne_server.base_url
    fake_groq.set_answer("A plumber can come this afternoon.")
    # Two tenants: the dashboard shows its tenant filter (which submits on change).
    off_loop(second_membership, alice, tenant_b)
    call = off_loop(relay_call_with_a_streamed_turn, tenant_a, assistant_a)

    page.goto(base + "/dashboard/login/")
    page.fill("input[name=username]", alice.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/dashboard/")
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)
    page.wait_for_selector("#calls-chart[data-rendered=true]", timeout=WAIT_MS)
    policy = page.evaluate(
        "fetch('/dashboard/').then(r => r.headers.get('content-security-policy'))"
    )
    assert "script-src 'self'" in policy
    clean(page)

    # The attack: a script that found its way into the page.
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.injected = true";
          document.body.append(script);
        }"""
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.injected === undefined")
    assert any("script-src" in text for text in page.violations), page.violations
    page.violations.clear()

    page.select_option("#tenant-filter", str(tenant_a.id))
    page.wait_for_url(f"**/dashboard/?*tenant={tenant_a.id}*")
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)
    clean(page)

    page.goto(f"{base}/dashboard/calls/{call.id}/")
    page.wait_for_selector("#waterfall-chart[data-rendered=true]", timeout=WAIT_MS)
    clean(page)

    page.goto(f"{base}/assistants/{assistant_a.id}/talk/")
    expect(page.locator("#status")).to_have_text("Connected. Ask something.", timeout=WAIT_MS)
    page.uncheck("#speak")
    page.fill("#question", "Can someone come today?")
    page.press("#question", "Enter")
    reply = page.locator("#transcript li.assistant").nth(1)
    expect(reply.locator(".text")).to_have_text(
        "A plumber can come this afternoon.", timeout=WAIT_MS
    )
    clean(page)

    page.goto(base + "/api/docs/")
    page.locator(".swagger-ui .opblock").first.wait_for(timeout=WAIT_MS)
    page.locator(".swagger-ui .opblock-summary").first.click()
    page.locator(".swagger-ui .opblock-body").first.wait_for(timeout=WAIT_MS)
    clean(page)

    page.goto(base + "/console/api-keys/")
    page.fill("#id_name", "CSP check")
    page.click("button[type=submit]")
    expect(page.locator("#new-key")).to_be_visible()
    clean(page)

    page.goto(base + "/admin/tenants/phonenumber/")
    page.wait_for_load_state("networkidle")
    clean(page)
