"""`QueueDelay`: a standing queue at a subscriber's bottleneck, seen from NACK timing.

A receiver NACKs a lost packet as soon as a later packet arrives (libwebrtc, aiortc). So
the time from sending the packet that followed the lost one to receiving the first NACK
for it is one trip down and one up, plus whatever queue that packet waited in. On a link
with random loss that is about the round trip. When a bottleneck's queue overflows
(tail drop), the packets that get through waited the whole queue (a quarter second at
300 kbit/s with a typical buffer): the delay jumps, at the first loss of the overflow,
long before a round of receiver reports is significant (`DownlinkEstimate`), and
without the receiver's REMB (Chromium's stays far below a slow link after an overuse).

Only a receiver's first NACK of a packet is a sample (a repeat measures the receiver's
retry interval). Pure logic; nothing to close.
"""

from __future__ import annotations

#: A sample this much (s) above the smallest of the recent past says "queue".
THRESHOLD = 0.06
#: Overuse needs at least this many samples within `WINDOW` s, all above the threshold.
MIN_SAMPLES = 3
WINDOW = 0.3
#: The smallest sample is kept over about this long (s): a path's base delay.
BASE_WINDOW = 10.0


class QueueDelay:
    """Owns the recent NACK-delay samples of ONE subscriber and the base (smallest) delay
    of its path. `sample(now, delay, rtt)` adds one (seconds; bad values ignored) and
    returns True when the recent samples say a queue stands at the bottleneck
    (`overuses` counts those). `rtt`, the round trip measured from receiver reports,
    bounds the base: the first NACKs of a clean link may all come from an overflow."""

    __slots__ = ("_base", "_base_next", "_base_until", "_recent", "overuses", "samples")

    def __init__(self) -> None:
        #: the smallest sample of the current and of the next base window
        self._base: float | None = None
        self._base_next: float | None = None
        self._base_until = 0.0
        self._recent: list[tuple[float, float]] = []
        self.samples = 0
        self.overuses = 0

    @property
    def base(self) -> float | None:
        """The path's smallest recent NACK delay (s), None before any sample."""
        return self._base

    def sample(self, now: float, delay: float, rtt: float | None = None) -> bool:
        if not 0.0 <= delay < 30.0:  # clock jumps, unknown packets
            return False
        self.samples += 1
        if now >= self._base_until:
            # a new window: the last one's minimum carries over, so the base follows a
            # path whose delay grew for good, and never is empty
            self._base, self._base_next = self._base_next, None
            self._base_until = now + BASE_WINDOW / 2
        # the round trip counts towards the base too (it may be from before the queue)
        low = delay if rtt is None or not 0.0 <= rtt < delay else rtt
        self._base_next = low if self._base_next is None else min(self._base_next, low)
        base = self._base = low if self._base is None else min(self._base, low)
        recent = self._recent
        recent.append((now, delay))
        while recent and now - recent[0][0] > WINDOW:
            recent.pop(0)
        if len(recent) < MIN_SAMPLES:
            return False
        if min(d for _, d in recent) - base <= THRESHOLD:
            return False
        self.overuses += 1
        recent.clear()  # the next verdict needs new samples
        return True
