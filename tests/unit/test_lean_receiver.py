"""`sfu.compat.lean_receiver`: the lean per-packet handler of the server's receivers, hand-built
packets, and the same packets through aiortc's stock handler for comparison."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtcpPsfbPacket, RtpPacket, wrap_rtx

from sfu.compat.check import check_internals
from sfu.compat.lean_receiver import (
    LeanReceiver,
    check_lean_receiver_internals,
    install_lean_receiver,
    vp8_descriptor_size,
)
from sfu.compat.lean_sender import vp8_payloads
from sfu.compat.nack_retry import MAX_RETRIES
from sfu.compat.receiver import ReceiverHook, install_receiver_sink
from sfu.frame_assembler import EncodedFrame

_R = "_RTCRtpReceiver__"
MEDIA_SSRC, RTX_SSRC = 42, 43
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)


class Rig:
    """One receiver with the SFU's sink installed on the given path, started without a
    decoder, and every RTCP it would send recorded (NACK, PLI, REMB)."""

    def __init__(self, kind: str, path: str) -> None:
        self.router = SimpleNamespace(ssrc_table={})
        transport = SimpleNamespace(
            state="new", _register_rtp_receiver=lambda *a: None, _rtp_router=self.router
        )
        self.receiver: Any = RTCRtpReceiver(kind, transport)  # type: ignore[arg-type]
        self.frames: list[EncodedFrame] = []
        self.hook: ReceiverHook = install_receiver_sink(
            self.receiver, kind, self.frames.append, receive_path=path
        )
        self.nacks: list[tuple[int, list[int]]] = []
        self.plis: list[int] = []
        self.rtcp: list[Any] = []
        self.receiver._send_rtcp_nack = self._nack
        self.receiver._send_rtcp_pli = self._pli
        self.receiver._send_rtcp = self._rtcp

    async def start(self, video: bool = True) -> None:
        if video:
            params = RTCRtpReceiveParameters(
                codecs=[VP8, RTX],
                encodings=[
                    RTCRtpDecodingParameters(
                        ssrc=MEDIA_SSRC, payloadType=96, rtx=RTCRtpRtxParameters(ssrc=RTX_SSRC)
                    )
                ],
            )
        else:
            params = RTCRtpReceiveParameters(
                codecs=[OPUS],
                encodings=[RTCRtpDecodingParameters(ssrc=MEDIA_SSRC, payloadType=111)],
            )
        await self.receiver.receive(params)
        getattr(self.receiver, _R + "rtcp_task").cancel()
        setattr(self.receiver, _R + "rtcp_ssrc", 1234)

    async def _nack(self, ssrc: int, lost: list[int]) -> None:
        self.nacks.append((ssrc, lost))

    async def _pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)

    async def _rtcp(self, packet: Any) -> None:
        self.rtcp.append(packet)

    async def feed(self, packets: list[RtpPacket], start_ms: int = 1_000_000) -> None:
        for i, packet in enumerate(packets):
            copy = RtpPacket.parse(packet.serialize(EXT), EXT)  # each path gets its own
            await self.receiver._handle_rtp_packet(copy, start_ms + 10 * i)

    @property
    def lean(self) -> LeanReceiver:
        assert self.hook.lean is not None
        return self.hook.lean


def _ext_map() -> Any:
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    ext = HeaderExtensionsMap()
    ext.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=4, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                ),
            ]
        )
    )
    return ext


EXT = _ext_map()


def video_frame(frame: int, seq: int, keyframe: bool, size: int = 3000) -> list[RtpPacket]:
    """One VP8 frame as RTP packets (first payload byte: P bit clear for a keyframe)."""
    data = bytes([0x10 if keyframe else 0x11, 0x02, 0x00]) + bytes([frame & 0xFF]) * size
    out = []
    payloads = vp8_payloads(data, frame & 0x7FFF)
    for i, payload in enumerate(payloads):
        p = RtpPacket(
            payload_type=96,
            marker=int(i == len(payloads) - 1),
            sequence_number=(seq + i) & 0xFFFF,
            timestamp=(3000 * frame) & 0xFFFFFFFF,
            ssrc=MEDIA_SSRC,
            payload=payload,
        )
        p.extensions.abs_send_time = (frame * 8738) & 0xFFFFFF  # ~33 ms in 6.18 fixed point
        out.append(p)
    return out


def rtx_of(packet: RtpPacket, rtx_seq: int) -> RtpPacket:
    return wrap_rtx(packet, payload_type=97, sequence_number=rtx_seq, ssrc=RTX_SSRC)


# ---------------------------------------------------------------- the VP8 descriptor


def test_vp8_descriptor_size_matches_aiortc() -> None:
    """Every descriptor shape (X, I short/long, L, T, K) and every truncation of it: the
    same data after the descriptor as aiortc's parser, or the same ValueError."""
    shapes: list[bytes] = [b"\x10", b"\x00\xff"]
    for i_bit, long_id, l_bit, t_bit, k_bit in itertools.product((0, 1), repeat=5):
        ext = (i_bit << 7) | (l_bit << 6) | (t_bit << 5) | (k_bit << 4)
        desc = bytes([0x90, ext])
        if i_bit:
            desc += b"\x81\x23" if long_id else b"\x05"
        if l_bit:
            desc += b"\x07"
        if t_bit or k_bit:
            desc += b"\xe5"
        shapes.append(desc + b"\x9d\x01\x2a")
    for payload in shapes:
        for cut in range(len(payload) + 1):
            data = payload[:cut]
            try:
                _, expected = VpxPayloadDescriptor.parse(data)
            except ValueError as exc:
                with pytest.raises(ValueError, match=str(exc)):
                    vp8_descriptor_size(data)
                continue
            assert data[vp8_descriptor_size(data) :] == expected


# ---------------------------------------------------------------- hand-built packets


async def test_nack_on_a_gap_then_rtx_fills_it() -> None:
    rig = Rig("video", "lean")
    await rig.start()
    key = video_frame(0, 100, keyframe=True)  # 3 packets: 100, 101, 102
    assert len(key) == 3
    await rig.feed([key[0], key[2]])  # 101 lost
    assert rig.nacks == [(MEDIA_SSRC, [101])]
    assert rig.lean.stats().nacks_sent == 1 and rig.lean.stats().nack_packets == 1
    assert rig.frames == []  # waits for the retransmission
    assert rig.router.ssrc_table == {RTX_SSRC: rig.receiver}  # RTX routed here (route_rtx)
    await rig.feed([rtx_of(key[1], 7)])
    stats = rig.lean.stats()
    assert stats.rtx == 1 and stats.packets == 3
    assert len(rig.frames) == 1 and rig.frames[0].keyframe
    assert rig.frames[0].data == bytes([0x10, 0x02, 0x00]) + bytes(3000)
    nack = getattr(rig.receiver, _R + "nack_generator")
    assert nack.missing == set() and nack.max_seq == 102
    # RR statistics: the media SSRC saw 2 packets, the RTX SSRC 1
    streams = getattr(rig.receiver, _R + "remote_streams")
    assert streams[MEDIA_SSRC].packets_received == 2 and streams[RTX_SSRC].packets_received == 1
    assert streams[MEDIA_SSRC].max_seq == 102
    # a later frame in order: no NACK
    await rig.feed(video_frame(1, 103, keyframe=False))
    assert len(rig.nacks) == 1 and len(rig.frames) == 2


async def test_rtx_from_an_unknown_ssrc_or_too_short_is_dropped() -> None:
    rig = Rig("video", "lean")
    await rig.start()
    await rig.feed(video_frame(0, 10, keyframe=True))
    stray = rtx_of(video_frame(0, 10, keyframe=True)[0], 1)
    stray.ssrc = 999
    short = RtpPacket(payload_type=97, sequence_number=2, ssrc=RTX_SSRC, payload=b"\x00")
    await rig.feed([stray, short])
    assert rig.lean.stats().rtx == 0 and len(rig.frames) == 1


async def test_pli_when_the_assembler_needs_a_keyframe() -> None:
    rig = Rig("video", "lean")
    await rig.start()
    await rig.feed(video_frame(0, 10, keyframe=False))  # a delta frame before any keyframe
    assert rig.plis == [MEDIA_SSRC] and rig.frames == []


async def test_remb_sent_once_per_interval() -> None:
    rig = Rig("video", "lean")
    await rig.start()
    packets = [p for f in range(150) for p in video_frame(f, 3 * f, keyframe=f == 0)]
    await rig.feed(packets)  # 10 ms apart: 4.5 s (the rate control starts after ~3 s)
    rembs = [p for p in rig.rtcp if isinstance(p, RtcpPsfbPacket)]
    assert rig.hook.estimator is not None
    assert len(rembs) == rig.hook.estimator.remb_sent >= 1
    assert rig.hook.estimator.packets == len(packets)


async def test_malformed_vp8_payload_is_dropped_and_counted() -> None:
    rig = Rig("video", "lean")
    await rig.start()
    bad = RtpPacket(payload_type=96, sequence_number=5, ssrc=MEDIA_SSRC, payload=b"\x90\x80")
    await rig.feed([bad])
    assert rig.lean.stats().malformed == 1 and rig.hook.stats().packets == 0
    # counted for RR (as stock does before depayloading), and the stream goes on
    assert getattr(rig.receiver, _R + "remote_streams")[MEDIA_SSRC].packets_received == 1
    await rig.feed(video_frame(0, 6, keyframe=True))
    assert len(rig.frames) == 1


async def test_unknown_payload_type_and_disabled_receiver_are_ignored() -> None:
    rig = Rig("video", "lean")
    await rig.start()
    await rig.feed([RtpPacket(payload_type=120, sequence_number=1, ssrc=MEDIA_SSRC)])
    assert getattr(rig.receiver, _R + "remote_streams") == {}
    rig.receiver._enabled = False
    await rig.feed(video_frame(0, 10, keyframe=True))
    assert rig.lean.stats().packets == 1 and rig.frames == []


async def test_audio_levels_reach_the_frames() -> None:
    rig = Rig("audio", "lean")
    await rig.start(video=False)
    packets = []
    for i, level in enumerate((30, 127)):
        p = RtpPacket(payload_type=111, sequence_number=500 + i, timestamp=960 * i, ssrc=MEDIA_SSRC)
        p.payload = b"\xfc\xff\xfe" + bytes([i])
        p.extensions.audio_level = (level == 30, level)
        packets.append(p)
    await rig.feed(packets)
    assert [f.audio_level for f in rig.frames] == [(True, 30), (False, 127)]
    assert [f.data for f in rig.frames] == [b"\xfc\xff\xfe\x00", b"\xfc\xff\xfe\x01"]
    assert getattr(rig.receiver, _R + "nack_generator") is None
    assert rig.lean.stats().packets == 2


# ---------------------------------------------------------------- lean vs stock


async def test_lean_and_stock_paths_agree() -> None:
    """The same stream (gaps, reordering, RTX, a keyframe after losses, a sequence wrap)
    through both paths: the same frames, NACKs, PLIs, REMBs and RR statistics."""
    packets: list[RtpPacket] = []
    seq = 0xFFF0
    for f in range(150):
        frame = video_frame(f, seq, keyframe=f in (0, 30), size=2000 + 17 * f)
        seq = (seq + len(frame)) & 0xFFFF
        if f == 5:
            frame = [frame[1], frame[0], *frame[2:]]  # reordered
        if f == 10:
            lost = frame.pop(1)
            packets.extend(frame)
            packets.append(rtx_of(lost, 1))  # recovered
            continue
        if f == 20:
            frame = frame[1:]  # lost for good: PLI, then the keyframe at 30
        packets.extend(frame)
    rigs = {path: Rig("video", path) for path in ("stock", "lean")}
    for rig in rigs.values():
        await rig.start()
        await rig.feed(packets)
    stock, lean = rigs["stock"], rigs["lean"]
    assert [(f.data, f.timestamp, f.keyframe) for f in lean.frames] == [
        (f.data, f.timestamp, f.keyframe) for f in stock.frames
    ]
    assert len(lean.frames) > 120
    # the same NACKs, plus the lean path's repeats (`sfu.compat.nack_retry`): only the
    # packet lost for good (frame 20's), asked for again MAX_RETRIES times
    assert stock.nacks and lean.nacks[: len(stock.nacks)] == stock.nacks
    repeats = lean.nacks[len(stock.nacks) :]
    lost_for_good = stock.nacks[-1]
    assert repeats == [lost_for_good] * MAX_RETRIES
    assert lean.plis == stock.plis and lean.plis
    assert [bytes(p) for p in lean.rtcp] == [bytes(p) for p in stock.rtcp] and lean.rtcp
    assert lean.hook.stats() == stock.hook.stats()
    for ssrc in (MEDIA_SSRC, RTX_SSRC):
        a = getattr(lean.receiver, _R + "remote_streams")[ssrc]
        b = getattr(stock.receiver, _R + "remote_streams")[ssrc]
        fields = ("base_seq", "max_seq", "cycles", "packets_received", "_last_timestamp")
        assert [getattr(a, n) for n in fields] == [getattr(b, n) for n in fields]
    na = getattr(lean.receiver, _R + "nack_generator")
    nb = getattr(stock.receiver, _R + "nack_generator")
    assert (na.max_seq, na.missing) == (nb.max_seq, nb.missing)
    assert getattr(lean.receiver, _R + "active_ssrc").keys() == {MEDIA_SSRC, RTX_SSRC}
    assert lean.lean.stats().rtx == 1 and lean.lean.stats().packets == len(packets)


# ---------------------------------------------------------------- install and check


async def test_install_rules() -> None:
    rig = Rig("video", "lean")
    assert rig.receiver._handle_rtp_packet == rig.lean.handle_rtp
    stock = Rig("video", "stock")
    assert stock.hook.lean is None
    assert "_handle_rtp_packet" not in vars(stock.receiver)
    await rig.start()
    with pytest.raises(RuntimeError, match="already started"):
        install_lean_receiver(rig.receiver)
    other: Any = RTCRtpReceiver("video", SimpleNamespace(state="new"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="receive_path must be one of lean, stock"):
        install_receiver_sink(other, "video", lambda f: None, receive_path="fast")
    assert "_handle_rtp_packet" not in vars(other)  # nothing changed


async def test_internals_present() -> None:
    probe = RTCRtpReceiver("video", SimpleNamespace(state="new"))  # type: ignore[arg-type]
    assert check_lean_receiver_internals(probe) == []
    assert check_internals() == []


# ---------------------------------------------------------------- between real peer connections


@pytest.mark.usefixtures("loopback_ice")
async def test_lean_receive_path_between_peer_connections(pcs: list[Any]) -> None:
    """A publisher pc (lean sender, VP8 + RTX) and a receiving pc whose receiver runs the
    SFU's sink on the lean path: frames arrive; three first transmissions dropped at the
    publisher are NACKed by the lean receiver and come back over RTX; REMB and receiver
    reports reach the publisher; a PLI from the sink reaches the publisher's hook."""
    import asyncio

    from sfu.compat.lean_sender import install_lean_sender
    from sfu.compat.sender import install_sender_keyframe_hook
    from signaling.sources import PacedVideoTrack, encode_clip
    from tests.loopback import negotiate, new_pc, prefer, wait_until

    clip = encode_clip(width=320, height=240, seconds=2.0, bitrate=300_000)
    tx, rx = new_pc(), new_pc()
    pcs.extend([tx, rx])
    source = PacedVideoTrack(clip)
    transceiver = tx.addTransceiver(source, direction="sendonly")
    prefer(transceiver, "video/VP8", "video/rtx")
    lean_tx = install_lean_sender(transceiver.sender)
    keyframe_requests = [0]

    def on_keyframe_request() -> None:
        keyframe_requests[0] += 1
        source.request_keyframe()

    install_sender_keyframe_hook(transceiver.sender, on_keyframe_request)
    frames: list[EncodedFrame] = []
    hooks: list[ReceiverHook] = []

    def on_track(track: Any) -> None:
        receiver = next(t.receiver for t in rx.getTransceivers() if t.receiver.track is track)
        hooks.append(install_receiver_sink(receiver, "video", frames.append))

    rx.on("track", on_track)
    async with asyncio.timeout(10):
        await negotiate(tx, rx)
    await wait_until(lambda: len(frames) >= 10, 10)
    hook = hooks[0]
    assert hook.lean is not None and hook.lean.stats().packets > 0
    assert frames[0].keyframe

    dropped: list[int] = []

    def drop(seq: int) -> bool:
        if len(dropped) < 3 and seq % 7 == 0:
            dropped.append(seq)
            return True
        return False

    lean_tx.drop_hook = drop
    await wait_until(lambda: len(dropped) == 3, 10)
    lean_tx.drop_hook = None
    lean = hook.lean
    await wait_until(lambda: lean.stats().rtx >= 3, 10)
    assert lean.stats().nacks_sent >= 3 and lean.stats().nack_packets >= 1
    assert lean_tx.history.retransmits >= 3
    assert hook.stats().frames_lost == 0  # every dropped packet came back in time

    # RTCP the publisher's sender gets: receiver reports (RTT) and REMB
    sender: Any = transceiver.sender
    assert hook.estimator is not None
    await wait_until(lambda: hook.estimator is not None and hook.estimator.remb_sent >= 1, 10)

    async def remote_inbound() -> Any:
        stats = await sender.getStats()
        return [s for s in stats.values() if s.type == "remote-inbound-rtp"]

    async with asyncio.timeout(10):
        while not await remote_inbound():  # noqa: ASYNC110 - RTCP timer
            await asyncio.sleep(0.1)

    # a PLI from the sink reaches the publisher's keyframe hook
    before = keyframe_requests[0]
    assert hook.request_keyframe()
    await wait_until(lambda: keyframe_requests[0] > before, 10)


@pytest.mark.usefixtures("loopback_ice")
async def test_retransmissions_reach_each_of_two_video_receivers(pcs: list[Any]) -> None:
    """Two video m-lines in one bundle (a publisher's camera and screen; a subscriber's
    slots) share the RTX payload type: aiortc routes an RTX packet of an unregistered SSRC
    only when one receiver has its payload type, so before `route_rtx` every
    retransmission was dropped. Each receiver gets its own."""
    import asyncio

    from sfu.compat.lean_sender import install_lean_sender
    from signaling.sources import PacedVideoTrack, encode_clip
    from tests.loopback import negotiate, new_pc, prefer, wait_until

    clip = encode_clip(width=160, height=120, seconds=2.0, bitrate=150_000)
    tx, rx = new_pc(), new_pc()
    pcs.extend([tx, rx])
    senders = []
    for _ in range(2):
        transceiver = tx.addTransceiver(PacedVideoTrack(clip), direction="sendonly")
        prefer(transceiver, "video/VP8", "video/rtx")
        senders.append(install_lean_sender(transceiver.sender))
    hooks: list[ReceiverHook] = []

    def on_track(track: Any) -> None:
        receiver = next(t.receiver for t in rx.getTransceivers() if t.receiver.track is track)
        hooks.append(install_receiver_sink(receiver, "video", lambda frame: None))

    rx.on("track", on_track)
    async with asyncio.timeout(10):
        await negotiate(tx, rx)
    await wait_until(
        lambda: len(hooks) == 2 and all(h.lean and h.lean.stats().packets for h in hooks), 10
    )
    for sender in senders:
        dropped: list[int] = []

        def drop(seq: int, dropped: list[int] = dropped) -> bool:
            if len(dropped) < 2 and seq % 5 == 0:
                dropped.append(seq)
                return True
            return False

        sender.drop_hook = drop
    await wait_until(lambda: all(s.history.retransmits >= 2 for s in senders), 10)
    for sender in senders:
        sender.drop_hook = None
    await wait_until(lambda: all(h.lean is not None and h.lean.stats().rtx >= 2 for h in hooks), 10)
    assert all(h.stats().frames_lost == 0 for h in hooks)
