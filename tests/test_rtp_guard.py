"""Crafted datagrams through aiortc's DTLS receive loop: without the guard some end the
loop (aiortc 1.16.0); with `sfu.compat.rtp_guard` they are counted and dropped and the
packets after them still arrive."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pylibsrtp
import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import RtcpPacket, RtcpSenderInfo, RtcpSrPacket, RtpPacket

from sfu.compat.rtp_guard import (
    MalformedKind,
    check_rtp_guard_internals,
    guard_dtls_transport,
    guard_peer_connection,
)
from sfu.ice_policy import IcePolicy

SSRC = 0x1234
PT = 96
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def rtp(seq: int) -> bytes:
    return RtpPacket(payload_type=PT, sequence_number=seq, ssrc=SSRC, payload=b"ok").serialize()


def rtp_with_extension(element: bytes) -> bytes:
    """An RTP packet whose one-byte header extension block holds ``element`` (padded)."""
    ext = element + b"\x00" * (-len(element) % 4)
    header = struct.pack("!BBHLL", 0x90, PT, 7, 0, SSRC)  # V=2, X=1
    return header + struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext + b"payload"


def rtcp_sr() -> bytes:
    info = RtcpSenderInfo(ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)
    return bytes(RtcpSrPacket(ssrc=SSRC, sender_info=info))


# -- crafted datagrams (after SRTP: the tests' SRTP session is the identity) ------------
TRUNCATED_HEADER = rtp(1)[:8]  # ValueError: aiortc drops it already
# abs-send-time (id 1) with 1 byte instead of 3: struct.error out of RtpPacket.parse
BAD_ABS_SEND_TIME = rtp_with_extension(bytes([0x10, 0xAA]))
# audio level (id 2) with 2 bytes instead of 1; transport-cc (id 3) with 1 instead of 2
BAD_AUDIO_LEVEL = rtp_with_extension(bytes([0x21, 0x80, 0x80]))
BAD_TRANSPORT_CC = rtp_with_extension(bytes([0x30, 0x01]))
# extension block longer than the packet: ValueError
EXTENSION_PAST_END = struct.pack("!BBHLL", 0x90, PT, 7, 0, SSRC) + struct.pack("!HH", 0xBEDE, 9)
# RTCP header claims 10 words, 4 present: ValueError
BAD_RTCP_LENGTH = struct.pack("!BBH", 0x80, 201, 10) + struct.pack("!L", SSRC)
# REMB claiming 3 SSRCs with none present: struct.error in RtpRouter.route_rtcp
BAD_REMB = struct.pack("!BBH", 0x8F, 206, 4) + struct.pack("!LL", SSRC, 0) + b"REMB\x03\x00\x10\x00"
EMPTY = b""  # IndexError on data[0]; needs no keys, aioice queues any non-STUN datagram
BAD_AUTH = rtp(99) + b"BADAUTH"  # the fake SRTP session refuses it, as on an auth failure


class FakeIceTransport:
    """Hands out queued datagrams, then ends like a closed ICE connection."""

    role = "controlled"

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = list(datagrams)

    async def _recv(self) -> bytes:
        if not self.datagrams:
            raise ConnectionError("done")
        return self.datagrams.pop(0)


class IdentitySrtp:
    def unprotect(self, data: bytes) -> bytes:
        if data.endswith(b"BADAUTH"):
            raise pylibsrtp.Error("authentication failed")
        return data

    unprotect_rtcp = unprotect


class FakeReceiver:
    def __init__(self) -> None:
        self.rtp: list[RtpPacket] = []
        self.rtcp: list[Any] = []
        self.disconnected = False

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.rtp.append(packet)

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        self.rtcp.append(packet)

    def _handle_disconnect(self) -> None:
        self.disconnected = True


@pytest.fixture(scope="module")
def certificate() -> RTCCertificate:
    return RTCCertificate.generateCertificate()


Run = Callable[[], Awaitable[None]]


def connected_transport(
    certificate: RTCCertificate, datagrams: list[bytes]
) -> tuple[RTCDtlsTransport, FakeReceiver, Run]:
    """A DTLS transport as after its handshake (identity SRTP), one receiver registered for
    SSRC/PT, and a coroutine that runs aiortc's own receive loop over ``datagrams``."""
    transport = RTCDtlsTransport(FakeIceTransport(datagrams), [certificate])  # type: ignore[arg-type]
    transport._RTCDtlsTransport__handshake_done = True  # type: ignore[attr-defined]
    transport._rx_srtp = IdentitySrtp()
    transport._rtp_header_extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri=ABS_SEND_TIME),
                RTCRtpHeaderExtensionParameters(id=2, uri=AUDIO_LEVEL),
                RTCRtpHeaderExtensionParameters(id=3, uri=TRANSPORT_CC),
            ]
        )
    )
    receiver = FakeReceiver()
    transport._rtp_router.register_receiver(receiver, ssrcs=[SSRC], payload_types=[PT])

    async def run() -> None:
        await transport._RTCDtlsTransport__run()  # type: ignore[attr-defined]

    return transport, receiver, run


@pytest.mark.parametrize(
    "bad",
    [BAD_ABS_SEND_TIME, BAD_AUDIO_LEVEL, BAD_TRANSPORT_CC, BAD_REMB, EMPTY],
    ids=["abs-send-time", "audio-level", "transport-cc", "remb", "empty"],
)
async def test_aiortc_1_16_receive_loop_dies_on(certificate: RTCCertificate, bad: bytes) -> None:
    """The bug the guard exists for (if this starts failing, aiortc fixed it upstream)."""
    transport, receiver, run = connected_transport(certificate, [rtp(1), bad, rtp(2)])
    with pytest.raises((struct.error, IndexError)):
        await run()
    assert [p.sequence_number for p in receiver.rtp] == [1]  # rtp(2) never arrives
    assert transport.state == "closed"
    assert not receiver.disconnected  # not even told: its track just goes silent


async def test_guard_counts_and_drops_and_the_loop_survives(certificate: RTCCertificate) -> None:
    crafted: list[tuple[bytes, MalformedKind]] = [
        (TRUNCATED_HEADER, "rtp"),
        (BAD_ABS_SEND_TIME, "rtp"),
        (BAD_AUDIO_LEVEL, "rtp"),
        (BAD_TRANSPORT_CC, "rtp"),
        (EXTENSION_PAST_END, "rtp"),
        (BAD_RTCP_LENGTH, "rtcp"),
        (BAD_REMB, "rtcp"),
        (EMPTY, "datagram"),
        (BAD_AUTH, "srtp"),
    ]
    datagrams = [rtp(0)]
    for seq, (bad, _) in enumerate(crafted, start=1):
        datagrams += [bad, rtp(seq)]
    transport, receiver, run = connected_transport(certificate, datagrams)
    seen: list[MalformedKind] = []
    guard = guard_dtls_transport(transport, seen.append)

    await run()  # returns: ended by the fake ICE transport's ConnectionError only

    assert [p.sequence_number for p in receiver.rtp] == list(range(len(crafted) + 1))
    assert seen == [kind for _, kind in crafted]
    assert guard.counts == {"rtp": 5, "rtcp": 2, "srtp": 1, "datagram": 1}
    assert guard.dropped == len(crafted)
    assert receiver.disconnected  # the normal end of the loop still reaches receivers


async def test_a_bad_packet_in_an_rtcp_compound_spares_the_others(
    certificate: RTCCertificate,
) -> None:
    transport, receiver, run = connected_transport(certificate, [BAD_REMB + rtcp_sr()])
    assert len(RtcpPacket.parse(BAD_REMB + rtcp_sr())) == 2  # it parses; routing fails
    guard = guard_dtls_transport(transport, lambda kind: None)
    await run()
    assert [type(p) for p in receiver.rtcp] == [RtcpSrPacket]
    assert guard.counts["rtcp"] == 1


async def test_a_failing_callback_is_not_fatal_and_remove_restores(
    certificate: RTCCertificate,
) -> None:
    def explode(kind: MalformedKind) -> None:
        raise RuntimeError("metrics down")

    transport, receiver, run = connected_transport(certificate, [EMPTY, rtp(1)])
    guard = guard_dtls_transport(transport, explode)
    assert guard_dtls_transport(transport, lambda kind: None) is guard  # idempotent
    await run()
    assert [p.sequence_number for p in receiver.rtp] == [1]
    assert type(transport._rx_srtp).__name__ == "_CountingSrtp"
    guard.remove()
    guard.remove()
    assert "_recv_next" not in vars(transport)
    assert isinstance(transport._rx_srtp, IdentitySrtp)  # the wrapper is gone too


async def test_an_ice_transport_failure_still_ends_the_loop(certificate: RTCCertificate) -> None:
    """Only a received datagram's errors are dropped: a broken ICE transport raising on
    every call must end the loop (as in aiortc), not make it spin."""
    transport, receiver, run = connected_transport(certificate, [rtp(1)])

    async def broken_recv() -> bytes:
        raise RuntimeError("queue broken")

    guard = guard_dtls_transport(transport, lambda kind: None)
    await asyncio.wait_for(transport._recv_next(), 5)  # rtp(1)
    transport.transport._recv = broken_recv  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="queue broken"):
        await asyncio.wait_for(run(), 5)
    assert [p.sequence_number for p in receiver.rtp] == [1]
    assert guard.dropped == 0
    assert transport.state == "closed"


async def test_guard_peer_connection_guards_each_transport_once() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        guards = guard_peer_connection(pc, lambda kind: None)
        assert len(guards) == 2  # not bundled yet: one transport per transceiver
        assert guard_peer_connection(pc, lambda kind: None) == guards
    finally:
        await pc.close()


@pytest.mark.parametrize("guarded", [False, True], ids=["aiortc", "guarded"])
async def test_one_empty_udp_datagram_on_loopback(guarded: bool) -> None:
    """Real peers on 127.0.0.1: one empty datagram to the answerer's ICE port (no keys
    needed) closes its DTLS transport, unless guarded."""
    policy = IcePolicy(["127.0.0.1"])
    policy.install()
    a, b = RTCPeerConnection(), RTCPeerConnection()
    try:
        channel = a.createDataChannel("x")
        opened = asyncio.Event()
        channel.on("open", opened.set)
        got: list[str] = []
        b.on("datachannel", lambda remote: remote.on("message", got.append))
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        seen: list[MalformedKind] = []
        if guarded:
            guard_peer_connection(b, seen.append)
        await asyncio.wait_for(opened.wait(), 10)
        assert b.sctp is not None
        dtls = b.sctp.transport
        (candidate,) = dtls.transport.iceGatherer.getLocalCandidates()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"", ("127.0.0.1", candidate.port))
        for _ in range(50):  # bounded: up to 5 s
            if seen or dtls.state == "closed":
                break
            await asyncio.sleep(0.1)
        if guarded:
            assert seen == ["datagram"]
            assert dtls.state == "connected"
            channel.send("after")
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.1)
            assert got == ["after"]
        else:
            assert dtls.state == "closed"
    finally:
        await a.close()
        await b.close()
        policy.uninstall()


def test_internals_the_guard_relies_on_are_present() -> None:
    assert check_rtp_guard_internals() == []
