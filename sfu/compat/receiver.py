"""Receiver hook: taps complete encoded frames out of an `RTCRtpReceiver` (its jitter
buffer replaced by a `FrameAssembler`, no decoder thread ever started) and counts the loss
recovery towards the publisher: NACKs aiortc's NACK generator sends (`_send_rtcp_nack`
wrapped on the instance: called per NACK, not per packet) and RTX retransmissions
received (read from the receiver's per-SSRC RTCP statistics on demand: nothing per
packet). Internals used are listed in `sfu/compat/__init__.py` and verified by
`check_receiver_internals()`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics

from sfu.compat.introspect import source_has
from sfu.compat.lean_receiver import LeanReceiver, install_lean_receiver
from sfu.compat.remb import IntervalBitrateEstimator, install_interval_estimator
from sfu.frame_assembler import AssemblerStats, FrameAssembler, FrameSink, discard_frame

logger = logging.getLogger(__name__)

_R = "_RTCRtpReceiver__"

#: "lean": `sfu.compat.lean_receiver` handles each RTP packet; "stock": aiortc's handler.
RECEIVE_PATHS = ("lean", "stock")


@dataclass(frozen=True, slots=True)
class RecoveryStats:
    """Loss recovery towards the publisher of one receiver."""

    #: NACK packets sent to the publisher
    nacks_sent: int
    #: sequence numbers those NACKs listed (repeats counted again)
    nacked_packets: int
    #: RTX retransmissions received
    rtx_received: int


class ReceiverHook:
    """What `install_receiver_sink` installed on one receiver: owns its `FrameAssembler`
    and the PLI tasks it scheduled. `close()` (idempotent) stops frame delivery and cancels
    pending PLI tasks; the receiver itself is owned by its peer connection."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str, assembler: FrameAssembler) -> None:
        self.receiver = receiver
        self.kind = kind
        self.assembler = assembler
        self.on_end: Callable[[], None] | None = None
        #: the per-interval REMB estimator (video), see `sfu.compat.remb`
        self.estimator: IntervalBitrateEstimator | None = None
        #: the lean per-packet handler (`--receive-path lean`), None on the stock path
        self.lean: LeanReceiver | None = None
        self.ended = False
        #: NACK packets sent to the publisher, and the sequence numbers they listed (aiortc
        #: lists every packet still missing in each NACK: repeats are counted again)
        self.nacks_sent = 0
        self.nacked_packets = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def stats(self) -> AssemblerStats:
        """The assembler's counters (packets, frames, losses, keyframes needed...)."""
        return self.assembler.stats()

    def recovery(self) -> RecoveryStats:
        """NACKs sent and retransmissions received so far."""
        return RecoveryStats(self.nacks_sent, self.nacked_packets, self.rtx_received())

    def rtx_received(self) -> int:
        """RTX retransmissions received from the publisher so far (the packets aiortc's
        RTCP statistics counted on the RTX SSRCs)."""
        return rtx_packets_received(self.receiver)

    def _count_nack(self, lost: list[int]) -> None:
        self.nacks_sent += 1
        self.nacked_packets += len(lost)

    def request_keyframe(self) -> bool:
        """Schedule an RTCP PLI for the last seen media SSRC (fire and forget: the task is
        kept until done). Return False when no SSRC is known yet or the hook is closed."""
        ssrc = self.assembler.ssrc
        if ssrc is None or self._closed:
            return False
        coro: Coroutine[Any, Any, None] = self.receiver._send_rtcp_pli(ssrc)
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return True

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("PLI failed: %r", task.exception())

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
        if self._closed:
            return
        self._closed = True
        self.assembler.on_frame = discard_frame
        self.assembler.on_keyframe_needed = None
        self.on_end = None
        for task in list(self._tasks):
            task.cancel()


def end_remote_track(receiver: RTCRtpReceiver) -> None:
    """End the receiver's `RemoteStreamTrack` (None into its `_queue`), as the stock
    `__stop_decoder` does through the decoder thread that passthrough never starts."""
    queue = getattr(getattr(receiver, "_track", None), "_queue", None)
    if isinstance(queue, asyncio.Queue):
        queue.put_nowait(None)


def rtx_packets_received(receiver: Any) -> int:
    """Packets received on the receiver's RTX SSRCs (0 without RTX or before it starts)."""
    streams = getattr(receiver, _R + "remote_streams", None)
    rtx = getattr(receiver, _R + "rtx_ssrc", None)
    if not isinstance(streams, dict) or not isinstance(rtx, dict):
        return 0
    total = 0
    for ssrc in list(rtx):
        stream = streams.get(ssrc)
        if stream is not None:
            total += int(getattr(stream, "packets_received", 0))
    return total


def _install_nack_counter(receiver: RTCRtpReceiver, count: Callable[[list[int]], None]) -> None:
    original = getattr(receiver, "_send_rtcp_nack", None)
    if not callable(original):
        return  # a test fake without RTCP

    async def send_rtcp_nack(media_ssrc: int, lost: list[int]) -> None:
        count(lost)
        await original(media_ssrc, lost)

    receiver._send_rtcp_nack = send_rtcp_nack  # type: ignore[method-assign]


def check_receiver_internals(probe: RTCRtpReceiver) -> list[str]:
    """The internals of the NACK and RTX counters that are missing or changed (`probe`: a
    fresh video receiver); empty when all are present."""
    problems: list[str] = []
    attrs = vars(probe)
    for name in ("remote_streams", "rtx_ssrc"):
        if not isinstance(attrs.get(_R + name), dict):
            problems.append(f"RTCRtpReceiver.{_R}{name}")
    if not callable(getattr(RTCRtpReceiver, "_send_rtcp_nack", None)):
        problems.append("RTCRtpReceiver._send_rtcp_nack")
    problems += source_has(
        RTCRtpReceiver._handle_rtp_packet,
        "self.__remote_streams[packet.ssrc].add(packet)",
        "await self._send_rtcp_nack(",
    )
    if not hasattr(StreamStatistics(90000), "packets_received"):
        problems.append("StreamStatistics.packets_received")
    if not isinstance(getattr(RtpRouter(), "ssrc_table", None), dict):
        problems.append("RtpRouter.ssrc_table")
    problems += source_has(
        RtpRouter.route_rtp,
        "ssrc_receiver = self.ssrc_table.get(packet.ssrc)",
        "ssrc_receiver in pt_receivers",
    )
    problems += source_has(
        RtpRouter.unregister_receiver, "self.__discard(self.ssrc_table, receiver)"
    )
    return problems


def install_receiver_sink(
    receiver: RTCRtpReceiver,
    kind: str,
    on_frame: FrameSink,
    on_end: Callable[[], None] | None = None,
    on_keyframe_needed: Callable[[], None] | None = None,
    receive_path: str = "lean",
) -> ReceiverHook:
    """Make `receiver` hand complete encoded frames to `on_frame` and never decode.

    Call right after the receiver is created (the peer connection's "track" event), before
    `receiver.receive()` runs. `on_end` is called once when the stream ends (receiver
    stopped, transport disconnected or RTCP BYE). Without `on_keyframe_needed` the
    assembler's PLI flag makes aiortc send a PLI at once; with it, the flag goes to the
    callback instead (the SFU throttles and counts its upstream requests in one place).
    A video receiver's REMB estimator is replaced by a per-interval one
    (`sfu.compat.remb.install_interval_estimator`): REMB is still sent to the publisher.
    With `receive_path="lean"` each RTP packet is handled by `sfu.compat.lean_receiver`
    (the same statistics, NACKs, REMB and frames, less Python), with "stock" by aiortc.
    """
    if receive_path not in RECEIVE_PATHS:
        raise ValueError(f"receive_path must be one of {', '.join(RECEIVE_PATHS)}")
    if getattr(receiver, _R + "started", False):
        raise RuntimeError("install_receiver_sink: the receiver already started")
    assembler = FrameAssembler(kind, on_frame, on_keyframe_needed=on_keyframe_needed)
    hook = ReceiverHook(receiver, kind, assembler)
    hook.on_end = on_end
    hook.estimator = install_interval_estimator(receiver)
    _install_nack_counter(receiver, hook._count_nack)
    setattr(receiver, _R + "jitter_buffer", assembler)
    if receive_path == "lean":
        hook.lean = install_lean_receiver(receiver)

    async def receive(parameters: Any) -> None:
        await _receive_without_decoder(receiver, parameters)

    receiver.receive = receive  # type: ignore[method-assign]
    setattr(receiver, _R + "stop_decoder", hook._stream_ended)
    return hook


async def _receive_without_decoder(receiver: RTCRtpReceiver, parameters: Any) -> None:
    """Stock `RTCRtpReceiver.receive` minus the decoder thread."""
    if getattr(receiver, _R + "started"):
        return
    codecs = getattr(receiver, _R + "codecs")
    for codec in parameters.codecs:
        codecs[codec.payloadType] = codec
    rtx_ssrc = getattr(receiver, _R + "rtx_ssrc")
    for encoding in parameters.encodings:
        if encoding.rtx:
            rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
    transport = getattr(receiver, _R + "transport")
    transport._register_rtp_receiver(receiver, parameters)
    route_rtx(transport, receiver, rtx_ssrc)
    setattr(receiver, _R + "rtcp_task", asyncio.ensure_future(receiver._run_rtcp()))
    setattr(receiver, _R + "started", True)


def route_rtx(transport: Any, receiver: RTCRtpReceiver, rtx_ssrcs: dict[int, int]) -> None:
    """Route the receiver's RTX SSRCs to it. aiortc registers only the media SSRCs of a
    receiver's encodings and routes a packet of an unknown SSRC by its payload type only
    when ONE receiver has that payload type: with two video m-lines in the bundle (a
    camera and a screen from one publisher; every subscriber's video slots) they share the
    RTX payload type, and every retransmission was dropped. The router forgets these
    entries with the receiver's (`RtpRouter.unregister_receiver`)."""
    table = transport._rtp_router.ssrc_table
    for rtx in rtx_ssrcs:
        table[rtx] = receiver


def receiver_codec(receiver: RTCRtpReceiver) -> str | None:
    """The mime type the receiver negotiated (first codec), for stats; None before."""
    codecs = getattr(receiver, _R + "codecs", None) or {}
    for codec in codecs.values():
        return str(codec.mimeType)
    return None
