"""`MediaRelay` proxy internals: bounded buffered proxies and waking a pending `recv()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc.contrib.media import RelayStreamTrack

from sfu.compat.fast_queue import FastQueue


class _DropOldestQueue(FastQueue[Any]):
    """A bounded queue whose `put_nowait` drops the oldest item instead of raising.

    None (MediaRelay's end marker) is never dropped: once queued, later items are ignored.
    """

    def __init__(self, maxsize: int, on_drop: Callable[[], None]) -> None:
        super().__init__(maxsize)
        self._on_drop = on_drop
        self._end_queued = False
        self.dropped = 0

    def put_nowait(self, item: Any) -> None:
        if self._end_queued:
            return
        if item is None:
            self._end_queued = True
        if self.full():
            self.get_nowait()
            self.dropped += 1
            self._on_drop()
        super().put_nowait(item)


def bound_relay_proxy(proxy: Any, maxsize: int, on_drop: Callable[[], None]) -> None:
    """Replace a buffered `RelayStreamTrack`'s unbounded queue with one of `maxsize` items
    that drops the oldest on overflow and calls `on_drop()` for each drop."""
    if not isinstance(proxy, RelayStreamTrack) or not proxy._buffered:
        raise ValueError("bound_relay_proxy needs a buffered MediaRelay proxy")
    if maxsize < 1:
        raise ValueError("maxsize must be at least 1")
    old = proxy._queue
    queue = _DropOldestQueue(maxsize, on_drop)
    while old is not None and not old.empty():
        queue.put_nowait(old.get_nowait())
    proxy._queue = queue


def end_relay_proxy(proxy: Any) -> None:
    """Wake a `recv()` pending on a relay proxy so it raises `MediaStreamError` (stock
    `RelayStreamTrack.stop()` leaves it blocked). Safe to call on anything, and repeatedly."""
    if not isinstance(proxy, RelayStreamTrack):
        return
    if proxy._buffered:
        queue = proxy._queue
        if queue is not None:
            queue.put_nowait(None)
    else:
        proxy._frame = None
        event = proxy._new_frame_event
        if event is not None:
            event.set()
