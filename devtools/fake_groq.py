"""A local server that speaks Groq's chat-completions protocol, for tests, benchmarks and demos.

The official `groq` SDK works against it unchanged (`base_url=` or `GROQ_BASE_URL`): it serves
`POST /openai/v1/chat/completions` (plain and server-sent-event streaming answers, usage in the last
chunk like Groq's `x_groq.usage`) and `GET /openai/v1/models`. Latency (time to first token, tokens
per second) is configurable, and faults are injected at the wire: HTTP error statuses (429 with
`retry-after`, 500, 503, ...), `hang` (never answer), `cut` (the stream stops mid-answer) and `slow`
(a longer time to first token for one request).

In-process use (tests)::

    with FakeGroqServer(ttft_ms=20) as fake:
        client = groq.Groq(api_key="test", base_url=fake.base_url)
        fake.queue_fault("500", model="llama-3.3-70b-versatile")
        ...
        assert fake.requests[0].model == "llama-3.3-70b-versatile"

A server in another process (`manage.py fake_groq`) is driven over HTTP under `/_fake/`
(`FakeGroqControl` wraps those endpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, NoReturn

import httpx
from aiohttp import web

DEFAULT_MODELS = (
    "llama-3.3-70b-versatile",
    "llama-3.1-8b-instant",
    "openai/gpt-oss-20b",
    "openai/gpt-oss-120b",
)
BEHAVIOUR_FAULTS = frozenset({"hang", "cut", "slow", "error", "garbled"})
SLOW_DEFAULT_TTFT_MS = 5000.0
HANG_LIMIT_SECONDS = 3600.0
SYSTEM_FINGERPRINT = "fp_fakegroq01"

AnswerSource = str | Callable[[list[dict]], str] | None

# Groq's error bodies per status: (type, code, message).
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request"),
    401: ("invalid_request_error", "invalid_api_key", "Invalid API Key"),
    403: ("permissions_error", "forbidden", "Forbidden"),
    404: ("invalid_request_error", "not_found", "Not found"),
    413: ("invalid_request_error", "request_too_large", "Request Entity Too Large"),
    422: ("invalid_request_error", None, "Unprocessable Entity"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached"),
    498: ("capacity_error", "capacity_exceeded", "Flex tier capacity exceeded"),
    500: ("internal_server_error", "internal_server_error", "Internal Server Error"),
    502: ("internal_server_error", "bad_gateway", "Bad Gateway"),
    503: ("internal_server_error", "service_unavailable", "Service Unavailable"),
}


@dataclass
class Fault:
    """A failure to inject into the next `count` chat requests (for `model` only, if set).

    `kind` is an HTTP status ("429", "500", "503", any 400-599) or one of:
    - "hang": accept the request and never answer (with `after_tokens`: stall mid-stream instead);
    - "cut": stream `after_tokens` tokens (default half the answer) then drop the connection
      without a finish_reason or [DONE]; `clean=True` ends the HTTP body properly instead;
    - "slow": answer normally after `ttft_ms` (and `tokens_per_second`, if set);
    - "error": stream `after_tokens` tokens (default half) then an error event
      (`data: {"error": {...}}`) and end the body, as an overloaded server does mid-answer;
    - "garbled": stream `after_tokens` tokens (default half) then an event that is not JSON.
    `retry_after` (seconds, may be fractional) is sent as a `retry-after` header; 429 always has one.
    """

    kind: str
    model: str | None = None
    count: int = 1
    retry_after: float | None = None
    ttft_ms: float | None = None
    tokens_per_second: float | None = None
    after_tokens: int | None = None
    clean: bool = False

    def __post_init__(self) -> None:
        self.kind = str(self.kind).strip().lower()
        if self.kind not in BEHAVIOUR_FAULTS and not (
            self.kind.isdigit() and 400 <= int(self.kind) <= 599
        ):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.count < 1:
            raise ValueError("count must be at least 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """A fault from its JSON form (unknown keys are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)

    def withholds_answer(self, stream: bool) -> bool:
        """Whether the request gets no answer text at all (an error status, or a hang before
        the first token), so a queued answer is kept for the next request."""
        return self.kind.isdigit() or (
            self.kind == "hang" and (not stream or self.after_tokens is None)
        )


@dataclass
class RecordedRequest:
    """A chat-completion request as the server received it."""

    model: str
    messages: list[dict]
    temperature: float | None
    max_tokens: int | None
    stream: bool
    include_usage: bool
    received_at: float  # time.time()
    received_monotonic: float  # time.monotonic(), comparable across processes on one machine
    fault: str | None
    body: dict
    # The client closed the connection before the streamed answer was complete.
    client_closed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FakeGroqConfig:
    """What the server does when no fault applies."""

    ttft_ms: float = 150.0
    tokens_per_second: float = 280.0  # 0 or less: no delay between tokens
    answer_tokens: int = 60
    answer: AnswerSource = None  # fixed text, or a function of the messages
    # Every sentence of a stock answer carries the question's own case number, so no sentence
    # repeats across questions (an audio cache stays cold); False: the stock sentences as they are.
    distinct: bool = False
    models: list[str] | None = None  # None: accept any model
    api_key: str | None = None  # None: accept any non-empty key
    fail_rate: float = 0.0
    fail_kinds: list[str] = field(default_factory=lambda: ["500"])
    retry_after: float = 1.0
    seed: int = 0


# --- answers -------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*\S+")
_WORD_RE = re.compile(r"[a-z0-9][a-z0-9'-]*")
_STOPWORDS = frozenset(
    "a about an and any are as at be can could do does for from have hello hi how i if in is it "
    "me my of on or our please so that the there this to us want was we what when where which "
    "who why will with would you your yes no ok okay hey just like need know tell".split()
)
_OPENINGS = (
    "Thanks for your question about {topic}.",
    "Sure, I can help you with {topic}.",
    "Good question about {topic}!",
    "Of course, let me tell you about {topic}.",
    "Happy to help with your question about {topic}.",
)
_MIDDLES = (
    "Our team handles this kind of request every day, so you are in good hands.",
    "I can book a time that suits you, usually within the next two days.",
    "Most visits take about an hour, and we always confirm the price before we start.",
    "If anything changes on our side, we will call you right away.",
    "You can also reach us by email if that is easier for you.",
    "We are open from eight in the morning until six in the evening, Monday to Friday.",
    "There is no charge for the first conversation with one of our specialists.",
    "Many of our customers find it easiest to sort this out over the phone, just like now.",
    "I will make a note of your request so the next person you speak to knows the details.",
    "We usually send a short confirmation message as soon as everything is arranged.",
    "If you have a reference number, it helps us find your details a little faster.",
    "Our prices are listed on the website, and I am glad to go through them with you.",
)
_CLOSINGS = (
    "Is there anything else I can help you with today?",
    "Would you like me to set that up for you now?",
    "Shall I go ahead and arrange that for you?",
    "Does that answer your question?",
)


def tokenize(text: str) -> list[str]:
    """Split text into word pieces as the server streams them (" word", punctuation attached)."""
    return _TOKEN_RE.findall(text)


def message_text(message: dict) -> str:
    """The text of a chat message (string content, or the text parts of a list content)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        ).strip()
    return ""


# Stock sentences for a system prompt that asks for another language ("Always answer in Spanish"),
# so that a demo or a test hears the assistant switch language.
_ANSWER_IN = re.compile(r"\banswer in ([A-Z][a-z]+)")
_IN_LANGUAGE = {
    "Spanish": (
        "Claro, con mucho gusto le ayudo.",
        "Estamos abiertos de lunes a viernes, de ocho de la mañana a seis de la tarde.",
        "¿Hay algo más en lo que pueda ayudarle?",
    ),
    "French": (
        "Bien sûr, je vous aide avec plaisir.",
        "Nous sommes ouverts du lundi au vendredi, de huit heures à dix-huit heures.",
        "Puis-je vous aider pour autre chose ?",
    ),
    "German": (
        "Natürlich, ich helfe Ihnen gern.",
        "Wir haben montags bis freitags von acht bis achtzehn Uhr geöffnet.",
        "Kann ich Ihnen sonst noch helfen?",
    ),
    "Portuguese": (
        "Claro, ajudo com todo o prazer.",
        "Estamos abertos de segunda a sexta, das oito da manhã às seis da tarde.",
        "Posso ajudar em mais alguma coisa?",
    ),
    "Italian": (
        "Certo, la aiuto volentieri.",
        "Siamo aperti dal lunedì al venerdì, dalle otto alle diciotto.",
        "Posso aiutarla in qualcos'altro?",
    ),
    "Hindi": (
        "ज़रूर, मैं आपकी मदद करूँगा।",
        "हम सोमवार से शुक्रवार, सुबह आठ बजे से शाम छह बजे तक खुले रहते हैं।",
        "क्या मैं आपकी और कोई मदद कर सकता हूँ?",
    ),
    "Japanese": (
        "かしこまりました。喜んでお手伝いいたします。",
        "営業時間は月曜日から金曜日の午前八時から午後六時までです。",
        "ほかにお手伝いできることはございますか？",
    ),
}


def answer_language(messages: list[dict]) -> str | None:
    """The language the system prompt asks answers in, when stock sentences exist for it."""
    system = " ".join(message_text(m) for m in messages if m.get("role") == "system")
    match = _ANSWER_IN.search(system)
    return match.group(1) if match and match.group(1) in _IN_LANGUAGE else None


def _marked(sentence: str, code: int) -> str:
    """The sentence with the question's case number before its final punctuation."""
    body, end = sentence[:-1], sentence[-1]
    return f"{body}, case {code}{end}"


def make_answer(messages: list[dict], answer_tokens: int = 60, *, distinct: bool = False) -> str:
    """A deterministic spoken-style reply to the last user message, about `answer_tokens` long.

    `distinct`: each sentence carries a number drawn from the question, so different questions
    get answers without a sentence in common."""
    question = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    if language := answer_language(messages):
        return " ".join(_IN_LANGUAGE[language])
    words = [w for w in _WORD_RE.findall(question.lower()) if w not in _STOPWORDS]
    topic = " ".join(words[:3]) or "that"
    seed = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    opening = rng.choice(_OPENINGS).format(topic=topic)
    closing = rng.choice(_CLOSINGS)
    middles = list(_MIDDLES)
    rng.shuffle(middles)
    if distinct:
        code = seed % 1_000_000
        opening, closing = _marked(opening, code), _marked(closing, code)
        middles = [_marked(sentence, code) for sentence in middles]
    sentences = [opening]
    budget = max(answer_tokens, 1) - len(tokenize(closing))
    count = len(tokenize(opening))
    index = 0
    while count < budget:
        sentence = middles[index % len(middles)]
        index += 1
        sentences.append(sentence)
        count += len(tokenize(sentence))
    if answer_tokens > count:
        sentences.append(closing)
    return " ".join(sentences)


def structured_answer(response_format: Any, messages: list[dict]) -> str | None:
    """The JSON an answer in JSON mode would be (None when no JSON was asked for): an instance
    of the `json_schema` asked for, its text drawn from the last user message; or, for
    `json_object`, `{"answer": <the spoken-style reply>}`."""
    if not isinstance(response_format, dict):
        return None
    question = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    words = [w for w in _WORD_RE.findall(question.lower()) if w not in _STOPWORDS]
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(example_of(schema, words))
    if response_format.get("type") == "json_object":
        return json.dumps({"answer": make_answer(messages)})
    return None


def example_of(schema: Any, words: list[str], name: str = "") -> Any:
    """A plausible value valid against a (simple) JSON Schema: enums take their first value,
    strings speak of `words` (the conversation's own), numbers are 1, booleans true."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_of(schema[key][0], words, name)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: example_of(value, words, key) for key, value in properties.items()}
    if kind == "array":
        return [example_of(schema.get("items") or {}, words, name)]
    if kind in ("integer", "number"):
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") == "date-time":
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    topic = " ".join(words[:6]) or "a question"
    return f"The caller talked about {topic}." if name == "summary" else topic


def prompt_tokens(messages: list[dict]) -> int:
    """A stable estimate of the prompt's token count (text pieces plus per-message overhead)."""
    return sum(len(tokenize(message_text(m))) + 4 for m in messages) + 3


# --- tool calls ----------------------------------------------------------------------------------

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TRANSFER_WORDS = re.compile(
    r"\b(transfer|operator|front desk|billing|(speak|talk) (to|with) (a|an|the|someone|somebody)"
    r"|real person|human)\b"
)
_GOODBYE_WORDS = re.compile(r"\b(goodbye|bye|that'?s all|hang up)\b")
_QUESTION_START = re.compile(r"^(what|when|where|which|who|why|how|do|does|is|are|can|could)\b")
_BUILTIN_TOOLS = ("transfer_call", "end_call", "lookup_knowledge")


def decide_tool_calls(messages: list[dict], tools: list) -> list[dict]:
    """Which tool a simple rule-following model calls for the caller's last words, if any:
    asking for a person -> `transfer_call`; saying goodbye -> `end_call`; words that name one
    of the tenant's tools ("book" for `book_appointment`) -> that tool, arguments guessed from
    its schema; a question -> `lookup_knowledge`."""
    offered = {}
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            offered[function["name"]] = function.get("parameters") or {}
    text = message_text(messages[-1])
    said = text.lower()
    if "transfer_call" in offered and _TRANSFER_WORDS.search(said):
        return [
            {"name": "transfer_call", "arguments": _guess_arguments(offered["transfer_call"], said)}
        ]
    if "end_call" in offered and _GOODBYE_WORDS.search(said):
        return [{"name": "end_call", "arguments": {}}]
    words = set(_WORD_RE.findall(said))
    for name, schema in offered.items():
        parts = {p for p in re.split(r"[_\W]+", name.lower()) if len(p) >= 4 and p not in ("with",)}
        if name not in _BUILTIN_TOOLS and any(w.startswith(p) for p in parts for w in words):
            return [{"name": name, "arguments": _guess_arguments(schema, text)}]
    if "lookup_knowledge" in offered and ("?" in said or _QUESTION_START.match(said)):
        return [{"name": "lookup_knowledge", "arguments": {"query": text}}]
    return []


def _guess_arguments(schema: dict, text: str) -> dict:
    """Arguments for a tool's JSON Schema, picked out of the caller's words."""
    said = text.lower()
    arguments: dict[str, Any] = {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    for name, spec in (properties or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            found = [value for value in spec["enum"] if str(value).lower() in said]
            arguments[name] = found[0] if found else spec["enum"][0]
        elif any(key in name.lower() for key in ("day", "date", "when")):
            arguments[name] = next((d for d in _WEEKDAYS if d in said), "tomorrow")
        elif spec.get("type") in ("integer", "number"):
            number = re.search(r"\d+", said)
            arguments[name] = int(number.group()) if number else 1
        elif name.lower() in ("query", "question", "text", "message"):
            arguments[name] = text
        else:
            thing = re.search(r"\b(?:a|an|the|my|for)\s+([a-z][a-z-]+)", said)
            arguments[name] = thing.group(1) if thing else said[:40]
    return arguments


def answer_from_tool_results(messages: list[dict]) -> str:
    """An answer built from the tool results that follow the last assistant message ("" when
    the conversation does not end with tool results): what each result says, or an apology for
    a result that reports an error."""
    if not messages or messages[-1].get("role") != "tool":
        return ""
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, message_text(message))
    sentences = []
    for content in results:
        try:
            data = json.loads(content)
        except ValueError:
            data = content
        if isinstance(data, dict) and data.get("error"):
            sentences.append("I'm sorry, I could not get that done just now.")
        elif isinstance(data, dict):
            said = data.get("message") or data.get("answer") or data.get("text")
            sentences.append(
                str(said)
                if said
                else "Done: " + ", ".join(f"{key} {value}" for key, value in data.items()) + "."
            )
        elif isinstance(data, list) and data:
            first = data[0]
            sentences.append(str(first.get("text", first) if isinstance(first, dict) else first))
        else:
            sentences.append(str(data) or "I found nothing about that.")
    return " ".join(sentences)


# --- the server ----------------------------------------------------------------------------------


class _BadRequest(Exception):
    pass


def _error_response(
    status: int, message: str | None = None, *, code: str | None = None, headers: dict | None = None
) -> web.Response:
    kind, default_code, default_message = _ERRORS.get(
        status, ("internal_server_error" if status >= 500 else "invalid_request_error", None, "")
    )
    error: dict[str, Any] = {"message": message or default_message or f"HTTP {status}"}
    error["type"] = kind
    if code or default_code:
        error["code"] = code or default_code
    return web.json_response({"error": error}, status=status, headers=headers)


def _usage(
    prompt: int, completion: int, ttft: float, tps: float, queued: float = 0.0001
) -> dict[str, Any]:
    completion_time = completion / tps if tps > 0 else 0.0
    return {
        "queue_time": queued,
        "prompt_tokens": prompt,
        "prompt_time": round(ttft, 6),
        "completion_tokens": completion,
        "completion_time": round(completion_time, 6),
        "total_tokens": prompt + completion,
        "total_time": round(ttft + completion_time, 6),
    }


def _retry_after_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class FakeGroqServer:
    """A Groq-compatible HTTP server with injectable latency and faults.

    `start()` runs it on its own event loop in a background thread (port 0 picks a free port);
    `serve_forever()` runs it in the foreground. Every public method is safe to call from any
    thread while the server runs.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self.host = host
        self.port = port
        self._initial = FakeGroqConfig(**config)
        self.config = copy.deepcopy(self._initial)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._answers: list[tuple[str | None, str]] = []
        self._tool_calls: list[list[dict]] = []
        self._requests: list[RecordedRequest] = []
        self._rng = random.Random(self.config.seed)
        self._active_streams = 0
        # Streams are written in batches: at most this many writes per second in total, and at
        # least this long between two writes of one stream, so a thousand streams stay cheap.
        self.min_batch_interval = 0.01
        self.max_writes_per_second = 20000.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What to give the SDK as `base_url` / `GROQ_BASE_URL` (without `/openai/v1`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """The chat-completion requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def active_streams(self) -> int:
        """Streamed answers being written right now."""
        return self._active_streams

    def queue_fault(self, kind: str | int, **options: Any) -> Fault:
        """Inject a fault into upcoming requests; see `Fault` for kinds and options."""
        fault = Fault(kind=str(kind), **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def pending_faults(self) -> list[Fault]:
        """Queued faults not used up yet."""
        with self._lock:
            return [replace(f) for f in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_answer(self, answer: AnswerSource) -> None:
        """Answer every request with this text (or function of the messages); None: generated."""
        self.config.answer = answer

    def queue_answer(self, text: str, *, model: str | None = None, count: int = 1) -> None:
        """Answer the next `count` requests (for `model`, if set) with `text`.

        A request that gets an error status or hangs before its first token does not use it up.
        """
        with self._lock:
            self._answers.extend([(model, text)] * count)

    def queue_tool_calls(self, calls: list[dict], *, count: int = 1) -> None:
        """Answer the next `count` requests that offer tools (after a user message) with these
        tool calls: `{"name": ..., "arguments": {...}}`, or a string as `arguments` to send it
        as written (e.g. malformed JSON). Without a queued call, `decide_tool_calls` decides."""
        with self._lock:
            self._tool_calls.extend([list(calls)] * count)

    def _tool_calls_for(self, messages: list[dict], tools: object) -> tuple[list[dict], bool]:
        """The tool calls that answer this request, and whether they are queued ones (used up
        only when the request is answered: a fault before the answer keeps them for a retry)."""
        if not isinstance(tools, list) or not tools or messages[-1].get("role") != "user":
            return [], False
        with self._lock:
            if self._tool_calls:
                return self._tool_calls[0], True
        return decide_tool_calls(messages, tools), False

    def _use_queued_tool_calls(self) -> None:
        with self._lock:
            if self._tool_calls:
                self._tool_calls.pop(0)

    async def _stream_tool_calls(
        self, request: web.Request, started: float, model: str, messages: list, calls: list[dict]
    ) -> web.StreamResponse:
        """Stream tool calls in OpenAI's format: id and name first, then the arguments in
        pieces, then `finish_reason: "tool_calls"` and the usage."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, started + self.config.ttft_ms / 1000 - loop.time()))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {
            "id": f"chatcmpl-{uuid.uuid4()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def event(delta: dict, finish: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + json.dumps({**base, "choices": [choice], **extra}).encode() + b"\n\n"

        written = 0
        for index, call in enumerate(calls):
            arguments = call.get("arguments", {})
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            head = {
                "index": index,
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            await response.write(
                event({"role": "assistant", "content": None, "tool_calls": [head]})
            )
            for piece in (text[i : i + 16] for i in range(0, len(text), 16)):
                piece_delta = {"index": index, "function": {"arguments": piece}}
                await response.write(event({"tool_calls": [piece_delta]}))
            written += len(tokenize(text)) + 3
        usage = _usage(prompt_tokens(messages), written, self.config.ttft_ms / 1000, 0)
        await response.write(event({}, "tool_calls", x_groq={"usage": usage}) + b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def set_latency(
        self, *, ttft_ms: float | None = None, tokens_per_second: float | None = None
    ) -> None:
        """Change the time to first token and/or the streaming rate for later requests."""
        if ttft_ms is not None:
            self.config.ttft_ms = float(ttft_ms)
        if tokens_per_second is not None:
            self.config.tokens_per_second = float(tokens_per_second)

    def configure(self, **changes: Any) -> None:
        """Change any `FakeGroqConfig` field (`answer_tokens`, `fail_rate`, `models`, ...)."""
        known = {f.name for f in fields(FakeGroqConfig)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self.config, name, value)
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)

    def reset(self) -> None:
        """Forget requests, faults and queued answers; restore the settings given at start."""
        with self._lock:
            self._faults.clear()
            self._answers.clear()
            self._requests.clear()
            self.config = copy.deepcopy(self._initial)
            self._rng = random.Random(self.config.seed)

    # --- running -----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeGroqServer:
        """Start serving in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-groq", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("fake Groq server did not start")
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (open connections are dropped) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None

    def __enter__(self) -> FakeGroqServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the foreground until SIGINT/SIGTERM; `on_ready` gets the base URL."""

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            stopped = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    self._loop.add_signal_handler(signum, stopped.set)
            await self._open()
            if on_ready is not None:
                on_ready(self.base_url)
            try:
                await stopped.wait()
            finally:
                await self._close()

        asyncio.run(main())

    def make_app(self) -> web.Application:
        """The aiohttp application (for embedding in another aiohttp server)."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/openai/v1/chat/completions", self._chat)
        app.router.add_get("/openai/v1/models", self._models)
        app.router.add_get("/openai/v1/models/{model:.+}", self._model)
        app.router.add_get("/_fake/requests", self._control_requests)
        app.router.add_delete("/_fake/requests", self._control_clear_requests)
        app.router.add_get("/_fake/faults", self._control_faults)
        app.router.add_post("/_fake/faults", self._control_queue_faults)
        app.router.add_delete("/_fake/faults", self._control_clear_faults)
        app.router.add_post("/_fake/answers", self._control_queue_answers)
        app.router.add_get("/_fake/config", self._control_config)
        app.router.add_post("/_fake/config", self._control_configure)
        app.router.add_post("/_fake/reset", self._control_reset)
        return app

    async def _open(self) -> None:
        self._runner = web.AppRunner(
            self.make_app(),
            access_log=None,
            handler_cancellation=True,  # a client that gives up ends its hang/stream handler
            shutdown_timeout=0.5,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- Groq endpoints ----------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return self.config.api_key is None or token == self.config.api_key

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error_response(401)
        names = self.config.models or list(DEFAULT_MODELS)
        return web.json_response({"object": "list", "data": [self._model_object(n) for n in names]})

    async def _model(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error_response(401)
        name = request.match_info["model"]
        if self.config.models is not None and name not in self.config.models:
            return self._model_not_found(name)
        return web.json_response(self._model_object(name))

    @staticmethod
    def _model_object(name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": 1700000000,
            "owned_by": "Fake Groq",
            "active": True,
            "context_window": 131072,
            "public_apps": None,
            "max_completion_tokens": 32768,
        }

    @staticmethod
    def _model_not_found(name: str) -> web.Response:
        message = f"The model `{name}` does not exist or you do not have access to it."
        return _error_response(404, message, code="model_not_found")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not self._authorized(request):
            return _error_response(401)
        try:
            body = await request.json()
            parsed = self._parse_chat(body)
        except (ValueError, UnicodeDecodeError):
            return _error_response(400, "We could not parse the JSON body of your request.")
        except _BadRequest as exc:
            return _error_response(400, str(exc))
        model, messages, max_tokens, stream, include_usage = parsed
        if self.config.models is not None and model not in self.config.models:
            return self._model_not_found(model)
        tool_calls, queued = self._tool_calls_for(messages, body.get("tools"))
        fault, answer = self._take(model, stream, with_answer=not tool_calls)
        if queued and not (fault is not None and fault.withholds_answer(stream)):
            self._use_queued_tool_calls()
        with self._lock:
            self._requests.append(
                record := RecordedRequest(
                    model=model,
                    messages=messages,
                    temperature=body.get("temperature"),
                    max_tokens=max_tokens,
                    stream=stream,
                    include_usage=include_usage,
                    received_at=time.time(),
                    received_monotonic=time.monotonic(),
                    fault=fault.kind if fault else None,
                    body=body,
                )
            )
        if fault is not None and fault.kind.isdigit():
            return self._fault_response(fault, model)
        if fault is not None and fault.kind == "hang" and fault.withholds_answer(stream):
            await asyncio.sleep(HANG_LIMIT_SECONDS)
            return _error_response(504, "Gateway Timeout")
        if tool_calls and stream:
            return await self._stream_tool_calls(request, started, model, messages, tool_calls)

        config = self.config
        if answer is None:
            source = config.answer
            if callable(source):
                answer = source(messages)
            elif source is not None:
                answer = source
            else:
                answer = structured_answer(body.get("response_format"), messages)
                answer = answer or answer_from_tool_results(messages)
                answer = answer or make_answer(
                    messages, config.answer_tokens, distinct=config.distinct
                )
        tokens = tokenize(answer)
        finish = "stop"
        if max_tokens is not None and len(tokens) > max_tokens:
            tokens, finish = tokens[:max_tokens], "length"
        ttft = config.ttft_ms / 1000
        tps = config.tokens_per_second
        if fault is not None and fault.kind == "slow":
            ttft = (fault.ttft_ms if fault.ttft_ms is not None else SLOW_DEFAULT_TTFT_MS) / 1000
            tps = fault.tokens_per_second if fault.tokens_per_second is not None else tps
        usage = _usage(prompt_tokens(messages), len(tokens), ttft, tps)
        ids = (f"chatcmpl-{uuid.uuid4()}", f"req_{uuid.uuid4().hex[:26]}", int(time.time()))
        if stream:
            return await self._stream(
                request,
                started + ttft,
                tps,
                model,
                tokens,
                finish,
                usage,
                include_usage,
                ids,
                fault,
                record,
            )
        await asyncio.sleep(max(0.0, started + ttft + _duration(len(tokens), tps) - loop.time()))
        if fault is not None and fault.kind == "cut":
            _drop_connection(request)
        completion_id, request_id, created = ids
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(tokens)},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "x_groq": {"id": request_id},
            },
            headers={"x-request-id": request_id},
        )

    @staticmethod
    def _parse_chat(body: Any) -> tuple[str, list[dict], int | None, bool, bool]:
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("'model' : property 'model' is missing")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("'messages' : property 'messages' is missing")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise _BadRequest(f"'messages.{index}' : property 'role' is missing")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise _BadRequest("'max_tokens' : must be a positive integer")
        stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
        include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
        return model, messages, max_tokens, stream, include_usage

    def _take(
        self, model: str, stream: bool, *, with_answer: bool = True
    ) -> tuple[Fault | None, str | None]:
        """The fault and (`with_answer`) the queued answer that apply to this request, used up."""
        with self._lock:
            fault = next((f for f in self._faults if f.model in (None, model)), None)
            if fault is not None:
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                fault = replace(fault, count=1)
            elif self.config.fail_rate > 0 and self._rng.random() < self.config.fail_rate:
                fault = Fault(kind=self._rng.choice(self.config.fail_kinds or ["500"]))
            answer = None
            withheld = not with_answer or (fault is not None and fault.withholds_answer(stream))
            answers = [] if withheld else self._answers
            for index, (target, text) in enumerate(answers):
                if target in (None, model):
                    answer = text
                    del self._answers[index]
                    break
        return fault, answer

    def _fault_response(self, fault: Fault, model: str) -> web.Response:
        status = int(fault.kind)
        retry_after = fault.retry_after
        if status == 429 and retry_after is None:
            retry_after = self.config.retry_after
        headers = {"x-request-id": f"req_{uuid.uuid4().hex[:26]}"}
        message = None
        if retry_after is not None:
            headers["retry-after"] = _retry_after_header(retry_after)
        if status == 429:
            headers.update(
                {
                    "x-ratelimit-limit-requests": "30",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{retry_after:g}s",
                }
            )
            message = (
                f"Rate limit reached for model `{model}` in organization `org_fake` service tier "
                f"`on_demand` on requests per minute (RPM): Limit 30, Used 30, Requested 1. "
                f"Please try again in {retry_after:g}s."
            )
        return _error_response(status, message, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        first_at: float,
        tps: float,
        model: str,
        tokens: list[str],
        finish: str,
        usage: dict[str, Any],
        include_usage: bool,
        ids: tuple[str, str, int],
        fault: Fault | None,
        record: RecordedRequest | None = None,
    ) -> web.StreamResponse:
        try:
            return await self._stream_answer(
                request, first_at, tps, model, tokens, finish, usage, include_usage, ids, fault
            )
        except (ConnectionError, asyncio.CancelledError):
            if record is not None:
                record.client_closed = True
            raise

    async def _stream_answer(
        self,
        request: web.Request,
        first_at: float,
        tps: float,
        model: str,
        tokens: list[str],
        finish: str,
        usage: dict[str, Any],
        include_usage: bool,
        ids: tuple[str, str, int],
        fault: Fault | None,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        completion_id, request_id, created = ids
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

        def event(choice: dict[str, Any], **extra: Any) -> bytes:
            data = {**base, "choices": [{"index": 0, **choice}], **extra}
            return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

        # Content chunks are built from a template: json.dumps per token is the hot path.
        template = event({"delta": {"content": "\0"}, "logprobs": None, "finish_reason": None})
        prefix, suffix = template.split(b'"\\u0000"')

        def content(pieces: Iterable[str]) -> bytes:
            return b"".join(prefix + json.dumps(p).encode() + suffix for p in pieces)

        stop_after = len(tokens)
        if fault is not None and fault.kind in ("cut", "hang", "error", "garbled"):
            default = max(1, len(tokens) // 2)
            after = fault.after_tokens if fault.after_tokens is not None else default
            stop_after = max(0, min(after, len(tokens)))

        while (delay := first_at - loop.time()) > 0:
            await asyncio.sleep(delay)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": request_id,
            }
        )
        await response.prepare(request)
        role = event(
            {
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            },
            x_groq={"id": request_id},
        )
        sent = 0
        self._active_streams += 1
        try:
            pending = role
            while sent < stop_after:
                now = loop.time()
                due = stop_after if tps <= 0 else min(stop_after, int((now - first_at) * tps) + 1)
                if due > sent:
                    await response.write(pending + content(tokens[sent:due]))
                    pending, sent = b"", due
                if sent >= stop_after:
                    break
                interval = max(
                    self.min_batch_interval, self._active_streams / self.max_writes_per_second
                )
                wake = max(first_at + sent / tps, now + interval)
                await asyncio.sleep(wake - loop.time())
            if pending:
                await response.write(pending)
        finally:
            self._active_streams -= 1

        if fault is not None and fault.kind == "error":
            error = {"message": "Service unavailable mid-stream", "type": "internal_server_error"}
            await response.write(b"data: " + json.dumps({"error": error}).encode() + b"\n\n")
            await response.write_eof()
            return response
        if fault is not None and fault.kind == "garbled":  # an event that is not JSON
            await response.write(b'data: {"choices": [{"delta": {"content": "and th\n\n')
            await response.write_eof()
            return response
        if fault is not None and fault.kind == "hang":
            await asyncio.sleep(HANG_LIMIT_SECONDS)
        if fault is not None and fault.kind in ("cut", "hang"):
            if fault.clean:
                await response.write_eof()
                return response
            _drop_connection(request)

        extra: dict[str, Any] = {"x_groq": {"id": request_id, "usage": usage}}
        if include_usage:
            extra["usage"] = usage
        final = event({"delta": {}, "logprobs": None, "finish_reason": finish}, **extra)
        await response.write(final + b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # --- control endpoints -------------------------------------------------------------------

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.to_dict() for r in self.requests]})

    async def _control_clear_requests(self, request: web.Request) -> web.Response:
        with self._lock:
            self._requests.clear()
        return web.json_response({"ok": True})

    async def _control_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": [asdict(f) for f in self.pending_faults()]})

    async def _control_queue_faults(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            items = data if isinstance(data, list) else [data]
            faults = [Fault.from_dict(item) for item in items]
        except (ValueError, TypeError) as exc:
            return _error_response(400, str(exc))
        with self._lock:
            self._faults.extend(faults)
        return web.json_response({"queued": [asdict(f) for f in faults]})

    async def _control_clear_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"ok": True})

    async def _control_queue_answers(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            items = data if isinstance(data, list) else [data]
            for item in items:
                if not isinstance(item.get("text"), str):
                    raise ValueError("'text' is required")
            for item in items:
                self.queue_answer(item["text"], model=item.get("model"), count=item.get("count", 1))
        except (ValueError, TypeError, AttributeError) as exc:
            return _error_response(400, str(exc))
        return web.json_response({"queued": len(items)})

    async def _control_config(self, request: web.Request) -> web.Response:
        data = asdict(self.config)
        if callable(data["answer"]):
            data["answer"] = repr(data["answer"])
        return web.json_response(data)

    async def _control_configure(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            self.configure(**data)
        except (ValueError, TypeError) as exc:
            return _error_response(400, str(exc))
        return await self._control_config(request)

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})


def _duration(tokens: int, tps: float) -> float:
    return tokens / tps if tps > 0 else 0.0


def _drop_connection(request: web.Request) -> NoReturn:
    """Close the socket after what was already written, without ending the HTTP response."""
    if request.transport is not None:
        request.transport.close()
    # aiohttp treats this like a client that went away: no error response, no log.
    raise asyncio.CancelledError


class FakeGroqControl:
    """Drive a fake Groq server in another process through its `/_fake/` endpoints."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/") + "/_fake", timeout=timeout)

    def queue_fault(self, kind: str | int, **options: Any) -> None:
        """Queue a fault (same arguments as `FakeGroqServer.queue_fault`)."""
        self._http.post("/faults", json={"kind": str(kind), **options}).raise_for_status()

    def queue_answer(self, text: str, *, model: str | None = None, count: int = 1) -> None:
        response = self._http.post("/answers", json={"text": text, "model": model, "count": count})
        response.raise_for_status()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings (`ttft_ms`, `tokens_per_second`, `fail_rate`, ...); returns them all."""
        response = self._http.post("/config", json=changes)
        response.raise_for_status()
        return response.json()

    def requests(self) -> list[dict[str, Any]]:
        """The recorded chat requests, as dicts (see `RecordedRequest`)."""
        response = self._http.get("/requests")
        response.raise_for_status()
        return response.json()["requests"]

    def reset(self) -> None:
        self._http.post("/reset").raise_for_status()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FakeGroqControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
