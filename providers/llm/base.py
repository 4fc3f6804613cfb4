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

    @property
    def tokens(self) -> int:
        return (self.tokens_in or 0) + (self.tokens_out or 0)


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
    ) -> AsyncIterator[str]:
        """Stream one answer of `model` as text deltas, recording usage and the first token's
        time on `result`. Raises on any failure (also when the stream ends unfinished)."""
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
