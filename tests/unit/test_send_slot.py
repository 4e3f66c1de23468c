"""`sfu/send_slot.py`: the send slot and the one track its sender reads (keyframe gate,
pts that never go backwards without copying in steady state, publisher close)."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamError

from sfu.allocator import SubscriberAllocator
from sfu.downlink import RETRANSMISSION_SIZE
from sfu.frame_assembler import EncodedFrame
from sfu.published_track import PublishedTrack
from sfu.resend_gate import MAX_RESENDS
from sfu.send_slot import SendSlot, SubscribedTrack
from tests.unit.fakes import FakeClock


def ef(ts: int, key: bool = False, data: bytes = b"abc", ssrc: int = 1) -> EncodedFrame:
    return EncodedFrame(data=data, timestamp=ts & 0xFFFFFFFF, keyframe=key, ssrc=ssrc)


async def test_subscribed_track_gating_and_rebasing() -> None:
    asked: list[int] = []
    # no throttle interval: every ask of the subscribed track reaches `request_pli`
    published = PublishedTrack(
        "video", request_pli=lambda: asked.append(1) or True, keyframe_interval=0, clock=lambda: 0.0
    )
    sub = SubscribedTrack("video", base_pts=90000, maxsize=4)
    sub.attach(published)
    assert sub.waiting_keyframe
    async with asyncio.timeout(5):
        pending = asyncio.ensure_future(sub.recv())
        await asyncio.sleep(0)
        assert asked  # asks for a keyframe as soon as it is read
        published.push(ef(1000, data=b"d1"))
        published.push(ef(4000, data=b"d2"))
        published.push(ef(7000, key=True, data=b"k1"))
        published.push(ef(10000, data=b"d3"))
        first = await pending
        assert bytes(first) == b"k1" and first.is_keyframe
        assert first.pts == 90000 and first.time_base == Fraction(1, 90000)
        second = await sub.recv()
        assert bytes(second) == b"d3" and second.pts == 93000
    assert sub.last_pts == 93000
    s = sub.stats()
    assert (s.frames_out, s.bytes_out, s.dropped, s.keyframes_waited) == (2, 4, 2, 1)
    assert len(asked) == 3  # on first read and for each dropped delta

    # an overflow of the proxy queue: gate again until the next keyframe
    for i in range(10):
        published.push(ef(13000 + 3000 * i))
    await asyncio.sleep(0.05)
    assert sub.waiting_keyframe and sub.stats().keyframes_waited == 2
    published.push(ef(50000, key=True, data=b"k2"))
    async with asyncio.timeout(5):
        got = await sub.recv()
    assert bytes(got) == b"k2" and got.pts == 90000 + 50000 - 7000
    # the shared relay packet was not modified
    assert published.stats().frames == 15

    sub.stop()
    with pytest.raises(MediaStreamError):
        await sub.recv()
    published.stop()


async def test_subscribed_track_stop_wakes_pending_recv_and_audio_not_gated() -> None:
    published = PublishedTrack("audio", clock=lambda: 0.0)
    sub = SubscribedTrack("audio", base_pts=0)
    sub.attach(published)
    assert not sub.waiting_keyframe
    async with asyncio.timeout(5):
        pending = asyncio.ensure_future(sub.recv())
        await asyncio.sleep(0)
        published.push(ef(480, key=True))
        packet = await pending
        assert packet.pts == 0
        pending = asyncio.ensure_future(sub.recv())
        await asyncio.sleep(0.01)
        sub.stop()
        with pytest.raises(MediaStreamError):
            await pending
    published.stop()


async def read(sub: SubscribedTrack, n: int) -> list[Any]:
    async with asyncio.timeout(5):
        return [await sub.recv() for _ in range(n)]


async def attach_and_read(
    sub: SubscribedTrack, published: PublishedTrack, n: int
) -> asyncio.Future[list[Any]]:
    """Attach ``sub`` to ``published`` and start reading ``n`` packets: on return the read
    waits for them."""
    sub.attach(published)
    pending = asyncio.ensure_future(read(sub, n))
    await asyncio.sleep(0)
    return pending


async def test_reused_track_keeps_pts_monotonic_without_copies_in_steady_state() -> None:
    clock = FakeClock(10.0)
    first = PublishedTrack("video", clock=clock)
    sub = SubscribedTrack("video")
    pending = await attach_and_read(sub, first, 3)
    for i in range(3):
        first.push(ef(777 + 3000 * i, key=i == 0))
    packets = await pending
    assert [p.pts for p in packets] == [900000, 903000, 906000]
    first.close()
    # the next publisher of the slot starts later on the same clock: no copy, no offset
    clock.advance(5.0)
    second = PublishedTrack("video", clock=clock)
    pending = await attach_and_read(sub, second, 2)
    second.push(ef(5, key=True))
    second.push(ef(3005))
    packets = await pending
    assert [p.pts for p in packets] == [15 * 90000, 15 * 90000 + 3000]
    assert sub.stats().copied == 0 and sub.last_pts == 15 * 90000 + 3000
    second.close()


async def test_reused_track_offsets_only_when_pts_would_go_backwards() -> None:
    clock = FakeClock(10.0)
    first = PublishedTrack("video", clock=clock)
    sub = SubscribedTrack("video")
    pending = await attach_and_read(sub, first, 2)
    first.push(ef(0, key=True))
    first.push(ef(90000 * 20))  # the publisher's clock ran 20 s ahead of ours
    await pending
    first.close()
    second = PublishedTrack("video", clock=clock)
    pending = await attach_and_read(sub, second, 2)
    second.push(ef(0, key=True, data=b"k"))
    second.push(ef(3000, data=b"d"))
    packets = await pending
    floor = 900000 + 90000 * 20 + 3000
    assert [p.pts for p in packets] == [floor, floor + 3000]
    assert [bytes(p) for p in packets] == [b"k", b"d"]
    assert sub.stats().copied == 2
    second.close()


async def test_paused_published_track_is_dropped_by_every_reader() -> None:
    published = PublishedTrack("audio", clock=lambda: 0.0)
    sub = SubscribedTrack("audio")
    pending = await attach_and_read(sub, published, 1)
    published.push(ef(0, key=True, data=b"a"))
    [packet] = await pending
    assert bytes(packet) == b"a"
    published.paused = True
    published.push(ef(960, key=True, data=b"b"))  # dropped at the source
    await asyncio.sleep(0.01)
    published.paused = False
    published.push(ef(1920, key=True, data=b"c"))
    [packet] = await read(sub, 1)
    assert bytes(packet) == b"c" and published.stats().drops == 1
    # relayed before the pause, read during it: the reader drops it
    published.push(ef(2880, key=True, data=b"x"))
    await asyncio.sleep(0.01)
    published.paused = True
    pending = asyncio.ensure_future(read(sub, 1))
    await asyncio.sleep(0.01)
    assert not pending.done() and sub.stats().dropped == 1
    published.paused = False
    published.push(ef(3840, key=True, data=b"y"))
    [packet] = await pending
    assert bytes(packet) == b"y"
    published.close()


def fake_transceiver() -> Any:
    async def retransmit(sequence_number: int) -> None:
        pass

    sender = SimpleNamespace(_retransmit=retransmit, _send_keyframe=None)
    return SimpleNamespace(sender=sender, direction="sendonly", mid="4", kind="video")


def recording_transceiver() -> tuple[Any, list[int]]:
    """A `fake_transceiver` whose sender records the sequence numbers it resends."""
    resent: list[int] = []

    async def retransmit(sequence_number: int) -> None:
        resent.append(sequence_number)

    transceiver = fake_transceiver()
    transceiver.sender._retransmit = retransmit
    return transceiver, resent


async def test_send_slot_counts_plis_asks_the_published_track_and_hears_its_close() -> None:
    clock = FakeClock()
    sent: list[int] = []
    published = PublishedTrack(
        "video",
        request_pli=lambda: sent.append(1) or True,
        clock=clock,
        call_later=clock.call_later,
    )
    freed: list[SendSlot] = []
    transceiver = fake_transceiver()
    slot = SendSlot(transceiver, SubscribedTrack("video"), freed.append)
    slot.attach(published)
    assert slot.published is published and transceiver.direction == "sendonly"
    transceiver.sender._send_keyframe()  # the subscriber's PLI
    transceiver.sender._send_keyframe()
    await transceiver.sender._retransmit(7)  # the subscriber's NACK
    stats = slot.stats()
    assert (stats.plis, stats.nacks) == (2, 1)
    assert sent == [1] and published.stats().keyframe_requests.asked == 2
    published.close()
    # producer close -> the slot releases at once and tells its owner
    assert freed == [slot] and slot.published is None
    assert transceiver.direction == "inactive" and slot.track.readyState == "live"
    transceiver.sender._send_keyframe()  # nothing to ask any more
    assert slot.stats().plis == 3
    slot.close()
    slot.close()
    assert slot.track.readyState == "ended"


async def test_a_repeated_nack_within_a_round_trip_is_not_resent() -> None:
    transceiver, resent = recording_transceiver()
    slot = SendSlot(transceiver, SubscribedTrack("video"))
    clock = FakeClock()
    slot._clock = clock
    await transceiver.sender._retransmit(7)
    await transceiver.sender._retransmit(8)
    await transceiver.sender._retransmit(7)  # repeated at once: crossed the resend
    clock.advance(1.0)
    await transceiver.sender._retransmit(7)  # a second later: the resend was lost
    assert resent == [7, 8, 7]
    stats = slot.stats()
    assert (stats.nacks, stats.retransmits_repeated, stats.retransmits_skipped) == (4, 1, 0)
    slot.close()


async def test_a_packet_asked_for_again_and_again_asks_the_publisher_for_a_keyframe() -> None:
    clock = FakeClock()
    asked: list[int] = []
    published = PublishedTrack(
        "video",
        request_pli=lambda: asked.append(1) or True,
        keyframe_interval=0,
        clock=clock,
        call_later=clock.call_later,
    )
    transceiver = fake_transceiver()
    slot = SendSlot(transceiver, SubscribedTrack("video"))
    slot.attach(published)
    slot._clock = clock
    for _ in range(MAX_RESENDS + 4):
        await transceiver.sender._retransmit(11)
        clock.advance(0.1)
    assert slot.stats().keyframes_for_losses == 1
    assert published.stats().keyframe_requests.asked == 1
    slot.close()
    published.close()


async def test_retransmissions_are_queued_in_the_link_queue_never_refused_for_room() -> None:
    transceiver, resent = recording_transceiver()
    track = SubscribedTrack("video")
    clock = FakeClock()
    allocator = SubscriberAllocator(lambda: 450_000, clock=clock)
    allocator.allocate()  # drains about 47.6 kB/s: a 12 kB queue
    track.set_allocator(allocator)
    slot = SendSlot(transceiver, track)
    for seq in range(20):
        await transceiver.sender._retransmit(seq)
    assert resent == list(range(20)) and slot.stats().retransmits_skipped == 0
    # queued: 24 kB, of which the model keeps what its 12 kB queue holds
    assert allocator.queued() == pytest.approx(min(20 * RETRANSMISSION_SIZE, 11_905), abs=1)
    assert not allocator.admit(750, 2)  # upper-layer frames make room for them
    slot.close()


async def test_publisher_stream_end_idles_the_track_until_its_slot_switches() -> None:
    first = PublishedTrack("audio", clock=lambda: 0.0)
    sub = SubscribedTrack("audio")
    sub.attach(first)
    pending = asyncio.ensure_future(read(sub, 1))
    await asyncio.sleep(0.01)
    first.source_ended()  # what the receiver hook calls on BYE / receiver stop
    await asyncio.sleep(0.01)
    # the sender's read neither fails (that would end aiortc's sender loop) nor returns
    assert not pending.done() and sub.readyState == "live"
    assert sub.published is first  # released only by its slot (room change or close)
    second = PublishedTrack("audio", clock=lambda: 1.0)
    sub.attach(second)
    second.push(ef(0, key=True, data=b"n"))
    [packet] = await pending
    assert bytes(packet) == b"n" and packet.pts == 48000
    first.close()
    second.close()
    sub.stop()


async def test_viewer_pause_drops_video_and_resumes_at_a_keyframe_it_asks_for() -> None:
    asked: list[int] = []
    published = PublishedTrack(
        "video", request_pli=lambda: asked.append(1) or True, keyframe_interval=0, clock=lambda: 0.0
    )
    transceiver = fake_transceiver()
    states: list[str] = []
    slot = SendSlot(transceiver, SubscribedTrack("video"))
    slot.on_video_state = states.append
    slot.attach(published)
    sub = slot.track
    pending = await attach_and_read(sub, published, 1)
    published.push(ef(0, key=True, data=b"k0"))
    [packet] = await pending
    assert bytes(packet) == b"k0" and not sub.waiting_keyframe

    assert slot.set_viewer_paused(True) and sub.viewer_paused
    assert not slot.set_viewer_paused(True)  # no change, no event
    assert states == ["paused-viewer"] and slot.video_state() == "paused-viewer"
    pending = asyncio.ensure_future(read(sub, 1))
    published.push(ef(3000, key=True, data=b"k1"))  # even keyframes: nothing is sent
    published.push(ef(6000, data=b"d1"))
    await asyncio.sleep(0.01)
    assert not pending.done()
    stats = sub.stats()
    assert (stats.viewer_dropped, stats.dropped, stats.frames_out) == (2, 2, 1)

    asked.clear()
    assert slot.set_viewer_paused(False) and not sub.viewer_paused
    assert states == ["paused-viewer", "active"]
    assert sub.waiting_keyframe and asked == [1]  # asked at once
    published.push(ef(9000, data=b"d2"))  # a delta first: still dropped, asked again
    published.push(ef(12000, key=True, data=b"k2"))
    [packet] = await pending
    assert bytes(packet) == b"k2" and packet.is_keyframe
    assert len(asked) >= 2 and sub.stats().keyframes_waited == 2  # at attach, at resume
    published.close()
    slot.close()


async def test_viewer_pause_is_video_only_and_a_new_subscription_starts_unpaused() -> None:
    audio = SubscribedTrack("audio")
    with pytest.raises(ValueError, match="only a video"):
        audio.set_viewer_paused(True)
    assert not audio.viewer_paused
    first = PublishedTrack("video", clock=lambda: 0.0)
    second = PublishedTrack("video", clock=lambda: 0.0)
    sub = SubscribedTrack("video")
    sub.attach(first)
    sub.set_viewer_paused(True)
    sub.attach(second)  # the slot is reused for another publisher
    assert not sub.viewer_paused
    first.close()
    second.close()
    sub.stop()


async def test_a_video_paused_before_its_first_keyframe_asks_for_none_until_resumed() -> None:
    asked: list[int] = []
    published = PublishedTrack(
        "video", request_pli=lambda: asked.append(1) or True, keyframe_interval=0, clock=lambda: 0.0
    )
    sub = SubscribedTrack("video")
    sub.attach(published)
    sub.set_viewer_paused(True)
    pending = asyncio.ensure_future(read(sub, 1))
    published.push(ef(0, data=b"d0"))
    published.push(ef(3000, key=True, data=b"k0"))
    await asyncio.sleep(0.01)
    assert not pending.done() and asked == [] and sub.stats().viewer_dropped == 2
    sub.set_viewer_paused(False)
    assert asked
    published.push(ef(6000, key=True, data=b"k1"))
    [packet] = await pending
    assert bytes(packet) == b"k1"
    published.close()
    sub.stop()


class FakeSink:
    """A lean sender's `FrameSink` stand-in: `route()` answers `ready`, `send` records."""

    def __init__(self) -> None:
        self.ready = True
        self.fail = False
        self.sent: list[Any] = []

    def route(self) -> object | None:
        return "route" if self.ready else None

    def send(self, frame: Any, route: object) -> None:
        assert route == "route"
        if self.fail:
            raise OSError("boom")
        self.sent.append(frame)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_push_path_sends_in_the_fan_out_only_while_the_reader_waits() -> None:
    asked: list[int] = []
    published = PublishedTrack(
        "video", request_pli=lambda: asked.append(1) or True, keyframe_interval=0, clock=lambda: 0.0
    )
    sub = SubscribedTrack("video", base_pts=90000, maxsize=8)
    sink = FakeSink()
    sub.set_frame_sink(sink)  # type: ignore[arg-type]
    sub.attach(published)
    read: list[bytes] = []

    async def reader() -> None:  # the sender's task
        while True:
            read.append(bytes(await sub.recv()))

    task = asyncio.ensure_future(reader())
    try:
        await settle()
        # the reader waits: frames are gated and sent inside the fan-out
        published.push(ef(1000, data=b"d1"))
        published.push(ef(4000, key=True, data=b"k1"))
        published.push(ef(7000, data=b"d2"))
        await settle()
        assert [bytes(f) for f in sink.sent] == [b"k1", b"d2"] and read == []
        assert [f.pts for f in sink.sent] == [90000, 93000]
        s = sub.stats()
        assert (s.frames_out, s.dropped, s.keyframes_waited) == (2, 1, 1)

        # the sender cannot send now: the frame goes to its task, nothing else changes
        sink.ready = False
        published.push(ef(10000, data=b"d3"))
        await settle()
        assert read == [b"d3"] and len(sink.sent) == 2
        assert sub.stats().frames_out == 3

        # a send that fails loses that frame only, then the gate waits for a keyframe
        sink.ready, sink.fail = True, True
        published.push(ef(13000, data=b"d4"))
        await settle()
        assert sub.push_errors == 1 and sub.waiting_keyframe
        sink.fail = False
        published.push(ef(16000, data=b"d5"))  # dropped by the gate
        published.push(ef(19000, key=True, data=b"k2"))
        await settle()
        assert [bytes(f) for f in sink.sent] == [b"k1", b"d2", b"k2"] and read == [b"d3"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # no reader waiting (the task is busy): frames queue up in order, none is pushed
    published.push(ef(22000, data=b"d6"))
    published.push(ef(25000, data=b"d7"))
    await settle()
    assert len(sink.sent) == 3
    async with asyncio.timeout(5):
        assert [bytes(await sub.recv()), bytes(await sub.recv())] == [b"d6", b"d7"]

    # withdrawn (the sender's loop ended): never pushed again
    sub.set_frame_sink(None)
    task = asyncio.ensure_future(sub.recv())
    await settle()
    published.push(ef(28000, data=b"d8"))
    async with asyncio.timeout(5):
        assert bytes(await task) == b"d8"
    assert len(sink.sent) == 3
    sub.stop()
    published.stop()
