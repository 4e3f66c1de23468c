"""`sfu.compat.light_receiver`: frames and bytes counted at the RTP layer, RTCP kept."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from sfu.compat.lean_sender import vp8_payloads
from sfu.compat.light_receiver import (
    LightFrame,
    install_light_receiver,
    vp8_starts_keyframe,
)
from sfu.compat.remb import IntervalBitrateEstimator

_R = "_RTCRtpReceiver__"


def test_vp8_keyframe_flag_from_the_first_packet() -> None:
    key = vp8_payloads(b"\x10\x02\x00" + bytes(3000), picture_id=5)  # P bit clear
    delta = vp8_payloads(b"\x11\x02\x00" + bytes(3000), picture_id=6)
    assert vp8_starts_keyframe(key[0]) and not vp8_starts_keyframe(key[1])
    assert not vp8_starts_keyframe(delta[0])
    # minimal descriptor (no X byte), and garbage
    assert vp8_starts_keyframe(b"\x10\x00") and not vp8_starts_keyframe(b"\x00\x00")
    assert not vp8_starts_keyframe(b"") and not vp8_starts_keyframe(b"\x90\x80")


def receiver(kind: str) -> Any:
    r = RTCRtpReceiver(kind, SimpleNamespace(state="new"))  # type: ignore[arg-type]
    codec = (
        RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
        if kind == "video"
        else RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
    )
    getattr(r, _R + "codecs")[codec.payloadType] = codec
    setattr(r, _R + "rtcp_ssrc", 1234)
    return r


def packets(frame: int, payloads: list[bytes], seq: int, pt: int = 96) -> list[RtpPacket]:
    out = []
    for i, payload in enumerate(payloads):
        p = RtpPacket(
            payload_type=pt,
            marker=int(i == len(payloads) - 1),
            sequence_number=(seq + i) & 0xFFFF,
            timestamp=3000 * frame,
            ssrc=42,
            payload=payload,
        )
        p.extensions.abs_send_time = frame * 8738  # ~33 ms in 6.18 fixed point
        out.append(p)
    return out


async def test_counts_frames_sends_nacks_and_keeps_rtcp_statistics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = receiver("video")
    frames: list[LightFrame] = []
    hook = install_light_receiver(r, "video", frames.append)
    assert r._handle_rtp_packet == hook.handle_rtp
    assert isinstance(hook.estimator, IntervalBitrateEstimator)
    nacks: list[tuple[int, list[int]]] = []
    sent: list[Any] = []

    async def send_nack(ssrc: int, lost: list[int]) -> None:
        nacks.append((ssrc, lost))

    async def send_rtcp(packet: Any) -> None:
        sent.append(packet)

    monkeypatch.setattr(r, "_send_rtcp_nack", send_nack)
    monkeypatch.setattr(r, "_send_rtcp", send_rtcp)
    seq = 100
    stream: list[RtpPacket] = []
    for n in range(150):
        data = (b"\x10" if n % 50 == 0 else b"\x11") + bytes(2000)
        batch = packets(n, vp8_payloads(data, n), seq)
        seq += len(batch)
        stream += batch
    lost = stream[10]  # a packet of the fourth frame never arrives...
    for packet in stream:
        if packet is not lost:
            await r._handle_rtp_packet(packet, arrival_time_ms=int(packet.timestamp / 90))
    # ...so it is NACKed; that frame's marker still arrives: counted, once per timestamp
    assert nacks and nacks[0] == (42, [lost.sequence_number])
    assert hook.nacks_sent >= 1
    assert [f.timestamp for f in frames] == [3000 * n for n in range(150)]
    assert [f.keyframe for f in frames] == [n % 50 == 0 for n in range(150)]
    assert frames[0].size == 2001 + 2 * 4 and frames[0].ssrc == 42
    assert hook.frames == 150 and hook.keyframes == 3 and hook.packets == len(stream) - 1
    # receiver reports come from aiortc's statistics, which the light path feeds
    stats = getattr(r, _R + "remote_streams")[42]
    assert stats.packets_received == len(stream) - 1
    # and REMB went out once the rate control initialised (about 3 s of media)
    assert hook.estimator.remb_sent >= 1 and sent
    # a duplicate marker packet (e.g. a retransmission) is not a second frame
    await r._handle_rtp_packet(stream[-1], arrival_time_ms=6000)
    assert hook.frames == 150


async def test_audio_every_packet_is_a_frame_and_close_stops_delivery() -> None:
    r = receiver("audio")
    frames: list[LightFrame] = []
    ended: list[bool] = []
    hook = install_light_receiver(r, "audio", frames.append, on_end=lambda: ended.append(True))
    assert hook.estimator is None
    for n in range(5):
        [p] = packets(n, [bytes(80)], 7 + n, pt=111)
        await r._handle_rtp_packet(p, arrival_time_ms=20 * n)
    assert len(frames) == 5 and not any(f.keyframe for f in frames)
    getattr(r, _R + "stop_decoder")()
    getattr(r, _R + "stop_decoder")()
    assert ended == [True]
    hook.close()
    [p] = packets(9, [bytes(80)], 20, pt=111)
    await r._handle_rtp_packet(p, arrival_time_ms=200)
    assert len(frames) == 5 and hook.frames == 6


def test_refuses_a_started_receiver() -> None:
    r = receiver("video")
    setattr(r, _R + "started", True)
    with pytest.raises(RuntimeError):
        install_light_receiver(r, "video")
