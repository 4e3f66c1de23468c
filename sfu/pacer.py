"""`Pacer`: spreads one subscriber's video datagrams over time at its downlink budget.

A slow link's bottleneck holds a few hundred milliseconds of its rate (9.4 kB at
300 kbit/s with a 250 ms queue). The server sends each frame as one burst, so a keyframe
of that size, or two publishers' keyframes at once, overflow it by themselves even when
the average rate fits: their tail is dropped, the receiver NACKs, and a lost keyframe
packet is a frozen picture until it is recovered. A sender-side pacer (libwebrtc's
`PacedSender`, LiveKit's pacer) sends such a burst at the link's rate instead, so the
bottleneck's queue never sees more than the rate plus a small burst.

Only while the budget is known (`rate()` not None); an unknown budget sends at once, as
without a pacer. Retransmissions and audio are not paced (small, and late is useless).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from sfu.keyframe_throttle import CallLater, Timer

logger = logging.getLogger(__name__)

#: Bytes that may go at once (the bucket), at least: a frame of a few packets is not
#: delayed; `BURST_TIME` of the rate when that is more.
MIN_BURST = 2400
BURST_TIME = 0.02
#: A backlog longer than this (s at the rate) is sent at once: a budget far below what the
#: base layers need is the allocator's to answer (a pause), not a growing delay's.
MAX_DELAY = 0.5
#: The timer never waits less than this (s): one wake-up sends what the rate allows.
MIN_WAIT = 0.002

#: `emit(datagrams, offset)`: send `datagrams`, the submitted ones from index `offset` on
Emit = Callable[[list[bytes], int], None]


class Pacer:
    """Owns the FIFO of datagrams waiting to be sent to ONE subscriber and the token
    bucket that releases them at `rate` bytes/s (`set_rate`; None: no pacing, and what
    waits is sent at once). `engaged` (an attribute: read per frame) is False while
    nothing is paced: a sender then sends as if there were no pacer.
    `submit(datagrams, emit)` sends what the bucket allows now through
    `emit(part, offset)` (offset: the index of part[0] in `datagrams`) and queues the
    rest behind whatever waits already (order is kept across the subscriber's senders);
    a timer on the running loop sends the rest. `close()` cancels the timer and sends
    nothing more (idempotent)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        call_later: CallLater | None = None,
    ) -> None:
        #: bytes/s, None: no pacing
        self.rate: float | None = None
        self.engaged = False
        self._clock = clock
        self._call_later = call_later
        #: (datagrams, emit, offset of datagrams[0] in what was submitted)
        self._queue: deque[tuple[list[bytes], Emit, int]] = deque()
        self._backlog = 0
        self._tokens = float(MIN_BURST)
        self._at = clock()
        self._timer: Timer | None = None
        self._closed = False
        #: datagrams that waited; backlogs sent at once (MAX_DELAY)
        self.paced = 0
        self.flushes = 0

    def set_rate(self, rate: float | None) -> None:
        """Pace at `rate` bytes/s from now on (None or not positive: stop pacing)."""
        if rate is not None and rate <= 0:
            rate = None
        self.rate = rate
        if rate is None and self._queue:
            self._flush()
        self.engaged = rate is not None or bool(self._queue)

    @property
    def backlog(self) -> int:
        """Bytes waiting."""
        return self._backlog

    def submit(self, datagrams: list[bytes], emit: Emit) -> None:
        """Send `datagrams` (one frame's, in order) through `emit` as the rate allows."""
        if self._closed or not datagrams:
            return
        rate = self.rate
        if rate is None:
            self._flush()
            emit(datagrams, 0)
            return
        self._refill(rate)
        count = 0
        if not self._queue:
            count = self._take(datagrams)
            if count:
                emit(datagrams if count == len(datagrams) else datagrams[:count], 0)
            if count == len(datagrams):
                return
            datagrams = datagrams[count:]
        self._queue.append((datagrams, emit, count))
        self._backlog += sum(map(len, datagrams))
        self.paced += len(datagrams)
        if self._backlog > MAX_DELAY * rate:
            self._flush()
            return
        self._schedule(rate)

    def close(self) -> None:
        self._closed = True
        self.engaged = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._backlog = 0

    # ------------------------------------------------------------------ internals

    def _refill(self, rate: float) -> None:
        now = self._clock()
        burst = max(MIN_BURST, BURST_TIME * rate)
        self._tokens = min(burst, self._tokens + (now - self._at) * rate)
        self._at = now

    def _take(self, datagrams: list[bytes]) -> int:
        """How many leading datagrams the bucket lets go now (each taken from it)."""
        count = 0
        for datagram in datagrams:
            if self._tokens <= 0:
                break
            self._tokens -= len(datagram)
            count += 1
        return count

    def _schedule(self, rate: float) -> None:
        if self._timer is not None or self._closed:
            return
        wait = max(MIN_WAIT, -self._tokens / rate)
        call_later = self._call_later or asyncio.get_running_loop().call_later
        self._timer = call_later(wait, self._wake)

    def _wake(self) -> None:
        self._timer = None
        if self._closed:
            return
        rate = self.rate
        if rate is None:
            self._flush()
            return
        self._refill(rate)
        while self._queue and self._tokens > 0:
            datagrams, emit, offset = self._queue[0]
            count = self._take(datagrams)
            if count == len(datagrams):
                self._queue.popleft()
            else:
                self._queue[0] = (datagrams[count:], emit, offset + count)
                datagrams = datagrams[:count]
            self._backlog -= sum(map(len, datagrams))
            self._emit(emit, datagrams, offset)
        if self._queue:
            self._schedule(rate)

    def _flush(self) -> None:
        """Send everything waiting now, in order."""
        if self._queue:
            self.flushes += 1
        while self._queue:
            datagrams, emit, offset = self._queue.popleft()
            self._emit(emit, datagrams, offset)
        self._backlog = 0
        self.engaged = self.rate is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @staticmethod
    def _emit(emit: Emit, datagrams: list[bytes], offset: int) -> None:
        try:
            emit(datagrams, offset)
        except Exception:  # a closed transport: the subscriber is leaving
            logger.debug("pacer: sending failed", exc_info=True)
