"""Downlink feedback and the publisher cap over real aiortc peers on 127.0.0.1.

publisher pc -> server_in (passthrough `PublishedTrack`) ; server_out -> subscriber pc
through a `SendSlot` fed into a `DownlinkEstimate`. The subscriber's receiver reports and
REMB reach the estimate; a cap on the published track makes the REMB that reaches the
publisher's sender drop to the cap.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import VideoStreamTrack
from av import VideoFrame

from sfu.compat.sender import install_sender_feedback
from sfu.downlink import DownlinkEstimate
from sfu.published_track import PublishedTrack
from sfu.send_slot import SendSlot, SubscribedTrack
from tests import loopback
from tests.loopback import Consumer, negotiate, new_pc, prefer

WAIT = 20.0
CAP = 200_000

pytestmark = pytest.mark.usefixtures("loopback_ice")


class NoiseTrack(VideoStreamTrack):
    """320x240 frames of random luma: the encoder needs its whole target bitrate, so the
    server's REMB estimate grows well above the cap."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=320, height=240)
        for i, plane in enumerate(frame.planes):
            size = plane.buffer_size
            plane.update(os.urandom(size) if i == 0 else bytes([128]) * size)
        frame.pts, frame.time_base = pts, time_base
        return frame


async def wait_until(pred: Any) -> None:
    await loopback.wait_until(pred, WAIT)


async def test_feedback_reaches_the_estimate_and_a_cap_reaches_the_publisher(
    pcs: list[RTCPeerConnection],
) -> None:
    publisher, server_in, server_out, subscriber = new_pc(), new_pc(), new_pc(), new_pc()
    pcs.extend([publisher, server_in, server_out, subscriber])
    sender = publisher.addTransceiver(NoiseTrack(), direction="sendonly")
    prefer(sender, "video/VP8")
    # what the publisher hears: every REMB about its video
    rembs: list[int] = []
    install_sender_feedback(sender.sender, lambda bps, _: rembs.append(bps), lambda *_: None)
    published: list[PublishedTrack] = []

    @server_in.on("track")
    def on_track(track: Any) -> None:
        transceiver = next(t for t in server_in.getTransceivers() if t.receiver.track is track)
        published.append(PublishedTrack.passthrough(transceiver.receiver, "video", "camera"))

    async with asyncio.timeout(WAIT):
        await negotiate(publisher, server_in)
    [pub] = published

    slots: list[SendSlot] = []
    downlink = DownlinkEstimate(sent_bytes=lambda: sum(s.octets_sent() for s in slots))
    track = SubscribedTrack("video")
    transceiver = server_out.addTransceiver(track, direction="sendonly")
    prefer(transceiver, "video/VP8")
    slot = SendSlot(transceiver, track, send_path="lean", downlink=downlink)
    slots.append(slot)
    slot.attach(pub)
    consumers: list[Consumer] = []
    subscriber.on("track", lambda t: consumers.append(Consumer(t)))
    async with asyncio.timeout(WAIT):
        await negotiate(server_out, subscriber)
    await wait_until(lambda: bool(consumers) and consumers[0].count >= 10)

    # the subscriber's receiver reports (and, once its rate control runs, REMB) arrive
    await wait_until(
        lambda: downlink.reports >= 3 and downlink.rembs >= 1 and downlink.stats().loss is not None
    )
    stats = downlink.stats()
    assert slot.stats().reports >= 2 and slot.stats().rembs >= 1
    assert stats.loss is not None and 0 <= stats.loss <= 1
    assert stats.remb is not None and stats.remb > 0
    assert stats.sent_bitrate > 0  # the payload sent over the round, read from the sender
    # loopback is not congested: the REMB limits nothing (a loaded machine may lose a few
    # datagrams, which the loss-based rate alone would answer)
    assert stats.bitrate is None or stats.bitrate == stats.loss_bitrate

    # cap the publisher: the REMB the server sends it drops to the cap
    # the server's rate control warms up (3 s), then estimates what the publisher sends
    await wait_until(lambda: any(bps > CAP for bps in rembs))
    heard = len(rembs)
    pub.cap_bitrate(CAP)
    await wait_until(lambda: any(bps <= CAP for bps in rembs[heard:]))
    capped_from = len(rembs)
    await wait_until(lambda: len(rembs) >= capped_from + 2)
    assert all(bps <= CAP for bps in rembs[capped_from:])
    hook = pub.hook
    assert hook is not None and hook.estimator is not None and hook.estimator.capped > 0
    # lifted: the estimate goes out again
    pub.cap_bitrate(None)
    lifted_from = len(rembs)
    await wait_until(lambda: any(bps > CAP for bps in rembs[lifted_from:]))
    slot.close()
    pub.close()
