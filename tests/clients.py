"""Test clients besides the SDK's `SfuClient`: `EventClient`, a bare Socket.IO client for
protocol and adversarial tests (sends anything, records every server event), and
`client_factory`, which closes every client it made."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import socketio


class Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@contextlib.asynccontextmanager
async def client_factory(
    connect: Callable[..., Awaitable[C]],
) -> AsyncIterator[Callable[..., Awaitable[C]]]:
    """A `make(...)` that returns `await connect(...)`; every client made is closed on exit."""
    made: list[C] = []

    async def make(*args: Any, **kwargs: Any) -> C:
        client = await connect(*args, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()


class EventClient:
    """A bare Socket.IO client that records every server event."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        self.sio.on("*", self._record)

    async def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if args else None))
        self._changed.set()

    async def connect(self, url: str) -> EventClient:
        await self.sio.connect(url, transports=["websocket"], wait_timeout=5)
        return self

    async def call(self, event: str, data: Any = None, timeout: float = 5.0) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    async def wait_for(
        self, event: str, pred: Callable[[Any], bool] = lambda _: True, timeout: float = 5.0
    ) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for name, payload in self.events:
                    if name == event and pred(payload):
                        return payload
                self._changed.clear()
                await self._changed.wait()

    def named(self, event: str) -> list[Any]:
        return [p for n, p in self.events if n == event]

    async def close(self) -> None:
        await self.sio.disconnect()
