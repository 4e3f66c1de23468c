"""Shared fixtures: a real server on 127.0.0.1 (`benchmarks.servers.running`, the one
in-process way to start one) and Socket.IO clients against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio

from benchmarks.servers import RunningServer, running
from sfu.config import SfuConfig
from signaling.config import ServerConfig


@pytest.fixture
def sfu_config() -> SfuConfig:
    return SfuConfig(ice_addresses=("127.0.0.1",), max_participants=4, negotiation_timeout=5.0)


@pytest.fixture
async def server(sfu_config: SfuConfig) -> AsyncIterator[RunningServer]:
    async with running(ServerConfig(sfu=sfu_config)) as server:
        yield server


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


@pytest.fixture
async def clients(server: RunningServer) -> AsyncIterator[Callable[[], Any]]:
    made: list[EventClient] = []

    async def make() -> EventClient:
        client = await EventClient().connect(server.url)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()
