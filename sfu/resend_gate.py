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
#: A packet is given up no sooner than this (s) after it was first asked for: the resends
#: wait in the bottleneck's queue (a quarter second at a slow link's overflow) while the
#: RTT aiortc measured, smoothed over seconds, still says a millisecond.
GIVE_UP_AFTER = 0.5
#: At most this many packets are tracked; the oldest go first.
MAX_TRACKED = 2048


class ResendGate:
    """Owns, per sequence number recently NACKed on one subscription, when it was first
    asked for, when it was last resent, how often it was resent and whether it was given
    up (a bounded dict). `allow(seq, now, rtt)` decides; `sent(seq, now)` records a
    resend that went out.

    A packet asked for again a round trip after its `MAX_RESENDS`th resend, and at least
    `GIVE_UP_AFTER` s after it was first asked for, is lost for good as far as the
    receiver is concerned: its frame cannot be decoded, nor, for a
    base-layer packet, anything after it until a keyframe, which a browser asks for only
    after waiting up to 3 s. `allow` reports it, once per packet."""

    __slots__ = ("_entries", "given_up", "max_resends", "min_interval", "refused")

    def __init__(self, max_resends: int = MAX_RESENDS, min_interval: float = MIN_INTERVAL) -> None:
        if max_resends < 1 or min_interval < 0:
            raise ValueError("max_resends must be at least 1 and min_interval not negative")
        self.max_resends = max_resends
        self.min_interval = min_interval
        #: seq -> [first asked, last resent, resends, given up (0/1)]; insertion-ordered
        self._entries: dict[int, list[float]] = {}
        #: NACKed packets not resent because of these two limits
        self.refused = 0
        #: packets given up (each counted once)
        self.given_up = 0

    def allow(self, seq: int, now: float, rtt: float | None = None) -> tuple[bool, bool]:
        """(may packet `seq` be resent now, is it lost for good: asked for again a round
        trip after its last allowed resend). A refusal is counted; a resend that goes out
        is recorded with `sent`. `rtt` (s, None: unknown) widens the interval between two
        resends."""
        entries = self._entries
        entry = entries.get(seq)
        if entry is not None and now - entry[0] > FORGET_AFTER:
            del entries[seq]  # a new loss of a reused sequence number (wrap)
            entry = None
        if entry is None:
            self._forget(now)
            entries[seq] = [now, float("-inf"), 0.0, 0.0]
            return True, False
        interval = self.min_interval
        if rtt is not None and rtt > 0:
            interval = max(interval, RTT_FACTOR * rtt)
        due = now - entry[1] >= interval
        if entry[2] < self.max_resends and due:
            return True, False
        self.refused += 1
        if due and not entry[3] and now - entry[0] >= GIVE_UP_AFTER:
            entry[3] = 1.0
            self.given_up += 1
            return False, True
        return False, False

    def asked(self, seq: int, now: float) -> bool:
        """Was packet `seq` NACKed before (within `FORGET_AFTER` s)?"""
        entry = self._entries.get(seq)
        return entry is not None and now - entry[0] <= FORGET_AFTER

    def sent(self, seq: int, now: float) -> None:
        """Packet `seq` (asked for through `allow`) was resent at `now`."""
        entry = self._entries.get(seq)
        if entry is not None:
            entry[1] = now
            entry[2] += 1

    def _forget(self, now: float) -> None:
        entries = self._entries
        while entries:
            seq = next(iter(entries))
            if len(entries) < MAX_TRACKED and now - entries[seq][0] <= FORGET_AFTER:
                break
            del entries[seq]
