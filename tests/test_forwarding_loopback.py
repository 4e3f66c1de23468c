"""End to end over loopback: publisher pc -> server (PublishedTrack) -> subscriber pc.

Two in-process peer connection pairs on 127.0.0.1: the publisher sends VP8 video and Opus
audio to the server's receiving pc; the server forwards each track through a `SendSlot`
(its `SubscribedTrack`) on a second pc to a subscriber that decodes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame

from sfu.config import SendPath
from sfu.published_track import PublishedTrack
from sfu.send_slot import SendSlot, SubscribedTrack
from tests import loopback
from tests.loopback import Consumer, negotiate, new_pc, prefer

WAIT = 20.0


# the server runs in another process (or not at all): this one's aiortc needs the policy
pytestmark = pytest.mark.usefixtures("loopback_ice")


class PatternTrack(VideoStreamTrack):
    """320x240 frames whose luma changes every frame (paced by VideoStreamTrack)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=320, height=240)
        for i, plane in enumerate(frame.planes):
            value = (self.count * 7) % 256 if i == 0 else 128
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


def decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


async def wait_until(pred: Any) -> None:
    await loopback.wait_until(pred, WAIT)


@pytest.mark.parametrize(
    ("mode", "send_path"),
    [("passthrough", "lean"), ("passthrough", "stock"), ("transcode", "stock")],
)
async def test_forwarding_loopback(
    mode: str, send_path: SendPath, pcs: list[RTCPeerConnection]
) -> None:
    threads_before = len(decoder_threads())
    publisher, server_in, server_out, subscriber = new_pc(), new_pc(), new_pc(), new_pc()
    pcs.extend([publisher, server_in, server_out, subscriber])

    # publisher -> server_in
    video_source, audio_source = PatternTrack(), AudioStreamTrack()
    prefer(publisher.addTransceiver(video_source, direction="sendonly"), "video/VP8")
    prefer(publisher.addTransceiver(audio_source, direction="sendonly"), "audio/opus")
    published: dict[str, PublishedTrack] = {}
    receivers: dict[str, RTCRtpReceiver] = {}

    @server_in.on("track")
    def on_track(track: Any) -> None:
        transceiver = next(t for t in server_in.getTransceivers() if t.receiver.track is track)
        receivers[track.kind] = transceiver.receiver
        if mode == "passthrough":
            published[track.kind] = PublishedTrack.passthrough(
                transceiver.receiver, track.kind, "camera" if track.kind == "video" else "mic"
            )
        else:
            published[track.kind] = PublishedTrack.transcode(track)

    async with asyncio.timeout(WAIT):
        await negotiate(publisher, server_in)
    assert set(published) == {"video", "audio"}
    video_pub, audio_pub = published["video"], published["audio"]

    if mode == "passthrough":
        hook = video_pub.hook
        assert hook is not None
        # frames flow before anyone subscribes (drained, bounded)
        await wait_until(lambda: hook.stats().frames >= 10)
        assert hook.stats().keyframes >= 1
        # receive-side bandwidth estimation runs once per interval and REMB goes out
        estimator = hook.estimator
        assert estimator is not None
        await wait_until(lambda: estimator.remb_sent >= 1)
        assert estimator.packets > estimator.updates > 0

    # server_out -> subscriber, subscribing mid-stream
    subscribed: dict[str, SubscribedTrack] = {}
    slots: dict[str, SendSlot] = {}
    freed: list[SendSlot] = []
    for kind, pub in published.items():
        track = SubscribedTrack(kind, base_pts=0)
        subscribed[kind] = track
        transceiver = server_out.addTransceiver(track, direction="sendonly")
        prefer(transceiver, "video/VP8" if kind == "video" else "audio/opus")
        slots[kind] = SendSlot(transceiver, track, freed.append, send_path=send_path)
        slots[kind].attach(pub)

    first_keyframe: list[bool] = []
    if mode == "passthrough":
        # every packet the track lets through (the sender's task or the push path) gets
        # its pts set here
        video_sub = subscribed["video"]
        original_with_pts = video_sub._with_pts

        def spy_with_pts(packet: Any) -> Any:
            first_keyframe.append(bool(packet.is_keyframe))
            return original_with_pts(packet)

        video_sub._with_pts = spy_with_pts  # type: ignore[method-assign]

    consumers: dict[str, Consumer] = {}
    subscriber.on("track", lambda track: consumers.__setitem__(track.kind, Consumer(track)))
    async with asyncio.timeout(WAIT):
        await negotiate(server_out, subscriber)

    await wait_until(lambda: len(consumers) == 2)
    await wait_until(lambda: consumers["video"].count >= 15)
    await wait_until(lambda: consumers["audio"].count >= 25)
    frame = consumers["video"].last
    assert (frame.width, frame.height) == (320, 240)

    if mode == "passthrough":
        # the first forwarded video packet was a keyframe, and the server never decoded
        assert first_keyframe[0] is True
        assert video_pub.stats().keyframe_requests.sent >= 1
        assert subscribed["video"].stats().keyframes_waited == 1
        assert subscribed["video"].stats().frames_out >= 15
        assert subscribed["audio"].stats().frames_out >= 25
        # one monotonic pts clock: no packet was copied to rewrite its pts
        assert subscribed["video"].stats().copied == 0
        for receiver in receivers.values():
            assert receiver._RTCRtpReceiver__decoder_thread is None  # type: ignore[attr-defined]
        # only the subscriber's two receivers decode
        assert len(decoder_threads()) - threads_before == 2
        frames_in = video_pub.stats().frames
        assert frames_in >= subscribed["video"].stats().frames_out > 0
        assert audio_pub.stats().frames > 0
        for slot in slots.values():
            stats = slot.stats()
            assert stats.send_path == send_path
            if send_path == "lean":
                # the subscriber decoded what the lean path sent straight to the ICE pair
                assert slot.lean is not None and stats.packets_lean > 0
                # ... most frames inside the relay's fan-out (the push path); the first
                # ones may go through the sender's task (before DTLS was connected)
                assert 0 < stats.frames_pushed <= stats.track.frames_out
                # the published track's time base: the sender's promise held
                assert slot.lean.pts_in_clock_rate is True
            else:
                assert slot.lean is None and stats.packets_lean == 0
    else:
        assert len(decoder_threads()) - threads_before == 4

    # closing the slot ends the subscriber's stream for that track; close is idempotent
    slots["video"].close()
    assert subscribed["video"].readyState == "ended"
    for pub in published.values():
        pub.close()
        pub.close()
    # the publisher closing frees the subscriber's slot at once (its track waits for reuse)
    assert freed == [slots["audio"]] and slots["audio"].published is None
    assert subscribed["audio"].readyState == "live"
    slots["audio"].close()
    assert subscribed["audio"].readyState == "ended"
