"""The publisher cap policy of a room: when even the base layer of a published video does
not fit its slowest subscriber's downlink, ask the publisher (through the REMB the server
sends it, `PublishedTrack.cap_bitrate`) to lower its bitrate; lift the cap when that
subscriber recovers or leaves (Galene's `maxUpBitrate`, Janus' REMB cap).

The share of a subscriber's downlink one video may use is what its allocator
(`sfu.allocator.SubscriberAllocator`) shares out: its estimate (`DownlinkEstimate.bitrate()`,
None = unlimited; loss-based, so known only once the link has shown congestion) less the
allocator's `AUDIO_RESERVE`, over its `PACKET_OVERHEAD`, split evenly between the videos
it receives. A video is capped when the lowest share among its subscribers cannot carry
its base-layer bitrate (`layer_bitrates()[0]` when the track measures layers, else its
whole bitrate) with the allocator's `UP_MARGIN` (below that the allocator keeps it at the
base layer at best, and pauses it on the next dip), or when that subscriber's allocator
has link-paused it. The cap is that share: the whole track then fits the slowest
subscriber (Galene's rate for a publisher without simulcast), every layer, not just a
base layer that fits with nothing to spare; never below `MIN_PUBLISHER_BITRATE`. While
capped the track's own bitrate shrinks, so the cap is lifted only when the lowest share
reaches `RELEASE` times the track's total bitrate measured before the cap (and the cap
has held for `MIN_HOLD` seconds: no flapping; a publisher allowed back up at once jumps
to its old rate and overflows the slow link again), or at once when no subscriber has a
known estimate any more (the slow one left). A cap moves only when it changes by more than
`CHANGE_STEP`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sfu.allocator import AUDIO_RESERVE, PACKET_OVERHEAD, UP_MARGIN
from sfu.compat.remb import MIN_PUBLISHER_BITRATE

if TYPE_CHECKING:
    from sfu.participant import Participant
    from sfu.published_track import PublishedTrack

logger = logging.getLogger(__name__)

#: A cap is held at least this many seconds before a recovered subscriber lifts it.
MIN_HOLD = 10.0
#: Seconds between two evaluations of the room.
CAP_INTERVAL = 1.0
#: A video is capped when the slowest share is below this multiple of its base layer.
CAP_BELOW = UP_MARGIN
#: A cap is lifted when the slowest share reaches this multiple of the uncapped bitrate.
RELEASE = 1.2
#: A cap is moved only when the new value differs by more than this fraction.
CHANGE_STEP = 0.1
#: Measure a track's bitrate from its byte counter over at least this many seconds.
MIN_MEASURE = 0.5

__all__ = ["AUDIO_RESERVE", "MIN_PUBLISHER_BITRATE", "CapState", "PublisherCapPolicy"]


@dataclass(slots=True)
class CapState:
    """What the policy knows about one published video."""

    #: the track's total bitrate measured before the cap
    uncapped: int = 0
    #: the cap in force (bps), None: not capped
    cap: int | None = None
    #: the subscriber whose share set it
    subscriber: str | None = None
    #: when the cap was set (monotonic seconds)
    since: float = 0.0
    #: (monotonic time, bytes) of the last measurement of the track's byte counter
    measured_at: float | None = None
    measured_bytes: int = 0
    bitrate: int = 0


class PublisherCapPolicy:
    """Owns the caps it set on one room's published videos and the task that evaluates
    them every `interval` seconds (`start()`, idempotent). `update()` is one evaluation
    (tests call it with a fake clock). `close()` (idempotent) cancels the task and lifts
    every cap it set."""

    def __init__(
        self,
        participants: Callable[[], Iterable[Participant]],
        interval: float = CAP_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._participants = participants
        self._interval = interval
        self._clock = clock
        self._states: dict[int, tuple[PublishedTrack, CapState]] = {}
        self._task: asyncio.Task[None] | None = None
        self.changes = 0

    # ------------------------------------------------------------------ task

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="publisher-cap")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.update()
            except Exception:  # pragma: no cover - never let the policy die
                logger.exception("publisher cap update failed")

    def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        for pub, state in self._states.values():
            if state.cap is not None and not pub.closed:
                with contextlib.suppress(Exception):
                    pub.cap_bitrate(None)
        self._states.clear()

    # ------------------------------------------------------------------ evaluation

    def caps(self) -> dict[str, int]:
        """The caps in force, by "publisher id/track key"."""
        return {
            f"{pub.publisher_id}/{pub.key}": state.cap
            for pub, state in self._states.values()
            if state.cap is not None
        }

    def update(self) -> None:
        """Evaluate every published video of the room once (O(publishers x subscribers))."""
        now = self._clock()
        people = list(self._participants())
        shares = {p.id: _shares(p) for p in people}
        seen: set[int] = set()
        for publisher in people:
            for pub in list(publisher.published.values()):
                if pub.kind != "video" or pub.closed:
                    continue
                seen.add(id(pub))
                entry = self._states.get(id(pub))
                if entry is None or entry[0] is not pub:
                    entry = self._states[id(pub)] = (pub, CapState())
                self._evaluate(now, pub, entry[1], people, shares)
        for key in [k for k in self._states if k not in seen]:
            del self._states[key]  # the track closed or its publisher left

    def _evaluate(
        self,
        now: float,
        pub: PublishedTrack,
        state: CapState,
        people: list[Participant],
        shares: dict[str, tuple[int | None, dict[int, int]]],
    ) -> None:
        total, base = self._rates(now, pub, state)
        slowest: tuple[int, str] | None = None
        paused = False
        for subscriber in people:
            if subscriber.id == pub.publisher_id:
                continue
            per_video = shares[subscriber.id][1].get(id(pub))
            if per_video is not None and (slowest is None or per_video < slowest[0]):
                slowest = (per_video, subscriber.id)
            if per_video is not None and not paused:
                paused = _link_paused(subscriber, pub)
        if state.cap is None:
            if slowest is None or base <= 0:
                return
            if slowest[0] >= CAP_BELOW * base and not paused:
                return
            state.uncapped = total
            state.subscriber = slowest[1]
            state.since = now
            self._set(pub, state, max(MIN_PUBLISHER_BITRATE, slowest[0]))
            return
        if slowest is None or (
            slowest[0] >= RELEASE * state.uncapped and now - state.since >= MIN_HOLD
        ):
            state.subscriber = None
            self._set(pub, state, None)
            return
        state.subscriber = slowest[1]
        wanted = max(MIN_PUBLISHER_BITRATE, slowest[0])
        if abs(wanted - state.cap) > CHANGE_STEP * state.cap:
            self._set(pub, state, wanted)

    def _set(self, pub: PublishedTrack, state: CapState, cap: int | None) -> None:
        pub.cap_bitrate(cap)
        state.cap = pub.bitrate_cap
        self.changes += 1

    def _rates(self, now: float, pub: PublishedTrack, state: CapState) -> tuple[int, int]:
        """(total, base-layer) bitrate of `pub`: its own measurements when it has them
        (LAYERS' `bitrate()` / `layer_bitrates()`), else from its byte counter."""
        measure = getattr(pub, "bitrate", None)
        if callable(measure):
            total = int(measure())
        else:
            if state.measured_at is None:
                state.measured_at, state.measured_bytes = now, pub.bytes
            elif now - state.measured_at >= MIN_MEASURE:
                elapsed = now - state.measured_at
                state.bitrate = round((pub.bytes - state.measured_bytes) * 8 / elapsed)
                state.measured_at, state.measured_bytes = now, pub.bytes
            total = state.bitrate
        layers = getattr(pub, "layer_bitrates", None)
        base = total
        if callable(layers):
            measured = layers()
            if measured:
                base = int(measured[0])
        return total, base


def _shares(subscriber: Participant) -> tuple[int | None, dict[int, int]]:
    """A subscriber's estimate and the bps each video it receives may use (as its
    allocator shares it out), by track id (no entry: unknown estimate, unlimited)."""
    estimate = subscriber.downlink.bitrate()
    if estimate is None:
        return None, {}
    videos = [id(pub) for pub, _ in subscriber.subscriptions() if pub.kind == "video"]
    if not videos:
        return estimate, {}
    share = round(max(0, estimate - AUDIO_RESERVE) / PACKET_OVERHEAD / len(videos))
    return estimate, dict.fromkeys(videos, share)


def _link_paused(subscriber: Participant, pub: PublishedTrack) -> bool:
    """Has `subscriber`'s allocator link-paused its subscription to `pub`?"""
    return any(
        published is pub and getattr(track, "link_paused", False)
        for published, track in subscriber.subscriptions()
    )
