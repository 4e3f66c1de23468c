"""A light receiver: counts frames and bytes at the RTP layer, after SRTP, and nothing more.

`install_light_receiver(receiver, kind, on_frame)` replaces, on one `RTCRtpReceiver`
instance and before it starts, the per-packet handler `_handle_rtp_packet`: no
depayloading, no jitter buffer or frame assembly, no decoder thread. Per packet it still
feeds what the receiver's RTCP needs: the stream statistics aiortc's `_run_rtcp` turns
into receiver reports (RR: loss, jitter, last SR), the NACK generator (video; NACKs are
sent as stock aiortc sends them, repeated for packets still missing as a browser does,
`sfu.compat.nack_retry`, and RTX retransmissions are unwrapped to fill the holes)
and a per-interval REMB estimator (`sfu.compat.remb`). A frame is counted when its last
packet (the RTP marker bit; every packet for audio) arrives, once per RTP timestamp, and
handed to `on_frame` as a `LightFrame` (SSRC, RTP timestamp, keyframe flag from the VP8
payload header of its first packet, payload bytes seen for that timestamp, and the SSRC's
unrecovered losses so far, `sfu.rtp_loss.SequenceLoss`). It is what a
load generator needs to play many subscribers on few cores (`sfu-bench --subscriber light`).

aiortc private internals relied upon (pinned: aiortc==1.16.0; `check_light_receiver_internals()`
verifies them), besides those of `sfu.compat.receiver` (the start without a decoder
thread and the end notification through `__stop_decoder`): the receiver instance
attributes `_enabled` and name-mangled `__codecs`, `__rtx_ssrc`, `__remote_streams` (dict
of `aiortc.rtcrtpreceiver.StreamStatistics`, read by `_run_rtcp`), `__nack_generator`
(`aiortc.rtcrtpreceiver.NackGenerator`, None for audio), `__rtcp_ssrc`; the methods
`_send_rtcp_nack(media_ssrc, lost)` and `_send_rtcp(packet)`; and that the transport awaits
`receiver._handle_rtp_packet(packet, arrival_time_ms)` through the instance attribute.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci, unwrap_rtx

from sfu.compat.nack_retry import NackRetry
from sfu.compat.receiver import _R, _receive_without_decoder, end_remote_track
from sfu.compat.remb import IntervalBitrateEstimator, install_interval_estimator
from sfu.rtp_loss import SequenceLoss


@dataclass(frozen=True, slots=True)
class LightFrame:
    """One frame as a light receiver counts it (no codec data)."""

    ssrc: int
    timestamp: int
    keyframe: bool
    #: RTP payload bytes seen for this frame's timestamp
    size: int
    #: packets of this SSRC never received so far (retransmissions fill holes)
    lost: int = 0
    #: extended sequence number of the frame's last packet (`SequenceLoss.add`; -1: unknown)
    seq: int = -1


LightFrameSink = Callable[[LightFrame], None]


def vp8_starts_keyframe(payload: bytes) -> bool:
    """True when `payload` is the first packet of a VP8 keyframe (RFC 7741: descriptor S=1,
    partition 0, and the VP8 payload header's P bit clear)."""
    if len(payload) < 2 or (payload[0] & 0x1F) != 0x10:  # S=1, PID=0
        return False
    pos = 1
    if payload[0] & 0x80:  # X: extension byte
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    return len(payload) > pos and not payload[pos] & 0x01


class LightReceiverHook:
    """What `install_light_receiver` installed on one receiver, with its counters:
    `packets`, `bytes` (RTP payload), `frames`, `keyframes`, `rtx` (retransmissions
    received), `nacks_sent` (NACK packets), `loss` (per media SSRC, unrecovered holes).
    `close()` (idempotent) stops frame delivery."""

    def __init__(
        self, receiver: RTCRtpReceiver, kind: str, on_frame: LightFrameSink | None
    ) -> None:
        self.receiver = receiver
        self.kind = kind
        self.on_frame = on_frame
        self.on_end: Callable[[], None] | None = None
        self.estimator: IntervalBitrateEstimator | None = None
        self.ended = False
        self.packets = 0
        self.bytes = 0
        self.frames = 0
        self.keyframes = 0
        self.rtx = 0
        self.nacks_sent = 0
        #: NACKs repeated for packets still missing (`sfu.compat.nack_retry`)
        self.nack_retry = NackRetry()
        # per SSRC: [timestamp being received, its bytes, keyframe?, last timestamp counted]
        self._current: dict[int, list[Any]] = {}
        self.loss: dict[int, SequenceLoss] = {}
        self._closed = False

    async def handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """Replacement of the receiver's `_handle_rtp_packet` (see the module docstring)."""
        receiver: Any = self.receiver
        if not receiver._enabled:
            return
        estimator = self.estimator
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                arrival_time_ms, packet.extensions.abs_send_time, len(packet.payload), packet.ssrc
            )
            rtcp_ssrc = getattr(receiver, _R + "rtcp_ssrc")
            if remb is not None and rtcp_ssrc is not None:
                await receiver._send_rtcp(
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)
                    )
                )
        codecs = getattr(receiver, _R + "codecs")
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams = getattr(receiver, _R + "remote_streams")
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            original = getattr(receiver, _R + "rtx_ssrc").get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
            self.rtx += 1
        nack = getattr(receiver, _R + "nack_generator")
        if nack is not None:
            lost = self.nack_retry.lost(nack, packet, arrival_time_ms)
            if lost:
                self.nacks_sent += 1
                await receiver._send_rtcp_nack(packet.ssrc, lost)
        self._count(packet)

    def _count(self, packet: RtpPacket) -> None:
        ssrc = packet.ssrc
        loss = self.loss.get(ssrc)
        if loss is None:
            loss = self.loss[ssrc] = SequenceLoss()
        extended = loss.add(packet.sequence_number)
        size = len(packet.payload)
        self.packets += 1
        self.bytes += size
        timestamp = packet.timestamp
        state = self._current.get(ssrc)
        if state is None:
            state = self._current[ssrc] = [timestamp, 0, False, None]
        elif state[0] != timestamp:
            state[0], state[1], state[2] = timestamp, 0, False
        state[1] += size
        if self.kind == "video" and vp8_starts_keyframe(packet.payload):
            state[2] = True
        if (packet.marker or self.kind != "video") and state[3] != timestamp:
            state[3] = timestamp
            self.frames += 1
            keyframe = bool(state[2])
            if keyframe:
                self.keyframes += 1
            sink = self.on_frame
            if sink is not None:
                sink(LightFrame(ssrc, timestamp, keyframe, state[1], loss.lost, extended))

    def _stream_ended(self) -> None:
        """Replacement of the receiver's `__stop_decoder`: end its track, notify once."""
        if self.ended:
            return
        self.ended = True
        end_remote_track(self.receiver)
        callback = self.on_end
        if callback is not None and not self._closed:
            callback()

    def close(self) -> None:
        self._closed = True
        self.on_frame = None
        self.on_end = None


def light_receiver_hook(receiver: RTCRtpReceiver) -> LightReceiverHook | None:
    """The `LightReceiverHook` `install_light_receiver` put on `receiver`, or None."""
    handler = vars(receiver).get("_handle_rtp_packet")
    owner = getattr(handler, "__self__", None)
    return owner if isinstance(owner, LightReceiverHook) else None


def install_light_receiver(
    receiver: RTCRtpReceiver,
    kind: str,
    on_frame: LightFrameSink | None = None,
    on_end: Callable[[], None] | None = None,
) -> LightReceiverHook:
    """Make `receiver` count frames at the RTP layer (module docstring). Call right after
    the receiver is created (the peer connection's "track" event), before it starts;
    `on_end` is called once when the stream ends."""
    if getattr(receiver, _R + "started", False):
        raise RuntimeError("install_light_receiver: the receiver already started")
    hook = LightReceiverHook(receiver, kind, on_frame)
    hook.on_end = on_end
    hook.estimator = install_interval_estimator(receiver)
    r: Any = receiver
    r._handle_rtp_packet = hook.handle_rtp

    async def receive(parameters: Any) -> None:
        await _receive_without_decoder(receiver, parameters)

    r.receive = receive
    setattr(receiver, _R + "stop_decoder", hook._stream_ended)
    return hook


def check_light_receiver_internals(probe: RTCRtpReceiver) -> list[str]:
    """The internals the light receiver relies on that are missing or changed (`probe`: a
    fresh video receiver); empty when all are present."""
    problems: list[str] = []
    attrs = vars(probe)
    for name in ("remote_streams", "nack_generator", "rtcp_ssrc", "codecs", "rtx_ssrc"):
        if _R + name not in attrs:
            problems.append(f"RTCRtpReceiver.{_R}{name}")
    if "_enabled" not in attrs:
        problems.append("RTCRtpReceiver._enabled")
    for name in ("_send_rtcp_nack", "_send_rtcp", "_handle_rtp_packet", "_run_rtcp"):
        if not callable(getattr(RTCRtpReceiver, name, None)):
            problems.append(f"RTCRtpReceiver.{name}")
    for obj, needles in (
        (RTCRtpReceiver._run_rtcp, ("self.__remote_streams.items()",)),
        (
            RTCDtlsTransport._handle_rtp_data,
            ("await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)",),
        ),
    ):
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            problems.append(f"{obj.__qualname__} (source unavailable)")
            continue
        problems += [f"{obj.__qualname__}: {n!r}" for n in needles if n not in source]
    return problems
