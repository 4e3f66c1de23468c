"""The publisher cap: the REMB the server sends is held below a cap, and a room's policy
caps a published video whose base layer does not fit its slowest subscriber."""

from __future__ import annotations

from typing import Any, cast

import pytest

from sfu.allocator import PACKET_OVERHEAD
from sfu.compat.remb import MIN_PUBLISHER_BITRATE, IntervalBitrateEstimator
from sfu.published_track import PublishedTrack
from sfu.publisher_cap import AUDIO_RESERVE, CAP_BELOW, MIN_HOLD, RELEASE, PublisherCapPolicy
from tests.unit.fakes import FakeClock
from tests.unit.test_remb import feed


class FakePub:
    """A published track as the policy reads it."""

    def __init__(
        self, publisher_id: str, kind: str = "video", layers: tuple[int, ...] | None = None
    ) -> None:
        self.publisher_id = publisher_id
        self.key = "0" if kind == "video" else "1"
        self.kind = kind
        self.closed = False
        self.bytes = 0
        self.bitrate_cap: int | None = None
        self.caps: list[int | None] = []
        if layers is not None:
            self.layers = layers
            self.bitrate = lambda: self.layers[-1] if self.layers else 0
            self.layer_bitrates = lambda: self.layers

    def cap_bitrate(self, bps: int | None) -> None:
        self.bitrate_cap = None if bps is None else max(bps, MIN_PUBLISHER_BITRATE)
        self.caps.append(self.bitrate_cap)


class FakeDownlink:
    def __init__(self) -> None:
        self.value: int | None = None

    def bitrate(self) -> int | None:
        return self.value


class FakeTrack:
    """A subscriber's track for one published track, as the policy reads it."""

    link_paused = False


class FakeParticipant:
    def __init__(self, pid: str) -> None:
        self.id = pid
        self.published: dict[str, FakePub] = {}
        self.downlink = FakeDownlink()
        self.receives: list[FakePub] = []
        self.tracks: dict[int, FakeTrack] = {}

    def subscriptions(self) -> list[tuple[FakePub, Any]]:
        return [(pub, self.tracks.setdefault(id(pub), FakeTrack())) for pub in self.receives]


def share(estimate: int, videos: int = 1) -> int:
    """The bps one of a subscriber's videos gets from its allocator."""
    return round((estimate - AUDIO_RESERVE) / PACKET_OVERHEAD / videos)


def room(
    layers: tuple[int, ...] | None = (350_000, 525_000, 700_000),
) -> tuple[list[FakeParticipant], FakePub, PublisherCapPolicy, FakeClock]:
    """alice publishes camera + mic; bob and carol receive both."""
    alice, bob, carol = FakeParticipant("a"), FakeParticipant("b"), FakeParticipant("c")
    video = FakePub("a", "video", layers)
    audio = FakePub("a", "audio")
    alice.published = {"0": video, "1": audio}
    bob.receives = [video, audio]
    carol.receives = [video, audio]
    people = [alice, bob, carol]
    clock = FakeClock()
    policy = PublisherCapPolicy(lambda: cast(list[Any], people), clock=clock)
    return people, video, policy, clock


def test_no_cap_while_estimates_are_unknown_or_fit() -> None:
    people, video, policy, _ = room()
    policy.update()
    people[1].downlink.value = 2_000_000
    policy.update()
    assert video.caps == [] and policy.caps() == {}


def test_slow_subscriber_caps_so_the_whole_track_fits_then_recovers() -> None:
    people, video, policy, clock = room()
    bob = people[1]
    bob.downlink.value = 520_000  # its allocator's share for the one video: ~448k
    policy.update()
    assert video.caps == [] and share(520_000) >= CAP_BELOW * 350_000  # base fits, margin
    bob.downlink.value = 450_000  # ~381k: the base layer (350k) without the margin
    policy.update()
    assert video.bitrate_cap == share(450_000)  # the whole track fits bob
    assert policy.caps() == {"a/0": video.bitrate_cap}
    # capped, the publisher sends less: its layers shrink, the cap holds
    video.layers = (190_000, 280_000, 380_000)
    policy.update()
    assert video.bitrate_cap == share(450_000)
    # a small change of the estimate does not move the cap; a large one does
    bob.downlink.value = 460_000
    policy.update()
    assert len(video.caps) == 1
    bob.downlink.value = 350_000
    policy.update()
    assert video.bitrate_cap == share(350_000)
    # bob recovers: above the uncapped bitrate; the cap held long enough goes
    bob.downlink.value = 1_000_000
    policy.update()
    assert video.bitrate_cap is not None  # held MIN_HOLD s: no flapping
    clock.advance(MIN_HOLD)
    policy.update()
    assert video.bitrate_cap is None and policy.caps() == {}


def test_the_cap_holds_while_the_slow_subscriber_lacks_room_for_the_uncapped_track() -> None:
    """Capped, the publisher shrinks and the slow subscriber's estimate recovers to carry
    what the track now sends; lifting there would send the publisher back to its old rate,
    which overflows that link again: the cap holds until the share carries the uncapped
    bitrate."""
    people, video, policy, clock = room()
    bob = people[1]
    bob.downlink.value = 300_000
    policy.update()
    assert video.bitrate_cap == share(300_000)
    video.layers = (110_000, 170_000, 230_000)  # the publisher followed the cap
    for estimate in (400_000, 600_000, 800_000):  # bob carries the capped track easily
        bob.downlink.value = estimate
        clock.advance(MIN_HOLD)
        policy.update()
        assert share(estimate) < RELEASE * 700_000
        assert video.bitrate_cap == share(estimate)  # follows the share, never lifted
    bob.downlink.value = 1_000_000
    clock.advance(1.0)
    policy.update()
    assert video.bitrate_cap is None


def test_a_link_paused_subscription_caps_its_publisher() -> None:
    """The subscriber's allocator paused the video (other videos took the budget first):
    the publisher is capped even when the even split would carry its base layer."""
    people, video, policy, _ = room()
    bob = people[1]
    bob.downlink.value = 1_500_000
    policy.update()
    assert video.caps == []
    bob.subscriptions()  # its tracks exist
    bob.tracks[id(video)].link_paused = True
    policy.update()
    assert video.bitrate_cap == share(1_500_000)


def test_cap_lifted_when_the_slow_subscriber_leaves() -> None:
    people, video, policy, _ = room()
    people[2].downlink.value = 250_000
    policy.update()
    assert video.bitrate_cap is not None
    people.pop(2)  # carol leaves
    policy.update()
    assert video.bitrate_cap is None


def test_cap_has_a_floor() -> None:
    people, video, policy, _ = room()
    people[1].downlink.value = 60_000
    policy.update()
    assert video.bitrate_cap == MIN_PUBLISHER_BITRATE


def test_without_layers_the_track_bitrate_is_measured_from_its_bytes() -> None:
    people, video, policy, clock = room(layers=None)
    people[1].downlink.value = 300_000
    policy.update()  # first measurement: nothing known yet
    assert video.caps == []
    clock.advance(1.0)
    video.bytes += 600_000 // 8  # 600 kbps
    policy.update()
    assert video.bitrate_cap == share(300_000)


def test_close_lifts_its_caps_and_forgets_closed_tracks() -> None:
    people, video, policy, _ = room()
    people[1].downlink.value = 200_000
    policy.update()
    assert video.bitrate_cap is not None
    policy.close()
    assert video.bitrate_cap is None
    policy.update()
    video.closed = True
    policy.update()
    assert policy.caps() == {}


def test_estimator_cap_lowers_the_remb_and_sends_one_before_rate_control() -> None:
    estimator = IntervalBitrateEstimator()
    assert estimator.set_cap(100_000) == MIN_PUBLISHER_BITRATE
    rembs = feed(estimator, 2.0, 1_000_000)  # aiortc's rate control is still warming up
    assert rembs and all(bitrate == MIN_PUBLISHER_BITRATE for _, bitrate, _ in rembs)
    estimator.set_cap(None)
    later = feed(estimator, 5.0, 1_000_000, start_ms=3000)
    assert later and max(bitrate for _, bitrate, _ in later) > MIN_PUBLISHER_BITRATE
    assert estimator.capped >= len(rembs)
    with pytest.raises(ValueError):
        estimator.set_cap(0)
    assert estimator.cap is None


async def test_published_track_cap_bitrate_reaches_its_estimator() -> None:
    track = PublishedTrack("video", "camera", publisher_id="p1", key="0")
    track.hook = cast(Any, type("Hook", (), {"estimator": IntervalBitrateEstimator()})())
    estimator = cast(Any, track.hook).estimator

    def caps() -> tuple[int | None, int | None]:
        return track.bitrate_cap, estimator.cap

    track.cap_bitrate(400_000)
    assert caps() == (400_000, 400_000)
    track.cap_bitrate(1)
    assert caps() == (MIN_PUBLISHER_BITRATE, MIN_PUBLISHER_BITRATE)
    for bad in (-5, 0, 2.5, True):
        with pytest.raises(ValueError):
            track.cap_bitrate(bad)  # type: ignore[arg-type]
    assert caps() == (MIN_PUBLISHER_BITRATE, MIN_PUBLISHER_BITRATE)
    track.cap_bitrate(None)
    assert caps() == (None, None)
    track.hook = None
    track.close()
