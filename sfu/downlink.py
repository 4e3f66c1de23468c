"""The downlink estimate: how many bits per second one subscriber's peer connection can
take, from the feedback its browser (or bot) sends about what the server sends it.

Modelled on Galene's `updateRate` (rtpconn/rtpconn.go): a loss-based rate that is cut by
about half the loss fraction when a report shows more than ~10 % loss, grows by ~5 % per
report round while loss stays under 2 %, holds in between, and is capped by the
subscriber's REMB (its delay-based estimate). Differences from Galene, on purpose:

- The estimate is unknown (None: unlimited) until feedback shows real loss or a REMB
  arrives; there is no initial 512 kbps guess that would throttle a healthy viewer.
- Loss is aggregated over a round (about a second) of receiver-report blocks of all the
  subscriber's streams, counted from the blocks' cumulative lost counts between reports
  (a fraction, weighted by the packets its report covers, only without them: a browser's
  NACK-triggered reports cover a few packets each, and a lost report would let one
  fraction stand for two intervals), and a decrease needs
  the loss to be significantly above 10 % (two standard deviations of a binomial draw at
  10 %). So 5 % random loss on the link never ratchets the rate down by a noisy report,
  while a congested link (tens of percent loss) is cut at once.
- A cut starts from the lower of the current estimate and what was actually sent during
  the round or the round before (payload bits: the loss a report shows was caused by
  packets sent a queue and a report interval earlier, perhaps before the layers were
  already lowered), and never goes below 90 % of what got through (sent x (1 - loss)):
  on a congested link (queue overflow) that is its capacity, so an estimate does not
  collapse while the sender has not adapted yet.
- A cut within `DECREASE_HOLD` s of the last one goes no lower than that one's goodput
  floor: its reports still cover packets sent before the last cut (the bottleneck's
  queue, the report interval), so it would judge the old rate and overshoot (an over-cut
  pauses video), while the round of the last cut measured what the link got through.
- Growth is not tied to the actual rate reaching 3/4 of the estimate (layer steps can be
  larger than that, and a paused video sends nothing); instead a clean round grows the
  rate up to the REMB once the link has shown congestion (without a REMB, without bound:
  a sender that then sends more probes the link), and twice as fast while it is below
  half the REMB (the receiver's delay-based estimate says there is room: a subscriber
  recovers in seconds, not tens of seconds). A clean round sets the rate to at least
  what it and the round before both carried (the lower of their rates sent: a burst a
  deep queue absorbed looks clean until its losses are reported a round later), plus
  `CLEAN_HEADROOM` up to the REMB (the receiver's delay-based REMB sees the queue grow;
  growing past it would invite the next overflow). A REMB below what the link carried
  cleanly that is not falling bounds nothing: after an overuse, Chromium's estimator
  climbs back about 1 kbps a second, far below the link (seen at 42-100 kbps on a
  300 kbps link carrying 130), and the estimate then grows as without a REMB.
- REMB values are kept per SSRC set: a browser's REMB covers all its streams (one set,
  replaced by each new REMB that shares an SSRC), aiortc sends one per receiver (disjoint
  sets, summed).

NACKs are counted (`stats().nacks`) but do not drive the rate: a NACK repeats for a packet
still missing, so the receiver reports' loss fraction is the measure.

Pure logic: no task, no I/O, nothing to close. `clock` (monotonic seconds) is injectable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sfu.queue_delay import QueueDelay

#: The estimate never goes below this (bps).
MIN_DOWNLINK_BITRATE = 50_000
#: Nor above this (bps).
MAX_DOWNLINK_BITRATE = 1 << 30
#: Loss fraction above which (significantly) the rate is cut; below HIGH it grows (5 %
#: a round), below LOW the round is clean (faster growth, `CLEAN_HEADROOM`).
HIGH_LOSS = 0.10
LOW_LOSS = 0.02
#: A cut never goes below this share of the round's goodput (sent x (1 - loss)).
GOODPUT_SHARE = 0.9
#: Growth per clean round (Galene: 269/256), and while below half the REMB.
INCREASE = 1.05
FAST_INCREASE = 1.10
#: Seconds after a cut during which a cut stops at its goodput floor (module doc).
DECREASE_HOLD = 1.5
#: A clean round (loss below LOW_LOSS) sets the rate to at least this multiple of the rate
#: it carried: after a cut, a link that carries a probe is believed at once.
CLEAN_HEADROOM = 1.25
#: The REMB does not limit the estimate by itself: a receive-side estimator (Chromium's,
#: aiortc's AIMD) reports little more than what it receives, ramps up from below a clean
#: link's rate, and would hold a paused video at zero. Loss says congestion (a queue that
#: overflows drops); the REMB bounds how far clean rounds grow the rate.
#: A round lasts at least this long (s) and covers at least this many packets, unless it
#: reaches MAX_ROUND seconds first.
MIN_ROUND = 0.8
MIN_ROUND_PACKETS = 20
MAX_ROUND = 5.0
#: Standard deviations above HIGH_LOSS a round's loss must be for a cut.
SIGNIFICANCE = 2.0
#: Without any feedback for this long (s) the estimate is unknown again (Galene: 30 s).
FEEDBACK_TIMEOUT = 30.0
#: A REMB value older than this (s) no longer counts.
REMB_TIMEOUT = 10.0
#: The packets a report block stands for when its sequence numbers are not given.
DEFAULT_REPORT_PACKETS = 50
#: A report covering more packets than this (a sequence jump) counts as this many.
MAX_REPORT_PACKETS = 10_000
#: Without an allocator (downlink adaptation off), retransmissions on a limited downlink
#: get what the last round left of the estimate and at least this share of it, in a
#: bucket of this many seconds (`allow_retransmission`); a NACKed packet counts as this
#: many bytes (also in the allocator's link queue model).
RETRANSMISSION_SHARE = 0.15
RETRANSMISSION_BURST = 0.5
RETRANSMISSION_SIZE = 1200
#: A standing queue seen by delay (`sfu.queue_delay`) cuts the rate to this share of what
#: was sent lately: the larger of the last round's rate and the current round's, once it
#: is `DELAY_CUT_SPAN` s old. libwebrtc's overuse takes 0.85 x the rate *received*; what
#: is sent into an overflowing queue is more than that (385 kbit/s into 300 measured).
DELAY_CUT = 0.75
DELAY_CUT_SPAN = 0.25
#: A delay cut waits this long (s) after any cut: the queue the last one saw drains (its
#: packets' NACKs still come late) and the allocator lowers the layers.
DELAY_HOLD = 0.6
#: Nor when the last round lost this share or more: on a lossy link first NACKs get lost
#: and come again in retries, late (a round before an overflow loses a packet or two)
DELAY_CUT_MAX_LOSS = 0.05
#: `bitrate()` recomputes at most this often (s) unless feedback changed it: it may be read
#: per forwarded frame.
RECHECK = 0.25


@dataclass(frozen=True, slots=True)
class DownlinkStats:
    """A snapshot of one `DownlinkEstimate`."""

    #: the estimate (bps): min(loss-based, REMB); None = unknown, unlimited
    bitrate: int | None
    #: the loss-based rate (bps), None until a round showed significant loss
    loss_bitrate: int | None
    #: the subscriber's REMB (bps, summed over its SSRC sets), None without one
    remb: int | None
    #: the last evaluated round's loss fraction (0..1), None before the first round
    loss: float | None
    #: payload bits per second actually sent during the last evaluated round
    sent_bitrate: int
    reports: int
    rembs: int
    nacks: int
    #: rounds that cut / raised the loss-based rate
    decreases: int
    increases: int
    #: NACKed packets not resent (the limited downlink had no room for them)
    retransmissions_refused: int = 0
    #: cuts made on a standing queue seen by delay (`on_queue_overuse`), among `decreases`
    delay_cuts: int = 0


class DownlinkEstimate:
    """Owns the feedback state of one subscriber's downlink (see the module docstring).

    Fed by the subscriber's send slots: `on_remb`, `on_receiver_report` (per report block
    about one of our SSRCs), `on_nack`, `on_nack_delay` (how late a first NACK came: its
    `queue` detector) and `on_sent` (payload bytes sent). Read with `bitrate()` and
    `stats()`; `on_cut` is called after each cut. Bad input raises ValueError and changes
    nothing (`on_nack_delay` ignores it).

    `sent_bytes`, when given, returns the payload bytes sent so far to this subscriber
    (monotonic; its owner sums its senders' counters): read when a round starts and ends,
    it measures the rate sent over exactly the round (reports of different streams arrive
    at different times, so per-report pushes through `on_sent` are lumpier); bytes pushed
    through `on_sent` are added to it."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        feedback_timeout: float = FEEDBACK_TIMEOUT,
        sent_bytes: Callable[[], int] | None = None,
    ) -> None:
        self._clock = clock
        self._sent_bytes = sent_bytes
        self._polled = 0
        self._feedback_timeout = feedback_timeout
        self._loss_rate: float | None = None
        self._rembs: list[tuple[frozenset[int], int, float]] = []
        self._last_feedback: float | None = None
        self._highest: dict[int, int] = {}
        self._cumulative: dict[int, int] = {}
        self._round_start: float | None = None
        self._round_packets = 0.0
        self._round_lost = 0.0
        self._round_sent = 0
        self._last_loss: float | None = None
        #: the REMB when the last round was evaluated
        self._last_remb: int | None = None
        self._sent_bitrate = 0
        self.reports = 0
        self.rembs = 0
        self.nacks = 0
        #: NACKed packets not resent: no room on a limited downlink
        self.retransmissions_refused = 0
        self._resend_tokens = 0.0
        self._resend_at = self._clock()
        self.bytes_sent = 0
        self.decreases = 0
        self.increases = 0
        self.delay_cuts = 0
        #: called after each cut (the allocator re-allocates at once, not at its next
        #: interval); must not raise
        self.on_cut: Callable[[], None] | None = None
        #: the NACK-delay detector of a standing queue at the subscriber's bottleneck
        self.queue = QueueDelay()
        self._cut_at = float("-inf")
        self._cut_floor = 0.0
        self._value: int | None = None
        self._value_until = float("-inf")

    # ------------------------------------------------------------------ inputs

    def on_remb(self, bps: int, ssrcs: Iterable[int] = ()) -> None:
        """A REMB of `bps` covering `ssrcs` (the subscriber's estimate of what it can take)."""
        if isinstance(bps, bool) or not isinstance(bps, int) or bps < 0:
            raise ValueError(f"REMB bitrate must be a non-negative int, got {bps!r}")
        key = frozenset(ssrcs)
        now = self._clock()
        # a REMB sharing an SSRC with an earlier one supersedes it (a browser's REMB covers
        # all its streams and the set changes with renegotiation); disjoint sets add up
        self._rembs = [
            e
            for e in self._rembs
            if e[0] and key and not (e[0] & key) and now - e[2] <= REMB_TIMEOUT
        ]
        self._rembs.append((key, min(bps, MAX_DOWNLINK_BITRATE), now))
        self.rembs += 1
        self._last_feedback = now
        self._value_until = float("-inf")

    def on_receiver_report(
        self,
        fraction_lost: int,
        highest_sequence: int | None = None,
        ssrc: int = 0,
        cumulative_lost: int | None = None,
    ) -> None:
        """One receiver-report block about one of our streams: `fraction_lost` (0..255, as
        in RTCP) since its previous report; `highest_sequence` (the extended highest
        sequence number received) weights the report by the packets it covers.

        With `cumulative_lost` (the block's cumulative number of packets lost, signed) and
        `highest_sequence`, the loss between two reports of a stream is the difference of
        the cumulative counts over the difference of the sequence numbers: exact however
        many reports were lost on the way or how short the reporter's interval was. A
        fraction alone is not: a browser sends a report with every NACK, so one covers a
        few packets and says 33 %, and when the report before it was lost on the uplink its
        fraction would be applied to both intervals."""
        if isinstance(fraction_lost, bool) or not isinstance(fraction_lost, int):
            raise ValueError(f"fraction_lost must be an int, got {fraction_lost!r}")
        if not 0 <= fraction_lost <= 255:
            raise ValueError(f"fraction_lost must be 0..255, got {fraction_lost}")
        if highest_sequence is not None and (
            isinstance(highest_sequence, bool)
            or not isinstance(highest_sequence, int)
            or highest_sequence < 0
        ):
            raise ValueError(
                f"highest_sequence must be a non-negative int, got {highest_sequence!r}"
            )
        if cumulative_lost is not None and (
            isinstance(cumulative_lost, bool) or not isinstance(cumulative_lost, int)
        ):
            raise ValueError(f"cumulative_lost must be an int, got {cumulative_lost!r}")
        now = self._clock()
        lost: float | None = None
        if highest_sequence is None:
            packets = DEFAULT_REPORT_PACKETS
        else:
            previous = self._highest.get(ssrc)
            self._highest[ssrc] = highest_sequence
            previous_lost = self._cumulative.pop(ssrc, None)
            if cumulative_lost is not None:
                self._cumulative[ssrc] = cumulative_lost
            if previous is None:
                packets = 0  # the first report of a stream: its interval is unknown
            else:
                delta = (highest_sequence - previous) & 0xFFFFFFFF
                # backwards (reordered reports): no new packets
                packets = 0 if delta >= 0x80000000 else min(delta, MAX_REPORT_PACKETS)
                if packets and cumulative_lost is not None and previous_lost is not None:
                    # signed: retransmissions a receiver counts as received lower it; the
                    # round's sum is clamped to its packets when it is evaluated
                    lost = float(max(-packets, min(cumulative_lost - previous_lost, packets)))
        self.reports += 1
        self._last_feedback = now
        if self._round_start is None:
            self._round_start = now
            self._polled = self._poll()
        self._round_packets += packets
        self._round_lost += packets * fraction_lost / 256 if lost is None else lost
        elapsed = now - self._round_start
        if elapsed >= MAX_ROUND or (
            elapsed >= MIN_ROUND and self._round_packets >= MIN_ROUND_PACKETS
        ):
            self._evaluate(now, elapsed)

    def on_nack(self, count: int = 1) -> None:
        """`count` packets the subscriber asked to be retransmitted."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"NACK count must be a non-negative int, got {count!r}")
        self.nacks += count

    def on_nack_delay(self, delay: float, rtt: float | None = None) -> bool:
        """A receiver's first NACK of a packet came `delay` s after the packet that
        followed it was sent (`rtt`: the measured round trip, None: unknown): fed to the
        queue detector (`sfu.queue_delay`), whose verdict of a standing queue cuts at once
        (`on_queue_overuse`). True when it cut. Bad values are ignored."""
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            return False
        if self.queue.sample(self._clock(), float(delay), rtt):
            return self.on_queue_overuse()
        return False

    def on_queue_overuse(self) -> bool:
        """A standing queue at the subscriber's bottleneck (`sfu.queue_delay`: NACKs came
        a queue's delay late): what is sent now is more than the link carries. Cut the
        rate to `DELAY_CUT` x what was sent lately (less the loss this round's reports
        showed so far, at most half), at once, unless it is already lower, a cut
        happened within `DELAY_HOLD` s (the queue it saw is still draining) or the last
        round showed `DELAY_CUT_MAX_LOSS` or more (random loss: retried NACKs look late).
        Loss rounds go on as before; a cut they make soon after this one has no goodput
        floor (this one measured none). True when it cut."""
        now = self._clock()
        if now - self._cut_at < DELAY_HOLD:
            return False
        last_loss = self._last_loss
        if last_loss is not None and last_loss >= DELAY_CUT_MAX_LOSS:
            # a lossy link: first NACKs get lost and come again in a receiver's retries
            # (the Python client's, 100 ms apart), several at once, late but no queue;
            # the loss rounds judge such a link
            return False
        start = self._round_start
        sent = float(self._sent_bitrate)
        if start is not None and now - start >= DELAY_CUT_SPAN:
            # the larger: a round just begun may hold a lull between two bursts
            nbytes = self._round_sent + max(0, self._poll() - self._polled)
            sent = max(sent, nbytes * 8 / (now - start))
        if self._round_packets >= MIN_ROUND_PACKETS / 2:
            # what got through so far this round (the reports of the overflow's losses)
            sent *= 1 - min(max(self._round_lost / self._round_packets, 0.0), 0.5)
        target = DELAY_CUT * sent
        rate = self._loss_rate
        if target <= 0 or (rate is not None and rate <= target):
            return False
        self._loss_rate = max(float(MIN_DOWNLINK_BITRATE), target)
        self._last_feedback = now
        self._cut_at = now
        self._cut_floor = 0.0
        self.decreases += 1
        self.delay_cuts += 1
        self._value_until = float("-inf")
        self._notify_cut()
        return True

    def _notify_cut(self) -> None:
        callback = self.on_cut
        if callback is not None:
            callback()

    def allow_retransmission(self, size: int = RETRANSMISSION_SIZE) -> bool:
        """May one NACKed packet (about `size` bytes) be sent again? Always while the
        downlink is unlimited; on a limited one, retransmissions get what the last round
        left of the estimate, and at least `RETRANSMISSION_SHARE` of it (a token bucket of
        half a second): on a congested link, resending every lost packet only adds to the
        congestion, while a link that carries less than its estimate (layers dropped) has
        room for them."""
        rate = self.bitrate()
        if rate is None:
            return True
        now = self._clock()
        share = max(RETRANSMISSION_SHARE * rate, rate - self._sent_bitrate) / 8
        tokens = min(
            share * RETRANSMISSION_BURST,
            self._resend_tokens + share * max(0.0, now - self._resend_at),
        )
        self._resend_at = now
        if tokens >= size:
            self._resend_tokens = tokens - size
            return True
        self._resend_tokens = tokens
        self.retransmissions_refused += 1
        return False

    def on_sent(self, nbytes: int) -> None:
        """`nbytes` more payload bytes sent to this subscriber (any stream)."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"bytes sent must be a non-negative int, got {nbytes!r}")
        self.bytes_sent += nbytes
        self._round_sent += nbytes

    # ------------------------------------------------------------------ the model

    def _poll(self) -> int:
        source = self._sent_bytes
        return source() if source is not None else 0

    def _evaluate(self, now: float, elapsed: float) -> None:
        n, lost = self._round_packets, self._round_lost
        polled, self._polled = self._polled, self._poll()
        nbytes = self._round_sent + max(0, self._polled - polled)
        sent = nbytes * 8 / elapsed if elapsed > 0 else 0.0
        self._round_start = now
        self._round_packets = self._round_lost = 0.0
        self._round_sent = 0
        # the loss a round reports was caused by what was sent up to a queue and a report
        # interval earlier: judge it against the larger of this round's and the last's
        judged = max(sent, float(self._sent_bitrate))
        # and a clean one proves only the lower of the two carried (a burst the queue
        # absorbed looks clean until its losses are reported)
        proven = min(sent, float(self._sent_bitrate))
        self._sent_bitrate = round(sent)
        if n <= 0:
            return
        lost = min(max(lost, 0.0), n)
        loss = lost / n
        self._last_loss = loss
        rate = self._loss_rate
        margin = SIGNIFICANCE * math.sqrt(HIGH_LOSS * (1 - HIGH_LOSS) * n)
        remb = self._remb_total(now)
        last_remb, self._last_remb = self._last_remb, remb
        if loss > HIGH_LOSS and lost - HIGH_LOSS * n > margin:
            if rate is None:
                base = judged if judged > 0 else float(remb or MAX_DOWNLINK_BITRATE)
            else:
                base = min(rate, judged) if judged > 0 else rate
            goodput = GOODPUT_SHARE * judged * (1 - loss)
            cut = min(base, max(base * (1 - loss / 2), goodput))
            if now - self._cut_at < DECREASE_HOLD:
                # the reports still judge the rate before the last cut, whose round
                # measured what the link got through: not below that
                cut = max(cut, min(base, self._cut_floor))
            self._loss_rate = max(float(MIN_DOWNLINK_BITRATE), cut)
            self._cut_at = now
            self._cut_floor = goodput
            self.decreases += 1
            self._value_until = float("-inf")
            self._notify_cut()
        elif loss < HIGH_LOSS and rate is not None:
            # below the cut threshold the rate grows: random loss does not rise with the
            # rate, congestion does (and then cuts); a clean round grows it faster
            clean = loss < LOW_LOSS
            # the link has shown congestion: grow up to the receiver's estimate only;
            # unless that says less than the link carried cleanly (two rounds) and is not
            # falling: no queue is growing, the receiver's estimator only climbs slowly
            # back from a past overuse (Chromium's: about 1 kbps a second), and bounding
            # by it would hold an over-cut estimate below the link for tens of seconds
            stale = (
                remb is not None
                and clean
                and remb < proven
                and (last_remb is None or remb >= last_remb)
            )
            limit = float(MAX_DOWNLINK_BITRATE) if remb is None or stale else float(remb)
            fast = clean and remb is not None and rate < remb / 2
            step = FAST_INCREASE if fast else INCREASE
            grown = min(rate * step, max(rate, limit), float(MAX_DOWNLINK_BITRATE))
            if clean:
                # a clean round proves the link carried what was sent: that, plus room
                # up to the REMB
                carried = min(
                    max(proven, min(CLEAN_HEADROOM * proven, limit)), MAX_DOWNLINK_BITRATE
                )
                grown = max(grown, carried)
            if grown > rate:
                self._loss_rate = grown
                self.increases += 1
                self._value_until = float("-inf")

    def _expire(self, now: float) -> None:
        last = self._last_feedback
        if last is not None and now - last > self._feedback_timeout:
            self._loss_rate = None
            self._rembs.clear()
            self._highest.clear()
            self._cumulative.clear()
            self._round_start = None
            self._round_packets = self._round_lost = 0.0
            self._round_sent = 0
            self._last_feedback = None
            self._value_until = float("-inf")

    def _remb_total(self, now: float) -> int | None:
        values = [bps for _, bps, at in self._rembs if now - at <= REMB_TIMEOUT]
        return min(sum(values), MAX_DOWNLINK_BITRATE) if values else None

    # ------------------------------------------------------------------ outputs

    def bitrate(self) -> int | None:
        """The bits per second this subscriber's downlink can take (all its streams);
        None = unknown (no feedback yet, or none for a while): do not limit. Cheap: the
        value is recomputed when feedback changed it, else at most every `RECHECK` s."""
        now = self._clock()
        if now < self._value_until:
            return self._value
        self._value = self._compute(now)
        self._value_until = now + RECHECK
        return self._value

    def _compute(self, now: float) -> int | None:
        """The loss-based rate; the REMB only bounds its growth (module constants)."""
        self._expire(now)
        rate = self._loss_rate
        return None if rate is None else round(rate)

    def stats(self) -> DownlinkStats:
        now = self._clock()
        self._expire(now)
        rate = self._loss_rate
        return DownlinkStats(
            bitrate=self.bitrate(),
            loss_bitrate=None if rate is None else round(rate),
            remb=self._remb_total(now),
            loss=self._last_loss,
            sent_bitrate=self._sent_bitrate,
            reports=self.reports,
            rembs=self.rembs,
            nacks=self.nacks,
            retransmissions_refused=self.retransmissions_refused,
            delay_cuts=self.delay_cuts,
            decreases=self.decreases,
            increases=self.increases,
        )
