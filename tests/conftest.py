"""Shared fixtures: a real server on 127.0.0.1 (`benchmarks.servers.running`, the one
in-process way to start one) and raw Socket.IO clients against it (`tests.clients`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCPeerConnection

from benchmarks.servers import RunningServer, running
from sfu.config import SfuConfig
from sfu.ice_policy import IcePolicy
from signaling.client import SfuClient
from signaling.config import ServerConfig
from tests.clients import EventClient, client_factory

__all__ = ["EventClient", "RunningServer"]


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers host candidates on 127.0.0.1 only in this process, for aiortc peers
    whose server is not in-process (an in-process server installs its own policy)."""
    monkeypatch.setattr(
        aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    )


@pytest.fixture
async def pcs() -> AsyncIterator[list[RTCPeerConnection]]:
    """A list to put in-process aiortc peer connections in; closed after the test."""
    made: list[RTCPeerConnection] = []
    yield made
    for pc in made:
        async with asyncio.timeout(10):
            await pc.close()


@pytest.fixture
def sfu_config() -> SfuConfig:
    return SfuConfig(ice_addresses=("127.0.0.1",), max_participants=4, negotiation_timeout=5.0)


@pytest.fixture
async def server(sfu_config: SfuConfig) -> AsyncIterator[RunningServer]:
    async with running(ServerConfig(sfu=sfu_config)) as server:
        yield server


@pytest.fixture
async def clients(server: RunningServer) -> AsyncIterator[Callable[[], Any]]:
    async with client_factory(lambda: EventClient().connect(server.url)) as make:
        yield make


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Any]]:
    """`await make_client(url, **options)`: an `SfuClient` (20 s waits) with loopback-only
    ICE on the client side; every client made is closed at the end of the test."""
    policy = IcePolicy(["127.0.0.1"])
    policy.install()
    try:
        async with client_factory(partial(SfuClient.connect, timeout=20.0)) as make:
            yield make
    finally:
        policy.uninstall()
