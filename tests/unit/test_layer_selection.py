"""Temporal layer selection in `SubscribedTrack` (sfu/send_slot.py) with a fake budget and
a fake clock: down at once, up only at a keyframe or the next layer's sync frame, link
pause and resume with a keyframe, untagged video, audio never paused, stats."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from sfu.allocator import AUDIO_RESERVE, SubscriberAllocator
from sfu.frame_assembler import EncodedFrame
from sfu.layers import MAX_TID
from sfu.published_track import PublishedTrack
from sfu.send_slot import SendSlot, SubscribedTrack
from tests.unit.fakes import FakeClock

#: Chromium's 8-frame L1T3 pattern (libwebrtc DefaultTemporalLayers): (tid, layer sync)
PATTERN = [
    (0, False),
    (2, True),
    (1, True),
    (2, False),
    (0, False),
    (2, False),
    (1, False),
    (2, False),
]
#: bytes per frame by layer: at 32 fps the layers are 192k, +96k, +96k bps
SIZES = {0: 3000, 1: 1500, 2: 750}
STEP = 1 / 32


class Room:
    """One published L1T3 camera, one subscriber's video track and its allocator."""

    def __init__(self, budget: int | None, *, allocator: bool = True) -> None:
        self.clock = FakeClock(100.0)
        self.plis = 0
        self.published = PublishedTrack(
            "video",
            request_pli=self._pli,
            keyframe_interval=0,
            clock=self.clock,
            call_later=self.clock.call_later,
        )
        self.budget = budget
        self.allocator = (
            SubscriberAllocator(lambda: self.budget, clock=self.clock) if allocator else None
        )
        self.sub = SubscribedTrack("video")
        self.states: list[str] = []
        self.sub.on_video_state = self.states.append
        self.sub.set_allocator(self.allocator)
        self.sub.attach(self.published)
        self.out: list[bytes] = []
        self.index = 0
        self.pattern = PATTERN
        #: frame sizes are SIZES times this (a publisher that jumps to another bitrate)
        self.scale = 1
        self._reader = asyncio.ensure_future(self._read())

    def _pli(self) -> bool:
        self.plis += 1
        return True

    async def _read(self) -> None:
        while True:
            packet = await self.sub.recv()
            self.out.append(bytes(packet))

    async def frames(self, count: int, *, key_at: int | None = None) -> list[str]:
        """Publish `count` frames of the pattern (a keyframe at pattern index `key_at`
        once); return the names ("<index>:<tid>[k]") of those forwarded."""
        start = len(self.out)
        for _ in range(count):
            i = self.index
            tid, sync = self.pattern[i % len(self.pattern)]
            key = key_at is not None and i % len(self.pattern) == key_at
            if key:
                key_at = None
            name = f"{i}:{tid}{'k' if key else ''}".encode()
            data = name + b"." * (SIZES[tid] * self.scale - len(name))
            self.published.push(
                EncodedFrame(data, 3000 * i, key, 1, tid=tid, layer_sync=sync and not key)
            )
            self.index += 1
            await self.settle()
            self.clock.advance(STEP)
        return [d.split(b".")[0].decode() for d in self.out[start:]]

    async def settle(self) -> None:
        proxy = self.sub._proxy
        for _ in range(100):
            await asyncio.sleep(0)
            if self.published._queue.empty() and (proxy is None or proxy._queue.empty()):
                break
        for _ in range(3):
            await asyncio.sleep(0)

    async def close(self) -> None:
        self._reader.cancel()
        self.sub.stop()
        self.published.close()


def tids(names: list[str]) -> set[int]:
    return {int(n.split(":")[1][0]) for n in names}


def budget(video_bps: int) -> int:
    return video_bps + AUDIO_RESERVE


async def test_without_budget_every_layer_and_untagged_frames_pass() -> None:
    room = Room(None, allocator=False)
    names = await room.frames(16, key_at=0)
    assert len(names) == 16 and tids(names) == {0, 1, 2}
    stats = room.sub.stats()
    assert (stats.max_tid, stats.link_paused, stats.layer_drops) == (MAX_TID, False, 0)
    assert room.sub._filter is False  # the per-frame check is one attribute read
    await room.close()


async def test_moves_down_at_once_and_up_at_sync_frames_one_layer_at_a_time() -> None:
    room = Room(None)
    names = await room.frames(40, key_at=0)  # 1.25 s: rates measured, all layers
    assert tids(names) == {0, 1, 2} and room.sub.max_tid == MAX_TID
    # 250k for video: only the base layer (192k) fits: down at the next allocation
    room.budget = budget(250_000)
    names = await room.frames(32)
    assert room.sub.max_tid == 0 and room.sub._target == 0
    # from the allocation on (at most 0.5 s: 16 frames) only TL0 frames: 8 of 32 fps
    later = [n for n in names if int(n.split(":")[0]) >= room.index - 16]
    assert later == [f"{i}:0" for i in range(room.index - 16, room.index, 4)]
    drops = room.sub.stats().layer_drops
    assert drops == 32 - len(names) > 0  # every frame not forwarded is a layer drop
    # plenty again: after the hold, TL1 at its next sync frame (pattern index 2), then
    # TL2 at its next sync frame (index 1): never a frame whose references were dropped
    room.budget = budget(2_000_000)
    names = await room.frames(3 * 32 + 8)
    assert room.sub.max_tid == MAX_TID
    first_tl1 = next(n for n in names if n.endswith(":1"))
    first_tl2 = next(n for n in names if n.endswith(":2"))
    assert int(first_tl1.split(":")[0]) % 8 == 2  # the TL1 sync frame
    assert int(first_tl2.split(":")[0]) % 8 == 1  # the TL2 sync frame
    assert names.index(first_tl1) < names.index(first_tl2)
    assert room.plis == 1  # no keyframe asked for to move up (only the first one)
    stats = room.sub.stats()
    assert stats.max_tid == MAX_TID and stats.layer_drops > drops and not stats.link_paused
    await room.close()


async def test_moves_up_at_a_keyframe_straight_to_the_target() -> None:
    room = Room(None)
    await room.frames(40, key_at=0)
    room.budget = budget(250_000)
    await room.frames(16)
    assert room.sub.max_tid == 0
    room.budget = budget(2_000_000)
    room.clock.advance(3.0)  # the hold has passed
    # a keyframe at pattern index 4 (a TL0 position): every layer from it on
    names = await room.frames(12, key_at=4)
    keyframe = next(n for n in names if n.endswith("k"))
    after = names[names.index(keyframe) :]
    assert room.sub.max_tid == MAX_TID
    assert len(after) == len(names) - names.index(keyframe)
    assert tids(after) == {0, 1, 2}
    await room.close()


async def test_link_pause_stops_video_and_resumes_with_a_keyframe() -> None:
    room = Room(None)
    await room.frames(40, key_at=0)
    plis = room.plis
    room.budget = budget(150_000)  # not even the base layer (192k)
    names = await room.frames(24)
    assert room.sub.link_paused and room.states == ["paused-link"]
    assert len(names) < 24  # stopped at the first allocation (every 16 frames)
    paused_names = await room.frames(16)
    assert paused_names == []
    stats = room.sub.stats()
    assert stats.link_paused and stats.layer_drops >= 16
    # recovery: after the hold, with the margin; a keyframe is asked for at once and
    # nothing is forwarded before it
    room.budget = budget(400_000)
    room.clock.advance(3.0)
    names = await room.frames(8)
    assert not room.sub.link_paused and room.states == ["paused-link", "active"]
    assert room.sub.waiting_keyframe and room.plis > plis
    assert names == []
    names = await room.frames(8, key_at=room.index % 8)
    assert names and names[0].endswith("k")
    assert not room.sub.waiting_keyframe
    await room.close()


async def test_untagged_video_passes_layer_selection_but_not_link_pause() -> None:
    clock = FakeClock(100.0)
    published = PublishedTrack("video", clock=clock, call_later=clock.call_later)
    current: list[int | None] = [None]
    allocator = SubscriberAllocator(lambda: current[0], clock=clock)
    sub = SubscribedTrack("video")
    sub.set_allocator(allocator)
    sub.attach(published)
    out: list[bytes] = []

    async def reader() -> None:
        while True:
            out.append(bytes(await sub.recv()))

    task = asyncio.ensure_future(reader())
    for i in range(64):
        if i == 40:
            current[0] = budget(20_000)  # the stream (about 250k) does not fit
        published.push(EncodedFrame(b"u%d" % i + b"." * 1000, 3000 * i, i == 0, 1))
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(STEP)
    assert out[:40] == [b"u%d" % i + b"." * 1000 for i in range(40)]
    assert sub.link_paused and len(out) < 64
    assert sub.stats().max_tid == MAX_TID  # untagged: "all" while it flows
    task.cancel()
    sub.stop()
    published.close()


async def test_audio_and_bad_targets() -> None:
    sub = SubscribedTrack("audio")
    sub.set_target(None)  # never pauses audio
    assert not sub.link_paused
    with pytest.raises(ValueError, match="out of range"):
        sub.set_target(3)
    with pytest.raises(ValueError, match="out of range"):
        sub.set_target(-1)
    assert sub.max_tid == MAX_TID
    sub.stop()


def fake_transceiver() -> Any:
    async def retransmit(sequence_number: int) -> None:
        pass

    sender = SimpleNamespace(_retransmit=retransmit, _send_keyframe=None)
    return SimpleNamespace(sender=sender, direction="sendonly", mid="4", kind="video")


async def test_send_slot_reports_link_pause_states_and_stats() -> None:
    slot = SendSlot(fake_transceiver(), SubscribedTrack("video"))
    states: list[str] = []
    slot.track.set_target(None)  # nobody listens yet: no error
    slot.track.set_target(0)
    slot.on_video_state = states.append
    slot.track.set_target(None)
    slot.track.set_target(None)  # no change, no event
    slot.track.set_target(1)
    assert states == ["paused-link", "active"]
    stats = slot.stats().track
    assert (stats.max_tid, stats.link_paused, stats.layer_drops) == (1, False, 0)
    slot.close()


async def test_rtp_to_subscriber_path_with_a_budget() -> None:
    """Hand-built L1T3 RTP packets through the receiver hook's assembler, the published
    track and a budgeted subscription: the TID parsed from the descriptor drives the
    selection, and the resume from link pause reaches the publisher as a PLI."""
    from tests.unit.fakes import FakeReceiver
    from tests.unit.test_layers import descriptor, rtp

    clock = FakeClock(100.0)
    receiver = FakeReceiver()
    published = PublishedTrack.passthrough(
        receiver,  # type: ignore[arg-type]
        "video",
        "camera",
        clock=clock,
        call_later=clock.call_later,
    )
    assert published.hook is not None
    assembler = published.hook.assembler
    current: list[int | None] = [None]
    sub = SubscribedTrack("video")
    sub.set_allocator(SubscriberAllocator(lambda: current[0], clock=clock))
    sub.attach(published)
    out: list[bytes] = []

    async def reader() -> None:
        while True:
            out.append(bytes(await sub.recv()))

    task = asyncio.ensure_future(reader())
    seq = 0

    async def send(i: int, key: bool = False) -> None:
        nonlocal seq
        tid, sync = PATTERN[i % 8]
        desc = descriptor(tid=tid, sync=sync and not key, picture_id=i & 0x7FFF, tl0picidx=i // 4)
        header = b"\x10" if key else b"\x11"  # VP8 payload header: P bit
        data = header + b"%d:" % i + b"." * SIZES[tid]
        for part in range(2):  # two packets per frame
            chunk = data[: len(data) // 2] if part == 0 else data[len(data) // 2 :]
            d = desc if part == 0 else bytes([desc[0] & ~0x10]) + desc[1:]
            assembler.add(rtp(seq, 3000 * i, d, chunk, marker=part == 1))
            seq += 1
        for _ in range(10):
            await asyncio.sleep(0)
        clock.advance(STEP)

    def forwarded(since: int) -> list[int]:
        return [n for n in (int(d[1:].split(b":")[0]) for d in out) if n >= since]

    await send(0, key=True)
    for i in range(1, 40):
        await send(i)
    assert forwarded(0) == list(range(40))
    current[0] = budget(250_000)  # TL0 only (192k)
    for i in range(40, 72):
        await send(i)
    assert sub.max_tid == 0 and forwarded(56) == [56, 60, 64, 68]
    plis = len(receiver.plis)
    current[0] = budget(100_000)  # not even TL0: link pause
    for i in range(72, 96):
        await send(i)
    assert sub.link_paused and forwarded(88) == []
    current[0] = budget(1_000_000)
    clock.advance(3.0)
    for i in range(96, 104):
        await send(i)
    assert not sub.link_paused and sub.waiting_keyframe and forwarded(96) == []
    assert len(receiver.plis) > plis  # the resume asked the publisher for a keyframe
    await send(104, key=True)
    for i in range(105, 112):
        await send(i)
    assert forwarded(104) == list(range(104, 112))  # from the keyframe, every layer
    task.cancel()
    sub.stop()
    published.close()


async def test_a_failing_video_state_callback_does_not_break_the_track() -> None:
    sub = SubscribedTrack("video")

    def broken(state: str) -> None:
        raise RuntimeError(state)

    sub.on_video_state = broken
    sub.set_target(None)
    assert sub.link_paused
    sub.set_target(0)
    assert not sub.link_paused and sub.max_tid == 0
    sub.stop()


async def test_budget_on_one_track_gives_it_its_own_allocator() -> None:
    sub = SubscribedTrack("video")
    assert sub.budget is None and sub.allocator is None

    def budget() -> int | None:
        return 123

    sub.budget = budget
    assert sub.budget is budget and sub.allocator is not None
    assert sub.allocator.tracks == [sub]
    sub.budget = None
    assert sub.allocator is None and sub.budget is None
    sub.stop()


async def test_without_sync_frames_moving_up_asks_for_a_keyframe() -> None:
    from sfu.send_slot import UP_WAIT_FRAMES

    room = Room(None)
    await room.frames(40, key_at=0)
    room.budget = budget(250_000)
    await room.frames(16)
    assert room.sub.max_tid == 0
    plis = room.plis
    room.pattern = [(tid, False) for tid, _ in PATTERN]  # a publisher writing no Y bit
    room.budget = budget(2_000_000)
    room.clock.advance(3.0)
    await room.frames(UP_WAIT_FRAMES // 2)
    assert room.sub.max_tid == 0 and room.plis == plis  # waits for a sync frame
    await room.frames(UP_WAIT_FRAMES)
    assert room.sub.max_tid == 0 and room.plis == plis + 1  # then asks, once
    names = await room.frames(8, key_at=room.index % 8)
    assert room.sub.max_tid == MAX_TID and tids(names[1:]) == {0, 1, 2}
    await room.close()


async def test_a_publisher_jump_sheds_upper_layers_before_the_allocation_sees_it() -> None:
    """A publisher doubles its bitrate: until the measured layer rates catch up, the
    subscriber's modelled link queue sheds TL2 then TL1 frames, never a base-layer frame
    nor a frame whose reference it shed; a keyframe always goes."""
    room = Room(budget(500_000))  # all three layers (384k) fit
    names = await room.frames(40, key_at=0)
    assert tids(names) == {0, 1, 2} and room.sub.max_tid == MAX_TID
    assert room.sub.stats().shed == 0  # a stream within its budget is never shed
    room.scale = 2  # 768k from now on
    first = room.index
    names = await room.frames(12, key_at=4)
    sent = {int(n.split(":")[0]) for n in names}
    frames = range(first, room.index)
    assert all(i in sent for i in frames if PATTERN[i % 8][0] == 0)  # base layer and keyframe
    shed = [i for i in frames if i not in sent]
    assert shed and room.sub.stats().shed > 0
    assert room.sub.stats().layer_drops >= len(shed)
    for i in shed:  # a frame of the layer shed or above waits for a lower layer
        tid = PATTERN[i % 8][0]
        j = i + 1
        while j < room.index and PATTERN[j % 8][0] >= tid and PATTERN[j % 8][0] > 0:
            assert j not in sent, (i, j)
            j += 1
    await room.close()
