"""Run the Deepgram stand-in in the foreground: `python manage.py fake_deepgram --port 8091`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from devtools.fake_deepgram import FakeDeepgramServer


class Command(BaseCommand):
    help = (
        "Serve Deepgram's live recognition (/v1/listen) and Aura speech (/v1/speak) WebSocket "
        "protocols on loopback, for stream mode without a Deepgram account. Point "
        "DEEPGRAM_BASE_URL at the printed URL; `simulate_call --stream --fake-deepgram <url>` "
        "tells it what the caller says."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8091, help="0 picks a free port")
        parser.add_argument(
            "--final-latency-ms", type=float, default=0.0, help="the model's time after endpointing"
        )
        parser.add_argument(
            "--first-chunk-ms", type=float, default=0.0, help="speech: time to the first audio"
        )
        parser.add_argument("--voice", choices=["espeak", "tone"], default="espeak")

    def handle(self, *args: Any, **options: Any) -> None:
        server = FakeDeepgramServer(
            host=options["host"],
            port=options["port"],
            final_latency_ms=options["final_latency_ms"],
            speak_first_chunk_ms=options["first_chunk_ms"],
            voice=options["voice"],
        )

        def ready(base_url: str) -> None:
            control = base_url.replace("ws://", "http://") + "/_fake"
            self.stdout.write(
                f"  control: POST {control}/transcripts, {control}/config, {control}/reset"
            )
            self.stdout.write(f"DEEPGRAM_BASE_URL={base_url}")
            self.stdout.flush()

        server.serve_forever(on_ready=ready)
