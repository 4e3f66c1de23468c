"""`Pacer`: a subscriber's video datagrams at its downlink rate, in order, bounded delay."""

from __future__ import annotations

import pytest

from sfu.pacer import MAX_DELAY, MIN_BURST, Pacer
from tests.unit.fakes import FakeClock

SIZE = 1200


def frame(tag: str, count: int) -> list[bytes]:
    return [f"{tag}{i}".encode().ljust(SIZE, b".") for i in range(count)]


class Wire:
    """Records what was emitted, when."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, bytes]] = []
        self.offsets: list[int] = []

    def emit(self, datagrams: list[bytes], offset: int) -> None:
        self.offsets.append(offset)
        self.sent.extend((self.clock(), d) for d in datagrams)


def run(clock: FakeClock, seconds: float, step: float = 0.001) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def paced(rate: float = 12_000.0) -> tuple[FakeClock, Pacer, Wire]:
    """A pacer at `rate` bytes/s (10 datagrams a second) on a fake clock, and a wire."""
    clock = FakeClock()
    pacer = Pacer(clock=clock, call_later=clock.call_later)
    pacer.set_rate(rate)
    return clock, pacer, Wire(clock)


def test_without_a_rate_everything_goes_at_once() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, call_later=clock.call_later)
    wire = Wire(clock)
    assert not pacer.engaged
    pacer.submit(frame("k", 10), wire.emit)
    assert len(wire.sent) == 10 and not clock.pending


def test_a_keyframe_burst_is_spread_at_the_rate_and_order_is_kept() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, call_later=clock.call_later)
    pacer.set_rate(12_000.0)  # 10 datagrams a second
    assert pacer.engaged
    first, second = Wire(clock), Wire(clock)
    pacer.submit(frame("k", 4), first.emit)  # 4.8 kB: the bucket lets 2.4 kB go at once
    assert len(first.sent) == MIN_BURST // SIZE
    pacer.submit(frame("d", 1), second.emit)  # another sender's frame waits its turn
    assert not second.sent and pacer.backlog == 3 * SIZE
    run(clock, 0.35)
    times = [t for t, _ in first.sent] + [t for t, _ in second.sent]
    assert len(times) == 5 and times == sorted(times)
    assert second.sent[0][0] > first.sent[-1][0]
    # after the burst, one datagram every 0.1 s
    assert times[-1] - times[2] == pytest.approx(0.2, abs=0.01)
    assert pacer.backlog == 0 and pacer.paced == 3
    assert first.offsets == [0, 2, 3] and second.offsets == [0]  # where each part starts


def test_a_backlog_past_max_delay_is_sent_at_once() -> None:
    _, pacer, wire = paced()
    count = round(MAX_DELAY * 12_000 / SIZE) + 4  # more than MAX_DELAY of the rate
    pacer.submit(frame("k", count), wire.emit)
    assert len(wire.sent) == count and pacer.flushes == 1 and pacer.backlog == 0


def test_stopping_the_rate_sends_what_waits_first() -> None:
    _, pacer, wire = paced()
    pacer.submit(frame("a", 4), wire.emit)
    pacer.set_rate(None)  # the budget is unknown again
    assert len(wire.sent) == 4 and not pacer.engaged
    pacer.submit(frame("b", 1), wire.emit)
    assert [d[:2] for _, d in wire.sent] == [b"a0", b"a1", b"a2", b"a3", b"b0"]


def test_close_drops_what_waits_and_stops_the_timer() -> None:
    clock, pacer, wire = paced()
    pacer.submit(frame("a", 4), wire.emit)
    pacer.close()
    pacer.close()
    run(clock, 0.5)
    assert len(wire.sent) == 2 and not clock.pending and not pacer.engaged
    pacer.submit(frame("b", 1), wire.emit)
    assert len(wire.sent) == 2


def test_a_failing_emit_does_not_stop_the_rest() -> None:
    clock, pacer, wire = paced()

    def broken(datagrams: list[bytes], offset: int) -> None:
        raise OSError("transport closed")

    pacer.submit(frame("x", 2), wire.emit)  # the bucket
    pacer.submit(frame("y", 2), broken)  # waits, then fails
    pacer.submit(frame("z", 1), wire.emit)
    run(clock, 0.5)
    assert [d[:2] for _, d in wire.sent] == [b"x0", b"x1", b"z0"]
