"""Gather-mode scenarios, measured against a running server over HTTP like Twilio calls it."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from harness import ms, now


class Caller:
    """Signed Twilio webhooks for one call at a time, over one HTTP connection."""

    def __init__(self, *, base: str, token: str, number: str) -> None:
        self.base, self.token, self.number = base, token, number
        self.http = httpx.Client(timeout=30)

    def post(self, path: str, params: dict) -> tuple[int, bytes]:
        from calls.transports.signatures import sign

        url = self.base + path
        signature = sign(url=url, params=params, auth_token=self.token)
        response = self.http.post(url, data=params, headers={"X-Twilio-Signature": signature})
        return response.status_code, response.content

    def start(self) -> dict:
        params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+15550001111", "To": self.number}
        status, _ = self.post("/twilio/voice", {**params, "CallStatus": "ringing"})
        if status != 200:
            raise RuntimeError(f"voice webhook answered {status}")
        return params

    def say(self, call: dict, text: str) -> tuple[float, int, bytes]:
        """(ms to the TwiML answer, status, body) of one caller turn."""
        started = now()
        status, body = self.post(
            "/twilio/gather",
            {**call, "CallStatus": "in-progress", "SpeechResult": text, "Confidence": "0.9"},
        )
        return ms(now() - started), status, body

    def rest(self, call: dict, body: bytes) -> tuple[int, bytes]:
        """Fetch the rest of an answer whose first sentences came early (its <Redirect>), as
        Twilio does once they have played; (0, body) when the answer was whole."""
        if b"<Redirect" not in body:
            return 0, body
        url = body.split(b"<Redirect", 1)[1].split(b">", 1)[1].split(b"<", 1)[0].decode()
        path = "/" + url.replace("&amp;", "&").split("/", 3)[3]
        return self.post(path, {**call, "CallStatus": "in-progress"})

    def end(self, call: dict) -> None:
        self.post("/twilio/status", {**call, "CallStatus": "completed", "SequenceNumber": "9"})

    def close(self) -> None:
        self.http.close()


def sequential_first_audio(*, assistant, question: str) -> float:
    """The seed's design, in this process: whole LLM answer, then speech for all of it."""
    from calls.engine import build_messages
    from providers import llm
    from providers.speech import get_engine

    config = {"system_prompt": assistant.system_prompt, "context_turns": 0}
    started = now()
    result = llm.LLMResult()
    text = llm.whole_answer(
        llm.stream_reply(
            model=assistant.model,
            fallback_model="",
            messages=build_messages(config=config, history=[], utterance=question),
            temperature=1.0,
            max_tokens=1024,
            deadline=time.monotonic() + 12,
            result=result,
        )
    )
    get_engine(assistant.tts_engine).synthesize(text, language="en-US", voice="")
    return ms(now() - started)


def pipelined_first_audio(caller: Caller, *, question: str) -> tuple[float, int, int]:
    """Gather mode over HTTP (a new call, so history stays empty): (ms, played, said)."""
    call = caller.start()
    elapsed, status, body = caller.say(call, question)
    caller.end(call)
    if status != 200:
        raise RuntimeError(f"gather webhook answered {status}")
    return elapsed, body.count(b"<Play>"), body.count(b"<Say")


def concurrent_turns(
    make_caller,
    *,
    concurrency: int,
    turns_each: int,
    question: str,
    pause: float = 0.0,
    stagger: bool = False,
) -> tuple[list[float], int, float]:
    """`concurrency` calls at once, each saying `question` `turns_each` times, `pause` seconds
    apart; with `stagger`, the calls begin spread over one pause (callers do not all speak at
    the same moment).

    Returns (ms of every turn, number of failed turns, seconds it all took).
    """
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one_call(index: int) -> None:
        nonlocal errors
        if stagger:
            time.sleep(pause * index / concurrency)
        caller = make_caller()
        try:
            call = caller.start()
            for _ in range(turns_each):
                elapsed, status, body = caller.say(call, question)
                if status == 200:
                    status, body = caller.rest(call, body) if b"<Redirect" in body else (200, body)
                with lock:
                    if status == 200 and b"<Gather" in body:
                        latencies.append(elapsed)
                    else:
                        errors += 1
                if pause:
                    time.sleep(pause)
            caller.end(call)
        except Exception:
            with lock:
                errors += turns_each
        finally:
            caller.close()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one_call, range(concurrency)))
    return latencies, errors, time.monotonic() - started
