"""The keyframe throttle: the ONE place upstream keyframe requests of a published track
are coalesced, rate-limited and counted (mediasoup keyFrameRequestDelay, LiveKit
pli_throttle)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: At most one upstream keyframe request per this many seconds per published track.
KEYFRAME_INTERVAL = 1.0


class Timer(Protocol):
    def cancel(self) -> None: ...


#: `call_later(delay, callback)`, like `asyncio.AbstractEventLoop.call_later`.
CallLater = Callable[[float, Callable[[], None]], Timer]


@dataclass(frozen=True, slots=True)
class ThrottleStats:
    #: keyframes asked for (new subscriber, gating, subscriber PLI/FIR, publisher-side loss)
    asked: int
    #: requests actually sent upstream (at most one per interval)
    sent: int


class KeyframeThrottle:
    """Coalesces keyframe requests to one per `interval`: a request is sent at once when
    none was sent during the last `interval`, else once at the end of it (the requests in
    between coalesce into that one). `send()` does the request and returns False when it
    could not (nothing sent, nothing counted).

    `clock` (monotonic seconds) and `call_later` default to the running loop's; tests
    inject fakes. `close()` (idempotent) cancels the pending timer.
    """

    def __init__(
        self,
        send: Callable[[], bool],
        interval: float = KEYFRAME_INTERVAL,
        clock: Callable[[], float] | None = None,
        call_later: CallLater | None = None,
    ) -> None:
        self._send = send
        self.interval = interval
        if clock is None or call_later is None:
            loop = asyncio.get_running_loop()
            clock = clock or loop.time
            call_later = call_later or loop.call_later
        self._clock = clock
        self._call_later = call_later
        self._last: float | None = None
        self._timer: Timer | None = None
        self._closed = False
        self.asked = 0
        self.sent = 0

    def request(self) -> None:
        if self._closed:
            return
        self.asked += 1
        if self._timer is not None:
            return
        now = self._clock()
        last = self._last
        if last is None or now - last >= self.interval:
            self._fire(now)
        else:
            self._timer = self._call_later(last + self.interval - now, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._closed:
            self._fire(self._clock())

    def _fire(self, now: float) -> None:
        if self._send():
            self._last = now
            self.sent += 1

    def stats(self) -> ThrottleStats:
        return ThrottleStats(asked=self.asked, sent=self.sent)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
