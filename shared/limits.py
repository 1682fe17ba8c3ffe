"""Rate limits and login throttling, counted in Redis so every process of a service shares them.

Both fail open: if Redis cannot be reached the request goes on; authentication and jurisdiction
checks never depend on Redis. Failing open must not go unnoticed: every request let through
unchecked counts in `liangxin_limit_fail_open_total`, and each episode logs one error line (and
one line when the limit is checked again), not one per request.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import ProblemError
from shared.settings import get_settings

log = logging.getLogger(__name__)
WINDOW_S = 60

# Registered by each app in its own metrics registry (shared.app.Metrics); counted per process.
FAIL_OPEN = Counter(
    "liangxin_limit_fail_open_total",
    "Requests let through without their limit checked, because Redis could not be reached",
    ["limit"],
    registry=None,
)

# INCR each key, then give it its lifetime when this call created it: one round trip, atomic, and
# understood by Redis 6.2 as by 7 (EXPIRE … NX, which would do the same, is Redis 7 only). A key
# found without a lifetime gets one too, so no counter can outlive its window. Returns
# count and TTL for each key, in order.
_COUNT_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if count == 1 or ttl < 0 then
    redis.call('EXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[#out + 1] = count
  out[#out + 1] = ttl
end
return out
"""


class _FailOpen:
    """Whether one limit is failing open now: one error line when an episode starts, one line when it ends."""

    def __init__(self, limit: str, what: str):
        self.limit = limit
        self.what = what
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        FAIL_OPEN.labels(self.limit).inc()
        if not self.failing:
            self.failing = True
            log.error(
                f"{self.what} not checked: Redis unreachable; letting requests through until it answers",
                extra={"limit": self.limit, "reason": type(exc).__name__},
            )

    def checked(self) -> None:
        if self.failing:
            self.failing = False
            log.warning(f"{self.what} checked again: Redis answers", extra={"limit": self.limit})


_rate = _FailOpen("rate", "rate limit")
_login = _FailOpen("login", "login throttle")


async def _count(redis: Redis, keys: list[str], ttl_s: int) -> list[int]:
    script = redis.register_script(_COUNT_SCRIPT)
    return [int(v) for v in await script(keys=keys, args=[ttl_s])]


def too_many(retry_after: int, detail: str) -> ProblemError:
    return ProblemError(429, detail, code="too-many-requests", headers={"Retry-After": str(max(1, retry_after))})


async def check_rate(redis: Redis, subject: str, per_minute: int) -> None:
    """A fixed one-minute window per caller; 429 with Retry-After once it is used up."""
    now = time.time()
    window = int(now // WINDOW_S)
    key = f"{get_settings().queue_prefix}:rate:{subject}:{window}"
    try:
        count, _ = await _count(redis, [key], WINDOW_S + 5)
    except (RedisError, OSError) as exc:
        _rate.failed(exc)
        return
    _rate.checked()
    if count > per_minute:
        raise too_many(
            int((window + 1) * WINDOW_S - now) + 1,
            f"more than {per_minute} requests a minute; slow down and retry later",
        )


def _login_keys(username: str, client: str) -> tuple[str, str]:
    """One counter per account and address (a stranger cannot lock an official out from elsewhere),
    one per address (a spray across many accounts from one place is held too)."""
    prefix = get_settings().queue_prefix
    return f"{prefix}:login:user:{username.lower()}:{client}", f"{prefix}:login:client:{client}"


async def check_login(redis: Redis, *, username: str, client: str, max_failures: int, lock_s: int) -> None:
    """Count this attempt before the password is checked, atomically, so parallel guesses cannot
    all pass a check that only reads; refuse it once the account or the address is over its limit."""
    user_key, client_key = _login_keys(username, client)
    try:
        user_attempts, user_ttl, client_attempts, client_ttl = await _count(redis, [user_key, client_key], lock_s)
    except (RedisError, OSError) as exc:
        _login.failed(exc)
        return
    _login.checked()
    if user_attempts > max_failures:
        raise too_many(user_ttl, "too many failed logins for this account; try again later")
    if client_attempts > max_failures * 4:
        raise too_many(client_ttl, "too many failed logins from this address; try again later")


async def record_login(redis: Redis, *, username: str, client: str, succeeded: bool, lock_s: int) -> None:
    """A success clears the account's count and takes its attempt off the address; a failure
    stays counted (check_login counted it)."""
    if not succeeded:
        return
    user_key, client_key = _login_keys(username, client)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(user_key)
            pipe.decr(client_key)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        if not _login.failing:  # an episode already logged says as much
            log.warning("login attempt not counted", extra={"reason": type(exc).__name__})
