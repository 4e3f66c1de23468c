"""`sfu/participant.py` with a fake peer connection and a fake signaler (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from sfu.config import SfuConfig
from sfu.errors import SfuError
from sfu.participant import Participant
from sfu.published_track import PublishedTrack
from tests.unit.fakes import FakePeerConnection, FakeSignaler, sdp


def answer_reply(pid: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"description": {"type": "answer", "sdp": sdp("video", setup="active")}}


class Harness:
    def __init__(
        self,
        pid: str = "a",
        publications: Callable[[], list[PublishedTrack]] = list,
        reply: Any = answer_reply,
        can_publish: bool = True,
        forwarding: Any = "passthrough",
        adapt_downlink: bool = False,
    ) -> None:
        self.signaler = FakeSignaler(reply)
        self.failed: list[str] = []
        self.published_calls = 0
        self.pcs: list[FakePeerConnection] = []
        #: server events the participant sent through `notify` (event, payload)
        self.notified: list[tuple[str, dict[str, Any]]] = []
        config = SfuConfig(
            negotiation_timeout=2.0,
            initial_offer_grace=0.01,
            forwarding=forwarding,
            adapt_downlink=adapt_downlink,
        )
        self.participant = Participant(
            pid,
            pid.upper(),
            config,
            self.signaler,  # type: ignore[arg-type]
            publications=publications,
            on_published=self._published,
            on_failed=lambda p, reason: self.failed.append(reason),
            can_publish=can_publish,
            peer_connection=self._make_pc,  # type: ignore[arg-type]
            notify=lambda event, payload: self.notified.append((event, payload)),
        )

    def _published(self) -> None:
        self.published_calls += 1

    def _make_pc(self, configuration: Any) -> FakePeerConnection:
        pc = FakePeerConnection(configuration)
        self.pcs.append(pc)
        return pc

    @property
    def pc(self) -> FakePeerConnection:
        return self.pcs[-1]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state changed by tasks
            await asyncio.sleep(0.005)


async def test_client_offer_publishes_one_track_per_mline() -> None:
    h = Harness()
    p = h.participant
    answer = await p.handle_offer(sdp("video", "audio"), {"0": "screen"})
    assert "a=x-answer" in answer
    assert set(p.published) == {"0", "1"}
    video, audio = p.published["0"], p.published["1"]
    assert (video.publisher_id, video.key, video.kind, video.source) == (
        "a",
        "0",
        "video",
        "screen",
    )
    assert (audio.kind, audio.source, audio.mode) == ("audio", "microphone", "passthrough")
    assert video.hook is not None and video.receiver is h.pc.transceivers[0].receiver
    assert p.live_publications() == [video, audio]
    assert h.published_calls == 1
    # the same offer again changes nothing the room must hear about
    await p.handle_offer(sdp("video", "audio"), {"0": "screen"})
    assert h.published_calls == 1
    # the client stops sending its screen: no longer live, the room hears it
    await p.handle_offer(sdp("video inactive", "audio"), {})
    assert p.live_publications() == [audio] and h.published_calls == 2
    await p.close()


async def test_transcode_mode_publishes_the_decoded_track() -> None:
    h = Harness(forwarding="transcode")
    await h.participant.handle_offer(sdp("video"), {})
    [pub] = h.participant.published.values()
    assert pub.mode == "transcode" and pub.hook is None
    await h.participant.close()


async def test_first_offer_without_vp8_is_refused_and_forgotten() -> None:
    h = Harness()
    p = h.participant
    with pytest.raises(SfuError) as info:
        await p.handle_offer(sdp("video novp8"), {})
    assert info.value.code == "invalid_sdp"
    assert p.published == {} and p.pc is None and h.pc.closed
    assert h.failed == []  # a refused first offer is not a failure of the participant
    await p.handle_offer(sdp("video"), {})  # a new peer connection takes the next one
    assert len(h.pcs) == 2 and len(p.published) == 1
    await p.close()


async def test_subscribe_only_participant_cannot_publish() -> None:
    h = Harness(can_publish=False)
    with pytest.raises(SfuError) as info:
        await h.participant.handle_offer(sdp("video"), {})
    assert info.value.code == "unauthorized"
    await h.participant.handle_offer(sdp("video recvonly"), {})
    assert h.participant.published == {}
    await h.participant.close()


async def test_candidates_wait_for_the_remote_description() -> None:
    h = Harness()
    p = h.participant
    candidate = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "sdpMid": "0"}
    await p.add_candidate(candidate)
    await p.handle_offer(sdp("video"), {})
    assert len(h.pc.candidates) == 1 and h.pc.candidates[0].ip == "127.0.0.1"
    await p.add_candidate(None)
    assert h.pc.candidates[-1] is None
    with pytest.raises(SfuError):
        await p.add_candidate({"candidate": "candidate:1 1 udp x 127.0.0.1 5000 typ host"})
    await p.close()


async def test_server_offer_carries_the_room_tracks_and_a_closing_publisher_frees_slots() -> None:
    publisher = Harness("a")
    await publisher.participant.handle_offer(sdp("video", "audio"), {})
    subscriber = Harness("b", publications=publisher.participant.live_publications)
    b = subscriber.participant
    b.schedule_sync()
    await wait_until(lambda: len(subscriber.signaler.requests) == 1)
    _, event, payload = subscriber.signaler.requests[0]
    assert event == "sdp" and payload["description"]["type"] == "offer"
    assert [(t["participantId"], t["kind"], t["source"]) for t in payload["tracks"]] == [
        ("a", "video", "camera"),
        ("a", "audio", "microphone"),
    ]
    await wait_until(lambda: subscriber.pc.signalingState == "stable")
    slots = b.send_slots()
    assert [s.published for s in slots] == list(publisher.participant.published.values())
    assert [pub.publisher_id for pub, _ in b.subscriptions()] == ["a", "a"]
    assert all(s.transceiver.direction == "sendonly" for s in slots)
    assert all(pub.stats().subscribers == 1 for pub in publisher.participant.published.values())

    # the publisher's tracks close: its subscribers' slots are released at once (before
    # any await), then renegotiated
    for pub in publisher.participant.published.values():
        pub.close()
    assert all(s.published is None and s.transceiver.direction == "inactive" for s in slots)
    await publisher.participant.close()
    await wait_until(lambda: len(subscriber.signaler.requests) == 2)
    assert subscriber.signaler.requests[1][2]["tracks"] == []
    assert b.subscriptions() == []
    # a later publisher reuses the released slots: no new transceivers
    again = Harness("c")
    await again.participant.handle_offer(sdp("video", "audio"), {})
    b._publications = again.participant.live_publications
    b.schedule_sync()
    await wait_until(lambda: len(subscriber.signaler.requests) == 3)
    assert b.send_slots() == slots and len(subscriber.pc.transceivers) == 2
    assert [s.published for s in slots] == list(again.participant.published.values())
    await b.close()
    assert all(s.track.readyState == "ended" for s in slots)
    await again.participant.close()


async def test_unanswered_server_offer_fails_the_participant() -> None:
    publisher = Harness("a")
    await publisher.participant.handle_offer(sdp("video"), {})
    subscriber = Harness("b", publications=publisher.participant.live_publications, reply=None)
    subscriber.participant.schedule_sync()
    await wait_until(lambda: subscriber.failed == ["negotiation_failed"])
    assert subscriber.participant.negotiation_failures == 1
    await subscriber.participant.close()
    await publisher.participant.close()


async def test_mute_pauses_the_published_tracks_of_that_kind() -> None:
    h = Harness()
    p = h.participant
    await p.handle_offer(sdp("video", "audio"), {})
    video, audio = p.published["0"], p.published["1"]
    assert p.set_muted("video", True) is True
    assert (video.paused, audio.paused) == (True, False)
    assert p.set_muted("video", True) is False
    assert p.set_muted("video", False) is True and not video.paused
    # a track published while muted starts paused
    p.set_muted("audio", True)
    await p.handle_offer(sdp("video", "audio", "audio"), {})
    assert p.published["2"].paused and p.info()["audioMuted"] is True
    await p.close()


@pytest.mark.parametrize(
    ("state", "reason"), [("failed", "ice_failed"), ("closed", "connection_closed")]
)
async def test_connection_failure_is_reported_once_to_the_owner(state: str, reason: str) -> None:
    h = Harness()
    await h.participant.handle_offer(sdp("video"), {})
    h.pc.set_state(state)
    assert h.failed == [reason]
    await h.participant.close()
    h.pc.set_state(state)  # after close: not reported again
    assert h.failed == [reason]


async def test_close_is_idempotent_and_closes_everything_it_owns() -> None:
    h = Harness()
    p = h.participant
    await p.handle_offer(sdp("video", "audio"), {})
    published = list(p.published.values())
    await p.close()
    await p.close()
    assert p.closed and p.pc is None and h.pc.closed
    assert all(pub.closed for pub in published)
    assert p.published == {} and p.send_slots() == []
    with pytest.raises(SfuError):
        await p.handle_offer(sdp("video"), {})


async def test_sync_on_a_closed_peer_connection_ends_instead_of_spinning() -> None:
    """aiortc closes a peer connection by itself (client close_notify, consent expiry):
    a pending sync must end, not retry forever without yielding (which kept a server from
    ever seeing its SIGTERM or reaping the participant)."""
    publisher = Harness("a")
    await publisher.participant.handle_offer(sdp("video", "audio"), {})
    subscriber = Harness("b", publications=publisher.participant.live_publications)
    b = subscriber.participant
    b.schedule_sync()
    await wait_until(lambda: len(subscriber.signaler.requests) == 1)
    await wait_until(lambda: subscriber.pc.signalingState == "stable")
    subscriber.pc.signalingState = "closed"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        b.schedule_sync()
        sync = b._sync_task
        assert sync is not None
        async with asyncio.timeout(2):
            await sync
        assert ticks > 0
    finally:
        task.cancel()
    await b.close()
    await publisher.participant.close()


async def test_viewer_pause_finds_the_slot_and_tells_the_subscriber_its_state() -> None:
    publisher = Harness("a")
    await publisher.participant.handle_offer(sdp("video", "audio"), {})
    subscriber = Harness("b", publications=publisher.participant.live_publications)
    b = subscriber.participant
    b.schedule_sync()
    await wait_until(lambda: bool(subscriber.pcs) and subscriber.pc.signalingState == "stable")
    video = next(s for s in b.send_slots() if s.kind == "video")
    audio = next(s for s in b.send_slots() if s.kind == "audio")

    b.set_viewer_paused("a", "camera", True)
    assert video.track.viewer_paused and not audio.track.viewer_paused
    b.set_viewer_paused("a", "camera", True)  # unchanged: no second event
    assert subscriber.notified == [
        (
            "video state",
            {"participantId": "a", "source": "camera", "state": "paused-viewer", "layer": None},
        )
    ]
    b.set_viewer_paused("a", "camera", False)
    assert not video.track.viewer_paused
    event, payload = subscriber.notified[-1]
    assert (event, payload["state"], len(subscriber.notified)) == ("video state", "active", 2)
    # a link state change (LAYERS) while the viewer pauses reports the viewer's pause
    b.set_viewer_paused("a", "camera", True)
    assert video.on_video_state is not None
    video.on_video_state("active")
    assert len(subscriber.notified) == 3
    video.on_video_state("paused-link")
    assert len(subscriber.notified) == 3

    with pytest.raises(SfuError) as unknown:
        b.set_viewer_paused("zz", "camera", True)
    assert unknown.value.code == "not_found" and "'zz'" in unknown.value.message
    with pytest.raises(SfuError) as no_screen:
        b.set_viewer_paused("a", "screen", True)
    assert no_screen.value.code == "not_found" and "screen" in no_screen.value.message
    assert video.track.viewer_paused  # refusals changed nothing
    await b.close()
    await publisher.participant.close()


async def test_downlink_budget_hook_shares_one_allocator_between_video_slots() -> None:
    first = Harness("a")
    await first.participant.handle_offer(sdp("video", "audio"), {})
    second = Harness("c")
    await second.participant.handle_offer(sdp("video"), {})
    publishers = [first.participant]
    subscriber = Harness(
        "b", publications=lambda: [p for who in publishers for p in who.live_publications()]
    )
    b = subscriber.participant
    assert b.downlink_budget is None and b.allocator is None
    b.schedule_sync()
    await wait_until(lambda: len(b.subscriptions()) == 2)
    # set after the slots exist: the existing video slot joins the allocator
    b.downlink_budget = lambda: 300_000
    allocator = b.allocator
    assert allocator is not None and allocator.budget() == 300_000
    video = [t for _, t in b.subscriptions() if t.kind == "video"]
    audio = [t for _, t in b.subscriptions() if t.kind == "audio"]
    assert allocator.tracks == video and all(t.allocator is None for t in audio)
    # a later video slot joins it when it is created
    publishers.append(second.participant)
    b.schedule_sync()
    await wait_until(lambda: len(b.subscriptions()) == 3)
    video = [t for _, t in b.subscriptions() if t.kind == "video"]
    assert len(video) == 2 and allocator.tracks == video
    assert all(t.allocator is allocator for t in video)
    # removed: every layer again, no allocator
    b.downlink_budget = None
    assert b.allocator is None and all(t.allocator is None for t in video)
    assert allocator.tracks == []
    await b.close()
    await first.participant.close()
    await second.participant.close()


def test_downlink_adaptation_makes_the_estimate_the_budget() -> None:
    adapting = Harness("a", adapt_downlink=True).participant
    assert adapting.downlink_budget == adapting.downlink.bitrate
    assert adapting.allocator is not None
    fixed = Harness("b", adapt_downlink=False).participant
    assert fixed.downlink_budget is None and fixed.allocator is None
