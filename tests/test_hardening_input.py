"""Hardening 4, 6, 7, 8: oversize events and SDPs, a garbage SDP corpus, out-of-order
negotiation and a flood of trickled candidates. Each offender gets a clear error (or, past
the transport limit, loses its connection) while two publishers keep receiving media;
resources return to baseline."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender

from benchmarks.servers import RunningServer
from signaling.app import EVENTS
from signaling.client import PatternVideoTrack, SfuClient
from signaling.config import ServerConfig
from tests.hardening_util import (
    Baseline,
    Bystanders,
    hardening_config,
    media_client,
    media_room,
    offender,
    publish_video,
    running,
    wait_until,
)


@pytest.fixture
async def setup() -> AsyncIterator[tuple[RunningServer, Bystanders, list[SfuClient]]]:
    async with media_room(ServerConfig(sfu=hardening_config())) as ctx:
        yield ctx


async def real_offer() -> str:
    """A genuine aiortc offer with one send-only VP8 track (its pc is closed again)."""
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
        caps = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences([c for c in caps if c.mimeType == "video/VP8"])
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def offer(sdp: Any) -> dict[str, Any]:
    return {"description": {"type": "offer", "sdp": sdp}}


# ---------------------------------------------------------------- 4 oversize


async def test_oversize_event_and_sdp(setup: Any) -> None:
    server, room, offenders = setup
    # an SDP above max_sdp_bytes (128 KiB) but below the transport limit: a clear ack
    mallory = await offender(server, offenders)
    big = (await real_offer()) + "a=x-pad:" + "x" * (200 * 1024) + "\r\n"
    started = time.monotonic()
    ack = await mallory.call("sdp", offer(big))
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_sdp", ack
    assert "larger than" in ack["error"]["message"]
    assert time.monotonic() - started < 2.0
    # the same client can still negotiate properly afterwards
    await publish_video(mallory)
    # beyond engine.io's 256 KiB limit (a 300 KiB chat, a 2 MB SDP): the connection drops
    for payload_event, payload in (
        ("chat message", {"text": "x" * (300 * 1024)}),
        ("sdp", offer("v=0\r\n" + "a=x\r\n" * (2 * 1024 * 1024 // 5))),
    ):
        victim = await offender(server, offenders)
        with pytest.raises(Exception):  # noqa: B017 - a timeout or a disconnect
            await victim.call(payload_event, payload, timeout=3)
        await wait_until(lambda v=victim: v.id not in server.rooms.rooms["media"].participants, 5)
        assert not victim.sio.connected
        left = [p for p in room.a.named("participant left") if p["id"] == victim.id]
        assert left and left[0]["reason"] == "disconnected"
    await room.still_flowing()


# ---------------------------------------------------------------- 6 garbage SDP


def _drop(sdp: str, prefix: str) -> str:
    return "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith(prefix))


def _replace(sdp: str, prefix: str, new: str) -> str:
    return "".join(
        new if line.startswith(prefix) else line for line in sdp.splitlines(keepends=True)
    )


async def test_garbage_sdp_corpus(setup: Any) -> None:
    server, room, offenders = setup
    good = await real_offer()
    rng = random.Random(7)
    junk = bytes(rng.randrange(256) for _ in range(4096))
    corpus: list[tuple[str, Any, str]] = [
        ("missing fingerprint", _drop(good, "a=fingerprint"), "invalid_sdp"),
        ("bad setup role", _replace(good, "a=setup:", "a=setup:holdconn\r\n"), "invalid_sdp"),
        ("answer-only role in offer", _replace(good, "a=setup:", "a=setup:\r\n"), "invalid_sdp"),
        ("missing setup", _drop(good, "a=setup:"), "invalid_sdp"),
        ("missing ice-ufrag", _drop(good, "a=ice-ufrag"), "invalid_sdp"),
        ("100k lines", "v=0\n" + "\n" * 100_000, "invalid_sdp"),
        ("truncated", good[: len(good) // 2], "invalid_sdp"),
        ("truncated m-line", good[: good.index("m=video") + 9], "invalid_sdp"),
        ("binary junk as text", "v=0\r\n" + junk.decode("latin-1"), "invalid_sdp"),
        ("binary junk as bytes", junk, "bad_request"),
        ("no v=0", good[good.index("\n") + 1 :], "invalid_sdp"),
        ("no media", good[: good.index("m=")], "invalid_sdp"),
        ("unknown media", good.replace("m=video", "m=telepathy"), "invalid_sdp"),
        ("bad m-line port", re.sub(r"m=video \d+", "m=video x", good), "invalid_sdp"),
        ("empty", "", "bad_request"),
        ("not a string", 12345, "bad_request"),
    ]
    mallory = await offender(server, offenders)
    for case, sdp, code in corpus:
        started = time.monotonic()
        ack = await mallory.call("sdp", offer(sdp))
        elapsed = time.monotonic() - started
        assert ack["ok"] is False, (case, ack)
        assert ack["error"]["code"] == code, (case, ack)
        assert ack["error"]["message"], case
        assert elapsed < 1.0, (case, elapsed)  # refused fast, no heavy parsing
    # nothing of Mallory's reached the room; a good offer still works afterwards
    participant = server.rooms.rooms["media"].participants[mallory.id]
    assert participant.published == {}
    await publish_video(mallory)
    await mallory.wait_more_frames(10, timeout=20)
    await room.still_flowing()


# ---------------------------------------------------------------- 7 out of order


async def test_out_of_order_negotiation(setup: Any) -> None:
    server, _room, offenders = setup
    mallory = await offender(server, offenders)
    # an answer nobody asked for
    ack = await mallory.call("sdp", {"description": {"type": "answer", "sdp": await real_offer()}})
    assert ack["error"]["code"] == "invalid_state", ack
    # candidates before the offer are buffered (PROTOCOL.md), then the offer works
    for port in (40000, 40001):
        candidate = {
            "candidate": f"candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
        assert (await mallory.call("ice candidates", {"candidate": candidate}))["ok"]
    assert (await mallory.call("ice candidates", {"candidate": None}))["ok"]
    await publish_video(mallory)
    await mallory.wait_more_frames(10, timeout=20)


async def test_glare_client_offer_while_server_offer_pending(setup: Any) -> None:
    server, room, offenders = setup
    # Mallory publishes, then holds the server's next offer (its subscriptions) unanswered
    mallory = await offender(server, offenders)
    gate = asyncio.Event()
    held = asyncio.Event()
    original = mallory._on_server_sdp

    async def slow_answer(data: Any) -> Any:
        held.set()
        await gate.wait()
        return await original(data)

    mallory.sio.on("sdp", slow_answer)
    await publish_video(mallory)  # the server then offers the others' tracks
    async with asyncio.timeout(10):
        await held.wait()
    participant = server.rooms.rooms["media"].participants[mallory.id]
    assert participant._server_offer_pending
    # glare: a client offer while the server's awaits its answer -> invalid_state
    other = RTCPeerConnection()
    other.addTransceiver(PatternVideoTrack(), direction="sendonly")
    await other.setLocalDescription(await other.createOffer())
    ack = await mallory.call("sdp", offer(other.localDescription.sdp))
    await other.close()
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_state", ack
    assert "roll back" in ack["error"]["message"]
    # the polite client answers the server's offer, then offers again
    gate.set()
    await wait_until(lambda: not participant._server_offer_pending, 10)
    await publish_video(mallory)
    await mallory.wait_more_frames(10, timeout=20)
    await room.still_flowing()


async def test_late_answer_after_server_timeout() -> None:
    """A client that never answers the server's offer is removed after the negotiation
    timeout (reason negotiation_failed), and the room goes on."""
    base = Baseline.take()
    async with running(ServerConfig(sfu=hardening_config(negotiation_timeout=1.5))) as server:
        alice = await media_client(server.url)
        await alice.join("media", "Alice")
        await publish_video(alice)
        mute = await media_client(server.url)
        await mute.join("media", "Mute")
        never = asyncio.Event()

        async def never_answer(data: Any) -> Any:
            await never.wait()

        mute.sio.on("sdp", never_answer)
        started = time.monotonic()
        await wait_until(lambda: mute.id not in server.rooms.rooms["media"].participants, 10)
        reaped = time.monotonic() - started
        assert reaped < 1.5 + 0.5 + 3.0, reaped  # grace + timeout + slack
        await wait_until(lambda: not mute.sio.connected, 5)
        errors = mute.named("error")
        assert errors and errors[0]["code"] == "invalid_state", mute.events
        never.set()
        await mute.close()
        await alice.close()
        await wait_until(lambda: not server.rooms.rooms, 10)
    await base.wait_back()


# ---------------------------------------------------------------- 8 trickle flood


async def test_ten_thousand_candidates(setup: Any) -> None:
    server, room, offenders = setup
    mallory = await offender(server, offenders)
    await publish_video(mallory)
    cap = server.rooms.config.max_candidates
    total = 10_000
    codes: list[str] = []
    latencies: list[float] = []

    async def probe(stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                started = time.monotonic()
                async with http.get(server.url + "/healthz") as resp:
                    assert resp.status == 200
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.1)

    async def send(i: int) -> None:
        candidate = {
            "candidate": f"candidate:{i} 1 udp 2130706431 127.0.0.1 {20000 + i} typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
        ack = await mallory.call("ice candidates", {"candidate": candidate}, timeout=30)
        codes.append("ok" if ack["ok"] else ack["error"]["code"])

    stop = asyncio.Event()
    prober = asyncio.create_task(probe(stop))
    started = time.monotonic()
    for batch in range(0, total, 200):
        await asyncio.gather(*(send(i) for i in range(batch, min(total, batch + 200))))
    elapsed = time.monotonic() - started
    stop.set()
    await prober
    assert len(codes) == total
    assert codes.count("ok") == cap, codes.count("ok")
    assert codes.count("rate_limited") == total - cap
    assert elapsed < 60, elapsed
    assert latencies and max(latencies) < 2.0, max(latencies)
    print(f"\n10k candidates acked in {elapsed:.1f} s; /healthz max {max(latencies) * 1000:.0f} ms")
    assert server.app[EVENTS].rejected["rate_limited"] >= total - cap
    await mallory.wait_more_frames(10, timeout=20)
    await room.still_flowing()
