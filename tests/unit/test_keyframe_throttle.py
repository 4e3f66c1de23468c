"""`sfu/keyframe_throttle.py` with a fake clock and fake timers."""

from __future__ import annotations

from sfu.keyframe_throttle import KeyframeThrottle
from tests.unit.fakes import FakeClock


def make(clock: FakeClock, ok: bool = True) -> tuple[KeyframeThrottle, list[float]]:
    sent: list[float] = []

    def send() -> bool:
        if ok:
            sent.append(clock.now)
        return ok

    return KeyframeThrottle(send, 1.0, clock=clock, call_later=clock.call_later), sent


def test_first_request_goes_at_once_then_one_per_interval() -> None:
    clock = FakeClock(100.0)
    throttle, sent = make(clock)
    throttle.request()
    assert sent == [100.0] and not clock.pending
    clock.advance(0.25)
    for _ in range(5):  # coalesce into one request at the end of the interval
        throttle.request()
    assert sent == [100.0] and len(clock.pending) == 1
    clock.advance(0.5)
    assert sent == [100.0]
    clock.advance(0.25)
    assert sent == [100.0, 101.0] and not clock.pending
    assert throttle.stats().asked == 6 and throttle.stats().sent == 2
    clock.advance(5.0)
    throttle.request()  # a quiet interval passed: at once again
    assert sent == [100.0, 101.0, 106.0]


def test_failed_send_is_not_counted_and_does_not_start_the_interval() -> None:
    clock = FakeClock()
    throttle, _ = make(clock, ok=False)
    throttle.request()
    throttle.request()
    assert throttle.stats().sent == 0 and throttle.stats().asked == 2
    assert not clock.pending  # nothing was sent: the next request may go at once


def test_close_cancels_the_pending_timer_and_ignores_requests() -> None:
    clock = FakeClock()
    throttle, sent = make(clock)
    throttle.request()
    throttle.request()
    [timer] = clock.pending
    throttle.close()
    assert timer.cancelled
    clock.advance(2.0)
    throttle.request()
    assert sent == [clock.now - 2.0] and throttle.stats().asked == 2
