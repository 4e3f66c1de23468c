"""Receive-side bandwidth estimation once per feedback interval, not per packet.

aiortc feeds every received video packet that carries abs-send-time to a per-receiver
`RemoteBitrateEstimator.add()`: a rate counter, an inter-arrival grouper, a Kalman filter
(`OveruseEstimator`) and an overuse detector per packet, about a third of the receive path.
`IntervalBitrateEstimator` stands in for it on one receiver (same `add()` signature and
return value, see `install_interval_estimator`): per packet it only adds the payload size
and keeps the latest (arrival, abs-send-time); once per feedback interval (aiortc's
`AimdRateControl.feedback_interval()`, 500 ms) it computes the incoming bitrate and a
delay gradient (how much longer the interval's packets took to arrive than they took to be
sent: a queue growing over two intervals in a row is overuse, a draining one underuse, so
one late event-loop turn is not taken for congestion) and lets aiortc's own
`AimdRateControl` turn them into the REMB value, which aiortc's receiver sends as before.
A `cap` (set by `PublishedTrack.cap_bitrate`, floored at `MIN_PUBLISHER_BITRATE`) lowers
that value: the REMB sent is min(estimate, cap), every interval, also before aiortc's rate
control has an estimate of its own.

aiortc private internals relied upon (pinned: aiortc==1.16.0; `check_remb_internals()`
verifies them): the receiver instance attribute `_RTCRtpReceiver__remote_bitrate_estimator`
(None for audio), and `RTCRtpReceiver._handle_rtp_packet` calling its
`add(abs_send_time=..., arrival_time_ms=..., payload_size=..., ssrc=...)` per packet and
sending a REMB when it returns `(bitrate, ssrcs)`.
"""

from __future__ import annotations

import inspect
from typing import Any

from aiortc.rate import AimdRateControl, BandwidthUsage, RemoteBitrateEstimator
from aiortc.rtcrtpreceiver import RTCRtpReceiver

_R = "_RTCRtpReceiver__"
_ESTIMATOR = _R + "remote_bitrate_estimator"

#: abs-send-time is 6.18 fixed point seconds in 24 bits (wraps every 64 s).
_ABS_WRAP = 1 << 24
_ABS_TO_MS = 1000.0 / (1 << 18)

#: Queue growth (or draining) per interval, in ms, taken as overuse (underuse).
DELAY_THRESHOLD_MS = 15.0

#: A publisher cap never asks for less than this (bps).
MIN_PUBLISHER_BITRATE = 150_000


class IntervalBitrateEstimator:
    """A per-interval stand-in for aiortc's `RemoteBitrateEstimator` (module docstring).

    Counters: `packets`, `updates` (intervals evaluated), `overuses`, `remb_sent` (values
    returned, i.e. REMB packets aiortc sent), `capped` (REMBs lowered by the cap) and
    `last_bitrate` (the last REMB value). `cap` (bps or None) is set with `set_cap`.
    """

    __slots__ = (
        "_bytes",
        "_first_abs",
        "_first_arrival",
        "_prev_growth",
        "_start_ms",
        "cap",
        "capped",
        "interval_ms",
        "last_bitrate",
        "overuses",
        "packets",
        "rate_control",
        "remb_sent",
        "ssrcs",
        "updates",
    )

    def __init__(self, interval_ms: int | None = None) -> None:
        self.rate_control = AimdRateControl()
        self.interval_ms = (
            interval_ms if interval_ms is not None else self.rate_control.feedback_interval()
        )
        self.ssrcs: set[int] = set()
        self.packets = 0
        self.updates = 0
        self.overuses = 0
        self.remb_sent = 0
        self.last_bitrate: int | None = None
        self.cap: int | None = None
        self.capped = 0
        self._bytes = 0
        self._start_ms: int | None = None
        self._first_arrival = 0
        self._first_abs = 0
        self._prev_growth = 0.0

    def add(
        self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        """Account one packet; once per interval return (REMB bitrate, SSRCs) or None."""
        self.packets += 1
        self._bytes += payload_size
        if ssrc not in self.ssrcs:
            self.ssrcs.add(ssrc)
        start = self._start_ms
        if start is None:
            self._start_interval(arrival_time_ms, abs_send_time)
            return None
        if arrival_time_ms - start < self.interval_ms:
            return None
        return self._update(arrival_time_ms, abs_send_time, start)

    def set_cap(self, bps: int | None) -> int | None:
        """Hold the REMB at or below `bps` (at least `MIN_PUBLISHER_BITRATE`); None lifts
        the cap. Returns the cap in force."""
        if bps is not None and (isinstance(bps, bool) or not isinstance(bps, int) or bps <= 0):
            raise ValueError(f"a bitrate cap must be a positive int or None, got {bps!r}")
        self.cap = None if bps is None else max(bps, MIN_PUBLISHER_BITRATE)
        return self.cap

    def _start_interval(self, arrival_time_ms: int, abs_send_time: int) -> None:
        self._start_ms = arrival_time_ms
        self._first_arrival = arrival_time_ms
        self._first_abs = abs_send_time
        self._bytes = 0

    def _update(self, now_ms: int, abs_send_time: int, start: int) -> tuple[int, list[int]] | None:
        """The once-per-interval part: bitrate, delay gradient, AIMD."""
        self.updates += 1
        elapsed = now_ms - start
        throughput = self._bytes * 8000 // elapsed if elapsed > 0 else None
        send_span = ((abs_send_time - self._first_abs) % _ABS_WRAP) * _ABS_TO_MS
        growth = (now_ms - self._first_arrival) - send_span
        prev, self._prev_growth = self._prev_growth, growth
        if growth > DELAY_THRESHOLD_MS and prev > DELAY_THRESHOLD_MS:
            usage = BandwidthUsage.OVERUSING
            self.overuses += 1
        elif growth < -DELAY_THRESHOLD_MS:
            usage = BandwidthUsage.UNDERUSING
        else:
            usage = BandwidthUsage.NORMAL
        self._start_interval(now_ms, abs_send_time)
        target = self.rate_control.update(usage, throughput, now_ms)
        cap = self.cap
        if cap is not None and (target is None or target > cap):
            target = cap
            self.capped += 1
        if target is None:
            return None
        self.remb_sent += 1
        self.last_bitrate = target
        return target, sorted(self.ssrcs)


def install_interval_estimator(receiver: RTCRtpReceiver) -> IntervalBitrateEstimator | None:
    """Replace `receiver`'s per-packet REMB estimator with an `IntervalBitrateEstimator`
    (this instance only); None, and nothing changed, for a receiver without one (audio)."""
    if not isinstance(getattr(receiver, _ESTIMATOR, None), RemoteBitrateEstimator):
        return None
    estimator = IntervalBitrateEstimator()
    setattr(receiver, _ESTIMATOR, estimator)
    return estimator


def interval_estimator(receiver: Any) -> IntervalBitrateEstimator | None:
    """The `IntervalBitrateEstimator` installed on `receiver`, if any."""
    estimator = getattr(receiver, _ESTIMATOR, None)
    return estimator if isinstance(estimator, IntervalBitrateEstimator) else None


def check_remb_internals(probe: RTCRtpReceiver) -> list[str]:
    """The internals `install_interval_estimator` relies on that are missing or changed
    (`probe`: a fresh video receiver); empty when all are present."""
    problems: list[str] = []
    if not isinstance(vars(probe).get(_ESTIMATOR), RemoteBitrateEstimator):
        problems.append(f"RTCRtpReceiver.{_ESTIMATOR}")
    try:
        source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    except (OSError, TypeError):
        return [*problems, "RTCRtpReceiver._handle_rtp_packet (source unavailable)"]
    for needle in (
        "self.__remote_bitrate_estimator.add(",
        "abs_send_time=packet.extensions.abs_send_time",
        "arrival_time_ms=arrival_time_ms",
        "payload_size=len(packet.payload) + packet.padding_size",
        "ssrc=packet.ssrc",
        "fci=pack_remb_fci(*remb)",
    ):
        if needle not in source:
            problems.append(f"RTCRtpReceiver._handle_rtp_packet: {needle!r}")
    if not callable(getattr(AimdRateControl, "feedback_interval", None)):
        problems.append("AimdRateControl.feedback_interval")
    return problems
