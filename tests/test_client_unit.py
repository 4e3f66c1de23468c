"""Unit tests of the client SDK (`signaling.client`): no server, no network."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from sfu import errors as server_errors
from sfu.wire import CLIENT_ERROR_CODES, ERROR_CODES, PREFERRED_CODECS, SERVER_EVENTS
from signaling.client import (
    FRAME_QUEUE_SIZE,
    MAX_EVENTS,
    MAX_KEPT_ENDED_TRACKS,
    MAX_QUEUED_TRACKS,
    ChatMessage,
    JoinResult,
    Participant,
    RemoteTrack,
    SfuClient,
    SfuError,
    TrackInfo,
)
from signaling.client.connection import prefer_codecs
from signaling.client.wire import error_event, error_from_ack, refusal

SERVER_MODULES = (
    "sfu.room",
    "sfu.participant",
    "sfu.room_manager",
    "signaling.app",
    "signaling.events",
)


def test_client_package_does_not_import_the_server() -> None:
    code = (
        "import json, sys, signaling.client; "
        f"print(json.dumps([m for m in {SERVER_MODULES!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_sources_shim_reexports() -> None:
    from signaling import client, sources

    assert sources.PacedVideoTrack is client.PacedVideoTrack
    assert sources.encode_clip is client.encode_clip


# ---------------------------------------------------------------------- wire types


def test_participant_and_chat_parse() -> None:
    p = Participant.from_wire({"id": "p1", "name": "Ann", "audioMuted": True})
    assert p == Participant("p1", "Ann", audio_muted=True, video_muted=False)
    m = ChatMessage.from_wire({"id": "m1", "from": "p1", "name": "Ann", "text": "hi", "ts": 3})
    assert (m.sender, m.text, m.ts) == ("p1", "hi", 3.0)
    for bad in (None, [], "x", 5):
        with pytest.raises(ValueError):
            Participant.from_wire(bad)
        with pytest.raises(ValueError):
            ChatMessage.from_wire(bad)
    with pytest.raises(ValueError):
        ChatMessage.from_wire({"ts": "not a number"})


def test_track_info_parse() -> None:
    info = TrackInfo.from_wire(
        {"mid": "1", "participantId": "p2", "kind": "video", "source": "screen"}
    )
    assert info == TrackInfo("1", "p2", "video", "screen")
    # unknown or missing source: the kind's default
    assert TrackInfo.from_wire({"mid": "2", "kind": "audio"}).source == "microphone"
    assert TrackInfo.from_wire({"mid": "3", "kind": "video", "source": "x"}).source == "camera"
    for bad in ({"mid": "1", "kind": "data"}, {"mid": "1"}, ["video"]):
        with pytest.raises(ValueError):
            TrackInfo.from_wire(bad)


def test_join_result_parse() -> None:
    ack = {
        "ok": True,
        "id": "p9",
        "participants": [{"id": "p1", "name": "Ann"}],
        "iceServers": [{"urls": ["turn:x"]}, "junk"],
        "chat": [{"id": "m", "from": "p1", "name": "Ann", "text": "t", "ts": 1.5}],
    }
    result = JoinResult.from_wire(ack, "demo")
    assert (result.id, result.room) == ("p9", "demo")
    assert [p.id for p in result.participants] == ["p1"]
    assert result.ice_servers == [{"urls": ["turn:x"]}]
    assert result.chat[0].text == "t"
    with pytest.raises(KeyError):
        JoinResult.from_wire({"ok": True}, "demo")
    with pytest.raises(ValueError):
        JoinResult.from_wire({"id": "p", "participants": [3]}, "demo")


# ---------------------------------------------------------------------- errors


def test_sfu_error_has_the_server_semantics() -> None:
    client = SfuError("room_full", "the room is full")
    server = server_errors.SfuError("room_full", "the room is full")
    assert str(client) == str(server) == "the room is full"
    assert (client.code, client.message) == (server.code, server.message)
    assert client.to_dict() == server.to_dict()
    assert repr(client) == repr(server) == "SfuError('room_full', 'the room is full')"
    assert not set(CLIENT_ERROR_CODES) & set(ERROR_CODES)


@pytest.mark.parametrize(
    ("reply", "code", "message"),
    [
        ({"ok": False, "error": {"code": "room_full", "message": "full"}}, "room_full", "full"),
        ({"ok": False, "error": {"message": "?"}}, "unknown", "?"),
        ({"ok": False}, "bad_reply", None),
        ("nope", "bad_reply", None),
        (None, "bad_reply", None),
    ],
)
def test_error_from_ack(reply: Any, code: str, message: str | None) -> None:
    error = error_from_ack("join", reply)
    assert error is not None and error.code == code
    if message is not None:
        assert error.message == message


def test_ok_ack_is_no_error() -> None:
    assert error_from_ack("join", {"ok": True, "id": "p"}) is None


def test_error_event_and_refusal() -> None:
    assert error_event({"code": "server_busy", "message": "drain"}).to_dict() == {
        "code": "server_busy",
        "message": "drain",
    }
    assert error_event("weird").code == "unknown"
    unauthorized = {"code": "unauthorized", "message": "no token"}
    for data in (
        unauthorized,
        {"data": unauthorized},
        {"message": str(unauthorized)},
    ):
        error = refusal(data, "fallback")
        assert (error.code, error.message) == ("unauthorized", "no token"), data
    assert refusal({"message": "went away"}, "x").to_dict() == {
        "code": "connection_refused",
        "message": "went away",
    }
    assert refusal(None, "fallback").message == "fallback"
    assert refusal({"message": "{not python"}, "x").code == "connection_refused"


# ---------------------------------------------------------------------- client state


async def test_event_recording_is_bounded() -> None:
    client = SfuClient()
    try:
        for i in range(MAX_EVENTS + 50):
            client._record("chat message", i)
        assert len(client.events) == MAX_EVENTS
        assert client.events[0].payload == 50 and client.events[-1].payload == MAX_EVENTS + 49
        assert client.named("chat message")[-1] == MAX_EVENTS + 49
    finally:
        await client.close()


async def test_server_events_are_applied_and_malformed_ones_survive() -> None:
    client = SfuClient()
    seen: list[Any] = []
    client.on("participant left", lambda pid, reason: seen.append((pid, reason)))
    try:
        handlers = {name: client._event_handler(name) for name in SERVER_EVENTS}
        handlers["participant joined"]({"id": "p1", "name": "Ann"})
        assert client.participants["p1"].name == "Ann"
        handlers["participant left"]({"id": "p1", "reason": "left"})
        assert "p1" not in client.participants and seen == [("p1", "left")]
        handlers["participant joined"]("not an object")  # logged, recorded, not raised
        handlers["error"]({"code": "server_busy", "message": "drain"})
        assert [e.code for e in client.errors] == ["server_busy"]
        assert [e.name for e in client.events][-2:] == ["participant joined", "error"]
        with pytest.raises(SfuError) as caught:
            await client.wait_for_event("chat message", timeout=0.05)
        assert caught.value.code == "timeout"
    finally:
        await client.close()


async def test_requests_on_a_closed_client() -> None:
    client = SfuClient()
    await client.close()
    with pytest.raises(SfuError) as caught:
        await client.request("leave", {})
    assert caught.value.code == "closed"


async def test_codec_preference_comes_from_the_wire_policy() -> None:
    pc = RTCPeerConnection()
    try:
        for kind in ("audio", "video"):
            transceiver = pc.addTransceiver(kind, direction="sendonly")
            prefer_codecs(transceiver)
            mimes = {c.mimeType.lower() for c in transceiver._preferred_codecs}
            assert mimes and mimes <= set(PREFERRED_CODECS[kind]), mimes
        offer = await pc.createOffer()
        assert "VP8/90000" in offer.sdp and "opus/48000" in offer.sdp
        assert "H264" not in offer.sdp and "PCMU" not in offer.sdp
    finally:
        await pc.close()


# ---------------------------------------------------------------------- remote tracks


def remote() -> RemoteTrack:
    return RemoteTrack(TrackInfo("0", "p1", "video", "camera"))


async def test_remote_track_queue_keeps_the_newest() -> None:
    track = remote()
    for i in range(FRAME_QUEUE_SIZE + 5):
        track._deliver(i, 10, keyframe=i == 0)
    assert (track.stats.frames, track.stats.bytes, track.stats.keyframes) == (
        FRAME_QUEUE_SIZE + 5,
        10 * (FRAME_QUEUE_SIZE + 5),
        1,
    )
    assert track.last_frame == FRAME_QUEUE_SIZE + 4
    got = [await track.next_frame(timeout=0.1) for _ in range(FRAME_QUEUE_SIZE)]
    assert got == list(range(5, FRAME_QUEUE_SIZE + 5))
    assert track.stats.time_to_first_frame is not None


async def test_remote_track_waits_time_out_and_end() -> None:
    track = remote()
    with pytest.raises(SfuError) as caught:
        await track.next_frame(timeout=0.05)
    assert caught.value.code == "timeout"
    with pytest.raises(SfuError) as caught:
        await track.wait_frames(1, timeout=0.05)
    assert caught.value.code == "timeout" and "0/1 frames" in caught.value.message
    waiter = asyncio.ensure_future(track.wait_frames(2, timeout=5))
    await asyncio.sleep(0)
    track._deliver("a", 0, False)
    track._deliver("b", 0, False)
    await waiter
    track._end()
    assert await track.next_frame(timeout=0.1) == "a"  # queued frames outlive the end
    await track.next_frame(timeout=0.1)
    with pytest.raises(SfuError) as caught:
        await track.next_frame(timeout=1)
    assert caught.value.code == "closed"


async def test_track_lists_are_bounded_and_frames_still_counted() -> None:
    client = SfuClient()
    try:
        for i in range(MAX_QUEUED_TRACKS + MAX_KEPT_ENDED_TRACKS + 10):
            track = RemoteTrack(TrackInfo(str(i), f"p{i}", "video", "camera"))
            track._deliver("frame", 1, False)
            client._keep_track(track)
            track._end()
        live = RemoteTrack(TrackInfo("live", "p", "audio", "microphone"))
        client._keep_track(live)
        assert client.remote_tracks.qsize() == MAX_QUEUED_TRACKS
        assert len(client.all_tracks) == MAX_KEPT_ENDED_TRACKS + 1
        assert client.all_tracks[-1] is live
        assert client.frames == MAX_QUEUED_TRACKS + MAX_KEPT_ENDED_TRACKS + 10
    finally:
        await client.close()
