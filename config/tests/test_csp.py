"""The Content-Security-Policy header (the pages under it, in a browser: test_browser_csp.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_pages_carry_a_content_security_policy(client):
    policy = client.get("/dashboard/login/")["Content-Security-Policy"]
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
    )
    assert directives["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in directives.get("style-src", [])
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
