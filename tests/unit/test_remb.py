"""`sfu.compat.remb`: REMB computed once per feedback interval, installed per receiver."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from sfu.compat.receiver import install_receiver_sink
from sfu.compat.remb import (
    IntervalBitrateEstimator,
    install_interval_estimator,
    interval_estimator,
)

ABS_PER_MS = (1 << 18) / 1000


def feed(
    estimator: Any, seconds: float, bps: int, start_ms: int = 0, queue_ms_per_s: float = 0.0
) -> list[tuple[int, int, list[int]]]:
    """30 frames/s of 3 packets at `bps`; arrivals drift by `queue_ms_per_s` (a growing
    queue). Return (arrival ms, bitrate, ssrcs) of every REMB."""
    out = []
    per_packet = bps // 8 // 90
    for frame in range(int(seconds * 30)):
        send_ms = frame * 1000 / 30
        for i in range(3):
            arrival = start_ms + int(send_ms + i + send_ms * queue_ms_per_s / 1000)
            abs_send = int(send_ms * ABS_PER_MS) % (1 << 24)
            remb = estimator.add(
                arrival_time_ms=arrival, abs_send_time=abs_send, payload_size=per_packet, ssrc=7
            )
            if remb is not None:
                out.append((arrival, remb[0], remb[1]))
    return out


def test_remb_once_per_interval_tracks_the_incoming_rate() -> None:
    estimator = IntervalBitrateEstimator()
    rembs = feed(estimator, 10.0, 1_000_000)
    # nothing before the rate control initialises (3 s), then one value per 500 ms
    assert rembs and rembs[0][0] > 3000
    assert len(rembs) >= 10
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(rembs)]
    assert all(450 <= g <= 600 for g in gaps), gaps
    assert all(r[2] == [7] for r in rembs)
    # AIMD: starts at the measured rate, never above 1.5x the incoming rate
    assert 800_000 <= rembs[0][1] <= 1_600_000
    assert all(r[1] <= 1_600_000 for r in rembs)
    assert estimator.updates >= 19 and estimator.packets == 900
    assert estimator.overuses == 0
    # aiortc's per-packet estimator on the same input lands in the same range
    stock = feed(RemoteBitrateEstimator(), 10.0, 1_000_000)
    assert stock and abs(stock[-1][1] - rembs[-1][1]) <= 0.5 * stock[-1][1]


def test_a_growing_queue_is_overuse_and_lowers_the_estimate() -> None:
    estimator = IntervalBitrateEstimator()
    steady = feed(estimator, 6.0, 1_000_000)
    before = steady[-1][1]
    # arrivals now fall behind the send clock by 60 ms per second: a queue builds up
    congested = feed(estimator, 3.0, 1_000_000, start_ms=6000, queue_ms_per_s=60.0)
    assert estimator.overuses >= 2
    assert congested and min(r[1] for r in congested) < before


def test_installed_per_video_receiver_only() -> None:
    transport: Any = SimpleNamespace(state="new")
    video = RTCRtpReceiver("video", transport)
    audio = RTCRtpReceiver("audio", transport)
    other = RTCRtpReceiver("video", transport)
    estimator = install_interval_estimator(video)
    assert isinstance(estimator, IntervalBitrateEstimator)
    assert interval_estimator(video) is estimator
    assert install_interval_estimator(audio) is None and interval_estimator(audio) is None
    # per instance: another receiver keeps aiortc's estimator
    assert interval_estimator(other) is None
    # the server's receiver hook installs it
    hook = install_receiver_sink(RTCRtpReceiver("video", transport), "video", lambda f: None)
    assert isinstance(hook.estimator, IntervalBitrateEstimator)
