"""`sfu/published_track.py`: the one object per published track (frames in, relay,
keyframe throttle with a fake clock, pause, closing tells the subscribers)."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamError

from sfu.frame_assembler import EncodedFrame
from sfu.published_track import PublishedTrack
from sfu.send_slot import SubscribedTrack
from tests.unit.fakes import FakeClock, FakeReceiver, vp8


def ef(ts: int, key: bool = False, data: bytes = b"abc", ssrc: int = 1) -> EncodedFrame:
    return EncodedFrame(data=data, timestamp=ts & 0xFFFFFFFF, keyframe=key, ssrc=ssrc)


async def test_published_track_pts_and_time_base() -> None:
    video = PublishedTrack("video", "camera", clock=lambda: 0.0)
    start = 0xFFFFFFFF - 3000  # wraps after the second frame
    for i in range(4):
        video.push(ef(start + 3000 * i, key=i == 0))
    async with asyncio.timeout(5):
        packets = [await video.recv() for _ in range(4)]
    assert [p.pts for p in packets] == [0, 3000, 6000, 9000]
    assert all(p.time_base == Fraction(1, 90000) for p in packets)
    assert [p.is_keyframe for p in packets] == [True, False, False, False]
    assert bytes(packets[0]) == b"abc"
    s = video.stats()
    assert (s.frames, s.keyframes, s.bytes, s.drops) == (4, 1, 12, 0)

    audio = PublishedTrack("audio", "microphone", clock=lambda: 0.0)
    audio.push(ef(5000, key=True))
    audio.push(ef(5960, key=True))
    audio.push(ef(100, key=True, ssrc=2))  # new SSRC: stays monotonic
    async with asyncio.timeout(5):
        packets = [await audio.recv() for _ in range(3)]
    assert [p.pts for p in packets] == [0, 960, 1920]
    assert packets[0].time_base == Fraction(1, 48000)


async def test_published_track_bounded_and_stop() -> None:
    asked: list[int] = []
    track = PublishedTrack(
        "video", maxsize=3, request_pli=lambda: asked.append(1) or True, clock=lambda: 0.0
    )
    track.push(ef(0, key=True))
    for i in range(1, 10):
        track.push(ef(3000 * i))
    assert track.stats().queued == 3 and track.stats().drops == 7 and asked
    track.push(ef(30000, key=True))  # still full: dropped
    assert track.stats().queued == 3
    async with asyncio.timeout(5):
        for _ in range(3):
            await track.recv()
        track.push(ef(33000))  # delta while waiting for a keyframe: dropped
        assert track.stats().queued == 0
        track.push(ef(36000, key=True))
        assert (await track.recv()).pts == 36000
        pending = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0.01)
        track.stop()
        with pytest.raises(MediaStreamError):
            await pending
    track.stop()  # idempotent
    track.push(ef(39000, key=True))  # ignored after stop
    assert track.stats().queued == 0 and track.stats().frames == 13
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_published_track_pause_resumes_at_keyframe() -> None:
    track = PublishedTrack("video", clock=lambda: 0.0)
    track.push(ef(0, key=True))
    track.paused = True
    track.push(ef(3000))
    track.paused = False
    track.push(ef(6000))
    track.push(ef(9000, key=True))
    async with asyncio.timeout(5):
        assert [(await track.recv()).pts for _ in range(2)] == [0, 9000]


def passthrough(clock: FakeClock, kind: Any = "video") -> tuple[PublishedTrack, FakeReceiver]:
    receiver = FakeReceiver()
    track = PublishedTrack.passthrough(
        receiver,  # type: ignore[arg-type]
        kind,
        "camera",
        publisher_id="p1",
        key="0",
        clock=clock,
        call_later=clock.call_later,
    )
    return track, receiver


async def test_identity_and_pts_follow_one_monotonic_clock() -> None:
    clock = FakeClock(2.0)
    video = PublishedTrack("video", "camera", publisher_id="p1", key="3", clock=clock)
    assert (video.publisher_id, video.key, video.kind, video.source) == (
        "p1",
        "3",
        "video",
        "camera",
    )
    assert video.mode == "passthrough"
    video.push(ef(123456, key=True))
    video.push(ef(123456 + 3000))
    async with asyncio.timeout(5):
        assert [(await video.recv()).pts for _ in range(2)] == [180000, 183000]
    # a later track starts where the clock is, past the first one's pts
    clock.advance(10.0)
    later = PublishedTrack("video", clock=clock)
    later.push(ef(5, key=True))
    async with asyncio.timeout(5):
        assert (await later.recv()).pts == 12 * 90000
    video.close()
    later.close()


async def test_assembler_keyframe_needs_go_through_the_one_throttle_counted() -> None:
    clock = FakeClock()
    track, receiver = passthrough(clock)
    assembler = track.hook.assembler if track.hook else None
    assert assembler is not None
    # deltas with no keyframe: the assembler needs one; aiortc gets no flag
    for i in range(60):
        pli, _ = assembler.add(vp8(i, i * 3000, b"\x11d", start=True, marker=True, ssrc=42))
        assert pli is False
    await asyncio.sleep(0)  # the PLI task runs
    stats = track.stats()
    assert stats.assembler is not None and stats.assembler.keyframes_needed == 2
    assert stats.assembler.deltas_dropped == 60
    # both needs reached the throttle; only one went upstream within the interval
    assert stats.keyframe_requests.asked == 2 and stats.keyframe_requests.sent == 1
    assert receiver.plis == [42]
    clock.advance(1.0)
    await asyncio.sleep(0)
    assert receiver.plis == [42, 42] and track.stats().keyframe_requests.sent == 2
    # a keyframe flows; subscribers, a subscriber PLI and a resume share the same throttle
    assembler.add(vp8(60, 60 * 3000, b"\x10k", start=True, marker=True, ssrc=42))
    assert track.stats().assembler.frames == 1  # type: ignore[union-attr]
    track.request_keyframe()
    track.paused = True
    track.paused = False
    assert track.stats().keyframe_requests.asked == 4
    assert len(clock.pending) == 1
    track.close()
    assert all(t.cancelled for t in clock.timers)


async def test_audio_and_transcode_never_ask_upstream() -> None:
    clock = FakeClock()
    audio, receiver = passthrough(clock, "audio")
    audio.request_keyframe()
    assert audio.stats().keyframe_requests.asked == 0 and receiver.plis == []
    audio.close()


async def test_drained_without_subscribers() -> None:
    track, _ = passthrough(FakeClock())
    for i in range(200):  # far more than the queue holds
        track.push(ef(3000 * i, key=i == 0))
        await asyncio.sleep(0)
    assert track.stats().queued <= 1 and track.stats().drops == 0
    track.close()


async def test_close_tells_subscribers_at_once_and_is_idempotent() -> None:
    track = PublishedTrack("video", clock=lambda: 0.0)
    subs = [SubscribedTrack("video") for _ in range(2)]
    told: list[int] = []
    for i, sub in enumerate(subs):
        sub.on_published_closed = lambda i=i: told.append(i)  # type: ignore[misc]
        sub.attach(track)
    assert track.stats().subscribers == 2
    async with asyncio.timeout(5):
        pending = asyncio.ensure_future(subs[0].recv())
        await asyncio.sleep(0.01)
        track.close()
        track.close()
        assert sorted(told) == [0, 1]
        assert all(s.published is None for s in subs)
        assert track.stats().subscribers == 0
        # the subscribed track stays live for its slot's next publisher
        assert not pending.done() and subs[0].readyState == "live"
        subs[0].stop()
        with pytest.raises(MediaStreamError):
            await pending
    with pytest.raises(RuntimeError):
        SubscribedTrack("video").attach(track)


async def test_audio_levels_reach_the_sink_unless_paused() -> None:
    track = PublishedTrack("audio", "microphone", publisher_id="p1")
    seen: list[tuple[str, int, bool]] = []
    track.level_sink = lambda *args: seen.append(args)
    track.push(EncodedFrame(b"o", 960, True, 1, (True, 30)))
    track.push(EncodedFrame(b"o", 1920, True, 1, None))  # no extension: no report
    track.paused = True
    track.push(EncodedFrame(b"o", 2880, True, 1, (False, 12)))
    assert seen == [("p1", 30, True)]
    assert track.audio_level == 12  # stats still see the last level
    track.close()
    assert track.level_sink is None
