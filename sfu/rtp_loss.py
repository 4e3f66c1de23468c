"""Unrecovered packet loss of one RTP stream, counted by sequence number (`SequenceLoss`)."""

from __future__ import annotations

#: A forward jump larger than this is a new sequence (a restarted sender), not a loss.
MAX_GAP = 3000
#: Holes older than this many packets behind the highest are final.
HORIZON = 1000
#: Final holes remembered (by extended sequence number) for `holes()`; older ones are
#: only counted.
MAX_HOLES = 100_000


class SequenceLoss:
    """Owns the holes of one RTP stream's sequence numbers: a packet skipped is missing
    until it arrives (late, or retransmitted); `lost` = holes still open + holes that
    stayed open for `HORIZON` packets. Sequence numbers are *extended* (the first packet's
    number, then counting on across wraparounds). Bounded memory (~`HORIZON` open holes,
    `MAX_HOLES` final ones); nothing to close."""

    __slots__ = ("_final", "_final_holes", "_highest", "_missing", "received")

    def __init__(self) -> None:
        self._highest: int | None = None  # extended sequence number
        self._missing: set[int] = set()
        self._final = 0
        self._final_holes: list[int] = []
        self.received = 0

    @property
    def lost(self) -> int:
        """Packets missing so far (never received, not even retransmitted)."""
        return self._final + len(self._missing)

    def holes(self) -> list[int]:
        """Extended sequence numbers never received (the last `MAX_HOLES` final ones and
        the open ones), sorted."""
        return sorted([*self._final_holes, *self._missing])

    def add(self, seq: int) -> int:
        """Record a received packet (original or unwrapped retransmission), 0..65535;
        returns its extended sequence number."""
        if not 0 <= seq <= 0xFFFF:
            raise ValueError(f"RTP sequence number out of range: {seq}")
        self.received += 1
        highest = self._highest
        if highest is None:
            self._highest = seq
            return seq
        delta = (seq - highest) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        extended = highest + delta
        if delta <= 0:
            self._missing.discard(extended)
            return extended
        if delta > MAX_GAP:
            self._finalize(self._missing)
            self._missing = set()
        elif delta > 1:
            self._missing.update(range(highest + 1, extended))
        self._highest = extended
        if len(self._missing) > HORIZON:
            old = {s for s in self._missing if s < extended - HORIZON}
            self._finalize(old)
            self._missing -= old
        return extended

    def _finalize(self, holes: set[int]) -> None:
        self._final += len(holes)
        self._final_holes.extend(sorted(holes))
        if len(self._final_holes) > MAX_HOLES:
            del self._final_holes[: len(self._final_holes) - MAX_HOLES]
