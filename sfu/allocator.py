"""A subscriber's stream allocator: shares the subscriber's downlink budget between the
video subscriptions of its send slots (LiveKit's StreamAllocator, Galene's per-track rate,
in small)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu.layers import MAX_TID
from sfu.pacer import Pacer

if TYPE_CHECKING:
    from sfu.send_slot import SubscribedTrack

logger = logging.getLogger(__name__)

#: bps kept for the subscriber's audio (Opus with DTX: the few who speak) before video.
AUDIO_RESERVE = 50_000
#: The layer rates count encoded bytes; the downlink carries RTP, SRTP, UDP and IP headers
#: too (about 60 bytes per packet of at most about 1200): the budget is divided by this.
PACKET_OVERHEAD = 1.05
#: Seconds between two allocations.
ALLOCATION_INTERVAL = 0.5
#: A subscription moves up a layer (or resumes from link pause) only when the budget left
#: covers that layer's rate times this margin; it keeps a layer while the rate alone fits.
UP_MARGIN = 1.25
#: Seconds after a subscription moved down before it may move up again.
UP_HOLD = 3.0
#: Seconds after a subscription paused before it may resume (with the margin): a pause is
#: a frozen picture, so it is kept short unless a resume fails (then the hold doubles).
PAUSE_HOLD = 1.0

#: A link-paused subscription probes (resumes its base layer whatever the budget says, for
#: `PROBE_TIME` s) after this long paused: a receive-side estimate cannot rise over a link
#: that carries no video. Each probe that ends in a pause again doubles the wait, up to
#: `MAX_PROBE_WAIT`; a pause after a longer run starts over.
PROBE_WAIT = 4.0
MAX_PROBE_WAIT = 32.0
PROBE_TIME = 3.0

#: A running subscription keeps its base layer while the base layers fit in this multiple
#: of the budget: a pause is a frozen picture and a keyframe to resume, worse than a
#: link queue a little over its rate for a while (the estimate cuts again if it is not).
PAUSE_SLACK = 1.25

#: The allocated "tid" of a subscription whose base layer does not fit.
PAUSED = -1

#: The link queue the forwarder keeps in step with (`admit`): this many seconds of the
#: video budget. Between two allocations (and while a publisher's measured layer rates
#: lag a jump in its bitrate) frames of an upper temporal layer are not sent when the
#: queue would then hold more than its share of that: TL1 above `SHED_AT[1]`, TL2 above
#: `SHED_AT[2]` of it. Base-layer frames and keyframes always go (a sustained overload
#: is the allocation's to answer: fewer layers or a pause).
LINK_QUEUE = 0.25
SHED_AT = (float("inf"), 0.8, 0.5)
#: The subscriber's video datagrams are paced (`pacer`) at this multiple of the video
#: budget (with its headers): bursts (keyframes) go at about the link's rate.
PACE_FACTOR = 1.2


class SubscriberAllocator:
    """Owns the allocation state of ONE subscriber: which of its video `SubscribedTrack`s
    forward which temporal layer, and which are link-paused.

    `budget()` is the subscriber's downlink estimate in bps (None: unknown = unlimited).
    Every `interval` (checked by `refresh()`, which the tracks call per frame: one clock
    read when nothing is due) it takes `audio_reserve` off the budget and divides the rest
    by `PACKET_OVERHEAD` (headers), then gives the
    base layer to each subscription in turn (those already running first, then in the
    order they were added), then the next layer to each, and so on. A subscription whose
    base layer does not fit is paused (a running one only past `PAUSE_SLACK` x the
    budget). Moving down happens at once; moving up (or resuming)
    needs `up_margin` headroom and `up_hold` seconds since the last move down, or
    `PAUSE_HOLD` since a pause (a frozen picture); either is doubled, up to
    `MAX_PROBE_WAIT`, each time a move up is followed within 2 x `PROBE_TIME` by a move
    down on a lower budget or a higher base-layer rate (a publisher's bitrate moves too),
    so the choice does not flap. A subscription paused for `PROBE_WAIT`
    s (doubling after each probe that fails) probes: it gets its base layer for
    `PROBE_TIME` s whatever the budget, so that the estimate can see whether the link
    carries it now. A track's published layer rates (`PublishedTrack.layer_bitrates`, or
    its total `bitrate()` when untagged) are the costs.

    Between allocations it keeps a model of the subscriber's link queue (`admit`,
    `LINK_QUEUE`): the tracks ask it per frame, and it sheds upper-layer frames that
    would fill the queue past their share; retransmissions are queued there (`charge`).

    It owns the `Pacer` its tracks' lean senders send video through (`pacer`: the budget
    times `PACE_FACTOR`; none while the budget is unknown).

    Tracks of transcoding published tracks or without one are left alone. `add()` /
    `remove()` manage the set; `close()` closes the pacer.
    """

    def __init__(
        self,
        budget: Callable[[], int | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = ALLOCATION_INTERVAL,
        audio_reserve: int = AUDIO_RESERVE,
        up_margin: float = UP_MARGIN,
        up_hold: float = UP_HOLD,
    ) -> None:
        if interval <= 0 or audio_reserve < 0 or up_margin < 1 or up_hold < 0:
            raise ValueError("allocator: bad interval, reserve, margin or hold")
        self.budget = budget
        self._clock = clock
        self._interval = interval
        self._audio_reserve = audio_reserve
        self._up_margin = up_margin
        self._up_hold = up_hold
        self._tracks: list[SubscribedTrack] = []
        self._levels: dict[SubscribedTrack, int] = {}
        self._down_at: dict[SubscribedTrack, float] = {}
        self._paused_at: dict[SubscribedTrack, float] = {}
        #: when each track last moved up, the budget and its base layer's rate then
        self._up_at: dict[SubscribedTrack, tuple[float, int | None, int | None]] = {}
        self._hold: dict[SubscribedTrack, float] = {}
        #: the hold of each track's last pause (PAUSE_HOLD, doubled per failed resume)
        self._pause_hold: dict[SubscribedTrack, float] = {}
        self._probe_wait: dict[SubscribedTrack, float] = {}
        self._probe_start: dict[SubscribedTrack, float] = {}
        #: probes started (a paused subscription resumed to test the link)
        self.probes = 0
        self._next = clock()
        self.allocations = 0
        self._warned = False
        #: the budget used by the last allocation (None: unlimited)
        self.last_budget: int | None = None
        #: the modelled link queue: bytes/s it drains (None: unlimited), bytes in it, when
        self._drain: float | None = None
        self._queued = 0.0
        self._queued_at = 0.0
        #: upper-layer frames not sent because the modelled queue was full (`admit`)
        self.shed = 0
        #: paces the subscriber's video datagrams at the budget (`sfu.pacer`)
        self.pacer = Pacer(clock=clock)

    @property
    def tracks(self) -> list[SubscribedTrack]:
        return list(self._tracks)

    def close(self) -> None:
        """Stop pacing (what waits is not sent); idempotent."""
        self.pacer.close()

    def add(self, track: SubscribedTrack) -> None:
        """Share the budget with `track` (idempotent); allocate at its next frame (also
        when it already was added: a slot switched to another publisher)."""
        if track not in self._tracks:
            self._tracks.append(track)
        self._next = self._clock()

    def remove(self, track: SubscribedTrack) -> None:
        """Stop managing `track` (idempotent); its share goes to the others."""
        if track in self._tracks:
            self._tracks.remove(track)
            self._levels.pop(track, None)
            self._down_at.pop(track, None)
            self._paused_at.pop(track, None)
            self._up_at.pop(track, None)
            self._hold.pop(track, None)
            self._pause_hold.pop(track, None)
            self._probe_wait.pop(track, None)
            self._probe_start.pop(track, None)
            self._next = self._clock()

    def level(self, track: SubscribedTrack) -> int | None:
        """The highest TID last allocated to `track` (`MAX_TID`: all of it, also for
        untagged video; PAUSED), None before any allocation."""
        return self._levels.get(track)

    def reallocate(self) -> None:
        """Allocate at the next frame (the budget was just cut), not at the interval."""
        self._next = float("-inf")

    def refresh(self) -> None:
        """Allocate when the interval has passed (cheap otherwise)."""
        now = self._clock()
        if now >= self._next:
            self.allocate(now)

    def allocate(self, now: float | None = None) -> None:
        """Allocate now and tell each managed track its target."""
        if now is None:
            now = self._clock()
        self._next = now + self._interval
        self.allocations += 1
        budget = self._read_budget()
        self.last_budget = budget
        self._drain = (
            None
            if budget is None
            else max(1.0, (budget - self._audio_reserve) / 8 / PACKET_OVERHEAD)
        )
        self.pacer.set_rate(
            None if self._drain is None else self._drain * PACKET_OVERHEAD * PACE_FACTOR
        )
        tracks = [
            t for t in self._tracks if t.published is not None and t.published.mode == "passthrough"
        ]
        if budget is None:
            for track in tracks:
                self._apply(track, MAX_TID, now)
            return
        costs: dict[SubscribedTrack, tuple[int, ...]] = {}
        for track in tracks:
            published = track.published
            assert published is not None
            costs[track] = published.layer_bitrates() or (published.bitrate(),)
        # those already running keep their place before those paused; then the add order
        order = sorted(tracks, key=lambda t: self._levels.get(t, 0) == PAUSED)
        left = (budget - self._audio_reserve) / PACKET_OVERHEAD
        # running base layers may use PAUSE_SLACK x the budget before one is paused
        base_left = left * PAUSE_SLACK
        levels = dict.fromkeys(order, PAUSED)
        for level in range(MAX_TID + 1):
            for track in order:
                rates = costs[track]
                if levels[track] != level - 1 or level >= len(rates):
                    continue
                step = rates[level] - (rates[level - 1] if level else 0)
                need: float = step
                # a track never allocated yet counts as running: no margin, no hold
                if _tid(level, len(rates) - 1) > self._levels.get(track, MAX_TID):
                    hold = self._hold.get(track, self._up_hold)
                    if now - self._down_at.get(track, -1e18) < hold:
                        continue
                    need = step + rates[level] * (self._up_margin - 1)
                running = level == 0 and self._levels.get(track, MAX_TID) != PAUSED
                if (
                    need <= left
                    or (running and need <= base_left)
                    or (level == 0 and self._probing(track, now))
                ):
                    levels[track] = level
                    left -= step
                    base_left -= step
        for track in order:
            level = levels[track]
            rates = costs[track]
            self._apply(
                track, level if level == PAUSED else _tid(level, len(rates) - 1), now, rates[0]
            )

    def admit(self, nbytes: int, tid: int) -> bool:
        """May a video frame of `nbytes` in temporal layer `tid` (0 for a base-layer
        frame, a keyframe or untagged video) go out now? Keeps the modelled link queue
        (`LINK_QUEUE`): False sheds an upper-layer frame that would fill it past its share
        (`SHED_AT`); what is admitted is queued. Always True while the budget is unknown."""
        drain = self._drain
        if drain is None:
            return True
        now = self._clock()
        queued = self._level(now, drain)
        self._queued_at = now
        size = LINK_QUEUE * drain
        if tid > 0 and queued + nbytes > SHED_AT[min(tid, len(SHED_AT) - 1)] * size:
            self._queued = queued
            self.shed += 1
            return False
        # what overflows the modelled queue is what the real one drops (or the budget
        # is too low): remembering it would shed upper layers long after the link drained
        self._queued = min(queued + nbytes, size)
        return True

    def charge(self, nbytes: int) -> None:
        """`nbytes` sent to this subscriber outside `admit` (a retransmission): queued, so
        upper-layer frames make room for it."""
        self.admit(nbytes, 0)

    def queued(self) -> float:
        """Bytes in the modelled link queue now (0 while the budget is unknown)."""
        drain = self._drain
        return 0.0 if drain is None else self._level(self._clock(), drain)

    def queue_delay(self) -> float:
        """Seconds a packet sent now waits in the modelled link queue (0 while the budget
        is unknown)."""
        drain = self._drain
        return 0.0 if drain is None else self._level(self._clock(), drain) / drain

    def _level(self, now: float, drain: float) -> float:
        """What the modelled queue holds at `now`, drained at `drain` bytes/s."""
        return max(0.0, self._queued - (now - self._queued_at) * drain)

    def _read_budget(self) -> int | None:
        """The budget, or None (unlimited) when the callable fails or returns anything but
        a non-negative number: this runs inside a sender's read, which must not fail."""
        try:
            budget: object = self.budget()
        except Exception:
            if not self._warned:
                logger.exception("allocator: the budget callable failed; unlimited")
                self._warned = True
            return None
        if budget is None:
            return None
        if isinstance(budget, bool) or not isinstance(budget, int | float) or budget < 0:
            if not self._warned:
                logger.warning("allocator: bad budget %r; unlimited", budget)
                self._warned = True
            return None
        return int(budget)

    def _probing(self, track: SubscribedTrack, now: float) -> bool:
        """True when `track` gets its base layer as a probe: it is probing now, or it has
        been paused long enough to start one (which this starts)."""
        start = self._probe_start.get(track)
        if start is not None and now - start < PROBE_TIME:
            return True
        paused_at = self._paused_at.get(track)
        if self._levels.get(track) != PAUSED or paused_at is None:
            return False
        if now - paused_at < self._probe_wait.get(track, PROBE_WAIT):
            return False
        for other, other_start in self._probe_start.items():
            if other is not track and now - other_start < PROBE_TIME:
                return False  # one probe at a time: two would share, and fail, one link
        self._probe_start[track] = now
        self.probes += 1
        return True

    def _apply(self, track: SubscribedTrack, tid: int, now: float, cost: int | None = None) -> None:
        """Set `track`'s target `tid`; `cost` is its base layer's rate (bps) now."""
        before = self._levels.get(track)
        self._levels[track] = tid
        if before is not None and tid < before:
            self._down_at[track] = now
            # a move down soon after a move up: that layer did not fit; wait longer
            up = self._up_at.get(track)
            hold = self._hold.get(track, self._up_hold)
            # (the budget fell, or its publisher's base layer grew past the margin: either
            # way the move up did not hold, and a resume from a pause costs the viewer a
            # keyframe wait)
            budget = self.last_budget
            failed = (
                up is not None
                and now - up[0] < 2 * PROBE_TIME
                and budget is not None
                and (
                    up[1] is None
                    or budget < up[1]
                    or (cost is not None and up[2] is not None and cost > self._up_margin * up[2])
                )
            )
            if tid == PAUSED:
                # a frozen picture: its own short hold, doubled only by failed resumes
                pause_hold = self._pause_hold.get(track, PAUSE_HOLD)
                pause_hold = min(2 * pause_hold, MAX_PROBE_WAIT) if failed else PAUSE_HOLD
                self._pause_hold[track] = self._hold[track] = pause_hold
            elif failed:
                self._hold[track] = min(2 * hold, MAX_PROBE_WAIT)
            else:
                self._hold[track] = self._up_hold
        elif before is not None and tid > before:
            self._up_at[track] = (now, self.last_budget, cost)
        if tid == PAUSED and before != PAUSED:
            self._paused_at[track] = now
            start = self._probe_start.pop(track, None)
            failed = start is not None and now - start < 2 * PROBE_TIME
            wait = self._probe_wait.get(track, PROBE_WAIT)
            self._probe_wait[track] = min(2 * wait, MAX_PROBE_WAIT) if failed else PROBE_WAIT
        track.set_target(None if tid == PAUSED else tid)


def _tid(level: int, top: int) -> int:
    """The highest TID to forward at `level`; the top level forwards every layer."""
    return MAX_TID if level >= top else level
