"""Helpers for the hardening tests: participants (`signaling.client.SfuClient`), a server
with a custom config (`benchmarks.servers.running`), two publishing bystanders, and
resource baselines (tasks, threads, fds, RSS)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from benchmarks.servers import RunningServer, running
from sfu.config import SfuConfig
from signaling.client import PatternVideoTrack, SfuClient
from signaling.config import ServerConfig

__all__ = [
    "Baseline",
    "Bystanders",
    "assert_empty",
    "hardening_config",
    "media_client",
    "media_room",
    "offender",
    "publish_video",
    "publishing_pair",
    "running",
    "start_bystanders",
    "wait_until",
]


def hardening_config(**overrides: Any) -> SfuConfig:
    base: dict[str, Any] = {
        "ice_addresses": ("127.0.0.1",),
        "max_participants": 8,
        "negotiation_timeout": 5.0,
        "initial_offer_grace": 0.5,
    }
    base.update(overrides)
    return SfuConfig(**base)


async def media_client(url: str, **options: Any) -> SfuClient:
    """A connected `SfuClient` that decodes what it receives (10 s waits), the tests'
    participant; `options` go to `SfuClient.connect` (token, headers, ICE ...)."""
    return await SfuClient.connect(url, timeout=10.0, **options)


async def publish_video(client: SfuClient) -> None:
    """Publish a small encoded test video (`PatternVideoTrack`); raises on refusal."""
    await client.publish(video=PatternVideoTrack())


async def offender(server: RunningServer, offenders: list[SfuClient]) -> SfuClient:
    """Mallory joins room `media` (of a `media_room`), registered for closing on exit."""
    client = await media_client(server.url)
    offenders.append(client)
    await client.join("media", "Mallory")
    return client


async def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Poll `pred` until true; return the seconds it took (TimeoutError past `timeout`)."""
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - polling state owned by other tasks
            await asyncio.sleep(step)
    return time.monotonic() - start


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def own_threads() -> list[threading.Thread]:
    """Threads minus the loop's default executor pool (`asyncio_N`: bounded, reused; DNS
    lookups and aiortc's blocking calls run there)."""
    return [t for t in threading.enumerate() if not t.name.startswith("asyncio_")]


def live_tasks() -> list[asyncio.Task[Any]]:
    """Unfinished tasks, minus engine.io's per-socket `_send_ping`: it sleeps the whole
    ping interval (25 s) even after its socket closed, then returns (bounded, not a leak)."""
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "") != "AsyncSocket._send_ping"
    ]


@dataclasses.dataclass
class Baseline:
    tasks: int
    threads: int
    fds: int
    rss: int

    @classmethod
    def take(cls) -> Baseline:
        gc.collect()
        return cls(len(live_tasks()), len(own_threads()), fd_count(), rss_bytes())

    async def wait_back(
        self, timeout: float = 15.0, threads_slack: int = 0, fds_slack: int = 6
    ) -> Baseline:
        """Wait until tasks/threads/fds are back near this baseline; return the last reading."""
        now = Baseline.take()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = Baseline.take()
            if (
                now.tasks <= self.tasks
                and now.threads <= self.threads + threads_slack
                and now.fds <= self.fds + fds_slack
            ):
                return now
            await asyncio.sleep(0.2)
        leftover = live_tasks()
        raise AssertionError(
            f"resources not back to baseline: {self} -> {now}; "
            f"tasks: {[t.get_coro() for t in leftover][:20]}; "
            f"threads: {[t.name for t in threading.enumerate()]}"
        )


def assert_empty(server: RunningServer) -> None:
    rooms = server.rooms
    assert rooms.rooms == {}, rooms.rooms
    assert rooms.participant_count() == 0


class Bystanders:
    """Two publishers in room `media` who must keep receiving each other's video."""

    def __init__(self, server: RunningServer, a: SfuClient, b: SfuClient) -> None:
        self.server, self.a, self.b = server, a, b

    async def still_flowing(self) -> None:
        await self.a.wait_more_frames(10, timeout=10)
        await self.b.wait_more_frames(10, timeout=10)
        assert {self.a.id, self.b.id} <= set(self.server.rooms.rooms["media"].participants)

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


async def publishing_pair(
    url: str, token: Callable[[str], str | None] = lambda _: None
) -> list[SfuClient]:
    """Alice and Bob join room `media` (with `token(name)` as their join token) and each
    publish a small video (they receive each other's once it flows)."""
    clients = []
    for name in ("Alice", "Bob"):
        client = await media_client(url, token=token(name))
        await client.join("media", name)
        clients.append(client)
    for client in clients:
        await publish_video(client)
    return clients


async def start_bystanders(
    server: RunningServer, token: Callable[[str], str | None] = lambda _: None
) -> Bystanders:
    """`publishing_pair` on `server`, receiving each other's video."""
    room = Bystanders(server, *await publishing_pair(server.url, token))
    await room.still_flowing()
    return room


@contextlib.asynccontextmanager
async def media_room(
    config: ServerConfig,
) -> AsyncIterator[tuple[RunningServer, Bystanders, list[SfuClient]]]:
    """A server, two publishers in room `media`, and a list to register offenders in.
    On exit: media still flows, everyone closes, the server is empty and tasks, threads
    and fds are back to their baseline."""
    base = Baseline.take()
    offenders: list[SfuClient] = []
    async with running(config) as server:
        room = await start_bystanders(server)
        yield server, room, offenders
        await room.still_flowing()
        for client in offenders:
            await client.close()
        await room.close()
        await wait_until(lambda: not server.rooms.rooms, 10)
        assert_empty(server)
    await base.wait_back()
