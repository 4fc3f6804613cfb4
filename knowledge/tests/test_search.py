"""Searching the knowledge base: PostgreSQL's ranked full-text search with the language's
stemming (the SQLite word match where the embedded default runs), one tenant at a time."""

from __future__ import annotations

import pytest
from django.db import connection
from django_scopes import scopes_disabled

from knowledge.passages import html_text, markdown_text, split
from knowledge.search import passages_search, search_config
from knowledge.services import document_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def documents(tenant_a, tenant_b):
    with scopes_disabled():
        document_create(
            tenant=tenant_a,
            title="Services",
            text="We clean boilers and fit new radiators.\n\nBookings are taken by phone.",
        )
        document_create(
            tenant=tenant_a, title="Parking", text="Customers park behind the workshop."
        )
        document_create(
            tenant=tenant_b, title="Bravo", text="Bravo bakes bread and takes bookings."
        )


def search(tenant, question: str, language: str = "en-US") -> list[str]:
    with scopes_disabled():
        hits = passages_search(tenant_id=tenant.id, question=question, language=language)
    return [hit.title for hit in hits]


def test_the_best_passage_comes_first_and_only_the_tenants_own(documents, tenant_a, tenant_b):
    assert search(tenant_a, "Where do customers park?") == ["Parking"]
    assert search(tenant_b, "Where do customers park?") == []
    assert search(tenant_a, "bookings") == ["Services"]
    assert search(tenant_b, "bookings") == ["Bravo"]


def test_words_are_stemmed_in_the_assistants_language_on_postgresql(documents, tenant_a):
    """ "book" finds "Bookings" and "boiler" finds "boilers" with PostgreSQL's English stemmer;
    SQLite's word match (the embedded default) compares whole words only."""
    stems = connection.vendor == "postgresql"
    assert search(tenant_a, "Can I book a boiler?") == (["Services"] if stems else [])


def test_hostile_and_empty_questions_find_nothing_and_raise_nothing(documents, tenant_a):
    assert search(tenant_a, "") == []
    assert search(tenant_a, "!!! & | ' \\ :*") == []
    assert search(tenant_a, "park' | !(drop table") == ["Parking"]
    assert search(tenant_a, "x" * 100_000) == []


def test_languages_map_to_search_configurations():
    assert search_config("en-US") == "english"
    assert search_config("es-419") == "spanish"
    assert search_config("zh-Hans-CN") == "simple"


def test_documents_are_cut_into_passages_at_sentence_ends():
    text = ("This is a sentence of the manual. " * 40).strip()
    passages = split(text, limit=200)
    assert all(len(p) <= 200 for p in passages) and len(passages) > 5
    assert all(p.endswith(".") for p in passages)
    assert " ".join(passages) == text


def test_markdown_and_html_become_plain_text():
    assert (
        markdown_text("# Prices\n* A [cleaning](http://x) is **40**") == "Prices\nA cleaning is 40"
    )
    page = "<html><script>alert(1)</script><p>Open</p><p>daily</p></html>"
    assert html_text(page).split() == ["Open", "daily"]
