"""Model routing on a mix of callers' turns: which model answered, why, and how fast.

    .venv/bin/python bench/routing.py [--main-ttft-ms 300] [--fast-ttft-ms 100]

Each turn is a gather-mode call through the real `/twilio/gather` webhook (in this process, the
groq SDK against the fake Groq server, Twilio's <Say>), for an assistant with a fast model, an FAQ
and a booking tool. The fake Groq server answers the main model after `--main-ttft-ms` and the
fast one after `--fast-ttft-ms` (what the two models' first tokens cost is set here, not
measured). The figures are the dashboard's own (`analytics.routing.model_split`) over the turns.

Needs PostgreSQL and Redis (see bench/harness.py); writes only to its own database.
"""

from __future__ import annotations

import argparse
import uuid

from harness import bench_tenant, configure_environment, create_database, machine

MAIN = "llama-3.3-70b-versatile"
FAST = "llama-3.1-8b-instant"
# A day's mix at a plumber's: greetings and yes/no, FAQ-like questions, bookings, long stories.
TURNS = [
    "Hi there",
    "Yes please",
    "No, that's all, thanks",
    "Are you open on Saturday?",
    "What are your opening hours on Saturday morning?",
    "Could you tell me what your opening hours are this coming Saturday and Sunday please",
    "How much is a callout?",
    "What does an emergency callout cost in the evening, roughly, including the first hour?",
    "Can I book a visit for Thursday?",
    "I'd like to book an appointment to service my boiler next week",
    "Do you cover the north side of town?",
    "My kitchen tap has been dripping for a week and now water is pooling under the sink "
    "cabinet, and I'm worried it has damaged the floor, what should I do first?",
    "We bought an old house and the radiators upstairs never get warm even after bleeding them, "
    "could it be the pump or something else entirely?",
    "Thanks, goodbye",
    "Is the parking free?",
    "Where do I park when I come to the workshop for the first time with my van?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--main-ttft-ms", type=float, default=300.0)
    parser.add_argument("--fast-ttft-ms", type=float, default=100.0)
    args = parser.parse_args()

    from devtools.fake_groq import FakeGroqServer

    groq = FakeGroqServer(ttft_ms=args.fast_ttft_ms, tokens_per_second=280).start()
    groq.queue_fault("slow", model=MAIN, ttft_ms=args.main_ttft_ms, count=1_000_000)
    configure_environment(GROQ_BASE_URL=groq.base_url, GROQ_API_KEY="bench")

    import django

    django.setup()
    create_database()

    from django.conf import settings
    from django.test import Client
    from django.utils import timezone
    from django_scopes import scopes_disabled

    from analytics.periods import Period
    from analytics.routing import model_split
    from calls.transports.signatures import sign
    from tools.services import http_tool_create

    tenant, assistant, number = bench_tenant(tts_engine="say", generous_limits=True)
    with scopes_disabled():
        assistant.fast_model = FAST
        assistant.save()
        assistant.faq_entries.create(
            tenant=tenant, patterns="opening hours saturday", answer="Eight to one on Saturdays."
        )
        http_tool_create(
            assistant=assistant,
            name="book_appointment",
            description="Book a visit.",
            parameters={"type": "object", "properties": {}},
            url="http://127.0.0.1:9/book",
        )
    client = Client(SERVER_NAME="localhost")

    def post(path: str, params: dict) -> None:
        signature = sign(
            url=f"http://localhost{path}", params=params, auth_token=settings.TWILIO_AUTH_TOKEN
        )
        response = client.post(
            path, params, headers={"X-Twilio-Signature": signature}, SERVER_NAME="localhost"
        )
        assert response.status_code in (200, 204), response.content

    started = timezone.now()
    for round_ in range(args.rounds):
        for text in TURNS:
            base = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+15550001111", "To": number.number}
            post("/twilio/voice", {**base, "CallStatus": "ringing"})
            said = f"{text} ({round_})"
            post("/twilio/gather", {**base, "CallStatus": "in-progress", "SpeechResult": said})
            post("/twilio/status", {**base, "CallStatus": "completed", "SequenceNumber": "9"})
    groq.stop()

    period = Period(
        key="bench", label="bench", start=started, end=timezone.now(), tz=started.tzinfo
    )
    with scopes_disabled():
        split = model_split(tenant_ids=[tenant.id], period=period)
    print(f"Machine: {machine()}")
    print(
        f"Fake Groq: main model {args.main_ttft_ms:g} ms, fast model {args.fast_ttft_ms:g} ms to "
        f"first token, 280 tokens/s; {len(TURNS)} kinds of turn × {args.rounds}; "
        f"ROUTING_SHORT_WORDS={settings.ROUTING_SHORT_WORDS}\n"
    )
    print("| model | answers | share | first token p50 (ms) | response p50 (ms) |")
    print("|---|---|---|---|---|")
    for row in split["models"]:
        print(
            f"| {row['model']} | {row['turns']} | {row['share'] * 100:.0f} % | "
            f"{row['first_token_p50']:.0f} | {row['response_p50']:.0f} |"
        )
    print("\n| route | reason | answers |\n|---|---|---|")
    for row in split["reasons"]:
        print(f"| {row['route']} | {row['reason']} | {row['turns']} |")


if __name__ == "__main__":
    main()
