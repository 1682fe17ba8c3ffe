"""arq on Redis with JSON on the wire (never pickle)."""

from __future__ import annotations

import json
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool

HANDLE_EVENT = "handle_event"


def job_serializer(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def job_deserializer(data: bytes) -> Any:
    return json.loads(data)


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 3
    settings.conn_retry_delay = 1
    return settings


def make_redis(url: str) -> ArqRedis:
    """A lazily connecting client: an API starts, and answers /readyz, while Redis is down."""
    pool = ConnectionPool.from_url(url, socket_connect_timeout=2, socket_timeout=5, max_connections=50)
    return ArqRedis(connection_pool=pool, job_serializer=job_serializer, job_deserializer=job_deserializer)
