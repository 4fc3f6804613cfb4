"""Run an assistant's test scenarios against a version or the draft; exit 1 when one fails."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from django_scopes import scope, scopes_disabled

from assistants.models import AssistantConfig
from rehearsals import scenarios


def assistant_named(name: str) -> AssistantConfig:
    """An assistant by id, or by name when only one has it."""
    with scopes_disabled():
        found = list(AssistantConfig.objects.filter(id=name)) if _is_uuid(name) else []
        found = found or list(AssistantConfig.objects.filter(name=name)[:2])
    if len(found) != 1:
        raise CommandError(f"No single assistant {name!r}: give its id.")
    return found[0]


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Command(BaseCommand):
    help = (
        "Run an assistant's test scenarios against a version (a number, draft or published) "
        "and print each result; exits with status 1 when a scenario fails."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs):
        # --version names the assistant's version here, not Django's.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--assistant", required=True, help="The assistant's id (or name).")
        parser.add_argument("--version", default="draft", help='A number, "draft" or "published".')
        parser.add_argument("--suite", default="", help="Only the scenarios of this suite.")

    def handle(self, *args, **options) -> None:
        assistant = assistant_named(options["assistant"])
        with scope(tenant=assistant.tenant_id):
            try:
                candidate, version, label = scenarios.candidate_named(
                    assistant=assistant, name=options["version"]
                )
            except LookupError as exc:
                raise CommandError(str(exc)) from exc
            chosen = scenarios.scenarios_select(assistant=assistant, suite=options["suite"])
            if not chosen:
                raise CommandError("No active scenario matches.")
            runs = scenarios.scenarios_run(
                assistant=assistant,
                scenarios=chosen,
                candidate=candidate,
                label=label,
                version=version,
            )
        for run in runs:
            mark = "PASS" if run.passed else "FAIL"
            self.stdout.write(f"{mark}  {run.scenario.name} ({label})")
            for result in run.results:
                sign = "ok " if result["passed"] else "NO "
                self.stdout.write(f"      {sign} {result['check']['kind']}: {result['reason']}")
            if run.error:
                self.stdout.write(f"      error: {run.error}")
        failed = sum(1 for run in runs if not run.passed)
        self.stdout.write(f"{len(runs) - failed} passed, {failed} failed")
        if failed:
            sys.exit(1)
