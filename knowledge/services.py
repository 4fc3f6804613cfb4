"""Writing the knowledge base: a document is stored with its passages, ready for search."""

from __future__ import annotations

from django.contrib.postgres.search import SearchVector
from django.db import connection, transaction

from core import outbound
from knowledge.models import Document, Passage
from knowledge.passages import html_text, markdown_text, pdf_text, split
from knowledge.search import search_config
from tenants.models import Tenant

FETCH_TIMEOUT_SECONDS = 10.0
FETCH_MAX_BYTES = 2 * 1024 * 1024


class DocumentUnreadable(Exception):
    """A web page could not be fetched (the message says why, for the tenant)."""


def document_create(
    *,
    tenant: Tenant,
    title: str,
    kind: str = Document.Kind.TEXT,
    text: str = "",
    source_url: str = "",
    language: str = "en-US",
) -> Document:
    """Store a document and its passages. A web page is fetched now, once (SSRF-safe)."""
    if kind == Document.Kind.URL:
        text = fetch_page(source_url)
    document = Document(
        tenant=tenant, title=title, kind=kind, text=text, source_url=source_url, language=language
    )
    document.full_clean()
    with transaction.atomic():
        document.save()
        passages_rebuild(document=document)
    return document


def document_update(*, document: Document, **fields: object) -> Document:
    """Change a document; its passages are made again from its (new) text."""
    for name, value in fields.items():
        setattr(document, name, value)
    if document.kind == Document.Kind.URL and {"source_url", "kind"} & fields.keys():
        document.text = fetch_page(document.source_url)
    document.full_clean()
    with transaction.atomic():
        document.save()
        passages_rebuild(document=document)
    return document


def document_delete(*, document: Document) -> None:
    document.delete()


def passages_rebuild(*, document: Document) -> int:
    """Replace the document's passages with ones cut from its text; returns how many."""
    text = (
        markdown_text(document.text) if document.kind == Document.Kind.MARKDOWN else document.text
    )
    Passage.objects.filter(document=document).delete()
    Passage.objects.bulk_create(
        Passage(tenant_id=document.tenant_id, document=document, position=index, text=passage)
        for index, passage in enumerate(split(text))
    )
    if connection.vendor == "postgresql":
        vector = SearchVector("text", config=search_config(document.language))
        Passage.objects.filter(document=document).update(search=vector)
    return Passage.objects.filter(document=document).count()


def fetch_page(url: str) -> str:
    """The text of the web page (HTML or plain text) or PDF at `url`, fetched through the
    platform's SSRF guard."""
    try:
        answer = outbound.request(
            "GET", url, timeout=FETCH_TIMEOUT_SECONDS, max_bytes=FETCH_MAX_BYTES
        )
    except outbound.OutboundRefused as exc:
        raise DocumentUnreadable(f"The address is not allowed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any network failure reads the same to the tenant
        raise DocumentUnreadable(f"The page could not be fetched ({type(exc).__name__}).") from exc
    if not answer.ok:
        raise DocumentUnreadable(f"The page answered HTTP {answer.status}.")
    kind = answer.headers.get("content-type", "")
    if "pdf" in kind or answer.body.startswith(b"%PDF-"):
        try:
            return pdf_text(answer.body)
        except ValueError as exc:
            raise DocumentUnreadable(f"The PDF could not be read: {exc}.") from exc
    body = answer.body.decode("utf-8", "replace")
    is_html = "html" in kind or "<html" in body[:1000].lower()
    return html_text(body) if is_html else body
