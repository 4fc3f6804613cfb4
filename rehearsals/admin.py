from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.loader import render_to_string
from django_scopes.forms import SafeModelChoiceField

from rehearsals import replay, scenarios
from rehearsals.models import ReplayRun, Scenario, ScenarioRun
from rehearsals.services import replay_begin
from tenants.access import is_platform_staff
from tenants.admin_base import TenantScopedAdmin


class ReplayForm(forms.ModelForm):
    """What to replay: the assistant, the candidate and which recorded calls."""

    since = forms.DateTimeField(required=False, help_text="Calls started at or after.")
    until = forms.DateTimeField(required=False, help_text="Calls started before.")
    outcome = forms.CharField(required=False, help_text="Only calls with this outcome.")
    success = forms.NullBooleanField(required=False, help_text="The analysis' success verdict.")
    call_ids = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="Call ids, one a line."
    )
    limit = forms.IntegerField(required=False, min_value=1, help_text="At most this many calls.")

    class Meta:
        model = ReplayRun
        fields = ["tenant", "assistant", "version", "concurrency", "budget_tokens"]
        help_texts = {"version": "Empty: the draft as it is now."}
        # Built at import time, outside any scope; the admin narrows the choices per request.
        field_classes = {"assistant": SafeModelChoiceField, "version": SafeModelChoiceField}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "budget_tokens" in self.fields:
            self.fields["budget_tokens"].initial = settings.REPLAY_DEFAULT_BUDGET_TOKENS

    def clean(self) -> dict:
        data = super().clean()
        tenant, assistant, version = data.get("tenant"), data.get("assistant"), data.get("version")
        if assistant and tenant and assistant.tenant_id != tenant.id:
            raise forms.ValidationError({"assistant": "Choose an assistant of this tenant."})
        if assistant and version and version.assistant_id != assistant.id:
            raise forms.ValidationError({"version": "Choose a version of this assistant."})
        if assistant and not self.errors:
            if not replay.calls_select(assistant=assistant, selection=self.selection()):
                raise forms.ValidationError(
                    "No ended call of this assistant matches, with a caller's words."
                )
        return data

    def clean_call_ids(self) -> tuple[str, ...]:
        try:
            return replay.call_ids_parse((self.cleaned_data.get("call_ids") or "").splitlines())
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def selection(self) -> replay.Selection:
        data = self.cleaned_data
        ids = data.get("call_ids") or ()
        return replay.Selection(
            since=data.get("since"),
            until=data.get("until"),
            outcome=data.get("outcome") or "",
            success=data.get("success"),
            call_ids=ids,
            limit=data.get("limit") or 0,
        )


@admin.register(ReplayRun)
class ReplayRunAdmin(TenantScopedAdmin):
    """A page per replay run: the report, then each call turn by turn with both answers."""

    form = ReplayForm
    list_display = [
        "__str__",
        "tenant",
        "status",
        "turns_changed",
        "tokens_spent",
        "budget_tokens",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["tenant", "assistant"]
    readonly = [
        "assistant",
        "candidate_label",
        "status",
        "message",
        "tokens_spent",
        "budget_tokens",
        "concurrency",
        "selection",
        "created_by",
        "created_at",
        "finished_at",
        "report_table",
        "calls_table",
    ]

    def get_fields(self, request: HttpRequest, obj: ReplayRun | None = None):
        if obj is None:
            return [
                *ReplayForm.Meta.fields[:3],
                *ReplayForm.declared_fields,
                *ReplayForm.Meta.fields[3:],
            ]
        return self.readonly

    def get_readonly_fields(self, request: HttpRequest, obj: ReplayRun | None = None):
        return self.readonly if obj is not None else []

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a run is started (added), read and deleted; never edited

    @admin.display(description="Turns changed")
    def turns_changed(self, obj: ReplayRun) -> str:
        report = obj.report or {}
        return f"{report.get('turns_changed', '—')} of {report.get('turns', '—')}"

    @admin.display(description="Report")
    def report_table(self, obj: ReplayRun) -> str:
        return render_to_string("admin/rehearsals/report.html", {"report": obj.report})

    @admin.display(description="Calls, turn by turn")
    def calls_table(self, obj: ReplayRun) -> str:
        items = obj.calls.select_related("call").order_by("position")
        return render_to_string("admin/rehearsals/calls.html", {"items": items})

    def save_model(self, request: HttpRequest, obj: ReplayRun, form: ReplayForm, change: bool):
        """Starting a run: the calls are picked and the lanes queued (never edited after)."""
        if change:
            return
        if not is_platform_staff(request.user):
            if obj.tenant_id not in self._tenant_ids(request, write=True):
                raise PermissionDenied
        run = replay_begin(
            assistant=obj.assistant,
            version=obj.version,
            selection=form.selection(),
            concurrency=obj.concurrency,
            budget_tokens=obj.budget_tokens,
            user=request.user,
        )
        form.instance = run
        obj.pk = obj.id = run.id
        obj._state.adding = False


@admin.register(Scenario)
class ScenarioAdmin(TenantScopedAdmin):
    list_display = ["name", "assistant", "suite", "active", "tenant", "last_result"]
    list_filter = ["active", "suite"]
    search_fields = ["name", "suite"]
    list_select_related = ["tenant", "assistant"]
    actions = ["run_on_draft", "run_on_published"]

    @admin.display(description="Last run")
    def last_result(self, obj: Scenario) -> str:
        run = obj.runs.order_by("-created_at").first()
        if run is None:
            return "—"
        return f"{'passed' if run.passed else 'FAILED'} on {run.candidate_label}"

    def _run(self, request: HttpRequest, queryset, name: str) -> None:
        passed = failed = 0
        for scenario in queryset.select_related("assistant"):
            if not self.has_change_permission(request, scenario):
                continue
            try:
                candidate, version, label = scenarios.candidate_named(
                    assistant=scenario.assistant, name=name
                )
            except LookupError as exc:
                self.message_user(request, f"{scenario}: {exc}", level=messages.WARNING)
                continue
            run = scenarios.scenario_run(
                scenario=scenario, candidate=candidate, label=label, version=version,
                user=request.user,
            )  # fmt: skip
            passed, failed = passed + run.passed, failed + (not run.passed)
        level = messages.SUCCESS if not failed else messages.ERROR
        self.message_user(request, f"{passed} passed, {failed} failed (see Scenario runs).", level)

    @admin.action(description="Run the selected scenarios on the draft", permissions=["change"])
    def run_on_draft(self, request: HttpRequest, queryset) -> None:
        self._run(request, queryset, "draft")

    @admin.action(
        description="Run the selected scenarios on the published version", permissions=["change"]
    )
    def run_on_published(self, request: HttpRequest, queryset) -> None:
        self._run(request, queryset, "published")


@admin.register(ScenarioRun)
class ScenarioRunAdmin(TenantScopedAdmin):
    list_display = ["scenario", "candidate_label", "passed", "tenant", "tokens", "created_at"]
    list_filter = ["passed"]
    list_select_related = ["tenant", "scenario"]
    fields = [
        "scenario",
        "candidate_label",
        "passed",
        "error",
        "tokens",
        "created_by",
        "created_at",
        "checks_table",
        "transcript_table",
    ]
    readonly_fields = fields

    @admin.display(description="Checks")
    def checks_table(self, obj: ScenarioRun) -> str:
        return render_to_string("admin/rehearsals/checks.html", {"results": obj.results})

    @admin.display(description="Transcript")
    def transcript_table(self, obj: ScenarioRun) -> str:
        return render_to_string("admin/rehearsals/transcript.html", {"lines": obj.transcript})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
