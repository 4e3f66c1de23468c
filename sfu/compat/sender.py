"""Sender hooks: a subscriber's PLI/FIR and NACKs reach the SFU instead of a non-existent
encoder; its REMB and receiver reports feed the SFU's downlink estimate; a client's
pre-encoded audio carries an RFC 6464 level.
Per instance: no aiortc class or module global is patched.

aiortc private internals relied upon (pinned: aiortc==1.16.0; `check_sender_internals()`
verifies those of the feedback hook and `sender_octets`): the DTLS transport awaits
`recipient._handle_rtcp_packet(packet)` through the instance attribute for every sender its
router picks (RR/SR report blocks by SSRC, REMB by the SSRCs in its FCI); the sender's
`_ssrc`; the payload byte counter `_RTCRtpSender__octet_count` (kept by the stock and the
lean RTP loops alike)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from sfu.compat.introspect import source_has

logger = logging.getLogger(__name__)

_S = "_RTCRtpSender__"

#: `on_remb(bitrate, ssrcs)`: a REMB that names this sender's SSRC.
RembSink = Callable[[int, list[int]], None]
#: `on_report(fraction_lost, extended_highest_sequence, ssrc, cumulative_lost)`: a report
#: block about this sender's SSRC.
ReportSink = Callable[[int, int, int, int], None]


def install_sender_keyframe_hook(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Route the sender's incoming PLI/FIR to `callback` (replaces `_send_keyframe` on this
    instance only; installing again replaces the callback)."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def install_sender_nack_counter(
    sender: RTCRtpSender, callback: Callable[[int], bool | None]
) -> None:
    """Call `callback(sequence_number)` once per packet a subscriber NACKs (wraps
    `_retransmit` on this instance only; installing twice wraps twice, so install once per
    sender). When it returns False the packet is not retransmitted."""
    original = sender._retransmit

    async def retransmit(sequence_number: int) -> None:
        if callback(sequence_number) is False:
            return
        await original(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]


def install_sender_audio_level(sender: RTCRtpSender, level: Callable[[], int | None]) -> None:
    """Make the sender write an RFC 6464 audio level into every packet it sends for a
    pre-encoded frame (stock aiortc only computes one for the `AudioFrame`s it encodes).

    `level()` returns the current -dBov (0..127, 127 = silence) or None (no extension).
    Wraps `_next_encoded_frame` on this instance only and sets the `RTCEncodedFrame`'s
    `audio_level` (aiortc writes `(False, -audio_level)`); install once per sender."""
    original = sender._next_encoded_frame

    async def next_encoded_frame(codec: Any) -> Any:
        frame = await original(codec)
        if frame is not None and frame.audio_level is None:
            value = level()
            if value is not None:
                frame.audio_level = -min(max(int(value), 0), 127)
        return frame

    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]


def install_sender_feedback(sender: RTCRtpSender, on_remb: RembSink, on_report: ReportSink) -> None:
    """Hand the subscriber's REMB (when it names this sender's SSRC) and its receiver-report
    blocks about this sender (from RR and SR packets) to the callbacks, then let aiortc
    handle the packet as before (RTT, stats). Wraps `_handle_rtcp_packet` on this instance
    only; install once per sender. Per RTCP packet, never per RTP packet; a failing
    callback is logged, never breaks the sender's RTCP handling."""
    original = sender._handle_rtcp_packet

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        try:
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                ssrc = sender._ssrc
                for report in packet.reports:
                    if report.ssrc == ssrc:
                        on_report(
                            report.fraction_lost, report.highest_sequence, ssrc, report.packets_lost
                        )
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass  # an APP message that is not a REMB
                else:
                    if sender._ssrc in ssrcs:
                        on_remb(bitrate, ssrcs)
        except Exception:
            logger.exception("sender feedback hook failed")
        await original(packet)

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def sender_octets(sender: Any) -> int:
    """Payload bytes the sender has sent so far (0 for an object that is no sender)."""
    value = getattr(sender, _S + "octet_count", 0)
    return value if isinstance(value, int) else 0


def sender_rtt(sender: Any) -> float | None:
    """The round-trip time (s) aiortc measured from the subscriber's reports about the
    sender's stream (smoothed), None before the first or for an object that is no sender."""
    value = getattr(sender, _S + "rtt", None)
    return value if isinstance(value, float) else None


def check_sender_internals(probe: RTCRtpSender) -> list[str]:
    """The internals `install_sender_feedback`, `sender_octets` and `sender_rtt` rely on
    that are missing or changed (`probe`: a fresh sender); empty when all are present."""
    problems: list[str] = []
    attrs = vars(probe)
    if not isinstance(attrs.get(_S + "octet_count"), int):
        problems.append(f"RTCRtpSender.{_S}octet_count")
    if _S + "rtt" not in attrs:
        problems.append(f"RTCRtpSender.{_S}rtt")
    if not isinstance(attrs.get("_ssrc"), int):
        problems.append("RTCRtpSender._ssrc")
    problems += source_has(
        RTCRtpSender._handle_rtcp_packet,
        "isinstance(packet, (RtcpRrPacket, RtcpSrPacket))",
        "filter(lambda x: x.ssrc == self._ssrc, packet.reports)",
        "unpack_remb_fci(packet.fci)",
    )
    problems += source_has(
        RtpRouter.route_rtcp,
        "add_recipient(self.senders.get(report.ssrc))",
        "rtp.unpack_remb_fci(packet.fci)[1]",
    )
    problems += source_has(
        RTCDtlsTransport._handle_rtcp_data, "await recipient._handle_rtcp_packet(packet)"
    )
    return problems
