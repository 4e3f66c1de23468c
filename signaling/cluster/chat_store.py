"""`ChatStore`: the last messages of each room in Redis, so a room re-created on another
node keeps its chat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from signaling.cluster.redis_link import LinkDown, RedisLink

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 1000


class ChatStore:
    """Owns a write-behind queue and its writer task: messages are appended in the order
    they were posted (`<prefix>chat:<room>`, a list trimmed to `size`, expiring `ttl` s after
    the last message). Posting never waits for Redis; while Redis is down, messages are
    dropped from the store (the room's own history keeps them). `close()` flushes what it
    can within a second and stops the writer (idempotent)."""

    def __init__(self, link: RedisLink, prefix: str, size: int, ttl: float) -> None:
        self._link = link
        self._prefix = prefix
        self._size = size
        self._ttl = max(1, int(ttl))
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def key(self, room: str) -> str:
        return f"{self._prefix}chat:{room}"

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._writer(), name="chat-store")

    def append(self, room: str, message: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((room, json.dumps(message)))
        except asyncio.QueueFull:
            self.dropped += 1

    async def load(self, room: str) -> list[dict[str, Any]]:
        """The room's stored history, oldest first ([] when Redis is down)."""
        try:
            raws = await self._link.call(lambda r: r.lrange(self.key(room), 0, -1))
        except LinkDown:
            return []
        out = []
        for raw in raws:
            with contextlib.suppress(ValueError):
                item = json.loads(raw)
                if isinstance(item, dict):
                    out.append(item)
        return out

    async def _writer(self) -> None:
        while True:
            room, raw = await self._queue.get()
            await self._write(room, raw)
            self._queue.task_done()

    async def _write(self, room: str, raw: str) -> None:
        key, size, ttl = self.key(room), self._size, self._ttl

        async def op(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.rpush(key, raw)
                pipe.ltrim(key, -size, -1)
                pipe.expire(key, ttl)
                return await pipe.execute()

        try:
            await self._link.call(op)
        except LinkDown:
            self.dropped += 1

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), 1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
