from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from knowledge.models import Document, Passage
from knowledge.services import DocumentUnreadable, fetch_page, passages_rebuild
from tenants.admin_base import TenantScopedAdmin


class DocumentForm(forms.ModelForm):
    source_url = forms.URLField(
        required=False, assume_scheme="https", help_text="For a web page or PDF: its address."
    )

    class Meta:
        model = Document
        fields = ["tenant", "title", "kind", "source_url", "language", "text"]

    def clean(self) -> dict[str, Any]:
        """A web page is fetched when added or when its address changes."""
        data = super().clean()
        is_page = data.get("kind") == Document.Kind.URL
        if is_page and (self.instance._state.adding or "source_url" in self.changed_data):
            try:
                data["text"] = fetch_page(data.get("source_url", ""))
            except DocumentUnreadable as exc:
                self.add_error("source_url", str(exc))
        return data


class PassageInline(admin.TabularInline):
    model = Passage
    fields = ["position", "text"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(TenantScopedAdmin):
    form = DocumentForm
    list_display = ["title", "tenant", "kind", "language", "updated_at"]
    list_filter = ["kind", "language"]
    search_fields = ["title", "text"]
    list_select_related = ["tenant"]
    inlines = [PassageInline]

    def save_model(self, request, obj: Document, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        passages_rebuild(document=obj)
