"""The subscriber feedback path into the downlink estimate: the sender's RTCP hook, a send
slot feeding its participant's estimate, and the receiver's NACK/RTX counters."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    pack_remb_fci,
)

from sfu.compat.receiver import install_receiver_sink, rtx_packets_received
from sfu.compat.sender import install_sender_feedback, sender_octets, sender_rtt
from sfu.downlink import DownlinkEstimate
from sfu.send_slot import SendSlot, SubscribedTrack
from tests.unit.fakes import FakeClock


def _sender() -> RTCRtpSender:
    transport = SimpleNamespace(state="new", _stats_id="transport_1")
    return RTCRtpSender("video", transport)  # type: ignore[arg-type]


def _report(ssrc: int, fraction_lost: int, highest: int, lost: int = 0) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=ssrc,
        fraction_lost=fraction_lost,
        packets_lost=lost,
        highest_sequence=highest,
        jitter=0,
        lsr=0,
        dlsr=0,
    )


def _remb(bitrate: int, ssrcs: list[int]) -> RtcpPsfbPacket:
    return RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)
    )


async def test_sender_feedback_hook_reports_own_blocks_and_rembs_then_runs_aiortc() -> None:
    sender = _sender()
    rembs: list[tuple[int, list[int]]] = []
    reports: list[tuple[int, int, int, int]] = []
    keyframes: list[bool] = []
    sender._send_keyframe = lambda: keyframes.append(True)  # type: ignore[method-assign]
    install_sender_feedback(sender, lambda b, s: rembs.append((b, s)), lambda *r: reports.append(r))
    ssrc = sender._ssrc
    await sender._handle_rtcp_packet(
        RtcpRrPacket(ssrc=9, reports=[_report(ssrc + 1, 200, 5), _report(ssrc, 26, 1234, -3)])
    )
    await sender._handle_rtcp_packet(_remb(300_000, [ssrc, 77]))
    await sender._handle_rtcp_packet(_remb(100_000, [78]))  # not about this sender
    await sender._handle_rtcp_packet(
        RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"nope")
    )
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=ssrc))
    assert reports == [(26, 1234, ssrc, -3)]  # the cumulative count, signed
    assert len(rembs) == 1 and rembs[0][1] == [ssrc, 77]
    assert abs(rembs[0][0] - 300_000) < 300_000 / 1000  # REMB's mantissa/exponent rounding
    assert keyframes == [True]  # aiortc's own handling still runs
    assert sender_octets(sender) == 0
    assert sender_octets(object()) == 0
    assert sender_rtt(sender) is None and sender_rtt(object()) is None  # no SR answered yet
    setattr(sender, "_RTCRtpSender__rtt", 0.25)  # noqa: B010  what aiortc's RR handling sets
    assert sender_rtt(sender) == 0.25


async def test_a_failing_feedback_callback_does_not_break_rtcp_handling() -> None:
    sender = _sender()
    keyframes: list[bool] = []
    sender._send_keyframe = lambda: keyframes.append(True)  # type: ignore[method-assign]

    def boom(*_: Any) -> None:
        raise RuntimeError("boom")

    install_sender_feedback(sender, boom, boom)
    await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=9, reports=[_report(sender._ssrc, 1, 2)]))
    await sender._handle_rtcp_packet(
        RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
    )
    assert keyframes == [True]


async def test_send_slots_feed_their_participants_shared_estimate() -> None:
    clock = FakeClock()
    slots: list[SendSlot] = []
    # what the participant gives its estimate: the payload bytes of all its slots
    downlink = DownlinkEstimate(clock=clock, sent_bytes=lambda: sum(s.octets_sent() for s in slots))
    senders = [_sender(), _sender()]
    slots += [
        SendSlot(
            SimpleNamespace(sender=s, direction="inactive", mid=str(i)),  # type: ignore[arg-type]
            SubscribedTrack("video"),
            downlink=downlink,
        )
        for i, s in enumerate(senders)
    ]
    for s in senders:
        await s._handle_rtcp_packet(RtcpRrPacket(ssrc=9, reports=[_report(s._ssrc, 0, 100)]))
    clock.advance(1.0)
    for s in senders:
        # what the RTP loop counts: 75 kB of payload per stream this second
        setattr(s, "_RTCRtpSender__octet_count", 75_000)  # noqa: B010
    for s in senders:
        await s._handle_rtcp_packet(
            RtcpRrPacket(ssrc=9, reports=[_report(s._ssrc, 128, 200, lost=50)])
        )
    await senders[0]._handle_rtcp_packet(_remb(2_000_000, [s._ssrc for s in senders]))
    await senders[1]._handle_rtcp_packet(_remb(2_000_000, [s._ssrc for s in senders]))
    await senders[0]._retransmit(5)  # a NACKed packet (not in the history: nothing sent)
    stats = downlink.stats()
    assert stats.reports == 4 and stats.nacks == 1
    assert stats.sent_bitrate == 1_200_000  # 150 kB over the 1 s round
    # the round ended at the first stream's report: 100 packets, half lost
    assert stats.loss is not None and abs(stats.loss - 0.5) < 0.01
    assert stats.bitrate is not None and stats.bitrate < 1_200_000  # cut by the loss
    assert stats.remb is not None and abs(stats.remb - 2_000_000) < 2000  # one set, not summed
    assert [slot.octets_sent() for slot in slots] == [75_000, 75_000]
    slot_stats = slots[0].stats()
    assert (slot_stats.loss, slot_stats.reports, slot_stats.rembs, slot_stats.nacks) == (
        0.5,
        2,
        1,
        1,
    )


async def test_receiver_counts_nacks_sent_and_rtx_received() -> None:
    receiver = RTCRtpReceiver("video", SimpleNamespace(state="new"))  # type: ignore[arg-type]
    sent: list[tuple[int, list[int]]] = []

    async def send_rtcp(packet: Any) -> None:
        sent.append((packet.media_ssrc, packet.lost))

    receiver._send_rtcp = send_rtcp  # type: ignore[method-assign]
    setattr(receiver, "_RTCRtpReceiver__rtcp_ssrc", 1)  # noqa: B010
    hook = install_receiver_sink(receiver, "video", lambda frame: None)
    await receiver._send_rtcp_nack(42, [1, 2, 3])
    await receiver._send_rtcp_nack(42, [3])
    assert (hook.nacks_sent, hook.nacked_packets) == (2, 4)
    assert sent == [(42, [1, 2, 3]), (42, [3])]  # still sent as before
    assert hook.rtx_received() == 0
    rtx = StreamStatistics(90000)
    rtx.packets_received = 7
    internals: dict[str, Any] = vars(receiver)
    internals["_RTCRtpReceiver__rtx_ssrc"][5] = 42
    internals["_RTCRtpReceiver__remote_streams"][5] = rtx
    assert hook.rtx_received() == 7
    assert rtx_packets_received(object()) == 0
