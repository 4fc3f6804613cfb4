"""The knowledge API: a tenant's documents, cut into passages."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

URL = "/api/v1/knowledge/documents/"


def test_the_owner_adds_markdown_that_is_cut_into_passages(api, alice, tenant_a):
    client = api(alice)
    text = "# Prices\n\nA **cleaning** costs forty pounds.\n\n" + "More words here. " * 80
    created = client.post(URL, {"title": "Prices", "kind": "markdown", "text": text}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["passage_count"] >= 2
    listed = client.get(URL).json()["results"]
    assert [d["title"] for d in listed] == ["Prices"]
    doc_id = created.json()["id"]
    changed = client.patch(f"{URL}{doc_id}/", {"text": "Short now."}, format="json")
    assert changed.status_code == 200 and changed.json()["passage_count"] == 1
    assert client.delete(f"{URL}{doc_id}/").status_code == 204


def test_a_page_on_a_private_address_is_refused(api, alice, tenant_a):
    response = api(alice).post(
        URL,
        {"title": "Intranet", "kind": "url", "source_url": "http://127.0.0.1:9/"},
        format="json",
    )
    assert response.status_code == 400
    assert "not allowed" in response.content.decode()


def test_a_web_page_is_fetched_once(api, alice, tenant_a, tool_server):
    tool_server.route(
        "/page",
        body=b"<html><head><style>x{}</style></head><body><p>Open on Sundays.</p></body></html>",
    )
    response = api(alice).post(
        URL,
        {"title": "Hours", "kind": "url", "source_url": tool_server.url("/page")},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["text"].strip() == "Open on Sundays."


def test_the_outsider_gets_404_and_the_viewer_cannot_write(api, alice, bob, charlie, tenant_a):
    doc_id = (
        api(alice)
        .post(URL, {"title": "Secret", "text": "Alice's notes."}, format="json")
        .json()["id"]
    )
    outsider = api(charlie)
    assert outsider.get(f"{URL}{doc_id}/").status_code == 404
    assert outsider.patch(f"{URL}{doc_id}/", {"text": "x"}, format="json").status_code == 404
    assert outsider.delete(f"{URL}{doc_id}/").status_code == 404
    assert outsider.get(URL).json()["results"] == []
    assert api(bob).post(URL, {"title": "x", "text": "y"}, format="json").status_code == 403


def one_page_pdf(text: str) -> bytes:
    """A minimal PDF of one page showing `text` (Helvetica), with a correct cross-reference."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_a_pdf_is_fetched_and_its_text_kept(api, alice, tenant_a, tool_server):
    tool_server.route("/menu.pdf", body=one_page_pdf("Emergency visits cost ninety pounds."))
    tool_server.route("/broken.pdf", body=b"%PDF-1.4 this is not really a PDF")
    client = api(alice)
    url = tool_server.url("/menu.pdf")
    created = client.post(URL, {"title": "Menu", "kind": "url", "source_url": url}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["text"].strip() == "Emergency visits cost ninety pounds."
    assert created.json()["passage_count"] == 1
    broken = client.post(
        URL,
        {"title": "Bad", "kind": "url", "source_url": tool_server.url("/broken.pdf")},
        format="json",
    )
    assert broken.status_code == 400 and "PDF could not be read" in broken.content.decode()
