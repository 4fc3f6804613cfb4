"""Run the Twilio stand-in in the foreground: `python manage.py fake_twilio --port 8091`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devtools.fake_twilio import OUTCOMES, FakeTwilioServer

DEMO_ACCOUNT_SID = "AC" + "0" * 32


class Command(BaseCommand):
    help = (
        "Serve the parts of Twilio's REST API the platform uses and play every call placed "
        "against the platform's webhooks, so campaigns run offline. Point TWILIO_API_BASE_URL "
        "at the printed URL (and set PUBLIC_BASE_URL to the platform's address)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8091, help="0 picks a free port")
        parser.add_argument(
            "--account-sid",
            default=settings.TWILIO_ACCOUNT_SID or DEMO_ACCOUNT_SID,
            help="the account it serves (default: TWILIO_ACCOUNT_SID)",
        )
        parser.add_argument(
            "--outcome",
            action="append",
            default=[],
            metavar="NUMBER=OUTCOME",
            help=f"how a destination answers (repeatable): {', '.join(sorted(OUTCOMES))}",
        )
        parser.add_argument("--default-outcome", default="answered", choices=sorted(OUTCOMES))
        parser.add_argument(
            "--say", action="append", default=[], help="what every callee who answers says"
        )
        parser.add_argument("--talk-seconds", type=float, default=2.0)

    def handle(self, *args: Any, **options: Any) -> None:
        server = FakeTwilioServer(
            host=options["host"], port=options["port"], talk_seconds=options["talk_seconds"]
        )
        server.add_account(options["account_sid"], settings.TWILIO_AUTH_TOKEN)
        server.default_outcome = options["default_outcome"]
        for rule in options["outcome"]:
            number, _, outcome = rule.partition("=")
            if outcome not in OUTCOMES:
                raise CommandError(f"--outcome {rule!r}: use NUMBER=one of {sorted(OUTCOMES)}")
            server.outcomes[number] = outcome
        server.speech_for_all = list(options["say"])
        self.stdout.write(
            f"Twilio stand-in for {options['account_sid']} at {server.base_url}\n"
            f"TWILIO_API_BASE_URL={server.base_url} TWILIO_ACCOUNT_SID={options['account_sid']}",
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server.server_close()
