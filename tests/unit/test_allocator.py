"""`sfu/allocator.py`: one subscriber's budget shared between its video subscriptions
(base layers first, audio reserve, link pause, hysteresis), with a fake budget, a fake
clock and fake tracks."""

from __future__ import annotations

from typing import Any, cast

import pytest

from sfu.allocator import (
    AUDIO_RESERVE,
    LINK_QUEUE,
    PACE_FACTOR,
    PACKET_OVERHEAD,
    PAUSE_HOLD,
    PAUSED,
    UP_HOLD,
    SubscriberAllocator,
)
from sfu.layers import MAX_TID
from sfu.send_slot import SubscribedTrack
from tests.unit.fakes import FakeClock

K = 1000
L1T3 = (200 * K, 300 * K, 400 * K)


class FakePublished:
    def __init__(self, layers: tuple[int, ...] = L1T3, total: int = 0, mode: str = "passthrough"):
        self.layers = layers
        self.total = total or (layers[-1] if layers else 0)
        self.mode = mode

    def layer_bitrates(self) -> tuple[int, ...]:
        return self.layers

    def bitrate(self) -> int:
        return self.total


class FakeTrack:
    """What the allocator uses of a `SubscribedTrack`: its published track and targets."""

    def __init__(self, published: FakePublished | None = None) -> None:
        self.published = published or FakePublished()
        self.targets: list[int | None] = []

    def set_target(self, tid: int | None) -> None:
        self.targets.append(tid)

    @property
    def target(self) -> int | None:
        return self.targets[-1]


class Budget:
    def __init__(self, bps: int | None) -> None:
        self.bps = bps
        self.calls = 0

    def __call__(self) -> int | None:
        self.calls += 1
        return self.bps


def make(
    bps: int | None, *tracks: FakeTrack, **kwargs: Any
) -> tuple[SubscriberAllocator, Budget, FakeClock]:
    clock = FakeClock(10.0)
    budget = Budget(bps)
    allocator = SubscriberAllocator(budget, clock=clock, **kwargs)
    for track in tracks:
        allocator.add(cast(SubscribedTrack, track))
    return allocator, budget, clock


def video(bps: int) -> int:
    """A budget leaving `bps` for video after the audio reserve (`bps / 1.05` for the
    encoded frames after the packet overhead)."""
    return bps + AUDIO_RESERVE


def test_unknown_budget_forwards_every_layer() -> None:
    a, b = FakeTrack(), FakeTrack()
    allocator, _, _ = make(None, a, b)
    allocator.refresh()
    assert (a.target, b.target) == (MAX_TID, MAX_TID)
    assert allocator.level(cast(SubscribedTrack, a)) == MAX_TID


def test_base_layers_first_then_upper_layers_round_robin() -> None:
    a, b = FakeTrack(), FakeTrack()
    # 450k: both base layers (400k), not a first TL1 with its margin
    allocator, budget, clock = make(video(450 * K), a, b)
    allocator.refresh()
    assert (a.target, b.target) == (0, 0)
    # plenty: both go to the top at once (no move down yet: no hold)
    budget.bps = video(2000 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (MAX_TID, MAX_TID)
    # 650k: both bases (400k) + a's TL1 (100k) + b's TL1 (100k): 600k, no TL2 for anyone
    budget.bps = video(650 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (1, 1)
    # 550k: the first track keeps its TL1, the second drops to its base layer
    budget.bps = video(550 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (1, 0)


def test_link_pause_when_the_base_layer_does_not_fit_and_hysteresis_on_resume() -> None:
    a, b = FakeTrack(), FakeTrack()
    allocator, budget, clock = make(video(280 * K), a, b)
    allocator.refresh()
    # one base layer fits, the other track is paused
    assert (a.target, b.target) == (0, None)
    assert allocator.level(cast(SubscribedTrack, b)) == PAUSED
    # the paused one needs its base layer plus the margin (250k) and the hold time
    budget.bps = video(440 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert b.target is None  # 240k left after a's 200k: the margin says not yet
    budget.bps = video(480 * K)  # 457k after the packet overhead
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (0, 0)
    # a running track keeps its place before a paused one when the budget falls
    budget.bps = video(250 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (0, None)
    budget.bps = video(100 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (None, None)
    # back up, but both moved down 0.5 s ago: the hold keeps them paused a while
    budget.bps = video(2000 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (None, None)  # moved down 0.5 s ago: hold
    # both had moved up less than 2 s before the budget fell: their pause holds doubled
    # (2 s, not PAUSE_HOLD; a pause's hold does not grow from the 3 s of a layer's)
    clock.advance(1.0)
    allocator.refresh()
    assert a.target is None and b.target == MAX_TID  # b paused 2 s ago, a 1.5 s ago
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (MAX_TID, MAX_TID)


def test_a_pause_resumes_sooner_than_a_layer_moves_up() -> None:
    """A link pause freezes the picture: once the budget carries the base layer with the
    margin again, it resumes after `PAUSE_HOLD`, while a layer dropped at the same time
    waits the whole `UP_HOLD`."""
    assert PAUSE_HOLD < UP_HOLD
    a, b = FakeTrack(), FakeTrack()
    allocator, budget, clock = make(video(1000 * K), a, b)
    allocator.refresh()
    assert (a.target, b.target) == (MAX_TID, MAX_TID)
    clock.advance(10.0)  # long after the start: no recent move up
    budget.bps = video(250 * K)  # a's base fits, b's does not
    allocator.refresh()
    assert (a.target, b.target) == (0, None)
    budget.bps = video(1000 * K)
    clock.advance(PAUSE_HOLD)
    allocator.refresh()
    assert b.target is not None  # resumed
    assert a.target == 0  # a's layers wait for the hold
    clock.advance(UP_HOLD)
    allocator.refresh()
    assert a.target == MAX_TID


def test_no_flapping_around_a_layer_threshold() -> None:
    a = FakeTrack()
    allocator, budget, clock = make(video(380 * K), a)
    allocator.refresh()
    # a new track needs no margin: base 200k and TL1 100k; TL2 (100k) not in 80k
    assert a.target == 1
    # 280k: TL1 (300k) no longer fits: down at once
    budget.bps = video(280 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert a.target == 0
    # the budget wobbles just above TL1's rate for a while: no move up without the margin
    for i in range(20):
        budget.bps = video((310 + 10 * (i % 3)) * K)
        clock.advance(0.5)
        allocator.refresh()
        assert a.target == 0
    # a real recovery: up again (hold long passed)
    budget.bps = video(400 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert a.target == 1
    assert a.targets.count(0) > 1 and a.targets.count(1) == 2  # two transitions up, one down


def test_a_resume_undone_by_a_publishers_rate_rise_waits_longer() -> None:
    """A paused subscription resumes, then its publisher's base layer grows (a bigger
    variant) and it is paused again: on the same budget that is a failed move up too, so
    the next resume waits a doubled hold instead of flapping (each resume is a keyframe
    wait for the viewer)."""
    publisher = FakePublished((100 * K, 150 * K, 200 * K))
    a, b = FakeTrack(), FakeTrack(publisher)
    allocator, _, clock = make(video(350 * K), a, b)
    allocator.refresh()
    assert (a.target, b.target) == (0, 0)  # a's base 200k + b's 100k
    publisher.layers = (300 * K, 400 * K, 500 * K)  # b's publisher moves up
    clock.advance(0.5)
    allocator.refresh()
    assert b.target is None  # paused: 300k does not fit in the 133k left, nor the slack
    publisher.layers = (100 * K, 150 * K, 200 * K)
    clock.advance(PAUSE_HOLD)
    allocator.refresh()
    assert b.target == 0  # resumed after the short pause hold
    publisher.layers = (300 * K, 400 * K, 500 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert b.target is None  # undone by the rate rise: a failed move up
    publisher.layers = (100 * K, 150 * K, 200 * K)
    clock.advance(PAUSE_HOLD)
    allocator.refresh()
    assert b.target is None  # the hold doubled
    clock.advance(PAUSE_HOLD)
    allocator.refresh()
    assert b.target == 0
    pauses = [
        y for x, y in zip(b.targets, b.targets[1:], strict=False) if y is None and x is not None
    ]
    assert len(pauses) == 2


def test_untagged_video_is_all_or_nothing_and_transcode_is_left_alone() -> None:
    untagged = FakeTrack(FakePublished(layers=(), total=500 * K))
    transcoded = FakeTrack(FakePublished(mode="transcode"))
    allocator, budget, clock = make(video(700 * K), untagged, transcoded)
    allocator.refresh()
    assert untagged.target == MAX_TID and transcoded.targets == []
    budget.bps = video(400 * K)
    clock.advance(0.5)
    allocator.refresh()
    assert untagged.target is None


def test_refresh_allocates_once_per_interval_and_add_remove() -> None:
    a, b = FakeTrack(), FakeTrack()
    allocator, budget, clock = make(video(450 * K), a)
    for _ in range(10):
        allocator.refresh()
    assert budget.calls == 1 and allocator.allocations == 1
    assert a.target == MAX_TID
    clock.advance(0.25)
    allocator.refresh()
    assert budget.calls == 1
    # a new track: allocate at once; both get their base layer
    allocator.add(cast(SubscribedTrack, b))
    allocator.add(cast(SubscribedTrack, b))
    allocator.refresh()
    assert budget.calls == 2 and allocator.tracks == [a, b]
    assert (a.target, b.target) == (0, 0)
    allocator.remove(cast(SubscribedTrack, a))
    allocator.remove(cast(SubscribedTrack, a))
    assert allocator.level(cast(SubscribedTrack, a)) is None
    clock.advance(3.0)
    allocator.refresh()
    assert allocator.tracks == [b] and b.target == 1


def test_a_track_without_published_is_skipped() -> None:
    a = FakeTrack()
    a.published = None  # type: ignore[assignment]
    allocator, _, _ = make(video(1000 * K), a)
    allocator.refresh()
    assert a.targets == []


@pytest.mark.parametrize(
    "kwargs",
    [{"interval": 0}, {"audio_reserve": -1}, {"up_margin": 0.5}, {"up_hold": -1}],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="allocator"):
        SubscriberAllocator(lambda: None, **kwargs)


@pytest.mark.parametrize("bad", [-1, "300k", True, RuntimeError("estimator broke")])
def test_a_bad_or_failing_budget_counts_as_unlimited(bad: object) -> None:
    a = FakeTrack()

    def budget() -> int | None:
        if isinstance(bad, Exception):
            raise bad
        return bad  # type: ignore[return-value]

    clock = FakeClock()
    allocator = SubscriberAllocator(budget, clock=clock)
    allocator.add(cast(SubscribedTrack, a))
    allocator.refresh()
    clock.advance(0.5)
    allocator.refresh()  # warned once, still no failure
    assert a.targets == [MAX_TID, MAX_TID] and allocator.last_budget is None


def test_a_paused_subscription_probes_with_a_growing_wait() -> None:
    a = FakeTrack()
    allocator, budget, clock = make(video(100 * K), a)
    allocator.refresh()
    assert a.target is None  # 200k base layer, 100k budget: paused
    waits = []
    for _ in range(3):
        # paused until the probe: the budget still says no
        paused_for = 0.0
        while a.target is None:
            clock.advance(0.5)
            paused_for += 0.5
            allocator.refresh()
            assert paused_for < 60
        waits.append(paused_for)
        assert a.target == 0  # the probe: base layer only, whatever the budget
        clock.advance(0.5)
        allocator.refresh()
        assert a.target == 0  # held for the probe's time
        clock.advance(3.0)
        allocator.refresh()
        assert a.target is None  # the estimate did not rise: paused again
    assert waits[0] < waits[1] < waits[2]  # each failed probe doubles the wait
    assert allocator.probes == 3
    # a probe that the link carries: the estimate rises, the track stays and moves up
    while a.target is None:
        clock.advance(0.5)
        allocator.refresh()
    budget.bps = video(600 * K)
    clock.advance(3.5)
    allocator.refresh()
    assert a.target is not None and a.target >= 0
    clock.advance(10.0)
    allocator.refresh()
    assert a.target == MAX_TID


def test_the_link_queue_sheds_upper_layers_and_drains_at_the_budget() -> None:
    allocator, budget, clock = make(None, FakeTrack())
    allocator.refresh()
    assert all(allocator.admit(100_000, 2) for _ in range(10))  # unknown budget: no queue
    assert allocator.queued() == 0
    budget.bps = video(round(400 * K * PACKET_OVERHEAD))  # drains 50 kB/s of video
    clock.advance(1.0)
    allocator.refresh()
    depth = LINK_QUEUE * 50_000  # 12.5 kB
    assert allocator.admit(int(0.45 * depth), 2)
    assert not allocator.admit(int(0.1 * depth), 2)  # TL2: not past half the queue
    assert allocator.admit(int(0.3 * depth), 1)  # TL1: up to 80 %
    assert not allocator.admit(int(0.1 * depth), 1)
    assert allocator.admit(int(0.5 * depth), 0)  # the base layer always goes
    # but the model holds no more than the queue: the rest is what the link drops
    assert allocator.queued() == pytest.approx(depth, abs=2) and allocator.shed == 2
    clock.advance(LINK_QUEUE * 0.5)
    assert allocator.queued() == pytest.approx(0.5 * depth, abs=2)
    assert allocator.admit(int(0.3 * depth), 1)  # drained: TL1 goes again
    clock.advance(LINK_QUEUE)
    assert allocator.queued() == 0
    assert allocator.admit(int(0.4 * depth), 2)
    allocator.charge(int(0.2 * depth))  # a retransmission takes the room of a TL2 frame
    assert not allocator.admit(1, 2)
    assert allocator.shed == 3


def test_the_pacer_runs_at_the_video_budget_only_while_it_is_known() -> None:
    allocator, budget, clock = make(None, FakeTrack())
    allocator.refresh()
    assert not allocator.pacer.engaged and allocator.pacer.rate is None
    budget.bps = video(round(400 * K * PACKET_OVERHEAD))  # 50 kB/s of video
    clock.advance(1.0)
    allocator.refresh()
    assert allocator.pacer.engaged
    assert allocator.pacer.rate == pytest.approx(50_000 * PACKET_OVERHEAD * PACE_FACTOR)
    budget.bps = None
    clock.advance(1.0)
    allocator.refresh()
    assert not allocator.pacer.engaged
    allocator.close()


def test_a_cut_budget_is_allocated_at_the_next_frame_not_the_next_interval() -> None:
    a = FakeTrack()
    allocator, budget, clock = make(video(1000 * K), a)
    allocator.refresh()
    assert a.target == MAX_TID
    budget.bps = video(250 * K)
    clock.advance(0.1)
    allocator.refresh()
    assert a.target == MAX_TID  # within the interval: not read yet
    allocator.reallocate()  # the estimate says it was cut
    allocator.refresh()
    assert a.target == 0


def test_a_running_base_layer_is_kept_a_little_over_the_budget_not_paused() -> None:
    """A cut that leaves the running base layers a little over the budget (up to
    PAUSE_SLACK) lowers upper layers but pauses nothing; a paused subscription resumes only
    within the budget, with its margin."""
    a, b = FakeTrack(), FakeTrack()
    allocator, budget, clock = make(video(1000 * K), a, b)
    allocator.refresh()
    assert (a.target, b.target) == (MAX_TID, MAX_TID)
    budget.bps = video(round(340 * K * PACKET_OVERHEAD))  # bases need 400k: 1.18x
    clock.advance(10.0)
    allocator.refresh()
    assert (a.target, b.target) == (0, 0)
    budget.bps = video(round(300 * K * PACKET_OVERHEAD))  # 1.33x: one is paused
    clock.advance(0.5)
    allocator.refresh()
    assert (a.target, b.target) == (0, None)
    budget.bps = video(round(340 * K * PACKET_OVERHEAD))  # b needs 250k with its margin
    clock.advance(PAUSE_HOLD + 0.5)  # past the pause's hold, before a probe
    allocator.refresh()
    assert b.target is None
