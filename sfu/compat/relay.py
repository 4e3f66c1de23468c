"""`MediaRelay` proxy internals: bounded buffered proxies and waking a pending `recv()`."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc.contrib.media import RelayStreamTrack

from sfu.compat.fast_queue import FastQueue
from sfu.layers import FrameLayer

logger = logging.getLogger(__name__)


class _DropOldestQueue(FastQueue[Any]):
    """A bounded queue whose `put_nowait` drops an item instead of raising.

    With `on_layer_drop`, a full queue first drops a frame of the highest temporal layer
    above the base layer among the queued items and the new one (`FrameLayer` opaque;
    the oldest of them) and calls `on_layer_drop(tid)`: the reader then stops that layer
    until its next sync frame. When only base-layer, untagged or other items are there
    (or without `on_layer_drop`), it drops the oldest and calls `on_drop()` (the reader
    then waits for a keyframe).

    None (MediaRelay's end marker) is never dropped: once queued, later items are ignored.

    With a `sink` (`set_relay_sink`), an item put while the queue is empty and its reader
    is waiting in `get()` is first offered to `sink(item)`: True means the sink took it
    (the reader's work done synchronously, inside the relay's fan-out: no task switch), so
    it is not queued; False queues it as usual. A sink that raises loses that item only
    (logged); order is kept because the reader is idle whenever the sink runs.
    """

    def __init__(
        self,
        maxsize: int,
        on_drop: Callable[[], None],
        on_layer_drop: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(maxsize)
        self._on_drop = on_drop
        self._on_layer_drop = on_layer_drop
        self._end_queued = False
        self.dropped = 0
        self.sink: Callable[[Any], bool] | None = None
        self.sink_errors = 0

    def put_nowait(self, item: Any) -> None:
        if self._end_queued:
            return
        sink = self.sink
        if sink is not None and item is not None and not self._queue:  # type: ignore[attr-defined]
            getters = self._getters  # type: ignore[attr-defined]
            if getters and not getters[-1].done():
                try:
                    taken = sink(item)
                except Exception:
                    self.sink_errors += 1
                    if self.sink_errors <= 3:
                        logger.exception("relay sink failed: the item is lost")
                    return
                if taken:
                    return
        if item is None:
            self._end_queued = True
        if self.full():
            self.dropped += 1
            if self._on_layer_drop is not None and item is not None:
                tid = self._drop_top_layer(item)
                if tid is not None:
                    self._on_layer_drop(abs(tid))
                    if tid > 0:
                        super().put_nowait(item)
                    return  # else the new item itself was the one to go
            self.get_nowait()
            self._on_drop()
        super().put_nowait(item)

    def _drop_top_layer(self, item: Any) -> int | None:
        """Remove the oldest queued frame of the highest layer >= 1 when no newer `item`
        is of a higher layer, returning its tid; return -tid when `item` is the one to
        drop; None when every candidate is base layer or untagged. O(maxsize), only on
        overflow."""
        best_tid = _tid(item)
        best = -1  # the new item
        queued: deque[Any] = self._queue  # type: ignore[attr-defined]  # asyncio.Queue's deque
        for index, other in enumerate(queued):
            tid = _tid(other)
            if tid > best_tid or (tid == best_tid and best == -1 and tid > 0):
                best_tid, best = tid, index
        if best_tid < 1:
            return None
        if best == -1:
            return -best_tid
        del queued[best]
        return best_tid


def _tid(item: Any) -> int:
    layer = getattr(item, "opaque", None)
    return layer.tid if isinstance(layer, FrameLayer) else 0


def bound_relay_proxy(
    proxy: Any,
    maxsize: int,
    on_drop: Callable[[], None],
    on_layer_drop: Callable[[int], None] | None = None,
) -> None:
    """Replace a buffered `RelayStreamTrack`'s unbounded queue with one of `maxsize` items
    that drops on overflow: the highest temporal layer first when `on_layer_drop` is
    given (called with its tid), else the oldest item (`on_drop()`)."""
    if not isinstance(proxy, RelayStreamTrack) or not proxy._buffered:
        raise ValueError("bound_relay_proxy needs a buffered MediaRelay proxy")
    if maxsize < 1:
        raise ValueError("maxsize must be at least 1")
    old = proxy._queue
    queue = _DropOldestQueue(maxsize, on_drop, on_layer_drop)
    while old is not None and not old.empty():
        queue.put_nowait(old.get_nowait())
    proxy._queue = queue


def set_relay_sink(proxy: Any, sink: Callable[[Any], bool] | None) -> None:
    """Offer the items of a bounded relay proxy (`bound_relay_proxy`) to `sink` first
    while its reader waits (see `_DropOldestQueue`); None withdraws it. No-op for
    anything else."""
    queue = getattr(proxy, "_queue", None)
    if isinstance(queue, _DropOldestQueue):
        queue.sink = sink


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
