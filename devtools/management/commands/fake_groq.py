"""Run the fake Groq server in the foreground: `python manage.py fake_groq --port 8090`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from devtools.fake_groq import DEFAULT_MODELS, FakeGroqServer, Fault


class Command(BaseCommand):
    help = (
        "Serve a Groq-compatible API with configurable latency and faults, for the offline demo "
        "and benchmarks. Point GROQ_BASE_URL at the printed URL."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
        parser.add_argument("--ttft-ms", type=float, default=150.0, help="time to first token")
        parser.add_argument("--tps", type=float, default=280.0, help="tokens per second")
        parser.add_argument("--answer-tokens", type=int, default=60, help="generated answer size")
        parser.add_argument("--answer", default=None, help="answer every request with this text")
        parser.add_argument(
            "--model",
            action="append",
            dest="models",
            help="a known model (repeatable); others get 404 model_not_found. Default: any model",
        )
        parser.add_argument("--api-key", default=None, help="require this exact key")
        parser.add_argument(
            "--fail-rate", type=float, default=0.0, help="share of requests that fail (0-1)"
        )
        parser.add_argument(
            "--fail-kind",
            action="append",
            dest="fail_kinds",
            help="fault used by --fail-rate (repeatable): 429, 500, 503, hang, cut, slow. "
            "Default: 500",
        )
        parser.add_argument(
            "--retry-after", type=float, default=1.0, help="retry-after seconds sent with 429"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed for --fail-rate draws")
        parser.add_argument(
            "--distinct",
            action="store_true",
            help="stock answers whose sentences never repeat across questions (a cold audio cache)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0.0 <= options["fail_rate"] <= 1.0:
            raise CommandError("--fail-rate must be between 0 and 1")
        fail_kinds = options["fail_kinds"] or ["500"]
        for kind in fail_kinds:
            try:
                Fault(kind=kind)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        server = FakeGroqServer(
            host=options["host"],
            port=options["port"],
            ttft_ms=options["ttft_ms"],
            tokens_per_second=options["tps"],
            answer_tokens=options["answer_tokens"],
            answer=options["answer"],
            models=options["models"],
            api_key=options["api_key"],
            fail_rate=options["fail_rate"],
            fail_kinds=fail_kinds,
            retry_after=options["retry_after"],
            seed=options["seed"],
            distinct=options["distinct"],
        )

        def ready(base_url: str) -> None:
            models = ", ".join(options["models"] or ["any (e.g. " + DEFAULT_MODELS[0] + ")"])
            self.stdout.write(f"Fake Groq server listening on {base_url}")
            self.stdout.write(f"  models: {models}")
            self.stdout.write(
                f"  ttft {options['ttft_ms']:g} ms, {options['tps']:g} tokens/s, "
                f"fail rate {options['fail_rate']:g} ({', '.join(fail_kinds)})"
            )
            fake = f"{base_url}/_fake"
            self.stdout.write(
                f"  control: GET/POST {fake}/config, GET/POST/DELETE {fake}/faults, "
                f"GET/DELETE {fake}/requests, POST {fake}/answers, POST {fake}/reset"
            )
            self.stdout.write(f"GROQ_BASE_URL={base_url}")
            self.stdout.flush()

        try:
            server.serve_forever(on_ready=ready)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {exc}"
            ) from exc
