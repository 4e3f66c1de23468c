"""Hardening: malformed datagrams sent to a participant's ICE port (an empty one killed
aiortc's DTLS receive loop; see `sfu/compat/rtp_guard.py`) are counted and dropped; the
participant keeps receiving and sending media, and `/metrics` shows the count."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from benchmarks.servers import RunningServer
from signaling.client import SfuClient
from signaling.config import ServerConfig
from tests.hardening_util import Bystanders, hardening_config, media_room, wait_until


@pytest.fixture
async def setup() -> AsyncIterator[tuple[RunningServer, Bystanders, list[SfuClient]]]:
    async with media_room(ServerConfig(sfu=hardening_config())) as ctx:
        yield ctx


def server_ice_ports(server: RunningServer, participant_id: str) -> set[int]:
    """The UDP ports the server's ICE gathered for one participant's peer connection."""
    participant = server.rooms.rooms["media"].participants[participant_id]
    assert participant.pc is not None
    ports = set()
    for transceiver in participant.pc.getTransceivers():
        gatherer = transceiver.receiver.transport.transport.iceGatherer
        ports |= {c.port for c in gatherer.getLocalCandidates() if c.protocol == "udp"}
    return ports


async def test_malformed_datagrams_are_counted_and_dropped(setup: Any) -> None:
    server, room, _offenders = setup
    ports = server_ice_ports(server, room.a.id)
    assert ports
    garbage = [
        b"",  # empty: aiortc's _recv_next read data[0] and ended the transport
        b"\x80",  # a one-byte "RTP" datagram
        bytes([0x80, 0x60]) + b"\x00" * 30,  # RTP-looking, fails SRTP authentication
        bytes([0x81, 0xC8, 0x00, 0x40]) + b"\x00" * 8,  # RTCP with a lying length
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for port in ports:
            for datagram in garbage:
                sock.sendto(datagram, ("127.0.0.1", port))
    participant = server.rooms.rooms["media"].participants[room.a.id]
    await wait_until(lambda: sum(participant.malformed.values()) >= len(garbage), 5)
    assert participant.malformed["datagram"] >= 1, participant.malformed
    # both directions of the targeted participant still carry media
    await room.still_flowing()
    await asyncio.sleep(0.5)
    assert participant.pc is not None and participant.pc.connectionState == "connected"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/metrics") as response:
            text = await response.text()
    counted = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sfu_malformed_packets_total{")
    }
    assert set(counted) == {"rtp", "rtcp", "srtp", "datagram"}
    assert counted["datagram"] >= 1
    assert sum(counted.values()) >= len(garbage)
