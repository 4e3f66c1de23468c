"""Temporal layers of a published video: the per-frame tag its relayed packets carry
(`FrameLayer`) and the meter of its bitrate per layer (`LayerMeter`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The highest temporal layer id the SFU tells apart (L1T3: 0, 1, 2). A TID above it (the
#: descriptor has 2 bits) counts as this layer: forwarding "all" still forwards it.
MAX_TID = 2
#: Seconds of frames the bitrate is measured over.
RATE_WINDOW = 1.0
#: A younger track's rate is measured over at least this many seconds (no start spike).
MIN_RATE_SPAN = 0.25

_UNTAGGED = MAX_TID + 1


@dataclass(frozen=True, slots=True)
class FrameLayer:
    """The temporal layer of one relayed video frame: its TID (0 = base layer, at most
    `MAX_TID`) and whether it is a layer-sync frame (the descriptor's Y bit: it depends
    only on base-layer frames, so a subscriber may switch up to `tid` at it).

    Immutable, nothing to close. `PublishedTrack` puts one on each tagged `av.Packet` as
    `packet.opaque`; read it back with `frame_layer(packet)`.

    Each packet gets its OWN instance (`for_packet`): PyAV 18 keeps an opaque object in a
    registry keyed by `id()` and removes that key when ANY packet holding the object is
    freed, so one instance shared by two packets vanishes from the second packet when the
    first is freed (tests/unit/test_layers.py shows it). The shared `LAYERS` instances are
    for comparisons and tests, never for `packet.opaque`."""

    tid: int
    sync: bool

    @staticmethod
    def for_packet(tid: int, sync: bool) -> FrameLayer:
        """A new instance for one packet's `opaque`; `tid` is clamped to `MAX_TID`."""
        return FrameLayer(tid if tid <= MAX_TID else MAX_TID, sync)


#: Shared instances indexed by `tid * 2 + sync` (not for `packet.opaque`: see FrameLayer).
LAYERS = tuple(FrameLayer(tid, bool(sync)) for tid in range(MAX_TID + 1) for sync in (0, 1))


def frame_layer(packet: Any) -> FrameLayer | None:
    """The `FrameLayer` of a relayed item, None when it has none (untagged video, audio,
    decoded frames, anything without an `opaque`)."""
    layer = getattr(packet, "opaque", None)
    return layer if isinstance(layer, FrameLayer) else None


class LayerMeter:
    """Measures one published track's bitrate over the last `window` seconds: in total
    and cumulatively per temporal layer. Owns a bounded deque of (time, bytes, layer,
    keyframe) per frame in the window; nothing to close.

    `add(size, tid, keyframe)` per frame (tid None: untagged). `bitrate()` is the total in
    bps; `layer_bitrates()` is `(bps of TID<=0, TID<=1, ...)` up to the highest TID seen
    in the window, empty when no frame in the window carried a TID. Keyframes are left out
    of the layer rates: they are occasional (asked for by a new or recovering subscriber),
    and counting one would make the subscriptions at their base-layer limit pause for a
    second (and then ask for another keyframe to resume). `clock` gives monotonic
    seconds."""

    def __init__(self, clock: Callable[[], float], window: float = RATE_WINDOW) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self._clock = clock
        self._window = window
        self._frames: deque[tuple[float, int, int, bool]] = deque()
        #: bytes per layer slot (untagged last), keyframes included / left out
        self._bytes = [0] * (_UNTAGGED + 1)
        self._delta_bytes = [0] * (_UNTAGGED + 1)
        #: frames per layer slot
        self._count = [0] * (_UNTAGGED + 1)
        self._start: float | None = None

    def add(self, size: int, tid: int | None, keyframe: bool = False) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
        slot = _UNTAGGED if tid is None else (tid if tid <= MAX_TID else MAX_TID)
        self._frames.append((now, size, slot, keyframe))
        self._bytes[slot] += size
        self._count[slot] += 1
        if not keyframe:
            self._delta_bytes[slot] += size
        self._trim(now)

    def _trim(self, now: float) -> None:
        frames = self._frames
        horizon = now - self._window
        sums = self._bytes
        # bounded: each frame is appended once and popped at most once
        while frames and frames[0][0] <= horizon:
            _, size, slot, keyframe = frames.popleft()
            sums[slot] -= size
            self._count[slot] -= 1
            if not keyframe:
                self._delta_bytes[slot] -= size

    def _span(self, now: float) -> float:
        start = self._start if self._start is not None else now
        return min(self._window, max(now - start, MIN_RATE_SPAN))

    def bitrate(self) -> int:
        now = self._clock()
        self._trim(now)
        return round(sum(self._bytes) * 8 / self._span(now))

    def layer_bitrates(self) -> tuple[int, ...]:
        now = self._clock()
        self._trim(now)
        count = self._count
        top = max((slot for slot in range(MAX_TID + 1) if count[slot]), default=None)
        if top is None:
            return ()
        span = self._span(now)
        sums = self._delta_bytes
        rates = []
        total = 0
        for slot in range(top + 1):
            total += sums[slot]
            rates.append(round(total * 8 / span))
        return tuple(rates)
