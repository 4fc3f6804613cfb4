"""What every language-model provider looks like: one streaming attempt, one error type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field


class LLMError(Exception):
    """A failed LLM attempt. `permanent` says whether retrying the same model can help."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        timeout: bool = False,
    ):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.timeout = timeout


class LLMNotConfigured(LLMError):
    def __init__(self) -> None:
        super().__init__("no LLM configured (set GROQ_API_KEY or GROQ_BASE_URL)", permanent=True)


@dataclass(frozen=True)
class ToolCall:
    """A function the model asked to call: `arguments` is the JSON text the model wrote (it may
    be malformed: the caller validates it)."""

    id: str
    name: str
    arguments: str

    def as_message(self) -> dict:
        """The call as it appears in the assistant message sent back with the results."""
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}


@dataclass
class LLMResult:
    """What happened while an answer was asked for (filled in as it streams)."""

    model_used: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    first_token_at: float | None = None  # time.monotonic()
    done_at: float | None = None
    fallbacks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False
    not_configured: bool = False
    truncated: bool = False  # the answer stopped early (stream cut, deadline)
    tool_calls: list[ToolCall] = field(default_factory=list)  # asked for instead of (or after) text

    @property
    def tokens(self) -> int:
        return (self.tokens_in or 0) + (self.tokens_out or 0)

    def absorb(self, later: LLMResult) -> None:
        """Add a later request of the same answer (after tool results) to this record: tokens
        add up, the first token stays the first request's, the rest is the later one's."""
        self.tokens_in = (self.tokens_in or 0) + (later.tokens_in or 0)
        self.tokens_out = (self.tokens_out or 0) + (later.tokens_out or 0)
        self.first_token_at = self.first_token_at or later.first_token_at
        self.model_used = later.model_used or self.model_used
        self.done_at = later.done_at
        self.fallbacks += later.fallbacks
        self.errors += later.errors
        self.failed, self.truncated = later.failed, later.truncated
        self.not_configured = later.not_configured
        self.tool_calls = list(later.tool_calls)


class ChatProvider:
    """A chat-completions provider. Subclasses set `name` and implement `attempt` and
    `classify`; the retry, fallback and deadline policy is `providers.llm.stream_reply`."""

    name: str = ""

    def is_configured(self) -> bool:
        raise NotImplementedError

    def attempt(
        self,
        *,
        model: str,
        messages: list[dict],
        temperature: float,
        max_tokens: int,
        timeout: float,
        result: LLMResult,
        tools: list[dict] | None = None,
        read_every: float = 0.0,
    ) -> AsyncIterator[str]:
        """Stream one answer of `model` as text deltas, recording usage, the first token's
        time and the tool calls asked for (OpenAI-style `tools`) on `result`. Raises on any
        failure (also when the stream ends unfinished). With `read_every` (seconds), once text
        has come the response is read at most that often: what arrived meanwhile is one delta."""
        raise NotImplementedError

    def complete(
        self,
        *,
        model: str,
        messages: list[dict],
        max_tokens: int,
        response_format: dict | None,
        timeout: float,
        result: LLMResult,
    ) -> str:
        """One whole (not streamed) answer of `model`, blocking, recording usage on `result`;
        `response_format` asks for JSON (`{"type": "json_object"}` or a `json_schema`). Raises
        on any failure."""
        raise NotImplementedError

    def classify(self, exc: Exception) -> LLMError:
        """`exc` as an LLMError saying whether a retry can help."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget clients and connections (settings changed, e.g. in tests)."""
