"""Bitrate variants of one pre-encoded clip and the choice between them: what a bot
publisher does instead of an encoder's rate control when the server's REMB asks it to send
less (or allows more).

`VariantLadder` owns the variants (`VideoClip`s of the same frames, fps, gop,
temporal-layer pattern and marker, each encoded at another bitrate and perhaps another
picture size; see
`sources.encode_clip_variants`), the target bitrate last set and the variant being sent.
It reads a clock (to probe up, see `PROBE_HOLD`) but runs no task: `PacedVideoTrack`
asks it, frame by frame, whether to switch (`wanted`), and tells it when it did
(`switch_to`). Nothing to close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signaling.client.sources import VideoClip

logger = logging.getLogger(__name__)

__all__ = ["VARIANT_HEADROOM", "VariantLadder"]

#: A variant fits a target bitrate when its bitrate times this is at most the target.
VARIANT_HEADROOM = 1.1
#: Probing up: a receive-side estimator (aiortc's AIMD, the server's REMB) reports at most
#: about 1.5 x what it receives, so a sender that waits for the REMB to fit the next
#: variant never gets there. After `PROBE_HOLD` s on a variant the REMB carries with the
#: headroom, the next one up is tried; for `PROBE_GRACE` s after moving up, a REMB that
#: has not caught up yet moves it down only when below `PROBE_FLOOR` x its bitrate (a real
#: cap or congestion). A probe undone within the grace doubles the hold (up to
#: `MAX_PROBE_HOLD`). No probe starts while the target is below `PROBE_FLOOR` x the next
#: variant's bitrate: the grace would undo it at once, after a keyframe of the larger
#: variant (a burst every subscriber pays for; a publisher cap holds the target there).
PROBE_HOLD = 5.0
MAX_PROBE_HOLD = 40.0
PROBE_GRACE = 6.0
PROBE_FLOOR = 0.5


class VariantLadder:
    """The variants of one clip sorted by bitrate (`clips[0]` the lowest), the target
    bitrate (None until set: the highest variant is wanted) and the index of the variant
    being sent (`index`, initially the highest). A variant's bitrate here is what it
    really puts on the wire (`VideoClip.measured_bitrate`), not its encoder's target.

    Raises ValueError for no variants or variants that are not of the same frames (fps,
    gop, frame count, keyframe positions, temporal layers, marker; the picture sizes may
    differ, as an encoder scales down under a tight cap)."""

    def __init__(
        self,
        clips: Sequence[VideoClip],
        headroom: float = VARIANT_HEADROOM,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not clips:
            raise ValueError("a variant ladder needs at least one clip")
        if not headroom >= 1.0:
            raise ValueError(f"headroom must be at least 1.0, got {headroom!r}")
        first = clips[0]
        shape = _shape(first)
        for clip in clips[1:]:
            if _shape(clip) != shape:
                raise ValueError(
                    "variants must share fps, gop, frames, keyframes, layers and "
                    f"marker: {_shape(clip)} differs from {shape}"
                )
        self.clips: tuple[VideoClip, ...] = tuple(
            sorted(clips, key=lambda c: (c.measured_bitrate, c.bitrate))
        )
        self.headroom = headroom
        self.index = len(self.clips) - 1
        self.target: int | None = None
        self.switches = 0
        #: moves up (a REMB that allows more, or a probe of the next variant)
        self.probes = 0
        self._clock = clock
        self._changed_at = clock()
        self._grace_until = float("-inf")
        self._hold = PROBE_HOLD

    @property
    def current(self) -> VideoClip:
        """The variant being sent."""
        return self.clips[self.index]

    @property
    def bitrates(self) -> list[int]:
        """Every variant's measured bitrate (bit/s), lowest first."""
        return [c.measured_bitrate for c in self.clips]

    def set_target(self, bps: int) -> None:
        """The bitrate the receiver allows (a REMB); ValueError (nothing changes) unless
        an int >= 0."""
        if isinstance(bps, bool) or not isinstance(bps, int) or bps < 0:
            raise ValueError(f"target bitrate must be an int >= 0, got {bps!r}")
        self.target = bps

    @property
    def wanted(self) -> int:
        """Index of the highest variant that fits the target with the headroom (the lowest
        when none fits; the highest while no target is set)."""
        if self.target is None:
            return len(self.clips) - 1
        best = 0
        for i, clip in enumerate(self.clips):
            if clip.measured_bitrate * self.headroom <= self.target:
                best = i
        index, now = self.index, self._clock()
        if best < index:
            if now < self._grace_until and self.target >= PROBE_FLOOR * self.current_rate:
                return index  # probing: the REMB has not caught up yet
            return best
        if (
            best == index < len(self.clips) - 1
            and now - self._changed_at >= self._hold
            and self.target >= PROBE_FLOOR * self.clips[index + 1].measured_bitrate
        ):
            return index + 1  # carried comfortably for a while: try the next one
        return best

    @property
    def current_rate(self) -> int:
        return self.current.measured_bitrate

    def start_at(self, bps: int) -> None:
        """Before anything is sent: take `bps` as the target (an encoder's start bitrate)
        and begin with the variant that fits it (not counted as a switch)."""
        self.set_target(bps)
        self.index = self.wanted

    def switch_to(self, index: int) -> None:
        """Record that the variant `index` is being sent from now on (counted when it is
        another one)."""
        if not 0 <= index < len(self.clips):
            raise ValueError(f"no variant {index!r}")
        if index != self.index:
            logger.debug(
                "variant %d -> %d (%d bit/s, target %s)",
                self.index,
                index,
                self.clips[index].measured_bitrate,
                self.target,
            )
            now = self._clock()
            if index > self.index:
                self.probes += 1
                self._grace_until = now + PROBE_GRACE
            elif now < self._grace_until + PROBE_HOLD:
                self._hold = min(2 * self._hold, MAX_PROBE_HOLD)  # that probe failed
                self._grace_until = float("-inf")
            else:
                self._hold = PROBE_HOLD
            self._changed_at = now
            self.index = index
            self.switches += 1


def _shape(clip: VideoClip) -> tuple[object, ...]:
    return (
        clip.fps,
        clip.gop,
        len(clip.packets),
        tuple(clip.keyframe_indexes),
        clip.temporal_layers,
        tuple((p.tid, p.sync) for p in clip.packets),
        clip.marker,
    )
