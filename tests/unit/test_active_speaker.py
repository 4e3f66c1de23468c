"""Unit tests of the dominant-speaker detector: a fake clock, 20 ms packets, no sleeping."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from sfu.active_speaker import ActiveSpeakerDetector, SpeakerConfig, level_to_linear

PACKET = 0.02
LOUD = 20  # -dBov of speech
QUIET = 55  # quieter speech, still above silence
SILENT = 127

#: participant -> level at time t (None: no packet)
Script = dict[str, Callable[[float], int | None]]


class Sim:
    """Feeds the detector 20 ms packets per participant and ticks it on its interval."""

    def __init__(self, config: SpeakerConfig | None = None) -> None:
        self.now = 0.0
        self.det = ActiveSpeakerDetector(config, clock=lambda: self.now)
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.speakers: list[tuple[float, Any]] = []

    def run(self, seconds: float, script: Script) -> None:
        steps = round(seconds / PACKET)
        start = self.now
        for i in range(steps):
            self.now = start + (i + 1) * PACKET
            for pid, level_at in script.items():
                level = level_at(self.now)
                if level is not None:
                    self.det.report(pid, level, level < SILENT, self.now)
            event = self.det.poll(self.now)
            if event is not None:
                self.events.append((self.now, event))
            self.speakers.append((self.now, self.det.dominant))


def const(level: int | None) -> Callable[[float], int | None]:
    return lambda t: level


def burst(start: float, length: float, inside: int, outside: int) -> Callable[[float], int]:
    return lambda t: inside if start <= t < start + length else outside


def test_linear_mapping() -> None:
    assert level_to_linear(0) == 1.0
    assert level_to_linear(127) == 0.0
    assert level_to_linear(20) == pytest.approx(0.1)
    assert level_to_linear(200) == 0.0  # clamped
    assert level_to_linear(-5) == 1.0


def test_follows_the_loud_participant() -> None:
    sim = Sim()
    sim.run(3.0, {"a": const(LOUD), "b": const(QUIET), "c": const(SILENT)})
    assert sim.det.dominant == "a"
    changes = [e for _, e in sim.events if e["participantId"] is not None]
    assert changes[0]["participantId"] == "a"
    levels = sim.events[-1][1]["levels"]
    assert set(levels) == {"a", "b"}  # c is silent: not listed
    assert levels["a"] == pytest.approx(0.1, abs=0.01)
    assert levels["a"] > levels["b"] > 0


def test_floor_needs_hold_time() -> None:
    sim = Sim(SpeakerConfig(hold_time=1.0))
    sim.run(0.6, {"a": const(LOUD)})
    assert sim.det.dominant is None
    sim.run(1.4, {"a": const(LOUD)})
    assert sim.det.dominant == "a"


@pytest.mark.parametrize("length", [0.2, 0.3])
def test_short_burst_does_not_take_the_floor(length: float) -> None:
    sim = Sim()
    sim.run(3.0, {"a": const(LOUD), "b": const(SILENT)})
    assert sim.det.dominant == "a"
    # a cough by b, while a keeps talking, then while a pauses
    t = sim.now
    sim.run(2.0, {"a": const(LOUD), "b": burst(t + 0.5, length, 0, SILENT)})
    t = sim.now
    sim.run(2.0, {"a": const(SILENT), "b": burst(t + 0.5, length, LOUD, SILENT)})
    assert {s for _, s in sim.speakers[-200:]} == {"a"}


def test_sustained_speech_takes_the_floor_after_hold() -> None:
    cfg = SpeakerConfig()
    sim = Sim(cfg)
    sim.run(3.0, {"a": const(LOUD), "b": const(SILENT)})
    assert sim.det.dominant == "a"
    start = sim.now
    sim.run(3.0, {"a": const(SILENT), "b": const(LOUD)})
    assert sim.det.dominant == "b"
    switched = next(t for t, s in sim.speakers if s == "b")
    assert cfg.hold_time <= switched - start <= cfg.hold_time + 1.0
    # the change was emitted at once
    assert any(t == switched and e["participantId"] == "b" for t, e in sim.events)


def test_louder_interrupter_wins_over_talking_incumbent() -> None:
    sim = Sim()
    sim.run(3.0, {"a": const(QUIET), "b": const(SILENT)})
    assert sim.det.dominant == "a"
    sim.run(4.0, {"a": const(QUIET), "b": const(LOUD)})
    assert sim.det.dominant == "b"


def test_equal_overlap_keeps_incumbent() -> None:
    sim = Sim()
    sim.run(3.0, {"a": const(LOUD), "b": const(SILENT)})
    sim.run(5.0, {"a": const(LOUD), "b": const(LOUD)})
    assert {s for _, s in sim.speakers[-250:]} == {"a"}


def test_silent_and_muted_never_win() -> None:
    sim = Sim()
    sim.det.set_muted("m", True)
    sim.run(3.0, {"s": const(SILENT), "m": const(LOUD), "q": const(None)})
    assert sim.det.dominant is None
    assert all(e["participantId"] is None for _, e in sim.events)
    assert all("m" not in e["levels"] and "s" not in e["levels"] for _, e in sim.events)
    # unmuted, m speaks and wins
    sim.det.set_muted("m", False)
    sim.run(2.0, {"s": const(SILENT), "m": const(LOUD)})
    assert sim.det.dominant == "m"


def test_muting_the_speaker_drops_it() -> None:
    sim = Sim()
    sim.run(3.0, {"a": const(LOUD), "b": const(QUIET)})
    assert sim.det.dominant == "a"
    sim.det.set_muted("a", True)
    assert sim.det.dominant is None
    before = len(sim.events)
    sim.run(0.2, {"a": const(LOUD), "b": const(QUIET)})
    # b has been speaking all along: it qualifies and takes the floor on the next tick
    assert sim.events[before][1]["participantId"] == "b"
    assert "a" not in sim.events[before][1]["levels"]
    assert sim.det.dominant == "b"


def test_leaving_clears() -> None:
    sim = Sim()
    sim.run(3.0, {"a": const(LOUD)})
    assert sim.det.dominant == "a"
    sim.det.remove("a")
    assert sim.det.dominant is None
    sim.run(0.4, {})
    assert sim.events[-1][1] == {"participantId": None, "levels": {}}
    sim.det.remove("nobody")  # harmless


def test_rate_limit_bounds_emissions() -> None:
    cfg = SpeakerConfig(tick_interval=0.1, min_emit_interval=0.25)
    sim = Sim(cfg)
    # levels change all the time: a alternates loud/quiet every 300 ms
    wobble = lambda t: LOUD if int(t / 0.3) % 2 else 45  # noqa: E731
    sim.run(10.0, {"a": wobble, "b": const(QUIET)})
    times = [t for t, _ in sim.events]
    assert len(times) <= 10.0 / cfg.min_emit_interval + 2
    level_only = [
        t
        for (t, e), (_, p) in zip(sim.events[1:], sim.events, strict=False)
        if e["participantId"] == p["participantId"]
    ]
    gaps = [b - a for a, b in itertools.pairwise(level_only)]
    assert gaps and min(gaps) >= cfg.min_emit_interval - 1e-9
    assert len(times) >= 10  # but levels do flow


def test_steady_levels_emit_nothing_more() -> None:
    sim = Sim()
    sim.run(3.0, {"a": const(LOUD)})
    count = len(sim.events)
    sim.run(3.0, {"a": const(LOUD)})
    assert len(sim.events) == count


def test_report_is_cheap_and_clamps() -> None:
    det = ActiveSpeakerDetector()
    det.report("a", 500, True, 0.0)
    det.report("a", -3, True, 0.01)
    assert det.packets == 2
    assert det.tick(0.2) is not None  # a's level 1.0 appears
    assert det.levels() == {"a": 1.0}


async def test_run_ticks_with_injected_sleep() -> None:
    now = [0.0]
    det = ActiveSpeakerDetector(clock=lambda: now[0])
    events: list[dict[str, Any]] = []

    async def fake_sleep(seconds: float) -> None:
        # 20 ms packets from "a" during the sleep, then time has passed
        for _ in range(round(seconds / PACKET)):
            now[0] += PACKET
            det.report("a", LOUD, True, now[0])
        if now[0] >= 3.0:
            raise asyncio.CancelledError

    def emit(event: dict[str, Any]) -> None:
        events.append(event)
        raise RuntimeError("a failing emitter does not stop the loop")

    with pytest.raises(asyncio.CancelledError):
        await det.run(emit, sleep=fake_sleep)
    assert events and events[-1]["participantId"] == "a"


def test_idle_participants_are_forgotten() -> None:
    sim = Sim(SpeakerConfig(idle_timeout=5.0))
    sim.run(3.0, {"a": const(LOUD), "b": const(QUIET)})
    assert sim.det.dominant == "a"
    sim.run(6.0, {})  # nobody sends anymore
    assert sim.det.dominant == "a"  # the floor is kept until someone else speaks
    assert set(sim.det._speakers) == {"a"}
    assert sim.events[-1][1] == {"participantId": "a", "levels": {}}
