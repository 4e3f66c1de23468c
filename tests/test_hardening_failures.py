"""Hardening 12-14: a client that vanishes after its offer, a media path cut while the
socket lives, and a signaling cut while the media lives. The server reaps the broken
participant within a bounded time, the others keep receiving media, and resources return
to baseline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from benchmarks.servers import RunningServer
from signaling.client import PatternVideoTrack, SfuClient
from signaling.config import ServerConfig
from tests.hardening_util import (
    Bystanders,
    hardening_config,
    media_room,
    offender,
    publish_video,
    wait_until,
)

NEGOTIATION_TIMEOUT = 2.0


@pytest.fixture
async def setup() -> AsyncIterator[tuple[RunningServer, Bystanders, list[SfuClient]]]:
    async with media_room(
        ServerConfig(sfu=hardening_config(negotiation_timeout=NEGOTIATION_TIMEOUT))
    ) as ctx:
        yield ctx


def in_room(server: RunningServer, client: SfuClient) -> bool:
    room = server.rooms.rooms.get("media")
    return room is not None and client.id in room.participants


async def test_client_gone_after_offer_socket_alive(setup: Any) -> None:
    """The client offers, takes the answer, and then its media stack dies before any
    ICE check (its pc closes without ever applying the answer): reaped by the deadline."""
    server, room, offenders = setup
    mallory = await offender(server, offenders)
    pc = RTCPeerConnection()
    pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    ack = await mallory.call(
        "sdp", {"description": {"type": "offer", "sdp": pc.localDescription.sdp}}
    )
    assert ack["ok"]
    await pc.close()  # never applies the answer: no ICE from this side
    started = time.monotonic()
    await wait_until(lambda: not in_room(server, mallory), NEGOTIATION_TIMEOUT + 5)
    reaped = time.monotonic() - started
    print(f"\nreaped {reaped:.2f} s after the offer (deadline {NEGOTIATION_TIMEOUT} s)")
    assert server.rooms.removals["ice_timeout"] + server.rooms.removals["ice_failed"] == 1
    await wait_until(lambda: not mallory.sio.connected, 5)
    errors = mallory.named("error")
    assert errors and "removed from the room" in errors[0]["message"], mallory.events
    left = [p for p in room.a.named("participant left") if p["id"] == mallory.id]
    assert left and left[0]["reason"] in ("ice_timeout", "ice_failed")


async def test_client_gone_after_offer_socket_closed(setup: Any) -> None:
    server, _room, offenders = setup
    mallory = await offender(server, offenders)
    pc = RTCPeerConnection()
    pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    assert (
        await mallory.call(
            "sdp", {"description": {"type": "offer", "sdp": pc.localDescription.sdp}}
        )
    )["ok"]
    participant = server.rooms.rooms["media"].participants[mallory.id]
    await mallory.sio.disconnect()
    await pc.close()
    took = await wait_until(lambda: not in_room(server, mallory), 5)
    assert participant.closed and participant.pc is None
    print(f"\nreaped {took:.2f} s after the disconnect")


async def test_media_path_closed_socket_alive(setup: Any) -> None:
    """The client's peer connection closes (DTLS close_notify reaches the server) but it
    never leaves: the server notices and removes it."""
    server, room, offenders = setup
    mallory = await offender(server, offenders)
    await publish_video(mallory)
    await mallory.wait_more_frames(10, timeout=20)
    await asyncio.sleep(NEGOTIATION_TIMEOUT)  # past the connect deadline
    await mallory.close_media()
    took = await wait_until(lambda: not in_room(server, mallory), 10)
    print(f"\nclosed pc detected in {took:.2f} s")
    await wait_until(lambda: not mallory.sio.connected, 5)
    left = await _left(room.a, mallory.id)
    assert left["reason"] == "connection_closed"
    assert [p["code"] for p in mallory.named("error")] == ["invalid_state"]


async def test_media_path_cut_socket_alive(setup: Any) -> None:
    """The client's UDP sockets vanish without a word (network cut, socket alive): the
    server's ICE consent checks (RFC 7675, aioice: 6 misses about 5 s apart) expire and
    the participant is removed. aioice takes 24-36 s; the bound is 45 s."""
    server, room, offenders = setup
    mallory = await offender(server, offenders)
    await publish_video(mallory)
    await mallory.wait_more_frames(10, timeout=20)
    pc = mallory.pc
    assert pc is not None
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport  # RTCDtlsTransport -> RTCIceTransport
        for protocol in ice._connection._protocols:
            protocol.transport.close()  # no DTLS alert, no STUN: silence
        break  # bundled: one ICE transport
    started = time.monotonic()
    await wait_until(lambda: not in_room(server, mallory), 45, step=0.5)
    took = time.monotonic() - started
    print(f"\nmedia cut detected by consent expiry in {took:.1f} s")
    assert took > 15  # it was consent expiry, not something faster by accident
    await wait_until(lambda: not mallory.sio.connected, 5)
    left = await _left(room.a, mallory.id)
    assert left["reason"] == "connection_closed"


async def test_signaling_cut_media_alive(setup: Any) -> None:
    server, room, offenders = setup
    mallory = await offender(server, offenders)
    await publish_video(mallory)
    await mallory.wait_more_frames(10, timeout=20)
    participant = server.rooms.rooms["media"].participants[mallory.id]
    server_pc = participant.pc
    assert server_pc is not None and server_pc.connectionState == "connected"
    await mallory.sio.disconnect()  # the peer connection is still up
    took = await wait_until(lambda: not in_room(server, mallory), 5)
    left = await _left(room.a, mallory.id)
    assert left["reason"] == "disconnected"
    assert participant.closed and server_pc.connectionState == "closed"
    # the client's pc learns it too (DTLS close from the server)
    assert mallory.pc is not None
    await wait_until(lambda: mallory.pc.connectionState == "closed", 10)
    print(f"\nsignaling cut: removed in {took:.2f} s")


async def _left(client: SfuClient, pid: str | None) -> Any:
    await wait_until(lambda: any(p["id"] == pid for p in client.named("participant left")), 5)
    return next(p for p in client.named("participant left") if p["id"] == pid)
