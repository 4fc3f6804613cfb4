"""What a version keeps of the tenant's knowledge base: which documents it had, and when each
was last changed (so two versions can be compared; the passages are searched as they are now)."""

from __future__ import annotations

from assistants.models import AssistantConfig
from knowledge.models import Document


def knowledge_freeze(assistant: AssistantConfig) -> list[dict]:
    documents = Document.objects.filter(tenant_id=assistant.tenant_id).order_by("title", "id")
    return [
        {"id": str(doc.id), "title": doc.title, "updated_at": doc.updated_at.isoformat()}
        for doc in documents
    ]
