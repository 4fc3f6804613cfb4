from __future__ import annotations

import pytest
from django.db.models import Model
from django_scopes import ScopeError, scope, scopes_disabled

from assistants.models import AssistantConfig, FAQEntry, SpeechAudio
from calls.models import Call, Turn
from tenants.models import PhoneNumber
from tenants.tests.conftest import TenantRows

pytestmark = pytest.mark.django_db

TENANT_OWNED = [PhoneNumber, AssistantConfig, FAQEntry, SpeechAudio, Call, Turn]
ROW_OF = {
    PhoneNumber: "number",
    AssistantConfig: "assistant",
    FAQEntry: "faq",
    SpeechAudio: "speech",
    Call: "call",
    Turn: "turn",
}


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda m: m.__name__)
def test_a_query_without_a_scope_raises(model: type[Model], rows_a: TenantRows) -> None:
    with pytest.raises(ScopeError):
        list(model.objects.all())
    with pytest.raises(ScopeError):
        model.objects.count()
    with pytest.raises(ScopeError):
        model.objects.get(pk=getattr(rows_a, ROW_OF[model]).pk)


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda m: m.__name__)
def test_inside_a_tenant_scope_only_its_rows_are_visible(
    model: type[Model], rows_a: TenantRows, rows_b: TenantRows
) -> None:
    own = getattr(rows_a, ROW_OF[model])
    other = getattr(rows_b, ROW_OF[model])
    with scope(tenant=rows_a.tenant):
        visible = set(model.objects.values_list("pk", flat=True))
        assert own.pk in visible
        assert other.pk not in visible
        assert not model.objects.filter(pk=other.pk).exists()
    with scope(tenant=rows_b.tenant):
        assert set(model.objects.values_list("tenant_id", flat=True)) == {rows_b.tenant.pk}


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda m: m.__name__)
def test_an_empty_scope_sees_nothing(
    model: type[Model], rows_a: TenantRows, rows_b: TenantRows
) -> None:
    with scope(tenant=[]):
        assert model.objects.count() == 0
        assert list(model.objects.all()) == []


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda m: m.__name__)
def test_a_scope_of_several_tenants_sees_all_of_them(
    model: type[Model], rows_a: TenantRows, rows_b: TenantRows
) -> None:
    with scope(tenant=[rows_a.tenant.pk, rows_b.tenant.pk]):
        assert set(model.objects.values_list("tenant_id", flat=True)) == {
            rows_a.tenant.pk,
            rows_b.tenant.pk,
        }


@pytest.mark.parametrize("model", TENANT_OWNED, ids=lambda m: m.__name__)
def test_scopes_disabled_sees_every_tenant(
    model: type[Model], rows_a: TenantRows, rows_b: TenantRows
) -> None:
    with scopes_disabled():
        assert model.objects.filter(tenant__in=[rows_a.tenant, rows_b.tenant]).count() == 2
