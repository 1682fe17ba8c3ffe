"""Rate limits and login throttling, counted in Redis so every process of a service shares them.

Both fail open: if Redis cannot be reached the request goes on (and a warning is logged);
authentication and jurisdiction checks never depend on Redis.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import ProblemError
from shared.settings import get_settings

log = logging.getLogger(__name__)
WINDOW_S = 60


def too_many(retry_after: int, detail: str) -> ProblemError:
    return ProblemError(429, detail, code="too-many-requests", headers={"Retry-After": str(max(1, retry_after))})


async def check_rate(redis: Redis, subject: str, per_minute: int) -> None:
    """A fixed one-minute window per caller; 429 with Retry-After once it is used up."""
    now = time.time()
    window = int(now // WINDOW_S)
    key = f"{get_settings().queue_prefix}:rate:{subject}:{window}"
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_S + 5)
            count, _ = await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("rate limit not checked", extra={"reason": type(exc).__name__})
        return
    if int(count) > per_minute:
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
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(user_key)
            pipe.expire(user_key, lock_s, nx=True)
            pipe.ttl(user_key)
            pipe.incr(client_key)
            pipe.expire(client_key, lock_s, nx=True)
            pipe.ttl(client_key)
            user_attempts, _, user_ttl, client_attempts, _, client_ttl = await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("login throttle not checked", extra={"reason": type(exc).__name__})
        return
    if int(user_attempts) > max_failures:
        raise too_many(int(user_ttl), "too many failed logins for this account; try again later")
    if int(client_attempts) > max_failures * 4:
        raise too_many(int(client_ttl), "too many failed logins from this address; try again later")


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
        log.warning("login attempt not counted", extra={"reason": type(exc).__name__})
