"""Create (or refresh) the demo tenant, number, assistant with FAQ entries, and admin logins."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig, FAQEntry
from assistants.services import assistant_prepare_greeting
from assistants.speech import speech_engine_problem
from assistants.versions import version_publish
from devtools.demo_tools import BOOKING_TOOL
from knowledge.models import Document
from knowledge.services import document_create
from tenants.models import PhoneNumber, Role, Tenant
from tenants.services import membership_grant
from tools.models import HttpTool, TransferDestination
from tools.services import builtin_tools_set, http_tool_create, transfer_destination_create

DEMO_NUMBER = "+15005550006"
DEMO_FAQ = [
    (
        "what are your opening hours\nwhen are you open\nopening hours",
        "We're open Monday to Friday from 8 a.m. to 6 p.m., and Saturdays from 9 to 1.",
    ),
    (
        "where are you\nwhat is your address\nwhere are you located",
        "You'll find us at 42 Harbour Street, next to the central library.",
    ),
]

DEMO_DOCUMENTS = [
    (
        "Prices",
        "A check-up costs 45 pounds. A hygienist cleaning costs 60 pounds. A filling costs from "
        "80 pounds. Children under 16 are seen for free.",
    ),
    (
        "Parking and access",
        "Patients park for free in the car park behind the clinic on Mill Lane. The entrance "
        "has a ramp and the treatment rooms are on the ground floor.",
    ),
    (
        "Insurance",
        "We accept most dental insurance plans. Bring your insurance card to your first visit.",
    ),
]
BOOKING_SCHEMA = {
    "type": "object",
    "properties": {
        "service": {"type": "string", "description": "What to book, e.g. cleaning."},
        "day": {"type": "string", "description": "The day, e.g. tuesday."},
    },
    "required": ["service", "day"],
}


def demo_password() -> str:
    """DEMO_ADMIN_PASSWORD, else one generated once and kept in var/."""
    if value := os.environ.get("DEMO_ADMIN_PASSWORD"):
        return value
    path = settings.VAR_DIR / "demo_admin_password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


class Command(BaseCommand):
    help = "Create the demo tenant with a number, an assistant, FAQ entries and admin logins."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--base-url",
            default="",
            help="Where the platform answers, for the demo booking tool's URL "
            "(default: PUBLIC_BASE_URL, else http://127.0.0.1:8000).",
        )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        password = demo_password()
        User = get_user_model()
        with scopes_disabled():
            tenant, _ = Tenant.objects.get_or_create(
                slug="demo", defaults={"name": "Demo Dental Clinic", "timezone": "Europe/London"}
            )
            assistant, _ = AssistantConfig.objects.get_or_create(
                tenant=tenant,
                name="Reception",
                defaults={
                    "system_prompt": (
                        "You are the friendly receptionist of Demo Dental Clinic. Help callers "
                        "with appointments, opening hours and directions. Answer in one to three "
                        "short sentences that sound natural when spoken."
                    ),
                    "greeting": "Hello, you've reached Demo Dental Clinic. How can I help you?",
                    "transfer_number": "+15005550001",
                    # Callers may switch to Spanish or French ("¿Habla español?").
                    "other_languages": ["es-ES", "fr-FR"],
                },
            )
            if assistant.tts_engine == AssistantConfig.TTSEngine.GTTS:
                self._choose_a_working_engine(assistant)
            assistant_prepare_greeting(assistant=assistant)
            if not assistant.faq_entries.exists():
                for patterns, answer in DEMO_FAQ:
                    FAQEntry.objects.create(
                        tenant=tenant, assistant=assistant, patterns=patterns, answer=answer
                    )
            number, _ = PhoneNumber.objects.get_or_create(
                number=DEMO_NUMBER,
                defaults={"tenant": tenant, "assistant": assistant, "label": "Demo line"},
            )
            # Refresh the demo line; a number that another tenant holds is not ours to change.
            if number.tenant_id != tenant.pk:
                self.stderr.write(f"{DEMO_NUMBER} belongs to another tenant; left unchanged.")
            elif number.assistant_id != assistant.pk or not number.active:
                number.assistant = assistant
                number.active = True
                number.save(update_fields=["assistant", "active"])
            base_url = options["base_url"] or settings.PUBLIC_BASE_URL or "http://127.0.0.1:8000"
            self._give_tools(assistant, base_url=base_url.rstrip("/"))
            if assistant.published_version_id is None:  # callers get version 1 of the demo
                version_publish(assistant=assistant, note="The demo's first version", check=False)

        admin, _ = User.objects.get_or_create(
            username="admin", defaults={"email": "admin@example.com"}
        )
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()

        owner, _ = User.objects.get_or_create(
            username="demo-owner", defaults={"email": "owner@example.com"}
        )
        owner.is_staff = True
        owner.is_superuser = False
        owner.set_password(password)
        owner.save()
        membership_grant(user=owner, tenant=tenant, role=Role.OWNER)

        self.stdout.write(
            f"Demo tenant '{tenant.name}' with number {DEMO_NUMBER} -> assistant '{assistant.name}'.\n"
            f"Logins: admin / {password} (platform superuser), "
            f"demo-owner / {password} (the demo tenant's owner)."
        )

    def _give_tools(self, assistant: AssistantConfig, *, base_url: str) -> None:
        """A booking tool (the platform's own demo endpoint), a front desk to transfer to, the
        built-ins, and a few knowledge documents."""
        url = f"{base_url}/devtools/demo/book"
        tool = HttpTool.objects.filter(assistant=assistant, name=BOOKING_TOOL).first()
        if tool is None:
            http_tool_create(
                assistant=assistant,
                name=BOOKING_TOOL,
                description="Book an appointment for the caller.",
                parameters=BOOKING_SCHEMA,
                url=url,
            )
        elif tool.url != url:
            tool.url = url
            tool.save(update_fields=["url", "updated_at"])
        if not TransferDestination.objects.filter(assistant=assistant).exists():
            transfer_destination_create(
                assistant=assistant,
                name="front desk",
                number=assistant.transfer_number or "+15005550001",
            )
        builtin_tools_set(
            assistant=assistant, transfer_call=True, end_call=True, lookup_knowledge=True
        )
        for title, text in DEMO_DOCUMENTS:
            if not Document.objects.filter(tenant=assistant.tenant, title=title).exists():
                document_create(tenant=assistant.tenant, title=title, text=text)

    def _choose_a_working_engine(self, assistant: AssistantConfig) -> None:
        """gTTS needs Google on the internet. Without it, every sentence of the demo would fail
        and be spoken with Twilio's voice: use espeak-ng (offline) when it is installed, and say
        so once (the choice stays; gTTS can be chosen again in the admin)."""
        problem = speech_engine_problem(AssistantConfig.TTSEngine.GTTS)
        if not problem:
            return
        note = f"gTTS cannot reach Google from here ({problem}); it needs internet access."
        if speech_engine_problem(AssistantConfig.TTSEngine.ESPEAK):
            self.stderr.write(
                f"{note} espeak-ng is not installed either, so callers hear Twilio's voice "
                "(<Say>) instead of generated audio: apt-get install espeak-ng, then run "
                "this again.",
                style_func=self.style.WARNING,
            )
            return
        assistant.tts_engine = AssistantConfig.TTSEngine.ESPEAK
        assistant.save(update_fields=["tts_engine", "updated_at"])
        self.stderr.write(
            f"{note} The demo assistant '{assistant.name}' speaks with espeak-ng (offline) "
            "instead; choose gTTS again in the admin once this machine is online.",
            style_func=self.style.WARNING,
        )
