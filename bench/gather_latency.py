"""Time to first audio of one gather-mode turn: sequential against sentence-pipelined.

    .venv/bin/python bench/gather_latency.py [--turns 30] [--ttft-ms 150] [--tps 280]

Providers on loopback behave like the real ones: the fake Groq server (time to first token,
tokens per second, ~60-token answers) and the "simulated" speech engine (300 ms + 4 ms per
character, like a network TTS). Both designs use the same providers:

- sequential (the seed's design): the whole LLM answer, then speech for the whole text, then
  respond;
- pipelined (gather mode): the real `/twilio/gather` webhook, in this process, with a real Celery
  worker making each sentence's speech as soon as the sentence is complete. Twilio starts playing
  when the TwiML arrives, so the response time is the time to first audio.

Needs PostgreSQL and Redis (see bench/harness.py); writes only to its own database.
"""

from __future__ import annotations

import argparse
import uuid

from harness import (
    bench_tenant,
    celery_worker,
    configure_environment,
    create_database,
    machine,
    ms,
    now,
    table,
)

QUESTIONS = [
    "Can you repair a leaking radiator in the kitchen",
    "Do you install new boilers on weekends",
    "What does a bathroom refit usually cost",
    "Could someone check the water pressure tomorrow",
    "Do you clear blocked drains in the garden",
    "Is an emergency callout available tonight",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--ttft-ms", type=float, default=150.0)
    parser.add_argument("--tps", type=float, default=280.0)
    parser.add_argument("--answer-tokens", type=int, default=60)
    args = parser.parse_args()

    from devtools.fake_groq import FakeGroqServer

    groq = FakeGroqServer(
        ttft_ms=args.ttft_ms, tokens_per_second=args.tps, answer_tokens=args.answer_tokens
    ).start()
    env = configure_environment(
        GROQ_BASE_URL=groq.base_url,
        GROQ_API_KEY="bench",
        ANSWER_CACHE_SECONDS="0",
        TTS_WAIT_SECONDS="5",
        WEBHOOK_DEADLINE_SECONDS="12",
    )

    import django

    django.setup()
    create_database()

    from django.conf import settings
    from django.test import Client

    from calls.engine import build_messages
    from calls.transports.signatures import sign
    from providers import llm
    from providers.speech import get_engine

    run = uuid.uuid4().hex[:8]
    _, assistant, number = bench_tenant()
    config = {
        "system_prompt": assistant.system_prompt,
        "context_turns": 0,
    }
    engine = get_engine("simulated")
    client = Client(SERVER_NAME="localhost")

    def post(path: str, params: dict) -> bytes:
        signature = sign(
            url=f"http://localhost{path}", params=params, auth_token=settings.TWILIO_AUTH_TOKEN
        )
        response = client.post(
            path, params, headers={"X-Twilio-Signature": signature}, SERVER_NAME="localhost"
        )
        assert response.status_code == 200, response.content
        return response.content

    sequential: list[float] = []
    pipelined: list[float] = []
    played = said = 0
    with celery_worker(env):
        for turn in range(args.turns):
            question = f"{QUESTIONS[turn % len(QUESTIONS)]} number {turn} {run}?"

            # Sequential: whole answer, then speech for all of it, then respond.
            started = now()
            result = llm.LLMResult()
            text = llm.whole_answer(
                llm.stream_reply(
                    model=assistant.model,
                    fallback_model="",
                    messages=build_messages(config=config, history=[], utterance=question),
                    temperature=1.0,
                    max_tokens=1024,
                    deadline=started + 12,
                    result=result,
                )
            )
            engine.synthesize(text, language="en-US", voice="")
            sequential.append(ms(now() - started))

            # Pipelined: the real webhook (a new call each turn so history does not grow).
            call_sid = "CA" + uuid.uuid4().hex
            base = {"CallSid": call_sid, "From": "+15550001111", "To": number.number}
            post("/twilio/voice", {**base, "CallStatus": "ringing"})
            started = now()
            body = post(
                "/twilio/gather",
                {
                    **base,
                    "CallStatus": "in-progress",
                    "SpeechResult": question + " (pipelined)",
                    "Confidence": "0.9",
                },
            )
            pipelined.append(ms(now() - started))
            played += body.count(b"<Play>")
            said += body.count(b"<Say")

    groq.stop()
    print(f"Machine: {machine()}")
    print(
        f"Fake Groq: {args.ttft_ms:g} ms to first token, {args.tps:g} tokens/s, "
        f"~{args.answer_tokens} tokens; speech: {settings.TTS_SIMULATED_BASE_MS:g} ms + "
        f"{settings.TTS_SIMULATED_PER_CHAR_MS:g} ms/char\n"
    )
    print(
        table(
            f"Time to first audio, one gather turn ({args.turns} turns)",
            {
                "sequential (LLM, then TTS, then respond)": sequential,
                "pipelined (gather mode, sentence TTS in Celery)": pipelined,
            },
            baseline="sequential (LLM, then TTS, then respond)",
        )
    )
    print(f"Pipelined replies: {played} sentences played as audio, {said} fell back to <Say>.")


if __name__ == "__main__":
    main()
