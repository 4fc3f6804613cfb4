"""The checks of a test scenario: what must be true of the conversation, each with its reason.

A check is JSON, `{"kind": ..., ...}`:
- `contains` / `not_contains` `{"text"}`: an answer of the assistant contains (no answer
  contains) the text, ignoring case; `"turn": -1` (or any index) looks at that answer only;
- `regex` `{"pattern"}`: an answer matches the regular expression;
- `tool_called` `{"name", "arguments"?}`: the tool was called, each given argument matching its
  value (a case-insensitive regular expression of the whole value);
- `transferred`, `ended`: the assistant transferred the caller, or hung up;
- `judge` `{"question"}`: an LLM judge reads the conversation and answers yes (pass) or no.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

KINDS = ("contains", "not_contains", "regex", "tool_called", "transferred", "ended", "judge")
_NEEDS = {
    "contains": "text",
    "not_contains": "text",
    "regex": "pattern",
    "tool_called": "name",
    "judge": "question",
}


def check_problems(value: object) -> list[str]:
    """Why `value` is not a list of valid checks ([] when it is)."""
    if not isinstance(value, list) or not value:
        return ['Give a list of checks, e.g. [{"kind": "contains", "text": "booked"}].']
    problems = []
    for index, check in enumerate(value, 1):
        if not isinstance(check, dict) or check.get("kind") not in KINDS:
            problems.append(f"Check {index}: give a kind, one of {', '.join(KINDS)}.")
            continue
        needed = _NEEDS.get(check["kind"])
        if needed and not (isinstance(check.get(needed), str) and check[needed].strip()):
            problems.append(f"Check {index} ({check['kind']}): give {needed!r} as text.")
        if check["kind"] == "regex" and isinstance(check.get("pattern"), str):
            problems.extend(_regex_problem(index, check["pattern"]))
        if "arguments" in check and not isinstance(check["arguments"], dict):
            problems.append(f'Check {index}: give "arguments" as {{"name": "value"}}.')
        if "turn" in check and not isinstance(check["turn"], int):
            problems.append(f'Check {index}: "turn" is a number (-1: the last answer).')
    return problems


def _regex_problem(index: int, pattern: str) -> list[str]:
    try:
        re.compile(pattern)
    except re.error as exc:
        return [f"Check {index}: the pattern is not a valid regular expression ({exc})."]
    return []


@dataclass
class Transcript:
    """A rehearsed conversation: its lines in order, and how it ended."""

    lines: list[dict] = field(default_factory=list)  # {"role", "text", "tool_calls"?}
    transferred: bool = False
    ended: bool = False

    def answers(self) -> list[str]:
        return [line["text"] for line in self.lines if line["role"] == "assistant"]

    def tool_calls(self) -> list[dict]:
        return [call for line in self.lines for call in line.get("tool_calls", [])]

    def as_text(self) -> str:
        return "\n".join(f"{line['role']}: {line['text']}" for line in self.lines)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    tokens: int = 0


Judge = Callable[[str, Transcript], Verdict]


def evaluate(check: dict, transcript: Transcript, *, judge: Judge) -> Verdict:
    """Whether the conversation passes `check`, and why."""
    kind = check["kind"]
    if kind in ("contains", "not_contains", "regex"):
        return _text_check(check, transcript)
    if kind == "tool_called":
        return _tool_check(check, transcript)
    if kind == "transferred":
        return Verdict(transcript.transferred, "transferred" if transcript.transferred else
                       "the caller was not transferred")  # fmt: skip
    if kind == "ended":
        return Verdict(transcript.ended, "the assistant hung up" if transcript.ended else
                       "the assistant did not end the call")  # fmt: skip
    return judge(check["question"], transcript)


def _text_check(check: dict, transcript: Transcript) -> Verdict:
    answers = transcript.answers()
    if "turn" in check:
        try:
            answers = [answers[check["turn"]]]
        except IndexError:
            return Verdict(False, f"there is no answer number {check['turn']}")
    if check["kind"] == "regex":
        pattern = re.compile(check["pattern"])
        found = next((a for a in answers if pattern.search(a)), None)
        wanted = f"an answer matching /{check['pattern']}/"
    else:
        needle = check["text"].casefold()
        found = next((a for a in answers if needle in a.casefold()), None)
        wanted = f"an answer containing {check['text']!r}"
    if check["kind"] == "not_contains":
        if found is None:
            return Verdict(True, f"no answer contains {check['text']!r}")
        return Verdict(False, f"an answer contains {check['text']!r}: {found[:200]!r}")
    if found is not None:
        return Verdict(True, f"found in: {found[:200]!r}")
    return Verdict(False, f"no {wanted.removeprefix('an ')}")


def _tool_check(check: dict, transcript: Transcript) -> Verdict:
    calls = [c for c in transcript.tool_calls() if c.get("name") == check["name"]]
    if not calls:
        used = sorted({c.get("name", "") for c in transcript.tool_calls()})
        return Verdict(False, f"{check['name']} was not called (called: {used or 'none'})")
    wanted = check.get("arguments") or {}
    for call in calls:
        arguments = call.get("arguments") if isinstance(call.get("arguments"), dict) else {}
        if all(_matches(value, arguments.get(name)) for name, value in wanted.items()):
            return Verdict(True, f"{check['name']} called with {arguments}")
    seen = [c.get("arguments") for c in calls]
    return Verdict(False, f"{check['name']} was called, but with {seen}, not {wanted}")


def _matches(wanted: object, actual: object) -> bool:
    if actual is None:
        return False
    if isinstance(wanted, str):
        try:
            return re.fullmatch(wanted, str(actual), re.IGNORECASE) is not None
        except re.error:
            return wanted.casefold() == str(actual).casefold()
    return wanted == actual
