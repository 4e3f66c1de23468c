"""Churn soak: many join/publish/leave cycles against one server, then check that nothing
leaked (peer connections, asyncio tasks, threads, file descriptors, memory).

    python -m benchmarks.soak --cycles 1000 --parallel 4 [--json FILE]

By default the server runs in this process (so its leftovers are measurable); two
long-lived publishers ("bystanders") sit in the same room and must keep receiving each
other's video all along. Each cycle: connect, join, publish a small VP8 track, wait until
the peer connection is connected, answer the server's offers, leave, close. Every wait is
bounded. The test suite runs a shorter version (tests/test_hardening_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import socketio
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack
from av import VideoFrame

CYCLE_TIMEOUT = 20.0


class TinyVideo(VideoStreamTrack):
    """64x48 frames at 30 fps with changing luma: cheap to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=64, height=48)
        for i, plane in enumerate(frame.planes):
            plane.update(bytes([(self.count * 7) % 256 if i == 0 else 128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


class Peer:
    """A participant: one Socket.IO connection and one peer connection that publishes a
    TinyVideo and drains (decodes) everything it receives, counting frames."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = 0
        self._lock = asyncio.Lock()
        self._drains: list[asyncio.Task[None]] = []
        self._closing = False
        self.sio.on("sdp", self._on_offer)
        self.pc.on("track", lambda t: self._drains.append(asyncio.create_task(self._drain(t))))

    async def _drain(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames += 1

    async def _on_offer(self, data: Any) -> dict[str, Any]:
        async with self._lock:
            if self._closing or self.pc.connectionState == "closed":
                return {"error": "closing"}
            try:
                await self.pc.setRemoteDescription(
                    RTCSessionDescription(data["description"]["sdp"], "offer")
                )
                await self.pc.setLocalDescription(await self.pc.createAnswer())
            except InvalidStateError:  # closed under us (the cycle is ending): no answer
                return {"error": "closing"}
            return {"description": {"type": "answer", "sdp": self.pc.localDescription.sdp}}

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        ack = await self.sio.call(event, data, timeout=10)
        if not isinstance(ack, dict) or not ack.get("ok"):
            raise RuntimeError(f"{event} refused: {ack!r}")
        return ack

    async def join_and_publish(self, room: str, name: str) -> None:
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=5)
        await self.call("join", {"room": room, "name": name})
        transceiver = self.pc.addTransceiver(TinyVideo(), direction="sendonly")
        caps = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences([c for c in caps if c.mimeType == "video/VP8"])
        async with self._lock:
            await self.pc.setLocalDescription(await self.pc.createOffer())
            ack = await self.call(
                "sdp", {"description": {"type": "offer", "sdp": self.pc.localDescription.sdp}}
            )
            await self.pc.setRemoteDescription(
                RTCSessionDescription(ack["description"]["sdp"], "answer")
            )
        await until(lambda: self.pc.connectionState == "connected", 10)

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            await self.sio.disconnect()
        async with asyncio.timeout(10):
            await self.pc.close()
        for task in self._drains:
            task.cancel()
        await asyncio.gather(*self._drains, return_exceptions=True)


async def until(pred: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - state owned by aiortc tasks
            await asyncio.sleep(0.02)


async def cycle(url: str, room: str, index: int) -> None:
    """One join/publish/leave cycle, bounded by CYCLE_TIMEOUT."""
    peer = Peer(url)
    try:
        async with asyncio.timeout(CYCLE_TIMEOUT):
            await peer.join_and_publish(room, f"churn-{index}")
            await peer.call("leave", {})
    finally:
        await peer.close()


def snapshot() -> dict[str, int]:
    gc.collect()
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {
        "tasks": sum(
            1
            for t in asyncio.all_tasks()
            if not t.done()
            # engine.io's ping sleeper outlives its socket by up to 25 s (bounded)
            and getattr(t.get_coro(), "__qualname__", "") != "AsyncSocket._send_ping"
        ),
        "threads": sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_")),
        "fds": len(os.listdir("/proc/self/fd")),
        "rss": rss,
        "peer_connections": sum(
            1
            for o in gc.get_objects()
            if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
        ),
        "pc_objects": sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection)),
    }


async def churn(
    url: str,
    cycles: int,
    parallel: int,
    room: str = "soak",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run `cycles` cycles, `parallel` at a time; return counts and timings."""
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    queue = iter(range(cycles))

    async def worker() -> None:
        for index in queue:
            started = time.monotonic()
            try:
                await cycle(url, room, index)
                outcomes["ok"] += 1
            except Exception as exc:  # counted and reported, the soak goes on
                outcomes[type(exc).__name__] += 1
                logging.getLogger(__name__).warning("cycle %d failed: %r", index, exc)
            durations.append(time.monotonic() - started)
            if progress is not None:
                progress(index, sum(outcomes.values()))

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    durations.sort()
    return {
        "cycles": cycles,
        "parallel": parallel,
        "outcomes": dict(outcomes),
        "seconds": round(time.monotonic() - started, 2),
        "cycle_p50": round(durations[len(durations) // 2], 3) if durations else None,
        "cycle_max": round(durations[-1], 3) if durations else None,
    }


async def run_in_process(cycles: int, parallel: int) -> dict[str, Any]:
    """Start a server in this process, two bystanders, churn, and measure leftovers."""
    from aiohttp import web

    from sfu.config import SfuConfig
    from signaling.app import ROOMS, create_app
    from signaling.config import ServerConfig

    config = ServerConfig(
        sfu=SfuConfig(ice_addresses=("127.0.0.1",), max_participants=parallel + 2),
        join_burst=10_000,
        join_per_second=10_000,
    )
    app = create_app(config)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    before = snapshot()
    bystanders = [Peer(url), Peer(url)]
    for i, peer in enumerate(bystanders):
        await peer.join_and_publish("soak", f"bystander-{i}")
    warm = snapshot()

    rss_by_cycle: dict[int, float] = {}

    def progress(index: int, done: int) -> None:
        if done % 100 == 0:
            rss_by_cycle[done] = round(snapshot()["rss"] / 2**20, 1)
            print(f"  {done}/{cycles} cycles, rss {rss_by_cycle[done]} MiB", flush=True)

    result = await churn(url, cycles, parallel, "soak", progress)
    frames_before = [p.frames for p in bystanders]
    await asyncio.sleep(1.0)
    result["bystanders_receiving"] = all(
        p.frames > f for p, f in zip(bystanders, frames_before, strict=True)
    )
    after_churn = snapshot()
    for peer in bystanders:
        await peer.close()
    del bystanders, peer
    rooms = app[ROOMS]
    await until(lambda: not rooms.rooms, 10)
    await runner.cleanup()
    await asyncio.sleep(0.5)
    after = snapshot()
    result.update(
        {
            "before": before,
            "warm": warm,
            "after_churn": after_churn,
            "after": after,
            "rss_growth_mib": round((after_churn["rss"] - warm["rss"]) / 2**20, 1),
            "rss_mib_by_cycle": rss_by_cycle,
        }
    )
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--json", default=None, help="write the result to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import aioice.ice

    # loopback only (the in-process server installs the same policy while it runs)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    result = asyncio.run(run_in_process(args.cycles, args.parallel))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    ok = result["outcomes"].get("ok", 0) == args.cycles and result["bystanders_receiving"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
