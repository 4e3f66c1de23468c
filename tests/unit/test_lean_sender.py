"""The lean send path (`sfu.compat.lean_sender`) between two real aiortc peer connections.

One process, 127.0.0.1 only: the sending pc forwards a pre-encoded VP8 clip through a
lean sender; the receiving pc is stock aiortc and decodes. Under both the stock asyncio
loop and uvloop (when installed).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pylibsrtp
import pytest
from aioice.ice import CandidatePair, StunProtocol
from aioice.turn import TurnTransport
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import State
from aiortc.rtp import RtpPacket

from sfu.compat.lean_sender import (
    LeanSender,
    check_lean_sender_internals,
    install_lean_sender,
    vp8_payloads,
)
from sfu.compat.sender import install_sender_keyframe_hook, install_sender_nack_counter
from sfu.pacer import Pacer
from signaling.sources import PacedAudioTrack, PacedVideoTrack, VideoClip, encode_clip
from tests import loopback
from tests.loopback import Consumer, negotiate, new_pc, prefer

WAIT = 10.0

# aioice gathers host candidates on 127.0.0.1 only
pytestmark = pytest.mark.usefixtures("loopback_ice")


async def wait_until(pred: Any) -> None:
    await loopback.wait_until(pred, WAIT)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> VideoClip:
    cache: Path = tmp_path_factory.mktemp("clips")
    return encode_clip(width=320, height=240, seconds=2.0, bitrate=300_000, cache_dir=cache)


class Link:
    """A sending pc with a lean sender, and a stock receiving pc that decodes."""

    def __init__(self, pcs: list[RTCPeerConnection], clip: VideoClip, rtx: bool) -> None:
        self.tx, self.rx = new_pc(), new_pc()
        pcs.extend([self.tx, self.rx])
        self.source = PacedVideoTrack(clip)
        transceiver = self.tx.addTransceiver(self.source, direction="sendonly")
        prefer(transceiver, "video/VP8", *(["video/rtx"] if rtx else []))
        self.sender = transceiver.sender
        self.lean: LeanSender = install_lean_sender(self.sender)
        self.keyframe_requests = 0
        self.nacked = 0
        install_sender_keyframe_hook(self.sender, self._on_keyframe_request)
        install_sender_nack_counter(self.sender, self._on_nack)
        self.consumer: Consumer | None = None
        self.rx.on("track", self._on_track)

    def _on_keyframe_request(self) -> None:
        self.keyframe_requests += 1
        self.source.request_keyframe()

    def _on_nack(self, seq: int) -> None:
        self.nacked += 1

    def _on_track(self, track: Any) -> None:
        self.consumer = Consumer(track)

    async def start(self) -> Consumer:
        async with asyncio.timeout(WAIT):
            await negotiate(self.tx, self.rx)
        await wait_until(lambda: self.consumer is not None)
        assert self.consumer is not None
        return self.consumer


def test_internals_present() -> None:
    assert check_lean_sender_internals() == []


@pytest.mark.parametrize("size", [0, 1, 1295, 1296, 1297, 2592, 2593, 7000])
def test_vp8_payloads_match_aiortc(size: int) -> None:
    frame = os.urandom(size)
    assert vp8_payloads(frame, 4321) == Vp8Encoder._packetize(frame, 4321)
    assert vp8_payloads(memoryview(frame), 77) == Vp8Encoder._packetize(frame, 77)


@pytest.mark.parametrize(("rtx", "gso"), [(True, True), (False, False)], ids=["rtx", "plain"])
async def test_lean_sender_end_to_end(
    rtx: bool, gso: bool, clip: VideoClip, pcs: list[RTCPeerConnection]
) -> None:
    link = Link(pcs, clip, rtx)
    link.lean.gso = gso and sys.platform == "linux"
    # every packet the subscriber receives is byte-identical to what the history rebuilds
    # for a NACK (checked on arrival, before the history slot is reused)
    ext_map = link.sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
    checked: list[bool] = []

    def install_compare(track: Any) -> None:  # on "track": before any media arrives
        receiver = link.rx.getTransceivers()[0].receiver
        handle = receiver._handle_rtp_packet

        async def compare(packet: RtpPacket, arrival_time_ms: int) -> None:
            history = link.lean.history
            if len(checked) < 200 and packet.payload_type == history.payload_type:
                raw = packet.serialize(ext_map)
                checked.append(raw == history.packet_bytes(packet.sequence_number))
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = compare  # type: ignore[method-assign]

    link.rx.on("track", install_compare)
    consumer = await link.start()
    lean = link.lean

    # frames arrive and decode; they went the lean way, not the stock one
    await wait_until(lambda: consumer.count >= 10)
    assert (consumer.last.width, consumer.last.height) == (320, 240)
    assert lean.packets_lean > 0
    assert lean.frames >= 10
    assert (lean.gso_batches > 0) is lean.gso  # keyframes take several packets
    with pytest.raises(RuntimeError):  # only before the sender starts
        install_lean_sender(link.sender)

    await wait_until(lambda: len(checked) >= 30)
    assert all(checked), checked

    # the history holds aiortc-format packets: parse + serialize is the identity, the
    # negotiated extensions are there, the payload is aiortc's VP8 packetization
    stored = lean.history.packets()
    assert stored
    mid = next(t.mid for t in link.tx.getTransceivers())
    for raw in stored[:50]:
        packet = RtpPacket.parse(raw, ext_map)
        assert packet.serialize(ext_map) == raw
        assert packet.ssrc == link.sender._ssrc
        assert packet.extensions.mid == mid
        assert packet.extensions.abs_send_time is not None

    # loss: drop three first transmissions; NACK brings them back (over RTX if negotiated)
    dropped: list[int] = []

    def drop(seq: int) -> bool:
        if len(dropped) < 3 and seq % 7 == 0:
            dropped.append(seq)
            return True
        return False

    receiver = link.rx.getTransceivers()[0].receiver
    retransmits_before = lean.history.retransmits
    lean.drop_hook = drop
    await wait_until(lambda: len(dropped) == 3)
    lean.drop_hook = None
    await wait_until(lambda: lean.history.retransmits - retransmits_before >= 3)
    assert link.nacked >= 3
    nack_generator = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
    await wait_until(lambda: not set(dropped) & nack_generator.missing)
    if rtx:
        streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        await wait_until(lambda: link.sender._rtx_ssrc in streams)
        assert streams[link.sender._rtx_ssrc].packets_received >= 3
    count = consumer.count
    await wait_until(lambda: consumer.count >= count + 10)

    # PLI from the receiving side reaches the keyframe hook
    requests = link.keyframe_requests
    await receiver._send_rtcp_pli(link.sender._ssrc)
    await wait_until(lambda: link.keyframe_requests > requests)

    # the counters RTCP SR and getStats read grow
    def outbound(report: Any) -> Any:
        return next(s for s in report.values() if s.type == "outbound-rtp")

    first = outbound(await link.sender.getStats())
    assert first.packetsSent > 0 and first.bytesSent > 0
    await asyncio.sleep(0.3)
    second = outbound(await link.sender.getStats())
    assert second.packetsSent > first.packetsSent
    assert second.bytesSent > first.bytesSent

    async def remote_sent() -> int:
        stats = await receiver.getStats()
        found = [s.packetsSent for s in stats.values() if s.type == "remote-outbound-rtp"]
        return found[0] if found else 0

    async with asyncio.timeout(WAIT):
        while await remote_sent() <= first.packetsSent:  # noqa: ASYNC110 - RTCP timer
            await asyncio.sleep(0.1)

    # stop() ends the lean loop cleanly
    async with asyncio.timeout(5):
        await link.sender.stop()
    assert link.sender.track is None


async def test_lean_sender_sends_through_a_pacer(
    clip: VideoClip, pcs: list[RTCPeerConnection]
) -> None:
    """A subscriber's pacer engaged (its budget known): the sender's bursts wait in it and
    go out at its rate, in order: the picture decodes."""
    link = Link(pcs, clip, rtx=False)
    pacer = Pacer()
    pacer.set_rate(60_000.0)  # 480 kbit/s for a 300 kbit/s clip: keyframes are spread
    link.lean.pacer = pacer
    consumer = await link.start()
    await wait_until(lambda: consumer.count >= 20)
    assert (consumer.last.width, consumer.last.height) == (320, 240)
    assert pacer.paced > 0 and pacer.flushes == 0
    # each packet's send time is kept (paced ones: when they left the pacer), for the
    # delay of a NACK of the packet before it (`sfu.queue_delay`)
    entries = [e for e in link.lean.history.raw if isinstance(e, tuple)]
    first, count = max(entries, key=lambda e: link.lean.sent_us[e[1] % len(link.lean.sent_us)])[1:3]
    sent = link.lean.sent_after((first - 1) & 0xFFFF)
    assert sent is not None and 0 <= time.time() - sent < 5.0
    assert link.lean.sent_after((first + count - 1) & 0xFFFF) is None  # not sent yet
    pacer.close()
    # a frame's send time is kept at its first packet, a paced part's at the part's first:
    # a packet's is that of the latest part at or before it (stale slots are older)
    frame = next(e for e in entries if e[2] >= 2)
    start, slots = frame[1], link.lean.sent_us
    first_slot, second_slot = (((start + i) & 0xFFFF) % len(slots) for i in range(2))
    slots[first_slot], slots[second_slot] = 5_000_000, 1_000_000  # the second: stale
    assert link.lean.sent_after((start - 1) & 0xFFFF) == 5.0
    assert link.lean.sent_after(start) == 5.0  # the second packet: in the first part
    slots[second_slot] = 7_000_000  # the second packet began a later part
    assert link.lean.sent_after(start) == 7.0


async def test_lean_sender_opus(pcs: list[RTCPeerConnection]) -> None:
    tx, rx = new_pc(), new_pc()
    pcs.extend([tx, rx])
    transceiver = tx.addTransceiver(PacedAudioTrack(), direction="sendonly")
    prefer(transceiver, "audio/opus")
    lean = install_lean_sender(transceiver.sender)
    consumers: list[Consumer] = []
    rx.on("track", lambda track: consumers.append(Consumer(track)))
    async with asyncio.timeout(WAIT):
        await negotiate(tx, rx)
    await wait_until(lambda: bool(consumers) and consumers[0].count >= 25)
    frame = consumers[0].last
    assert frame.sample_rate == 48000 and frame.samples == 960
    assert lean.packets_lean >= 25 and lean.gso_batches == 0  # one packet per frame
    ext_map = transceiver.sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
    raw = lean.history.packets()[0]
    packet = RtpPacket.parse(raw, ext_map)
    assert packet.payload in {p.data for p in transceiver.sender.track.clip.packets}


async def test_turn_relayed_pair_goes_lean_without_gso() -> None:
    """A TURN relayed pair's transport (`aioice.turn.TurnTransport`) has `sendto` but no
    `is_closing`, socket or write buffer: the lean path sends through it, never with GSO."""
    sender = RTCRtpSender("video", SimpleNamespace(state="new"))  # type: ignore[arg-type]
    lean = LeanSender(sender)
    inner = SimpleNamespace(transport=SimpleNamespace(is_closing=lambda: True))
    turn = TurnTransport(inner)  # type: ignore[arg-type]
    protocol = StunProtocol(receiver=None)  # type: ignore[arg-type]
    protocol.transport = turn  # type: ignore[assignment]
    pair = CandidatePair(protocol, SimpleNamespace(_network_host="192.0.2.1", port=3478))  # type: ignore[arg-type]
    dtls = SimpleNamespace(
        _state=State.CONNECTED,
        _tx_srtp=pylibsrtp.Session(),
        transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
    )
    selected = lean._selected_pair(dtls)
    assert selected == (turn, ("192.0.2.1", 3478))
    lean._send_datagrams(turn, ("192.0.2.1", 3478), [b"a" * 20, b"b" * 20, b"c" * 5])
    assert lean.gso_batches == 0


def test_ntp_now_and_rtp_ticks_match_aiortc() -> None:
    from fractions import Fraction

    from aiortc.clock import current_ntp_time
    from aiortc.mediastreams import convert_timebase

    from sfu.compat.lean_sender import ntp_now, rtp_ticks

    before, ours, after = current_ntp_time(), ntp_now(), current_ntp_time()
    assert before - (1 << 22) <= ours <= after + (1 << 22)  # within ~1 ms
    for pts in (0, 1, 2999, 3000, 123_456_789, -1, -3001):
        for base, rate in (
            (Fraction(1, 90000), 90000),
            (Fraction(1, 1000), 90000),
            (Fraction(1, 48000), 48000),
            (Fraction(1, 30), 90000),
            (Fraction(1, 7), 90000),
        ):
            assert rtp_ticks(pts, base, rate) == convert_timebase(pts, base, Fraction(1, rate))
    assert rtp_ticks(5, None, 90000) == 5


@pytest.mark.parametrize("with_abs", [True, False], ids=["abs-send-time", "no-extension"])
def test_tail_packer_matches_frame_tail(with_abs: bool) -> None:
    """The loop's one-pack frame tail is byte-identical to `_HeaderTemplate.frame_tail`
    (and so to aiortc's `RtpPacket.serialize`)."""
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    from sfu.compat.lean_sender import _HeaderTemplate

    ext_map = HeaderExtensionsMap()
    if with_abs:
        ext_map.configure(
            RTCRtpParameters(
                headerExtensions=[
                    RTCRtpHeaderExtensionParameters(
                        id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"
                    ),
                    RTCRtpHeaderExtensionParameters(
                        id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                    ),
                ]
            )
        )
    template = _HeaderTemplate(96, 0x12345678, "0" if with_abs else None, ext_map)
    assert (template.abs_offset is not None) is with_abs
    pack = template.tail_packer()
    for timestamp, abs_send_time in ((0, 0), (0xFFFFFFFF, 0xFFFFFF), (123456, 0x0A0B0C)):
        tail = pack(timestamp, abs_send_time)
        assert tail == template.frame_tail(timestamp, abs_send_time)
        packet = RtpPacket(payload_type=96, ssrc=0x12345678, timestamp=timestamp)
        packet.extensions.mid = "0" if with_abs else None
        packet.extensions.abs_send_time = abs_send_time if with_abs else None
        assert packet.serialize(ext_map)[4:] == tail


async def test_route_is_revalidated_by_identity() -> None:
    """The loop's cached route to the selected pair: a new nominated pair or a closing
    transport is seen (the loop re-checks exactly these fields per frame)."""
    sender = RTCRtpSender("video", SimpleNamespace(state="new"))  # type: ignore[arg-type]
    lean = LeanSender(sender)
    closing = [False]
    transport = SimpleNamespace(sendto=lambda data, addr: None, is_closing=lambda: closing[0])
    protocol = StunProtocol(receiver=None)  # type: ignore[arg-type]
    protocol.transport = transport  # type: ignore[assignment]
    pair = CandidatePair(protocol, SimpleNamespace(_network_host="192.0.2.1", port=3478))  # type: ignore[arg-type]
    nominated = {1: pair}
    dtls = SimpleNamespace(
        _state=State.CONNECTED,
        _tx_srtp=pylibsrtp.Session(),
        transport=SimpleNamespace(_connection=SimpleNamespace(_nominated=nominated)),
    )
    route = lean._route(dtls)
    assert route is not None
    assert route.addr == ("192.0.2.1", 3478) and route.gso and route.dtls is dtls
    assert route.srtp is dtls._tx_srtp  # a new SRTP session makes the loop take a new route
    assert route.nominated.get(1) is route.pair and not route.is_closing()
    other = CandidatePair(protocol, SimpleNamespace(_network_host="192.0.2.2", port=3478))  # type: ignore[arg-type]
    nominated[1] = other
    assert route.nominated.get(1) is not route.pair  # the loop takes a new route
    new_route = lean._route(dtls)
    assert new_route is not None and new_route.addr == ("192.0.2.2", 3478)
    closing[0] = True
    assert new_route.is_closing() and lean._route(dtls) is None
    dtls._state = State.CLOSED
    closing[0] = False
    assert lean._route(dtls) is None


@pytest.mark.parametrize(("first_seq", "size"), [(100, 7000), (65530, 7000), (65500, 200_000)])
def test_history_rebuilds_packets_from_frame_records(first_seq: int, size: int) -> None:
    """The history keeps one record per frame; any stored packet is rebuilt byte-identical
    to what was sent (marker on the last packet, sequence wrap, frames of more than
    RTP_HISTORY_SIZE packets: the latest packet of each slot)."""
    from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap

    from sfu.compat.lean_sender import RawHistory

    history = RawHistory(HeaderExtensionsMap())
    history.first_byte, history.payload_type = 0x80, 96
    frame = os.urandom(size)
    payloads = vp8_payloads(frame, 1234)
    tail = b"TAILBYTES0123456"
    record = (tail, first_seq, len(payloads), memoryview(frame), 1234)
    sent = {}
    for i, payload in enumerate(payloads):
        seq = (first_seq + i) & 0xFFFF
        marker = 0x80 if i == len(payloads) - 1 else 0
        sent[seq] = bytes([0x80, 96 | marker]) + seq.to_bytes(2, "big") + tail + payload
        history.raw[seq % RTP_HISTORY_SIZE] = record
    latest = list(sent)[-RTP_HISTORY_SIZE:]
    for seq in latest:
        assert history.packet_bytes(seq % RTP_HISTORY_SIZE) == sent[seq]
        packet = history.get(seq % RTP_HISTORY_SIZE)
        assert packet is not None and packet.sequence_number == seq
        assert packet.marker == int(seq == latest[-1])
    assert history.retransmits == len(latest)
    assert sorted(history.packets()) == sorted(sent[s] for s in latest)
    # an Opus-like record keeps its payloads
    history.raw[5] = (tail, 5, 1, [b"opus"], -1)
    assert history.packet_bytes(5) == bytes([0x80, 0x80 | 96, 0, 5]) + tail + b"opus"


async def test_pts_in_clock_rate_is_a_promise_the_sender_checks(
    clip: VideoClip, pcs: list[RTCPeerConnection]
) -> None:
    """A track that promises pts in 1/90000 but sends them in milliseconds: the first
    frame's time base is read, the promise is dropped, every timestamp is converted."""
    import itertools
    from fractions import Fraction

    import av

    link = Link(pcs, clip, rtx=False)
    original = link.source.recv

    async def recv_in_ms() -> Any:
        packet = await original()
        out = av.Packet(bytes(packet))
        out.pts = packet.pts * 1000 // 90000
        out.time_base = Fraction(1, 1000)
        out.is_keyframe = packet.is_keyframe
        return out

    link.source.recv = recv_in_ms  # type: ignore[method-assign]
    link.lean.pts_in_clock_rate = True
    consumer = await link.start()
    await wait_until(lambda: consumer.count >= 10)
    assert link.lean.pts_in_clock_rate is False
    # each frame's record starts with its header tail: the RTP timestamp first
    tails = {r[0] for r in link.lean.history.raw if isinstance(r, tuple)}
    stamps = sorted(int.from_bytes(tail[:4], "big") for tail in tails)
    steps = {(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)}
    assert len(stamps) >= 5 and steps <= {2970, 3060}, steps  # 90 kHz ticks of 33-34 ms
