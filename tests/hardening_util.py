"""Helpers for the hardening tests: an in-process media client (Socket.IO + aiortc), a
server with a custom config, and resource baselines (tasks, threads, fds, RSS)."""

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

import socketio
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack
from av import VideoFrame

from sfu.config import SfuConfig
from signaling.config import ServerConfig
from tests.conftest import RunningServer, start_server


def hardening_config(**overrides: Any) -> SfuConfig:
    base: dict[str, Any] = {
        "ice_addresses": ("127.0.0.1",),
        "max_participants": 8,
        "negotiation_timeout": 5.0,
        "initial_offer_grace": 0.5,
    }
    base.update(overrides)
    return SfuConfig(**base)


@contextlib.asynccontextmanager
async def running(config: ServerConfig) -> AsyncIterator[RunningServer]:
    server, runner = await start_server(config)
    try:
        yield server
    finally:
        await runner.cleanup()


class PatternTrack(VideoStreamTrack):
    """Small frames whose luma changes every frame (paced at 30 fps by VideoStreamTrack)."""

    def __init__(self, width: int = 96, height: int = 64) -> None:
        super().__init__()
        self.size = (width, height)
        self.count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=self.size[0], height=self.size[1])
        for i, plane in enumerate(frame.planes):
            plane.update(bytes([(self.count * 7) % 256 if i == 0 else 128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


class MediaClient:
    """One participant: a Socket.IO connection and ONE aiortc peer connection that publishes
    a small VP8 track (optional) and decodes everything the server sends it."""

    def __init__(
        self,
        url: str,
        *,
        auth: Any = None,
        headers: dict[str, str] | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self.url = url
        self.auth = auth
        self.headers = headers or {}
        self.configuration = configuration or RTCConfiguration(iceServers=ice_servers or [])
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.pc: RTCPeerConnection | None = None
        self.frames = 0
        self.id: str | None = None
        self.server_offers = 0
        self.closing = False
        self._lock = asyncio.Lock()
        self._consumers: list[asyncio.Task[None]] = []
        self.sio.on("*", self._record)
        self.sio.on("sdp", self._server_offer)

    async def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if args else None))

    def named(self, event: str) -> list[Any]:
        return [p for n, p in self.events if n == event]

    async def connect(self) -> MediaClient:
        await self.sio.connect(
            self.url,
            transports=["websocket"],
            wait_timeout=5,
            auth=self.auth,
            headers=self.headers,
        )
        return self

    async def call(self, event: str, data: Any = None, timeout: float = 10.0) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    async def join(self, room: str, name: str) -> dict[str, Any]:
        ack = await self.call("join", {"room": room, "name": name})
        assert ack["ok"] is True, ack
        self.id = ack["id"]
        return dict(ack)

    def _ensure_pc(self) -> RTCPeerConnection:
        if self.pc is None:
            self.pc = RTCPeerConnection(self.configuration)
            self.pc.on("track", self._on_track)
        return self.pc

    def _on_track(self, track: Any) -> None:
        self._consumers.append(asyncio.create_task(self._consume(track)))

    async def _consume(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames += 1

    async def publish(self, video: bool = True) -> dict[str, Any]:
        """Offer (a send-only VP8 track when `video`), apply the answer; return the ack."""
        async with self._lock:
            pc = self._ensure_pc()
            if video:
                transceiver = pc.addTransceiver(PatternTrack(), direction="sendonly")
                caps = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in caps if c.mimeType == "video/VP8"])
            await pc.setLocalDescription(await pc.createOffer())
            ack = await self.call(
                "sdp", {"description": {"type": "offer", "sdp": pc.localDescription.sdp}}
            )
            if ack.get("ok"):
                answer = ack["description"]
                await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            return dict(ack)

    async def _server_offer(self, data: Any) -> dict[str, Any]:
        async with self._lock:
            if self.closing:
                return {"error": "closing"}
            pc = self._ensure_pc()
            self.server_offers += 1
            offer = data["description"]
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return {"description": {"type": "answer", "sdp": pc.localDescription.sdp}}

    async def wait_frames(self, more: int, timeout: float = 20.0) -> None:
        """Wait until `more` frames beyond the current count were decoded."""
        target = self.frames + more
        async with asyncio.timeout(timeout):
            while self.frames < target:  # noqa: ASYNC110 - counter owned by consumer tasks
                await asyncio.sleep(0.05)

    async def close_pc(self) -> None:
        pc, self.pc = self.pc, None
        if pc is not None:
            async with asyncio.timeout(10):
                await pc.close()
        for task in self._consumers:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        self._consumers.clear()

    async def close(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            await self.sio.disconnect()
        await self.close_pc()


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

    def __init__(self, server: RunningServer, a: MediaClient, b: MediaClient) -> None:
        self.server, self.a, self.b = server, a, b

    async def still_flowing(self) -> None:
        await self.a.wait_frames(10, timeout=10)
        await self.b.wait_frames(10, timeout=10)
        assert {self.a.id, self.b.id} <= set(self.server.rooms.rooms["media"].participants)

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


async def start_bystanders(
    server: RunningServer, auth: Callable[[str], dict[str, str] | None] = lambda _: None
) -> Bystanders:
    """Alice and Bob join room `media` (with `auth(name)` as Socket.IO auth), publish,
    and receive each other's video."""
    clients = []
    for name in ("Alice", "Bob"):
        client = await MediaClient(server.url, auth=auth(name)).connect()
        await client.join("media", name)
        clients.append(client)
    for client in clients:
        assert (await client.publish())["ok"]
    room = Bystanders(server, clients[0], clients[1])
    await room.still_flowing()
    return room


@contextlib.asynccontextmanager
async def media_room(
    config: ServerConfig,
) -> AsyncIterator[tuple[RunningServer, Bystanders, list[MediaClient]]]:
    """A server, two publishers in room `media`, and a list to register offenders in.
    On exit: media still flows, everyone closes, the server is empty and tasks, threads
    and fds are back to their baseline."""
    base = Baseline.take()
    offenders: list[MediaClient] = []
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
