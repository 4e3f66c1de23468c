"""A token bucket: the per-participant rate limit for chat and other cheap events."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Owns a token count refilled at `rate` per second up to `burst`; nothing to close."""

    def __init__(
        self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Take one token; False when the bucket is empty (the caller refuses)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
