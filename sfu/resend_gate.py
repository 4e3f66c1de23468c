"""`ResendGate`: which NACKed packets of one subscription are worth sending again.

A receiver repeats its NACK for a packet still missing (libwebrtc: about once per RTT, up
to ten times). A NACK that arrives less than a round trip after the packet was resent
cannot mean that the retransmission was lost: it crossed it, or the retransmission still
sits in the bottleneck's queue. Answering it anyway doubles the retransmission traffic on
exactly the links that lose packets (LiveKit's sequencer keeps the same two limits). So a
packet is resent again only a round trip (at least `MIN_INTERVAL`) after its last resend,
and at most `MAX_RESENDS` times.

Pure logic: the clock (monotonic seconds) and the RTT are passed in; nothing to close.
"""

from __future__ import annotations

#: A packet is resent at most this many times.
MAX_RESENDS = 3
#: Seconds between two resends of a packet, at least (the RTT when it is longer, times
#: `RTT_FACTOR`: a receiver's RTT estimate and the queue's delay vary).
MIN_INTERVAL = 0.04
RTT_FACTOR = 1.2
#: Entries older than this (s) are forgotten (the receiver gave up on them long before).
FORGET_AFTER = 3.0
#: At most this many packets are tracked; the oldest go first.
MAX_TRACKED = 2048


class ResendGate:
    """Owns, per sequence number recently resent on one subscription, when it was last
    resent and how often (a bounded dict). `allow(seq, now, rtt)` decides and records."""

    __slots__ = ("_sent", "max_resends", "min_interval", "refused")

    def __init__(self, max_resends: int = MAX_RESENDS, min_interval: float = MIN_INTERVAL) -> None:
        if max_resends < 1 or min_interval < 0:
            raise ValueError("max_resends must be at least 1 and min_interval not negative")
        self.max_resends = max_resends
        self.min_interval = min_interval
        #: seq -> (time of its last resend, resends so far); insertion-ordered by first resend
        self._sent: dict[int, tuple[float, int]] = {}
        #: NACKed packets not resent because of these two limits
        self.refused = 0

    def allow(self, seq: int, now: float, rtt: float | None = None) -> bool:
        """May packet `seq` be resent now? True records the resend; False counts a refusal.
        `rtt` (s, None: unknown) widens the interval between two resends of a packet."""
        sent = self._sent
        entry = sent.get(seq)
        if entry is not None:
            at, count = entry
            if now - at > FORGET_AFTER:
                del sent[seq]  # a new loss of a reused sequence number (wrap)
                entry = None
            else:
                interval = self.min_interval
                if rtt is not None and rtt > 0:
                    interval = max(interval, RTT_FACTOR * rtt)
                if count >= self.max_resends or now - at < interval:
                    self.refused += 1
                    return False
                sent[seq] = (now, count + 1)
                return True
        self._forget(now)
        sent[seq] = (now, 1)
        return True

    def _forget(self, now: float) -> None:
        sent = self._sent
        while sent:
            seq = next(iter(sent))
            at, _ = sent[seq]
            if len(sent) < MAX_TRACKED and now - at <= FORGET_AFTER:
                break
            del sent[seq]
