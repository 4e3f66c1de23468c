"""Dominant (active) speaker detection from RFC 6464 audio levels.

Modelled on the idea behind Jitsi's `DominantSpeakerIdentification` and mediasoup's
`ActiveSpeakerObserver` (Volfin & Cohen, "Dominant Speaker Identification for Multipoint
Videoconferencing"): speech activity is judged on several time scales and a challenger
must beat the incumbent on all of them, so a cough or a short interjection never takes
the floor. This is an independent, simpler formulation (exponential averages instead of
the paper's binomial likelihoods), written for a Python receive path:

- `report()` runs once per received audio packet: one dict lookup and a few float
  additions into the speaker's accumulators, no allocation after the first packet.
- `tick()` runs every `tick_interval` seconds (the owner drives it, with its own timer or
  by calling `poll()` from the packet path): it folds each speaker's accumulators into
  three activity averages (immediate, medium, long), updates the smoothed level, decides
  the dominant speaker and returns the protocol's `active speaker` event when one is due.

Levels: RFC 6464 carries -dBov in 0..127 (127 = digital silence). The linear value is
the amplitude `10 ** (-dBov / 20)` (0 dBov -> 1.0) with 127 mapped to exactly 0.0, the
same scale as `audioLevel` in W3C `getStats()`, so a browser can render both alike.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: RFC 6464 level meaning digital silence.
SILENCE_LEVEL = 127


def level_to_linear(level_dbov: int) -> float:
    """Linear amplitude 0..1 of an RFC 6464 level (-dBov 0..127): 0 -> 1.0, 127 -> 0.0."""
    level = min(max(int(level_dbov), 0), SILENCE_LEVEL)
    if level >= SILENCE_LEVEL:
        return 0.0
    return float(10.0 ** (-level / 20.0))


@dataclass(slots=True)
class SpeakerConfig:
    """Tuning of `ActiveSpeakerDetector` (seconds, RFC 6464 levels, activity 0..1)."""

    #: Decision period.
    tick_interval: float = 0.2
    #: Levels at or above this -dBov are silence (never active, never in `levels`).
    silence_dbov: int = 70
    #: Levels at or below this -dBov count as fully active (score 1.0).
    loud_dbov: int = 25
    #: When True a packet whose RFC 6464 voice flag is clear counts as silence. Off by
    #: default: not every sender sets the flag (aiortc's own sender does not).
    require_voice: bool = False
    #: Time constants of the immediate, medium and long activity averages.
    immediate_tau: float = 0.15
    medium_tau: float = 0.6
    long_tau: float = 2.0
    #: Medium activity at which a participant counts as speaking.
    speech_threshold: float = 0.2
    #: How long a participant must keep speaking before taking the floor.
    hold_time: float = 1.0
    #: While the incumbent is speaking too, a challenger needs this many times its medium
    #: and immediate activity, and a higher long activity.
    switch_ratio: float = 1.5
    #: Release time constant of the displayed level (attack is immediate).
    level_release_tau: float = 0.3
    #: At most one level-only event per this many seconds (speaker changes are immediate).
    min_emit_interval: float = 0.25
    #: A displayed level must move by this much (linear) to count as a change.
    level_epsilon: float = 0.01
    #: Decimal places of the linear levels in events.
    level_digits: int = 4
    #: A participant (not dominant, not muted) without packets this long is forgotten.
    idle_timeout: float = 30.0


@dataclass(slots=True)
class _Speaker:
    """Per-participant accumulators (reset every tick) and smoothed state."""

    pid: Hashable
    score_sum: float = 0.0
    packets: int = 0
    peak: float = 0.0
    immediate: float = 0.0
    medium: float = 0.0
    long: float = 0.0
    level: float = 0.0
    speaking_since: float | None = None
    muted: bool = False
    last_packet: float = field(default=-math.inf)


class ActiveSpeakerDetector:
    """Owns the per-participant speech state of one room and its dominant-speaker decision.

    Pure logic, no task and no I/O: the owner feeds `report()` from the audio receive path,
    drives `tick()`/`poll()` on a timer and forwards the returned event (a dict shaped like
    the protocol's `active speaker` payload). Muted participants (`set_muted`) and ones who
    leave (`remove`) are dropped at once; if they held the floor the next `tick()` emits
    a change. Nothing to close: drop the object (or `clear()` it) when the room ends.

    Rules: a participant is *speaking* while its medium activity is at least
    `speech_threshold`; one who has been speaking for `hold_time` qualifies. With no
    dominant speaker the best qualified one (by medium, then long activity) takes the
    floor. A dominant speaker keeps the floor while nobody qualifies; it loses it to a
    qualified challenger when it has stopped speaking, or, while both speak, when the
    challenger beats it by `switch_ratio` on immediate and medium activity and exceeds it
    on long activity. Silent and muted participants never win.
    """

    def __init__(
        self,
        config: SpeakerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = cfg = config or SpeakerConfig()
        self._clock = clock
        self._speakers: dict[Hashable, _Speaker] = {}
        self._dominant: Hashable | None = None
        # per-level lookup tables: report() does no math
        span = max(1, cfg.silence_dbov - cfg.loud_dbov)
        self._score = [
            min(1.0, max(0.0, (cfg.silence_dbov - lv) / span)) for lv in range(SILENCE_LEVEL + 1)
        ]
        self._linear = [level_to_linear(lv) for lv in range(SILENCE_LEVEL + 1)]
        self._silence_linear = level_to_linear(cfg.silence_dbov)
        self._last_tick: float | None = None
        self._next_tick: float | None = None
        self._last_emit = -math.inf
        self._last_levels: dict[Hashable, float] = {}
        self._emitted_dominant: Hashable | None = None
        # counters
        self.packets = 0
        self.ticks = 0
        self.speaker_changes = 0
        self.events = 0

    # ------------------------------------------------------------------ input

    @property
    def dominant(self) -> Hashable | None:
        """The current dominant speaker's id, or None."""
        return self._dominant

    def report(self, participant_id: Hashable, level_dbov: int, voice: bool, now: float) -> None:
        """One audio packet's RFC 6464 level (-dBov 0..127) and voice flag. O(1)."""
        self.packets += 1
        speaker = self._speakers.get(participant_id)
        if speaker is None:
            speaker = self._speakers[participant_id] = _Speaker(participant_id)
        if speaker.muted:
            return
        if level_dbov < 0:
            level_dbov = 0
        elif level_dbov > SILENCE_LEVEL:
            level_dbov = SILENCE_LEVEL
        speaker.packets += 1
        speaker.last_packet = now
        if voice or not self.config.require_voice:
            speaker.score_sum += self._score[level_dbov]
        linear = self._linear[level_dbov]
        if linear > speaker.peak:
            speaker.peak = linear

    def set_muted(self, participant_id: Hashable, muted: bool) -> None:
        """Mark a participant's audio muted (its reports are ignored, its state reset)."""
        speaker = self._speakers.get(participant_id)
        if speaker is None:
            if not muted:
                return
            speaker = self._speakers[participant_id] = _Speaker(participant_id)
        speaker.muted = muted
        if muted:
            self._reset(speaker)
            if self._dominant == participant_id:
                self._set_dominant(None)

    def remove(self, participant_id: Hashable) -> None:
        """Forget a participant who left (or stopped publishing audio)."""
        self._speakers.pop(participant_id, None)
        if self._dominant == participant_id:
            self._set_dominant(None)

    def clear(self) -> None:
        """Forget everybody."""
        for pid in list(self._speakers):
            self.remove(pid)

    # ------------------------------------------------------------------ decision

    def poll(self, now: float | None = None) -> dict[str, Any] | None:
        """Run `tick()` when one is due (cheap otherwise): callable from the packet path."""
        if now is None:
            now = self._clock()
        if self._next_tick is not None and now < self._next_tick:
            return None
        return self.tick(now)

    def tick(self, now: float | None = None) -> dict[str, Any] | None:
        """Fold the accumulated packets into the averages, decide, and return the
        `active speaker` event when one is due (a speaker change, at once; a level
        change, at most once per `min_emit_interval`), else None."""
        if now is None:
            now = self._clock()
        cfg = self.config
        last = self._last_tick
        dt = cfg.tick_interval if last is None else max(0.0, now - last)
        self._last_tick = now
        self._next_tick = now + cfg.tick_interval
        self.ticks += 1
        a_imm = 1.0 - math.exp(-dt / cfg.immediate_tau)
        a_med = 1.0 - math.exp(-dt / cfg.medium_tau)
        a_long = 1.0 - math.exp(-dt / cfg.long_tau)
        release = math.exp(-dt / cfg.level_release_tau)
        idle: list[Hashable] = []
        for sp in self._speakers.values():
            if sp.muted:
                continue
            if now - sp.last_packet > cfg.idle_timeout and sp.pid != self._dominant:
                idle.append(sp.pid)
                continue
            activity = sp.score_sum / sp.packets if sp.packets else 0.0
            sp.immediate += a_imm * (activity - sp.immediate)
            sp.medium += a_med * (activity - sp.medium)
            sp.long += a_long * (activity - sp.long)
            sp.level = sp.peak if sp.peak >= sp.level else sp.level * release
            sp.score_sum = 0.0
            sp.packets = 0
            sp.peak = 0.0
            if sp.medium >= cfg.speech_threshold:
                if sp.speaking_since is None:
                    sp.speaking_since = now
            else:
                sp.speaking_since = None
        for pid in idle:  # e.g. a late packet re-created someone who had left
            del self._speakers[pid]
        self._decide(now)
        return self._event(now)

    async def run(
        self,
        emit: Callable[[dict[str, Any]], object],
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """Tick every `tick_interval` (by the injected clock) and hand each event to
        `emit` (e.g. a room broadcast; an exception there is logged, not fatal). Runs
        until cancelled: the owner keeps the task and cancels it when the room closes."""
        interval = self.config.tick_interval
        while True:
            await sleep(interval)
            event = self.poll()
            if event is None:
                continue
            try:
                emit(event)
            except Exception:
                logger.exception("active speaker event not delivered")

    def _qualified(self, sp: _Speaker, now: float) -> bool:
        since = sp.speaking_since
        return not sp.muted and since is not None and now - since >= self.config.hold_time

    def _decide(self, now: float) -> None:
        cfg = self.config
        best: _Speaker | None = None
        for sp in self._speakers.values():
            if sp.pid == self._dominant or not self._qualified(sp, now):
                continue
            if best is None or (sp.medium, sp.long) > (best.medium, best.long):
                best = sp
        if best is None:
            return
        incumbent = self._speakers.get(self._dominant) if self._dominant is not None else None
        if incumbent is None or incumbent.muted:
            self._set_dominant(best.pid)
            return
        if incumbent.speaking_since is None:
            # the incumbent went quiet and the challenger has held the floor long enough
            self._set_dominant(best.pid)
            return
        ratio = cfg.switch_ratio
        if (
            best.medium >= ratio * incumbent.medium
            and best.immediate >= ratio * incumbent.immediate
            and best.long > incumbent.long
        ):
            self._set_dominant(best.pid)

    def _set_dominant(self, pid: Hashable | None) -> None:
        if pid == self._dominant:
            return
        logger.debug("dominant speaker %r -> %r", self._dominant, pid)
        self._dominant = pid
        self.speaker_changes += 1

    def levels(self) -> dict[Hashable, float]:
        """Displayed linear levels of the participants currently above silence."""
        digits = self.config.level_digits
        floor = self._silence_linear
        return {
            sp.pid: round(sp.level, digits)
            for sp in self._speakers.values()
            if not sp.muted and sp.level > floor
        }

    def _levels_changed(self, levels: dict[Hashable, float]) -> bool:
        last = self._last_levels
        if levels.keys() != last.keys():
            return True
        eps = self.config.level_epsilon
        return any(abs(value - last[pid]) >= eps for pid, value in levels.items())

    def _event(self, now: float) -> dict[str, Any] | None:
        levels = self.levels()
        if self._dominant != self._emitted_dominant:
            return self._emit(now, levels)  # a change of speaker goes out at once
        if now - self._last_emit < self.config.min_emit_interval:
            return None
        if not self._levels_changed(levels):
            return None
        return self._emit(now, levels)

    def _emit(self, now: float, levels: dict[Hashable, float]) -> dict[str, Any]:
        self._last_emit = now
        self._last_levels = levels
        self._emitted_dominant = self._dominant
        self.events += 1
        return {"participantId": self._dominant, "levels": dict(levels)}

    def _reset(self, sp: _Speaker) -> None:
        sp.score_sum = sp.immediate = sp.medium = sp.long = sp.level = sp.peak = 0.0
        sp.packets = 0
        sp.speaking_since = None
