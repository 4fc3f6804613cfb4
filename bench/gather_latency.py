"""Time to first audio of one gather-mode turn: sequential against sentence-pipelined, with a
cold and a warm audio cache, with and without the early first sentence.

    .venv/bin/python bench/gather_latency.py [--turns 20] [--ttft-ms 150] [--tps 280]

Providers on loopback behave like the real ones: the fake Groq server (time to first token,
tokens per second, ~60-token answers) and the "simulated" speech engine (300 ms + 4 ms per
character, like a network TTS). Every design uses the same providers, turn after turn, alternating:

- sequential (the seed's design): the whole LLM answer, then speech for the whole text, then
  respond; never cached;
- pipelined, cold: the real `/twilio/gather` webhook, in this process, with a real Celery worker
  making each sentence's speech as soon as the sentence is complete; the answers are distinct
  (the fake Groq server's `distinct` mode: no sentence repeats), so no sentence is in the audio
  cache; measured with the reply waiting for all its audio (GATHER_EARLY_REPLY off) and with the
  early first sentence (on);
- pipelined, warm: the fake Groq server's stock answers (12 middle sentences, 4 closings), after
  a warm-up: nearly every sentence is an audio cache hit.

Twilio starts playing when the TwiML arrives, so the response time is the time to first audio.
With the early first sentence, Twilio plays the first sentences, then fetches the rest: the bench
waits as long as they would play (PLAY_MS_PER_CHAR, ~13 characters a second of speech), then
fetches the continuation; its response time is the pause the caller hears between the first
sentences and the rest (plus Twilio's own round trip).

Needs PostgreSQL and Redis (see bench/harness.py); writes only to its own database.
"""

from __future__ import annotations

import argparse
import time
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
# How long Twilio takes to play text (about 13 characters a second of speech).
PLAY_MS_PER_CHAR = 75.0
SEQUENTIAL = "sequential (LLM, then TTS, then respond)"
COLD_WHOLE = "pipelined, cold cache, whole reply"
COLD_EARLY = "pipelined, cold cache, early first sentence"
WARM_WHOLE = "pipelined, warm cache, whole reply"
WARM_EARLY = "pipelined, warm cache, early first sentence"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--warm-up", type=int, default=12)
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
    _, assistant, number = bench_tenant(generous_limits=True)
    config = {"system_prompt": assistant.system_prompt, "context_turns": 0}
    engine = get_engine("simulated")
    client = Client(SERVER_NAME="localhost")

    def post(path: str, params: dict) -> bytes:
        signature = sign(
            url=f"http://localhost{path}", params=params, auth_token=settings.TWILIO_AUTH_TOKEN
        )
        response = client.post(
            path, params, headers={"X-Twilio-Signature": signature}, SERVER_NAME="localhost"
        )
        assert response.status_code in (200, 204), response.content
        return response.content

    def sequential(question: str) -> float:
        started = now()
        text = llm.whole_answer(
            llm.stream_reply(
                model=assistant.model,
                fallback_model="",
                messages=build_messages(config=config, history=[], utterance=question),
                temperature=1.0,
                max_tokens=1024,
                deadline=started + 12,
                result=llm.LLMResult(),
            )
        )
        engine.synthesize(text, language="en-US", voice="")
        return ms(now() - started)

    counts = {"played": 0, "said": 0, "early": 0, "rest played": 0, "rest said": 0}

    def pipelined(question: str, *, early: bool) -> tuple[float, float | None]:
        """(ms to the first TwiML, ms of the continuation or None) of a turn of a new call."""
        settings.GATHER_EARLY_REPLY = early
        base = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+15550001111", "To": number.number}
        post("/twilio/voice", {**base, "CallStatus": "ringing"})
        started = now()
        body = post(
            "/twilio/gather",
            {**base, "CallStatus": "in-progress", "SpeechResult": question, "Confidence": "0.9"},
        )
        first = ms(now() - started)
        counts["played"] += body.count(b"<Play>")
        counts["said"] += body.count(b"<Say")
        if b"<Redirect" not in body:
            post("/twilio/status", {**base, "CallStatus": "completed", "SequenceNumber": "9"})
            return first, None
        counts["early"] += 1
        # Twilio plays the first sentences, then fetches the rest.
        spoken = sum(len(t) for t in _first_texts(body, assistant))
        time.sleep(spoken * PLAY_MS_PER_CHAR / 1000)
        redirect = body.split(b"<Redirect", 1)[1].split(b">", 1)[1].split(b"<", 1)[0]
        path = "/" + redirect.decode().split("/", 3)[3].replace("&amp;", "&")
        started = now()
        rest = post(path, {**base, "CallStatus": "in-progress"})
        pause = ms(now() - started)
        counts["rest played"] += rest.count(b"<Play>")
        counts["rest said"] += rest.count(b"<Say")
        post("/twilio/status", {**base, "CallStatus": "completed", "SequenceNumber": "9"})
        return first, pause

    rows: dict[str, list[float]] = {
        name: [] for name in (SEQUENTIAL, COLD_WHOLE, COLD_EARLY, WARM_WHOLE, WARM_EARLY)
    }
    pauses: list[float] = []
    with celery_worker(env):
        # Warm: the stock sentences, made once by a few questions first.
        groq.configure(distinct=False)
        for turn in range(args.warm_up):
            pipelined(f"{QUESTIONS[turn % len(QUESTIONS)]} warm-up {turn} {run}?", early=False)
        counts.update(dict.fromkeys(counts, 0))
        for turn in range(args.turns):
            question = f"{QUESTIONS[turn % len(QUESTIONS)]} number {turn} {run}"
            groq.configure(distinct=True)
            rows[SEQUENTIAL].append(sequential(question + " (sequential)?"))
            rows[COLD_WHOLE].append(pipelined(question + " (whole)?", early=False)[0])
            first, pause = pipelined(question + " (early)?", early=True)
            rows[COLD_EARLY].append(first)
            if pause is not None:
                pauses.append(pause)
            groq.configure(distinct=False)
            rows[WARM_WHOLE].append(pipelined(question + " (warm whole)?", early=False)[0])
            rows[WARM_EARLY].append(pipelined(question + " (warm early)?", early=True)[0])

    groq.stop()
    print(f"Machine: {machine()}")
    print(
        f"Fake Groq: {args.ttft_ms:g} ms to first token, {args.tps:g} tokens/s, "
        f"~{args.answer_tokens} tokens; speech: {settings.TTS_SIMULATED_BASE_MS:g} ms + "
        f"{settings.TTS_SIMULATED_PER_CHAR_MS:g} ms/char\n"
    )
    print(
        table(
            f"Time to first audio, one gather turn ({args.turns} turns each)",
            rows,
            baseline=SEQUENTIAL,
        )
    )
    print(
        table(
            "Pause between the first sentences and the rest (continuation response time)",
            {"early first sentence, cold cache": pauses},
        )
    )
    print(
        f"Replies: {counts['played']} sentences played as audio, {counts['said']} said by "
        f"Twilio; {counts['early']} early replies, whose continuations played "
        f"{counts['rest played']} sentences as audio and had {counts['rest said']} said by Twilio."
    )


def _first_texts(body: bytes, assistant) -> list[str]:
    """The texts of the sentences a reply plays (from the speech rows of its audio URLs)."""
    from django_scopes import scopes_disabled

    from assistants.models import SpeechAudio

    names = [
        part.split(b"</Play>", 1)[0].decode().rsplit("/media/", 1)[-1]
        for part in body.split(b"<Play>")[1:]
    ]
    with scopes_disabled():
        return list(
            SpeechAudio.objects.filter(tenant_id=assistant.tenant_id, file__in=names).values_list(
                "text", flat=True
            )
        )


if __name__ == "__main__":
    main()
