"""Rate limits from the RateLimit table, enforced atomically in Redis.

Counters live in Redis (Lua scripts, so several server instances share them exactly). Without
Redis (embedded mode), or while Redis is unreachable, a process-local fallback applies the same
limits per process. Limits are asked for on every gather turn and when a relay session starts;
each process keeps the rows it read until the tenant's limits change (tenants.generations), so
edits made in the admin apply to the next call at the latest.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from core import caching, metrics
from core.phrases import _
from tenants import generations
from tenants.models import RateLimit, Tenant

logger = logging.getLogger(__name__)

# A call that never sent its final status callback stops counting as active after this long.
STALE_CALL_SECONDS = 4 * 3600

# The platform's spoken lines for each limit (translated when said: see core.phrases).
DEFAULT_MESSAGES = {
    RateLimit.Kind.CONCURRENT_CALLS: _(
        "Sorry, all of our lines are busy right now. Please call again in a few minutes. Goodbye."
    ),
    RateLimit.Kind.CALLS_PER_CALLER: _(
        "Sorry, we have received too many calls from your number. Please try again later. Goodbye."
    ),
    RateLimit.Kind.TURNS_PER_CALL: _(
        "Let's slow down a little. Please wait a moment before asking again."
    ),
    RateLimit.Kind.LLM_TOKENS_PER_DAY: _(
        "Sorry, I can't answer more questions today. Please call again tomorrow."
    ),
    RateLimit.Kind.SPEND_PER_DAY: _(
        "Sorry, this line cannot take more calls today. Please call again tomorrow. Goodbye."
    ),
}
# Money is counted in millionths of the currency; a spend limit is set in cents.
MICROS_PER_CENT = 10_000

# The counters, as Lua functions that each script below starts with:
# count: add `amount` to a counter that lives `ttl` seconds from its first count;
# admit: `member` among the live members of a set (those newer than `stale_before`), unless
#   `limit` of them are there (1: admitted, or already there; 0: full);
# reserve: take `amount` unless the budget `limit` is already used up (-1). A reservation may
#   pass the budget, so the overrun is at most one turn's reservation, however many run at once.
_LUA = """
local function count(key, amount, ttl)
  local n = redis.call('INCRBY', key, amount)
  if n == tonumber(amount) then redis.call('EXPIRE', key, ttl) end
  return n
end
local function admit(key, now, stale_before, limit, member, ttl)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', stale_before)
  if redis.call('ZSCORE', key, member) then return 1 end
  if redis.call('ZCARD', key) >= tonumber(limit) then return 0 end
  redis.call('ZADD', key, now, member)
  redis.call('EXPIRE', key, ttl)
  return 1
end
local function reserve(key, amount, limit, ttl)
  local used = tonumber(redis.call('GET', key) or '0')
  if used >= tonumber(limit) then return -1 end
  return count(key, amount, ttl)
end
"""
_ADMIT_SCRIPT = _LUA + "return admit(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"
_INCR_SCRIPT = _LUA + "return count(KEYS[1], ARGV[1], ARGV[2])"
_RESERVE_SCRIPT = _LUA + "return reserve(KEYS[1], ARGV[1], ARGV[2], ARGV[3])"
# A new call in one trip: its caller's window (KEYS[1], limit ARGV[1], ttl ARGV[2]; -1 past it),
# then the tenant's live calls (KEYS[2], ARGV[3..7] as for _ADMIT_SCRIPT).
_CALL_SCRIPT = (
    _LUA
    + """
if count(KEYS[1], 1, ARGV[2]) > tonumber(ARGV[1]) then return -1 end
return admit(KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])"""
)
# A caller's turn in one trip: the call's turns window (KEYS[1], limit ARGV[1], ttl ARGV[2]; -2
# past it), then the token budget (KEYS[2], ARGV[3..5] as for _RESERVE_SCRIPT).
_TURN_SCRIPT = (
    _LUA
    + """
if count(KEYS[1], 1, ARGV[2]) > tonumber(ARGV[1]) then return -2 end
return reserve(KEYS[2], ARGV[3], ARGV[4], ARGV[5])"""
)


@dataclass(frozen=True)
class TokenReservation:
    """Tokens taken from a budget before the LLM is asked, settled with the real spend."""

    key: str
    amount: int
    ttl: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: RateLimit | None = None
    reservation: TokenReservation | None = None

    @property
    def message(self) -> str:
        """The tenant's own message, else the platform's line (a `Phrase`, said in the
        caller's language)."""
        if self.limit is None:
            return ""
        return self.limit.message or DEFAULT_MESSAGES[RateLimit.Kind(self.limit.kind)]

    @property
    def action(self) -> str:
        return self.limit.action if self.limit else ""


ALLOWED = Verdict(allowed=True)


def _refused(tenant: Tenant, limit: RateLimit) -> Verdict:
    metrics.RATE_LIMITED.labels(tenant=tenant.slug, kind=limit.kind).inc()
    return Verdict(allowed=False, limit=limit)


def effective_limits(tenant: Tenant) -> dict[str, RateLimit]:
    """The tenant's limits: its own rows, else the platform defaults (rows without a tenant).
    Read once per change of them in each process (tenants.generations); not to be modified."""
    return generations.cached(tenant, "rate_limits", lambda: _limits_read(tenant))


def _limits_read(tenant: Tenant) -> dict[str, RateLimit]:
    limits: dict[str, RateLimit] = {}
    # Unordered: the model's default order (by tenant name) would join the tenants table.
    rows = RateLimit.objects.filter(Q(tenant__isnull=True) | Q(tenant=tenant)).order_by()
    # Platform defaults first, so that the tenant's own rows override them.
    for row in sorted(rows, key=lambda r: r.tenant_id is not None):
        limits[row.kind] = row
    return limits


class _Local:
    """Process-local counters: the embedded mode, and the fallback while Redis is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, dict[str, float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}

    def admit(self, key: str, member: str, limit: int, now: float) -> bool:
        with self._lock:
            members = self._sets.setdefault(key, {})
            for old in [m for m, t in members.items() if t < now - STALE_CALL_SECONDS]:
                del members[old]
            if member in members:
                return True
            if len(members) >= limit:
                return False
            members[member] = now
            return True

    def release(self, key: str, member: str) -> None:
        with self._lock:
            self._sets.get(key, {}).pop(member, None)

    def incr(self, key: str, amount: int, ttl: int, now: float) -> int:
        with self._lock:
            value, expires = self._counters.get(key, (0, 0.0))
            if expires < now:
                value = 0
                expires = now + ttl
            value += amount
            self._counters[key] = (value, expires)
            return value

    def reserve(self, key: str, amount: int, limit: int, ttl: int, now: float) -> bool:
        with self._lock:
            value, expires = self._counters.get(key, (0, 0.0))
            if expires < now:
                value, expires = 0, now + ttl
            if value >= limit:
                return False
            self._counters[key] = (value + amount, expires)
            return True

    def get(self, key: str, now: float) -> int:
        with self._lock:
            value, expires = self._counters.get(key, (0, 0.0))
            return value if expires >= now else 0


_local = _Local()


def _redis():
    return caching.redis_client() if settings.REDIS_URL else None


_redis_failed_at = float("-inf")


def _with_fallback(redis_op, local_op):
    """Run `redis_op`; while Redis is down or restarting, degrade to per-process limits.

    After a failure Redis is left alone for REDIS_RETRY_SECONDS, so that a call does not wait on
    a dead server for every check; then it is tried again and used as soon as it answers.
    """
    global _redis_failed_at
    client = _redis()
    if client is not None and time.monotonic() - _redis_failed_at >= settings.REDIS_RETRY_SECONDS:
        try:
            return redis_op(client)
        except Exception:
            _redis_failed_at = time.monotonic()
            logger.warning("rate limiter: redis unavailable, using local counters", exc_info=True)
    return local_op()


def _window_key(name: str, window: int, now: float) -> str:
    return f"rl:{name}:{int(now // window)}"


def _ttl(limit: RateLimit) -> int:
    """How long a window's counter is kept: its window and a little more."""
    return limit.window_seconds + 5


def _caller_key(tenant_id: object, caller: str, limit: RateLimit, now: float) -> str:
    return _window_key(f"caller:{tenant_id}:{caller}", limit.window_seconds, now)


def _turns_key(call_sid: str, limit: RateLimit, now: float) -> str:
    return _window_key(f"turns:{call_sid}", limit.window_seconds, now)


def _live_calls_key(tenant_id: object) -> str:
    return f"rl:active:{tenant_id}"


def _over(limit: RateLimit, key: str, amount: int, now: float) -> bool:
    ttl = _ttl(limit)
    count = _with_fallback(
        lambda r: int(r.eval(_INCR_SCRIPT, 1, key, amount, ttl)),
        lambda: _local.incr(key, amount, ttl, now),
    )
    return count > limit.limit


def call_admit(*, tenant: Tenant, call_sid: str, caller: str) -> Verdict:
    """Count a new call against the spend budget, the concurrent-calls and per-caller limits."""
    limits = effective_limits(tenant)
    spend = _spend_verdict(tenant, limits)
    if not spend.allowed:
        return spend
    now = time.time()
    per_caller = limits.get(RateLimit.Kind.CALLS_PER_CALLER)
    concurrent = limits.get(RateLimit.Kind.CONCURRENT_CALLS)
    if per_caller and concurrent:
        return _caller_and_concurrent(tenant, call_sid, caller, per_caller, concurrent, now)
    if per_caller:
        key = _caller_key(tenant.id, caller, per_caller, now)
        if _over(per_caller, key, 1, now):
            return _refused(tenant, per_caller)
    if concurrent:
        key = _live_calls_key(tenant.id)
        admitted = _with_fallback(
            lambda r: bool(
                r.eval(
                    _ADMIT_SCRIPT,
                    1,
                    key,
                    now,
                    now - STALE_CALL_SECONDS,
                    concurrent.limit,
                    call_sid,
                    STALE_CALL_SECONDS,
                )
            ),
            lambda: _local.admit(key, call_sid, concurrent.limit, now),
        )
        if not admitted:
            return _refused(tenant, concurrent)
    return ALLOWED


def _caller_and_concurrent(
    tenant: Tenant,
    call_sid: str,
    caller: str,
    per_caller: RateLimit,
    concurrent: RateLimit,
    now: float,
) -> Verdict:
    """`call_admit` with both a per-caller and a concurrent-calls limit: one trip to Redis."""
    caller_key = _caller_key(tenant.id, caller, per_caller, now)
    caller_ttl = _ttl(per_caller)
    live_key = _live_calls_key(tenant.id)

    def locally() -> int:
        if _local.incr(caller_key, 1, caller_ttl, now) > per_caller.limit:
            return -1
        return int(_local.admit(live_key, call_sid, concurrent.limit, now))

    admitted = _with_fallback(
        lambda r: int(
            r.eval(
                _CALL_SCRIPT,
                2,
                caller_key,
                live_key,
                per_caller.limit,
                caller_ttl,
                now,
                now - STALE_CALL_SECONDS,
                concurrent.limit,
                call_sid,
                STALE_CALL_SECONDS,
            )
        ),
        locally,
    )
    if admitted == -1:
        return _refused(tenant, per_caller)
    if admitted == 0:
        return _refused(tenant, concurrent)
    return ALLOWED


def call_release(*, tenant_id: object, call_sid: str) -> None:
    """The call ended: it no longer counts against the concurrent-calls limit."""
    key = _live_calls_key(tenant_id)
    _with_fallback(lambda r: r.zrem(key, call_sid), lambda: _local.release(key, call_sid))


def turn_admit(
    *, tenant: Tenant, call_sid: str, limits: dict[str, RateLimit] | None = None
) -> Verdict:
    """Count a caller's turn against the turns-per-call limit. `limits`: already read for
    this turn (see `effective_limits`), to save reading them again."""
    limit = (effective_limits(tenant) if limits is None else limits).get(
        RateLimit.Kind.TURNS_PER_CALL
    )
    if limit is None:
        return ALLOWED
    now = time.time()
    key = _turns_key(call_sid, limit, now)
    return _refused(tenant, limit) if _over(limit, key, 1, now) else ALLOWED


def _tokens_key(tenant_id: object, window: int, now: float) -> str:
    return _window_key(f"tokens:{tenant_id}", window, now)


def tokens_reserve(
    *, tenant: Tenant, amount: int, limits: dict[str, RateLimit] | None = None
) -> Verdict:
    """Take `amount` tokens (a turn's max_tokens) from the tenant's budget before the LLM is
    asked, atomically: refused once the budget is used up. Settle with `tokens_settle`."""
    limit = (effective_limits(tenant) if limits is None else limits).get(
        RateLimit.Kind.LLM_TOKENS_PER_DAY
    )
    if limit is None:
        return ALLOWED
    now = time.time()
    key = _tokens_key(tenant.id, limit.window_seconds, now)
    ttl = _ttl(limit)
    amount = max(int(amount), 0)
    taken = _with_fallback(
        lambda r: int(r.eval(_RESERVE_SCRIPT, 1, key, amount, limit.limit, ttl)) >= 0,
        lambda: _local.reserve(key, amount, limit.limit, ttl, now),
    )
    if not taken:
        return _refused(tenant, limit)
    return Verdict(allowed=True, reservation=TokenReservation(key=key, amount=amount, ttl=ttl))


def tokens_settle(*, reservation: TokenReservation | None, spent: int) -> None:
    """The turn is over: count what it really spent instead of what it reserved."""
    if reservation is None:
        return
    change = max(int(spent), 0) - reservation.amount
    if change:
        _with_fallback(
            lambda r: r.eval(_INCR_SCRIPT, 1, reservation.key, change, reservation.ttl),
            lambda: _local.incr(reservation.key, change, reservation.ttl, time.time()),
        )


def turn_verdict(
    *,
    tenant: Tenant,
    call_sid: str,
    limits: dict[str, RateLimit] | None = None,
    reserve_tokens: int = 0,
) -> Verdict:
    """Whether the caller's new turn may be answered: the turns-per-call limit, then the
    tenant's token budget, from which `reserve_tokens` are taken (the limits are read once
    for both)."""
    limits = effective_limits(tenant) if limits is None else limits
    turns = limits.get(RateLimit.Kind.TURNS_PER_CALL)
    tokens = limits.get(RateLimit.Kind.LLM_TOKENS_PER_DAY)
    if turns and tokens and RateLimit.Kind.SPEND_PER_DAY not in limits:
        return _turn_and_tokens(tenant, call_sid, turns, tokens, reserve_tokens)
    verdict = turn_admit(tenant=tenant, call_sid=call_sid, limits=limits)
    if not verdict.allowed:
        return verdict
    spend = _spend_verdict(tenant, limits)
    if not spend.allowed:
        return spend
    return tokens_reserve(tenant=tenant, amount=reserve_tokens, limits=limits)


def _turn_and_tokens(
    tenant: Tenant, call_sid: str, turns: RateLimit, tokens: RateLimit, amount: int
) -> Verdict:
    """`turn_verdict` with a turns limit and a token budget (and no spend budget between
    them): both in one trip to Redis."""
    now = time.time()
    turns_key = _turns_key(call_sid, turns, now)
    turns_ttl = _ttl(turns)
    key = _tokens_key(tenant.id, tokens.window_seconds, now)
    ttl = _ttl(tokens)
    amount = max(int(amount), 0)

    def locally() -> int:
        if _local.incr(turns_key, 1, turns_ttl, now) > turns.limit:
            return -2
        return 0 if _local.reserve(key, amount, tokens.limit, ttl, now) else -1

    taken = _with_fallback(
        lambda r: int(
            r.eval(
                _TURN_SCRIPT, 2, turns_key, key, turns.limit, turns_ttl, amount, tokens.limit, ttl
            )
        ),
        locally,
    )
    if taken == -2:
        return _refused(tenant, turns)
    if taken == -1:
        return _refused(tenant, tokens)
    return Verdict(allowed=True, reservation=TokenReservation(key=key, amount=amount, ttl=ttl))


def _spend_key(tenant_id: object, window: int, now: float) -> str:
    return _window_key(f"spend:{tenant_id}", window, now)


def spend_add(*, tenant: Tenant, amount: Decimal) -> None:
    """Count money the tenant spent (a call's cost, once it is known) against its spend budget.
    A call in progress counts when it ends, so calls running at once may pass the budget by
    what they cost; new calls and turns are refused from then on."""
    limit = effective_limits(tenant).get(RateLimit.Kind.SPEND_PER_DAY)
    micros = int(amount * 1_000_000)
    if limit is None or micros <= 0:
        return
    now = time.time()
    key = _spend_key(tenant.id, limit.window_seconds, now)
    ttl = _ttl(limit)
    _with_fallback(
        lambda r: r.eval(_INCR_SCRIPT, 1, key, micros, ttl),
        lambda: _local.incr(key, micros, ttl, now),
    )


def _spend_verdict(tenant: Tenant, limits: dict[str, RateLimit]) -> Verdict:
    limit = limits.get(RateLimit.Kind.SPEND_PER_DAY)
    if limit is None:
        return ALLOWED
    now = time.time()
    key = _spend_key(tenant.id, limit.window_seconds, now)
    spent = _with_fallback(lambda r: int(r.get(key) or 0), lambda: _local.get(key, now))
    return _refused(tenant, limit) if spent >= limit.limit * MICROS_PER_CENT else ALLOWED
