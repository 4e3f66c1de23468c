"""Pure computations of the load benchmark: frame identity, latency, loss, percentiles.

Frame identity (how a receiver knows WHICH published frame it got, in both forwarding
modes): the publisher adds a small deterministic "watermark" `watermark(n)` (0..599 ticks
of the 90 kHz clock, under 6.7 ms, so pts still increases by ~3000 per frame) to the pts of
its n-th frame and logs `(pts, send time)`. RTP timestamps are the sender's random origin +
pts, and the SFU (passthrough rebasing, or transcode via the decoded frame's pts) keeps
differences intact, so a receiver's `rtp_i - rtp_0` (mod 2**32) equals `pts_i - pts_0` of
the publisher. The irregular watermark makes that difference pattern match the publisher's
log at exactly one anchor frame (a wrong anchor matches a frame with probability ~1/85 even with the
±3-tick tolerance transcoding needs: aiortc's decode/encode rounds pts by a tick),
which `match_stream` finds; every received frame then maps to its publisher log entry and
`latency = arrival - send` on one clock (`time.monotonic()`, system-wide on Linux: all
processes run on this machine). Nothing is embedded in the payload, so it survives
transcoding.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

WATERMARK_SPAN = 600
#: How many of a stream's first frames are tried when searching for the anchor.
ANCHOR_PROBE = 24
#: RTP timestamps may be off by a tick or two after transcoding (time base rounding).
PTS_TOLERANCE = 3
#: Publisher frames sent this long before the first arrival are anchor candidates.
ANCHOR_LOOKBACK = 5.0


def watermark(n: int) -> int:
    """Extra pts ticks (0..WATERMARK_SPAN-1) for a publisher's n-th frame: an integer hash,
    so the pattern of differences never repeats at another offset."""
    x = (n + 0x9E3779B9) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x ^= x >> 16
    return x % WATERMARK_SPAN


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass(slots=True)
class StreamMatch:
    """Result of mapping one received stream onto its publisher's send log."""

    matched: bool
    #: publisher pts of each received frame (None where unknown)
    pts: list[int | None]
    #: latency in seconds of each received frame (None where unknown)
    latency: list[float | None]
    anchor_score: float


def match_stream(
    rtp: Sequence[int],
    arrivals: Sequence[float],
    pub_pts: Sequence[int],
    pub_times: Sequence[float],
) -> StreamMatch:
    """Map received frames (`rtp` timestamps, `arrivals`) onto the publisher's log
    (`pub_pts` increasing, `pub_times` send times). See the module docstring."""
    n = len(rtp)
    none_pts: list[int | None] = [None] * n
    none_lat: list[float | None] = [None] * n
    if n == 0 or not pub_pts:
        return StreamMatch(False, none_pts, none_lat, 0.0)

    def lookup(p: int) -> int | None:
        """Index of the publisher frame whose pts is within PTS_TOLERANCE of p."""
        i = bisect.bisect_left(pub_pts, p - PTS_TOLERANCE)
        if i < len(pub_pts) and pub_pts[i] <= p + PTS_TOLERANCE:
            return i
        return None

    rtp0 = rtp[0]
    diffs = [(r - rtp0) & 0xFFFFFFFF for r in rtp]
    probe = diffs[: min(n, ANCHOR_PROBE)]
    t0 = arrivals[0]
    lo = bisect.bisect_left(pub_times, t0 - ANCHOR_LOOKBACK)
    hi = bisect.bisect_right(pub_times, t0 + 0.001)
    best, best_score = None, -1
    for c in range(lo, hi):
        base = pub_pts[c]
        score = sum(1 for d in probe if lookup(base + d) is not None)
        if score > best_score:
            best, best_score = base, score
    frac = best_score / len(probe) if probe else 0.0
    # one hit proves nothing (the anchor always matches itself); need a clear majority
    if best is None or (len(probe) > 1 and frac < 0.5):
        return StreamMatch(False, none_pts, none_lat, frac)
    pts: list[int | None] = []
    lat: list[float | None] = []
    for d, t in zip(diffs, arrivals, strict=True):
        i = lookup(best + d)
        pts.append(pub_pts[i] if i is not None else None)
        lat.append(t - pub_times[i] if i is not None else None)
    return StreamMatch(True, pts, lat, frac)


def frame_loss(
    received_pts: Sequence[int | None],
    pub_pts: Sequence[int],
    pub_times: Sequence[float],
    start: float,
    end: float,
) -> tuple[int, int]:
    """(expected, lost): publisher frames sent in [start, end) and those never received."""
    got = {p for p in received_pts if p is not None}
    expected = lost = 0
    for p, t in zip(pub_pts, pub_times, strict=True):
        if start <= t < end:
            expected += 1
            if p not in got:
                lost += 1
    return expected, lost


def count_in(times: Sequence[float], start: float, end: float) -> int:
    """How many of the sorted `times` fall in [start, end)."""
    return bisect.bisect_left(times, end) - bisect.bisect_left(times, start)


def mesh_cost(participants: int, bitrate: int) -> dict[str, float]:
    """What each browser would upload in a full mesh of `participants` vs through an SFU."""
    others = max(0, participants - 1)
    return {
        "meshUplinkStreams": others,
        "meshUplinkMbps": round(others * bitrate / 1e6, 3),
        "sfuUplinkStreams": 1,
        "sfuUplinkMbps": round(bitrate / 1e6, 3),
        "downlinkStreams": others,
        "downlinkMbps": round(others * bitrate / 1e6, 3),
    }
