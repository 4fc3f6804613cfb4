"""The dashboard pages: overview (`/dashboard/`), figures as JSON, and one call's page."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from analytics import outcomes, periods, selectors
from analytics.access import View, dashboard_view
from calls.models import Call
from campaigns.callbacks import callbacks_promised_on
from campaigns.recordings import call_recordings
from campaigns.selectors import unscoped_campaigns_with_progress
from insights.models import CallReport, TurnCost


def _period(request: HttpRequest, view: View) -> periods.Period:
    tz_name = view.tenant.timezone if view.tenant else settings.TIME_ZONE
    return periods.period_for(request.GET.get("period", ""), tz_name=tz_name)


def _report(view: View, period: periods.Period) -> dict:
    return selectors.cached_report(
        tenant_ids=view.tenant_ids, period=period, budget_tenant=view.tenant
    )


@require_GET
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    view = dashboard_view(request.user, request.GET.get("tenant"))
    period = _period(request, view)
    report = _report(view, period)
    live = selectors.live_calls(tenant_ids=view.tenant_ids)
    for call in live:
        call.masked_from = selectors.mask_number(call.from_number)
    recent = selectors.recent_calls(tenant_ids=view.tenant_ids)
    for call in recent:
        call.masked_from = selectors.mask_number(call.from_number)
    context = {
        "view": view,
        "selected_tenant": str(view.tenant.id) if view.tenant and request.GET.get("tenant") else "",
        "period": period,
        "periods": periods.PERIODS,
        "report": report,
        "figures": report["figures"],
        "outcomes": outcomes.outcome_figures(tenant_ids=view.tenant_ids, period=period),
        # A report cached before the routing figures were part of it has none yet.
        "routing": report.get("routing") or {"turns": 0, "models": [], "reasons": []},
        "price_currency": settings.PRICE_CURRENCY,
        "live_calls": live,
        "recent_calls": recent,
        "cache_seconds": settings.ANALYTICS_CACHE_SECONDS,
        # How the page names what live events carry as values, as the server-rendered rows do.
        "labels": {"status": dict(Call.Status.choices), "outcome": dict(Call.Outcome.choices)},
    }
    return render(request, "analytics/dashboard.html", context)


@require_GET
@login_required
def figures(request: HttpRequest) -> JsonResponse:
    view = dashboard_view(request.user, request.GET.get("tenant"))
    return JsonResponse(_report(view, _period(request, view)))


def _call_for_view(view: View, call_id: object) -> Call:
    qs = Call.objects.select_related("assistant", "tenant", "phone_number")
    if view.tenant_ids is not None:
        qs = qs.filter(tenant_id__in=view.tenant_ids)
    try:
        return qs.get(pk=call_id)
    except (Call.DoesNotExist, ValidationError, ValueError) as exc:
        raise Http404("No such call.") from exc


@require_GET
@login_required
def call_detail(request: HttpRequest, call_id) -> HttpResponse:
    view = dashboard_view(request.user, None)
    call = _call_for_view(view, call_id)
    turns = selectors.call_turns(call=call)
    costs = {cost.turn_id: cost for cost in TurnCost.objects.filter(report__call=call)}
    for turn in turns:
        turn.waterfall = selectors.turn_waterfall(turn)
        cost = costs.get(turn.id)
        turn.spent = cost.llm_cost + cost.speech_cost if cost else None
    waterfall = [{"label": f"#{t.sequence}", "spans": t.waterfall} for t in turns if t.waterfall]
    context = {
        "call": call,
        "masked_from": selectors.mask_number(call.from_number),
        "turns": turns,
        "waterfall": waterfall,
        "stages": [label for _, label in selectors.WATERFALL_STAGES],
        "snapshot": json.dumps(call.config_snapshot, indent=2, sort_keys=True),
        "recordings": call_recordings(call=call),
        "callbacks": callbacks_promised_on(call=call),
        "report": CallReport.objects.filter(call=call, tenant_id=call.tenant_id).first(),
    }
    return render(request, "analytics/call.html", context)


@require_GET
@login_required
def campaigns(request: HttpRequest) -> HttpResponse:
    """The viewer's campaigns with their progress, refreshed live by the page's script."""
    view = dashboard_view(request.user, request.GET.get("tenant"))
    rows = unscoped_campaigns_with_progress(tenant_ids=view.tenant_ids)
    return render(request, "analytics/campaigns.html", {"view": view, "campaigns": rows})


@require_GET
@login_required
def campaigns_progress(request: HttpRequest) -> JsonResponse:
    view = dashboard_view(request.user, request.GET.get("tenant"))
    return JsonResponse({"campaigns": unscoped_campaigns_with_progress(tenant_ids=view.tenant_ids)})
