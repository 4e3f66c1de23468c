"""`NackRetry`: ask again for packets that are still missing.

aiortc's `NackGenerator` sends a NACK only when a packet reveals a NEW gap; a packet whose
retransmission was lost too is asked for again only when the next gap shows up, which at
a few percent loss comes after a few hundred milliseconds: longer than the frame assembler
waits (`sfu.frame_assembler.MAX_PENDING_FRAMES` frames), so the frame is lost and the
subscribers wait for a keyframe. A browser repeats its NACKs (libwebrtc: after about an
RTT, up to ten times); this does the same on the receivers of `sfu.compat.lean_receiver`
(the server's publisher-facing side) and `sfu.compat.light_receiver` (the benchmark's
subscribers): when a packet arrives, NACKs are still outstanding and the last one is
`RETRY_MS` old, each missing sequence number asked for fewer than `MAX_RETRIES` times is
NACKed again. Driven by arriving packets (no timer); the clock is the arrival time the
DTLS transport passes with each packet. No RTT is known on the receive side, so the
interval is fixed: at `RETRY_MS` a path of up to that RTT gets no duplicate
retransmissions.
"""

from __future__ import annotations

from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

#: The wait before NACKing a still-missing packet again, ms.
RETRY_MS = 100
#: How many times a missing packet is NACKed again at most (after the first NACK).
MAX_RETRIES = 4


class NackRetry:
    """The repeat-NACK state of one receiver: per missing sequence number, how often it was
    asked for again, and when the last NACK went out. Nothing to close."""

    __slots__ = ("_last_ms", "_tries", "max_retries", "retries", "retry_ms")

    def __init__(self, retry_ms: int = RETRY_MS, max_retries: int = MAX_RETRIES) -> None:
        if retry_ms <= 0 or max_retries < 0:
            raise ValueError("retry_ms must be positive and max_retries not negative")
        self.retry_ms = retry_ms
        self.max_retries = max_retries
        self._tries: dict[int, int] = {}
        self._last_ms: int | None = None
        #: sequence numbers NACKed again (a number asked for twice counts twice)
        self.retries = 0

    def lost(self, nack: NackGenerator, packet: RtpPacket, now_ms: int) -> list[int]:
        """What to NACK now that `packet` arrived (it goes through `nack.add`): every
        missing sequence number when it revealed a new gap, else those due again (sorted;
        empty: nothing to send)."""
        if nack.add(packet):
            self.sent(now_ms)
            return sorted(nack.missing)
        return self.due(nack.missing, now_ms) if nack.missing else []

    def sent(self, now_ms: int) -> None:
        """The generator just NACKed every missing packet (a new gap): wait again."""
        self._last_ms = now_ms

    def due(self, missing: set[int], now_ms: int) -> list[int]:
        """The sequence numbers to NACK again now (sorted; empty when none is due)."""
        tries = self._tries
        if not missing:
            tries.clear()
            return []
        last = self._last_ms
        if last is not None and now_ms - last < self.retry_ms:
            return []
        for seq in [seq for seq in tries if seq not in missing]:
            del tries[seq]  # received, or too old for the generator
        out: list[int] = []
        for seq in missing:
            count = tries.get(seq, 0)
            if count < self.max_retries:
                tries[seq] = count + 1
                out.append(seq)
        if out:
            self._last_ms = now_ms
            self.retries += len(out)
            out.sort()
        return out
