"""`sfu/room.py` with real participants over fake peer connections and a fake signaler."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from sfu.allocator import PACKET_OVERHEAD
from sfu.config import SfuConfig
from sfu.errors import SfuError
from sfu.publisher_cap import AUDIO_RESERVE
from sfu.room import Room
from tests.unit.fakes import FakePeerConnection, FakeSignaler, sdp


def answer_reply(pid: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"description": {"type": "answer", "sdp": sdp("video", setup="active")}}


class Setup:
    def __init__(self, max_participants: int = 4) -> None:
        self.signaler = FakeSignaler(answer_reply)
        self.emptied: list[Room] = []
        self.pcs: dict[int, FakePeerConnection] = {}
        config = SfuConfig(
            max_participants=max_participants, negotiation_timeout=2.0, initial_offer_grace=0.01
        )
        self.room = Room(
            "r",
            config,
            self.signaler,  # type: ignore[arg-type]
            itertools.count(1),
            self.emptied.append,
            peer_connection=self._pc,  # type: ignore[arg-type]
        )

    def _pc(self, configuration: Any) -> FakePeerConnection:
        pc = FakePeerConnection(configuration)
        self.pcs[len(self.pcs)] = pc
        return pc

    async def settle(self) -> None:
        """Let the spawned notifications and sync tasks run."""
        for _ in range(20):
            await asyncio.sleep(0.005)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state changed by tasks
            await asyncio.sleep(0.005)


async def test_join_announces_to_the_others_only_and_enforces_the_limit() -> None:
    s = Setup(max_participants=2)
    a = s.room.add("Alice")
    b = s.room.add("Bob")
    assert (a.id, b.id) == ("p1", "p2") and len(s.room) == 2
    await s.settle()
    assert s.signaler.events("participant joined") == [("p1", b.info())]
    with pytest.raises(SfuError) as info:
        s.room.add("Carol")
    assert info.value.code == "room_full"
    await s.room.close()


async def test_chat_goes_to_the_others_and_into_the_history() -> None:
    s = Setup()
    a, b, c = (s.room.add(n) for n in ("A", "B", "C"))
    message = s.room.post_chat(b.id, "hello")
    assert message.text == "hello" and message.name == "B"
    await s.settle()
    to = sorted(pid for pid, _ in s.signaler.events("chat message"))
    assert to == sorted([a.id, c.id])
    assert [m["text"] for m in s.room.chat.to_list()] == ["hello"]
    with pytest.raises(SfuError) as info:
        s.room.post_chat("nobody", "x")
    assert info.value.code == "not_joined"
    await s.room.close()


async def test_everyone_receives_everyone_elses_publications() -> None:
    s = Setup()
    a, b = s.room.add("A"), s.room.add("B")
    await a.handle_offer(sdp("video", "audio"), {})
    assert s.room.publications(exclude=a.id) == []
    assert s.room.publications(exclude=b.id) == list(a.published.values())
    # a publishing made the room offer a's tracks to b (and to nobody else)
    await wait_until(lambda: any(pid == b.id for pid, _, _ in s.signaler.requests))
    offers = [(pid, payload) for pid, event, payload in s.signaler.requests if event == "sdp"]
    assert {pid for pid, _ in offers} == {b.id}
    assert [t["participantId"] for t in offers[-1][1]["tracks"]] == [a.id, a.id]
    await wait_until(lambda: len(b.subscriptions()) == 2)
    await s.room.close()


async def test_leave_tells_the_others_closes_and_empties_the_room() -> None:
    s = Setup()
    a, b = s.room.add("A"), s.room.add("B")
    await a.handle_offer(sdp("video"), {})
    await wait_until(lambda: len(b.subscriptions()) == 1)
    [slot] = b.send_slots()
    assert await s.room.remove(a.id, "left") is True
    assert a.closed and a.id not in s.room.participants
    assert slot.published is None  # b's slot heard a's track close
    await s.settle()
    assert s.signaler.events("participant left") == [(b.id, {"id": a.id, "reason": "left"})]
    assert s.room.removals["left"] == 1
    assert await s.room.remove(a.id, "left") is False
    assert s.emptied == []
    await s.room.remove(b.id, "left")
    assert s.emptied == [s.room]
    await s.room.close()


async def test_mute_is_broadcast_and_pauses_the_tracks() -> None:
    s = Setup()
    a, b = s.room.add("A"), s.room.add("B")
    await a.handle_offer(sdp("video"), {})
    s.room.set_muted(a.id, "video", True)
    s.room.set_muted(a.id, "video", True)  # no change: no second broadcast
    await s.settle()
    updates = s.signaler.events("participant updated")
    assert updates == [(b.id, {**a.info(), "videoMuted": True})]
    assert all(pub.paused for pub in a.published.values())
    await s.room.close()


async def test_a_failed_participant_is_reaped_told_and_disconnected() -> None:
    s = Setup()
    a, b = s.room.add("A"), s.room.add("B")
    await a.handle_offer(sdp("video"), {})
    s.pcs[0].set_state("failed")
    await wait_until(lambda: s.signaler.disconnected == [a.id])
    assert a.closed and list(s.room.participants) == [b.id]
    assert s.room.removals["ice_failed"] == 1
    errors = s.signaler.events("error")
    assert errors == [
        (a.id, {"code": "internal_error", "message": "removed from the room: ice_failed"})
    ]
    left = s.signaler.events("participant left")
    assert left == [(b.id, {"id": a.id, "reason": "ice_failed"})]
    await s.room.close()


async def test_close_closes_every_participant_and_refuses_joins() -> None:
    s = Setup()
    a, b = s.room.add("A"), s.room.add("B")
    await a.handle_offer(sdp("video"), {})
    await s.room.close()
    await s.room.close()
    assert a.closed and b.closed and s.pcs[0].closed
    with pytest.raises(SfuError) as info:
        s.room.add("C")
    assert info.value.code == "invalid_state"


async def test_active_speaker_task_mute_leave_and_broadcast() -> None:
    s = Setup()
    a, b = s.room.add("A"), s.room.add("B")
    task = s.room._speaker_task
    assert task is not None and not task.done()
    s.room._report_level(a.id, 10, True)
    s.room.set_muted(b.id, "audio", True)
    assert b.id in s.room.speaker._speakers and s.room.speaker._speakers[b.id].muted
    s.room._speaker_event({"participantId": a.id, "levels": {a.id: 0.3}})
    await s.settle()
    assert sorted(pid for pid, _ in s.signaler.events("active speaker")) == sorted([a.id, b.id])
    assert s.room.speaker_info()["activeSpeaker"] is None
    await s.room.remove(a.id, "left")
    assert a.id not in s.room.speaker._speakers
    await s.room.remove(b.id, "left")
    await asyncio.sleep(0)
    assert task.cancelled() and s.room._speaker_task is None  # an empty room stops it
    await s.room.close()


async def test_publisher_cap_follows_the_slowest_subscriber_and_lifts_when_it_leaves() -> None:
    s = Setup()
    a, b = s.room.add("A"), s.room.add("B")
    await a.handle_offer(sdp("video", "audio"), {})
    await wait_until(lambda: len(b.subscriptions()) == 2)
    [video] = [p for p in a.published.values() if p.kind == "video"]
    setattr(video, "bitrate", lambda: 600_000)  # noqa: B010 - what the track measures
    policy = s.room.publisher_caps
    policy.update()
    assert video.bitrate_cap is None  # b's downlink is unknown: unlimited
    # b's estimate says it can take 300 kbps for one video and one audio
    setattr(b.downlink, "bitrate", lambda: 300_000)  # noqa: B010
    policy.update()
    assert video.bitrate_cap == round((300_000 - AUDIO_RESERVE) / PACKET_OVERHEAD)
    assert s.room.media_info()["publisherCaps"] == {f"{a.id}/{video.key}": video.bitrate_cap}
    await s.room.remove(b.id, "left")
    policy.update()
    assert video.bitrate_cap is None and s.room.media_info()["publisherCaps"] == {}
    await s.room.close()
