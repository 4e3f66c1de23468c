"""`RedisLink`: the one Redis connection (pool) of a node, and whether Redis is up."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LinkDown(Exception):
    """Redis did not answer (unreachable, timed out, restarting)."""


class RedisLink:
    """Owns a `redis.asyncio.Redis` client (a small connection pool) and the up/down state.

    Every cluster call goes through `call()`: a failure marks the link down (logged once,
    not per call) and raises `LinkDown`; the next success marks it up again (logged) and
    runs the `on_reconnect` callbacks. Nothing retries inside a call: the caller decides
    (joins answer `server_busy`, the heartbeat loop retries with backoff). `close()` closes
    the pool (idempotent).
    """

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        self.url = url
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.up = False
        self._ever_up = False
        self._on_reconnect: list[Callable[[], None]] = []
        self._closed = False

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._on_reconnect.append(callback)

    async def start(self) -> None:
        """Ping once; raise `LinkDown` with a one-line reason when Redis is unreachable."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise LinkDown(f"cannot reach Redis at {self.url}: {exc}") from None
        self.up = self._ever_up = True

    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run one Redis operation; `LinkDown` when Redis fails."""
        try:
            result = await fn(self.redis)
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            raise LinkDown(str(exc)) from None
        self._mark_up()
        return result

    def _mark_down(self, exc: BaseException) -> None:
        if self.up:
            logger.warning("Redis unreachable (%s): serving owned rooms only, retrying", exc)
        self.up = False

    def _mark_up(self) -> None:
        if self.up:
            return
        self.up = True
        if self._ever_up:
            logger.warning("Redis reachable again")
        self._ever_up = True
        for callback in self._on_reconnect:
            callback()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.redis.aclose()


def as_str(value: Any) -> str | None:
    """A Redis reply as text (None stays None)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
