"""Relay queue overflow respects VP8 references: the highest temporal layer goes first
(`sfu/compat/relay.py`), the subscription then skips that layer until its next sync frame;
a base-layer or untagged frame that must go makes it wait for a keyframe."""

from __future__ import annotations

import asyncio
from typing import Any

import av

from sfu.compat.relay import _DropOldestQueue
from sfu.frame_assembler import EncodedFrame
from sfu.layers import FrameLayer
from sfu.published_track import PublishedTrack
from sfu.send_slot import SubscribedTrack
from tests.unit.fakes import FakeClock


def pkt(name: str, tid: int | None, sync: bool = False) -> av.Packet:
    packet = av.Packet(name.encode())
    if tid is not None:
        packet.opaque = FrameLayer.for_packet(tid, sync)
    return packet


class Drops:
    def __init__(self) -> None:
        self.oldest = 0
        self.layers: list[int] = []

    def on_drop(self) -> None:
        self.oldest += 1

    def on_layer_drop(self, tid: int) -> None:
        self.layers.append(tid)


def names(queue: _DropOldestQueue) -> list[str]:
    out = []
    while not queue.empty():
        item = queue.get_nowait()
        out.append("END" if item is None else bytes(item).decode())
    return out


async def test_overflow_drops_the_oldest_frame_of_the_highest_layer() -> None:
    drops = Drops()
    queue = _DropOldestQueue(4, drops.on_drop, drops.on_layer_drop)
    for item in (pkt("a0", 0), pkt("b2", 2), pkt("c1", 1), pkt("d2", 2)):
        queue.put_nowait(item)
    queue.put_nowait(pkt("e0", 0))  # the oldest TL2 goes
    queue.put_nowait(pkt("f1", 1))  # the other TL2
    queue.put_nowait(pkt("g1", 1))  # TL1 now: the oldest of them
    assert drops.layers == [2, 2, 1] and drops.oldest == 0
    assert names(queue) == ["a0", "e0", "f1", "g1"]
    assert queue.dropped == 3


async def test_a_new_frame_of_the_highest_layer_is_the_one_dropped() -> None:
    drops = Drops()
    queue = _DropOldestQueue(2, drops.on_drop, drops.on_layer_drop)
    queue.put_nowait(pkt("a0", 0))
    queue.put_nowait(pkt("b1", 1))
    queue.put_nowait(pkt("c2", 2))
    assert drops.layers == [2] and names(queue) == ["a0", "b1"]


async def test_base_layer_untagged_and_end_marker_drop_the_oldest() -> None:
    drops = Drops()
    queue = _DropOldestQueue(2, drops.on_drop, drops.on_layer_drop)
    queue.put_nowait(pkt("a0", 0))
    queue.put_nowait(pkt("b", None))
    queue.put_nowait(pkt("c0", 0))  # only base layer / untagged: the oldest goes
    assert (drops.oldest, drops.layers) == (1, [])
    queue.put_nowait(None)  # the end marker is never dropped, later items are ignored
    queue.put_nowait(pkt("d2", 2))
    assert names(queue) == ["c0", "END"] and drops.oldest == 2
    # without on_layer_drop (recordings): the oldest, whatever its layer
    plain = _DropOldestQueue(1, drops.on_drop)
    plain.put_nowait(pkt("x0", 0))
    plain.put_nowait(pkt("y2", 2))
    assert names(plain) == ["y2"] and drops.oldest == 3 and drops.layers == []


#: Chromium's 8-frame L1T3 pattern: (tid, layer sync)
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


def frame(i: int, key: bool = False) -> EncodedFrame:
    tid, sync = PATTERN[i % 8]
    return EncodedFrame(b"%d" % i, 3000 * i, key, 1, tid=tid, layer_sync=sync and not key)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_subscription_skips_a_dropped_layer_until_its_sync_frame() -> None:
    clock = FakeClock()
    published = PublishedTrack("video", clock=clock, call_later=clock.call_later)
    sub = SubscribedTrack("video", maxsize=4)
    sub.attach(published)
    async with asyncio.timeout(5):
        first = asyncio.ensure_future(sub.recv())
        await settle()
        published.push(frame(0, key=True))
        assert bytes(await first) == b"0"
        # the reader stalls: 7 frames into a queue of 4
        for i in range(1, 8):
            published.push(frame(i))
            await settle()
        assert sub.max_tid == 1  # TL2 frames were dropped: TL2 stops
        out: list[Any] = [await sub.recv() for _ in range(3)]
        for i in range(8, 11):  # 7 is still queued: 4 items, no overflow
            published.push(frame(i))
            await settle()
        out += [await sub.recv() for _ in range(3)]
        published.push(frame(11))
        out.append(await sub.recv())
    # 1, 3 and 5 (TL2) dropped by the queue; 7 (TL2, before the next sync) by selection;
    # from 9 (the TL2 sync frame) on every layer again. Nothing waited for a keyframe.
    assert [bytes(p).decode() for p in out] == ["2", "4", "6", "8", "9", "10", "11"]
    stats = sub.stats()
    assert (stats.dropped, stats.layer_drops, stats.keyframes_waited) == (3, 1, 1)
    assert stats.max_tid == 2 and not sub.waiting_keyframe
    assert sub._filter is False  # back to the one-attribute check
    sub.stop()
    published.close()


async def test_subscription_waits_for_a_keyframe_when_a_base_layer_frame_goes() -> None:
    clock = FakeClock()
    asked: list[int] = []
    published = PublishedTrack(
        "video",
        request_pli=lambda: asked.append(1) or True,
        keyframe_interval=0,
        clock=clock,
        call_later=clock.call_later,
    )
    sub = SubscribedTrack("video", maxsize=2)
    sub.attach(published)
    async with asyncio.timeout(5):
        first = asyncio.ensure_future(sub.recv())
        await settle()
        published.push(frame(0, key=True))
        assert bytes(await first) == b"0"
        for i in (4, 8, 12):  # TL0 frames only: the oldest TL0 must go
            published.push(frame(i))
            await settle()
        assert sub.waiting_keyframe
        published.push(frame(16, key=True))
        got = await sub.recv()
    assert bytes(got) == b"16" and got.is_keyframe
    assert sub.stats().dropped == 3 and asked  # 1 overflow + 2 deltas behind the gate
    sub.stop()
    published.close()


async def test_published_queue_overflow_above_the_base_layer_cuts_only_that_layer() -> None:
    clock = FakeClock()
    asked: list[int] = []
    published = PublishedTrack(
        "video",
        maxsize=3,
        request_pli=lambda: asked.append(1) or True,
        clock=clock,
        call_later=clock.call_later,
    )
    for i in range(3):
        published.push(frame(i, key=i == 0))
    published.push(frame(3))  # TL2 into a full queue: dropped, TL2 stops
    out: list[Any] = []
    async with asyncio.timeout(5):
        out += [await published.recv() for _ in range(3)]
        for i in range(4, 12):
            published.push(frame(i))
            if not published._queue.empty():
                out.append(await published.recv())
    # 5 and 7 (TL2 before the next TL2 sync frame, 9) are dropped; nothing waits for a
    # keyframe and none is asked for
    assert [bytes(p).decode() for p in out] == ["0", "1", "2", "4", "6", "8", "9", "10", "11"]
    assert published.stats().drops == 3 and asked == []
    # a base-layer frame into a full queue: wait for a keyframe, as before
    for i in range(12, 16):
        published.push(frame(i))  # 12 (TL0), 13 (TL2), 14 (TL1) fill it; 15 (TL2) is cut
    published.push(frame(16))  # TL0: the keyframe wait
    published.push(frame(17))
    assert asked == [1] and published.stats().drops == 6
    published.close()


async def test_sink_takes_items_only_while_a_reader_waits_on_an_empty_queue() -> None:
    drops = Drops()
    queue = _DropOldestQueue(4, drops.on_drop, drops.on_layer_drop)
    offered: list[str] = []

    def sink(item: Any) -> bool:
        offered.append(bytes(item).decode())
        if bytes(item) == b"boom":
            raise RuntimeError("boom")
        return bytes(item) != b"no"

    queue.sink = sink
    queue.put_nowait(pkt("a", 0))  # nobody waits: queued, not offered
    assert offered == [] and queue.qsize() == 1
    assert bytes(await queue.get()) == b"a"
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(pkt("b", 0))  # taken by the sink
    queue.put_nowait(pkt("no", 0))  # declined: queued for the reader
    queue.put_nowait(pkt("c", 0))  # the queue is not empty: queued, in order
    queue.put_nowait(None)  # the end marker is never offered
    assert offered == ["b", "no"]
    assert names(queue) == ["no", "c", "END"]
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)

    queue = _DropOldestQueue(4, drops.on_drop)
    queue.sink = sink
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(pkt("boom", 0))  # a failing sink loses that item only
    assert queue.sink_errors == 1 and queue.qsize() == 0 and not getter.done()
    queue.put_nowait(pkt("no", 0))
    async with asyncio.timeout(5):
        assert bytes(await getter) == b"no"
