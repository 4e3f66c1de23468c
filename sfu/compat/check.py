"""The start-up check: every aiortc internal the compat package relies on is still there."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace

import aiortc
from aiortc.contrib.media import MediaRelay, RelayStreamTrack
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from sfu.compat.fast_queue import check_fast_queue_internals
from sfu.compat.introspect import source_has
from sfu.compat.lean_receiver import check_lean_receiver_internals
from sfu.compat.lean_sender import _probe_sender, check_lean_sender_internals
from sfu.compat.light_receiver import check_light_receiver_internals
from sfu.compat.receiver import check_receiver_internals
from sfu.compat.remb import check_remb_internals
from sfu.compat.rtp_guard import check_rtp_guard_internals
from sfu.compat.sender import check_sender_internals
from sfu.compat.srtp import check_srtp_internals

AIORTC_VERSION = "1.16.0"

_R = "_RTCRtpReceiver__"


def check_internals() -> list[str]:
    """Return the names of missing or changed aiortc internals; empty when all are present."""
    problems: list[str] = []
    version = getattr(aiortc, "__version__", None)
    if version != AIORTC_VERSION:
        problems.append(f"aiortc.__version__ == {AIORTC_VERSION!r} (found {version!r})")
    for cls, names in (
        (
            RTCRtpReceiver,
            ("receive", "_handle_rtp_packet", "_run_rtcp", "_send_rtcp_pli", _R + "stop_decoder"),
        ),
        (
            RTCRtpSender,
            (
                "_send_keyframe",
                "_handle_rtcp_packet",
                "_next_encoded_frame",
                "_retransmit",
                "_run_rtp",
            ),
        ),
        (MediaRelay, ("subscribe", "_MediaRelay__run_track")),
        (RTCRtpTransceiver, ("_set_mid", "_set_mline_index", "_get_mline_index")),
    ):
        for name in names:
            if not callable(getattr(cls, name, None)):
                problems.append(f"{cls.__name__}.{name}")
    if problems:
        return problems
    try:
        receiver = RTCRtpReceiver("video", SimpleNamespace(state="new"))  # type: ignore[arg-type]
        attrs = vars(receiver)
        for name in (
            "jitter_buffer",
            "codecs",
            "rtx_ssrc",
            "started",
            "transport",
            "rtcp_task",
            "decoder_thread",
        ):
            if _R + name not in attrs:
                problems.append(f"RTCRtpReceiver.{_R}{name}")
        if "_track" not in attrs:
            problems.append("RTCRtpReceiver._track")
        problems += check_remb_internals(receiver)
        problems += check_light_receiver_internals(receiver)
        problems += check_lean_receiver_internals(receiver)
        problems += check_receiver_internals(receiver)
        problems += check_sender_internals(_probe_sender())
        proxy = RelayStreamTrack(MediaRelay(), AudioStreamTrack(), buffered=True)
        if not isinstance(getattr(proxy, "_queue", None), asyncio.Queue):
            problems.append("RelayStreamTrack._queue")
        if not isinstance(getattr(asyncio.Queue(), "_queue", None), deque):
            problems.append("asyncio.Queue._queue (a deque)")
        if getattr(proxy, "_buffered", None) is not True:
            problems.append("RelayStreamTrack._buffered")
        proxy = RelayStreamTrack(MediaRelay(), AudioStreamTrack(), buffered=False)
        if not isinstance(getattr(proxy, "_new_frame_event", None), asyncio.Event):
            problems.append("RelayStreamTrack._new_frame_event")
        if not hasattr(proxy, "_frame"):
            problems.append("RelayStreamTrack._frame")
    except Exception as exc:  # a changed constructor is a changed internal
        problems.append(f"constructing RTCRtpReceiver/RelayStreamTrack: {exc!r}")
    problems += source_has(
        RTCRtpReceiver._handle_rtp_packet,
        "packet._data =",
        "self.__jitter_buffer.add(packet)",
        "await self._send_rtcp_pli(packet.ssrc)",
        "encoded_frame is not None and self.__decoder_thread",
    )
    problems += source_has(
        RTCRtpReceiver.receive,
        "self.__codecs[codec.payloadType] = codec",
        "self.__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc",
        "self.__transport._register_rtp_receiver(self, parameters)",
        "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())",
        "self.__started = True",
    )
    problems += source_has(RTCRtpReceiver._handle_rtcp_packet, "self.__stop_decoder()")
    problems += source_has(RTCRtpSender._handle_rtcp_packet, "self._send_keyframe()")
    problems += source_has(
        RTCRtpSender._next_encoded_frame,
        "self.__encoder.pack(data)",
        "return RTCEncodedFrame(payloads, timestamp, audio_level)",
    )
    problems += source_has(
        RTCRtpSender._run_rtp,
        "enc_frame = await self._next_encoded_frame(codec)",
        "packet.extensions.audio_level = (False, -enc_frame.audio_level)",
    )
    problems += source_has(
        MediaRelay._MediaRelay__run_track,  # type: ignore[attr-defined]
        "proxy._queue.put_nowait(frame)",
    )
    problems += check_lean_sender_internals()
    problems += check_rtp_guard_internals()
    problems += check_fast_queue_internals()
    problems += check_srtp_internals()
    return problems
