"""Signaling over real Socket.IO clients against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from benchmarks.servers import RunningServer
from tests.clients import EventClient


async def join(client: EventClient, room: str, name: str) -> dict[str, Any]:
    ack = await client.call("join", {"room": room, "name": name})
    assert ack["ok"] is True, ack
    return ack


async def test_healthz_and_pages(server: RunningServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
            assert body["status"] == "ok" and body["rooms"] == 0
        async with http.get(server.url + "/") as resp:
            assert resp.status == 200
            assert "<form" in await resp.text()
        async with http.get(server.url + "/room/bad%20room") as resp:
            assert resp.status == 400


async def test_join_ack_and_participant_joined(clients: Any) -> None:
    alice, bob = await clients(), await clients()
    a = await join(alice, "r1", "Alice")
    assert a["room"] == "r1" and a["id"] and a["participants"] == []
    assert a["iceServers"] == [] and a["chat"] == []
    b = await join(bob, "r1", "Bob")
    assert [p["name"] for p in b["participants"]] == ["Alice"]
    assert b["participants"][0] == {
        "id": a["id"],
        "name": "Alice",
        "audioMuted": False,
        "videoMuted": False,
    }
    joined = await alice.wait_for("participant joined")
    assert joined["id"] == b["id"] and joined["name"] == "Bob"


async def test_chat_is_room_scoped_and_kept_in_history(clients: Any) -> None:
    alice, bob, carol = await clients(), await clients(), await clients()
    await join(alice, "chat", "Alice")
    await join(bob, "chat", "Bob")
    await join(carol, "elsewhere", "Carol")
    ack = await alice.call("chat message", {"text": "  hello <b>room</b>  "})
    assert ack["ok"] and ack["message"]["text"] == "hello <b>room</b>"
    got = await bob.wait_for("chat message")
    assert got["text"] == "hello <b>room</b>" and got["name"] == "Alice"
    assert got["from"] == ack["message"]["from"] and isinstance(got["ts"], float)
    assert alice.named("chat message") == []  # not echoed to its author
    await asyncio.sleep(0.2)
    assert carol.named("chat message") == []
    late = await clients()
    history = (await join(late, "chat", "Late"))["chat"]
    assert [m["text"] for m in history] == ["hello <b>room</b>"]


async def test_history_keeps_last_100(clients: Any, server: RunningServer) -> None:
    alice = await clients()
    await join(alice, "hist", "Alice")
    room = server.rooms.rooms["hist"]
    for i in range(105):
        room.post_chat(next(iter(room.participants)), f"m{i}")
    late = await clients()
    history = (await join(late, "hist", "Late"))["chat"]
    assert len(history) == 100 and history[0]["text"] == "m5" and history[-1]["text"] == "m104"


async def test_leave_and_disconnect_send_participant_left(clients: Any) -> None:
    alice, bob, carol = await clients(), await clients(), await clients()
    await join(alice, "lv", "Alice")
    b = await join(bob, "lv", "Bob")
    c = await join(carol, "lv", "Carol")
    assert (await bob.call("leave", {}))["ok"]
    left = await alice.wait_for("participant left", lambda p: p["id"] == b["id"])
    assert left["reason"] == "left"
    await carol.sio.disconnect()
    left = await alice.wait_for("participant left", lambda p: p["id"] == c["id"])
    assert left["reason"] == "disconnected"
    # after leaving, the connection can join again
    assert (await bob.call("join", {"room": "lv", "name": "Bob2"}))["ok"]


async def test_room_full(clients: Any, server: RunningServer) -> None:
    limit = server.rooms.config.max_participants
    for i in range(limit):
        await join(await clients(), "full", f"P{i}")
    extra = await clients()
    ack = await extra.call("join", {"room": "full", "name": "Extra"})
    assert ack == {"ok": False, "error": {"code": "room_full", "message": ack["error"]["message"]}}
    # another room still works
    await join(extra, "other", "Extra")


async def test_mute_is_broadcast(clients: Any) -> None:
    alice, bob = await clients(), await clients()
    a = await join(alice, "mute", "Alice")
    await join(bob, "mute", "Bob")
    assert (await alice.call("mute", {"kind": "video", "muted": True}))["ok"]
    update = await bob.wait_for("participant updated")
    assert update == {"id": a["id"], "name": "Alice", "audioMuted": False, "videoMuted": True}


async def test_chat_rate_limited(clients: Any) -> None:
    alice = await clients()
    await join(alice, "rl", "Alice")
    codes = []
    for i in range(12):
        ack = await alice.call("chat message", {"text": f"spam {i}"})
        codes.append("ok" if ack["ok"] else ack["error"]["code"])
    assert codes[:5] == ["ok"] * 5 and "rate_limited" in codes


async def test_video_pause_rate_limited(clients: Any) -> None:
    alice = await clients()
    await join(alice, "prl", "Alice")
    codes = []
    payload = {"participantId": "p999", "source": "screen", "paused": True}
    for _ in range(100):
        ack = await alice.call("video pause", payload)
        codes.append(ack["error"]["code"])
    # nobody sends that video (not_found) until the per-participant bucket runs dry
    assert codes[:64] == ["not_found"] * 64 and "rate_limited" in codes


OVERSIZE = "x" * 2001

MALFORMED: list[tuple[str, str, Any, str]] = [
    # (case, event, payload, expected code) — the client has joined first unless noted
    ("join not an object", "join", "room", "bad_request"),
    ("join missing room", "join", {"name": "A"}, "bad_request"),
    ("join room wrong type", "join", {"room": 5, "name": "A"}, "bad_request"),
    ("join bad room charset", "join", {"room": "a b", "name": "A"}, "bad_request"),
    ("join room too long", "join", {"room": "r" * 65, "name": "A"}, "bad_request"),
    ("join empty name", "join", {"room": "r", "name": "   "}, "bad_request"),
    ("join name too long", "join", {"room": "r", "name": "n" * 65}, "bad_request"),
    ("join control chars", "join", {"room": "r", "name": "a\x00b"}, "bad_request"),
    ("chat missing text", "chat message", {}, "bad_request"),
    ("chat wrong type", "chat message", {"text": 42}, "bad_request"),
    ("chat oversize", "chat message", {"text": OVERSIZE}, "bad_request"),
    ("chat blank", "chat message", {"text": "   "}, "bad_request"),
    ("mute bad kind", "mute", {"kind": "screen", "muted": True}, "bad_request"),
    ("mute not bool", "mute", {"kind": "audio", "muted": "yes"}, "bad_request"),
    ("sdp no description", "sdp", {}, "bad_request"),
    (
        "sdp answer unasked",
        "sdp",
        {"description": {"type": "answer", "sdp": "v=0"}},
        "invalid_state",
    ),
    ("sdp garbage", "sdp", {"description": {"type": "offer", "sdp": "hello"}}, "invalid_sdp"),
    ("sdp list payload", "sdp", [1, 2], "bad_request"),
    ("candidate missing", "ice candidates", {}, "bad_request"),
    ("candidate wrong type", "ice candidates", {"candidate": 5}, "bad_request"),
    (
        "candidate bad index",
        "ice candidates",
        {
            "candidate": {
                "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": -1,
            }
        },
        "bad_request",
    ),
    ("leave not an object", "leave", "now", "bad_request"),
    ("pause not an object", "video pause", ["p1"], "bad_request"),
    ("pause missing id", "video pause", {"source": "camera", "paused": True}, "bad_request"),
    (
        "pause id wrong type",
        "video pause",
        {"participantId": 7, "source": "camera", "paused": True},
        "bad_request",
    ),
    (
        "pause id too long",
        "video pause",
        {"participantId": "p" * 65, "source": "camera", "paused": True},
        "bad_request",
    ),
    (
        "pause audio source",
        "video pause",
        {"participantId": "p1", "source": "microphone", "paused": True},
        "bad_request",
    ),
    (
        "pause not bool",
        "video pause",
        {"participantId": "p1", "source": "camera", "paused": 1},
        "bad_request",
    ),
    (
        "pause unknown participant",
        "video pause",
        {"participantId": "p999", "source": "camera", "paused": True},
        "not_found",
    ),
    ("unknown event", "frobnicate", {"x": 1}, "bad_request"),
]

BEFORE_JOIN: list[tuple[str, Any]] = [
    ("chat message", {"text": "hi"}),
    ("mute", {"kind": "audio", "muted": True}),
    ("sdp", {"description": {"type": "offer", "sdp": "v=0"}}),
    ("ice candidates", {"candidate": None}),
    ("leave", {}),
    ("video pause", {"participantId": "p1", "source": "camera", "paused": True}),
]


@pytest.mark.parametrize(
    ("case", "event", "payload", "code"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
async def test_malformed_payloads(
    clients: Any, case: str, event: str, payload: Any, code: str
) -> None:
    bystander, offender = await clients(), await clients()
    await join(bystander, "mal", "Bystander")
    if event != "join":
        await join(offender, "mal", "Offender")
    ack = await offender.call(event, payload)
    assert ack["ok"] is False, (case, ack)
    assert ack["error"]["code"] == code, (case, ack)
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
    # the server keeps serving everyone: the offender and the bystander still chat
    assert (await bystander.call("chat message", {"text": "still here"}))["ok"]
    if event != "join":
        assert (await offender.call("mute", {"kind": "audio", "muted": False}))["ok"]


@pytest.mark.parametrize(("event", "payload"), BEFORE_JOIN, ids=[b[0] for b in BEFORE_JOIN])
async def test_events_before_join_are_not_joined(clients: Any, event: str, payload: Any) -> None:
    client = await clients()
    ack = await client.call(event, payload)
    assert ack["ok"] is False and ack["error"]["code"] == "not_joined"


async def test_double_join(clients: Any) -> None:
    client = await clients()
    await join(client, "dj", "A")
    ack = await client.call("join", {"room": "dj", "name": "A"})
    assert ack["error"]["code"] == "already_joined"
    ack = await client.call("join", {"room": "other", "name": "A"})
    assert ack["error"]["code"] == "already_joined"


async def test_oversize_message_drops_only_that_client(clients: Any) -> None:
    bystander, offender = await clients(), await clients()
    await join(bystander, "big", "B")
    await join(offender, "big", "O")
    # beyond engine.io's max_http_buffer_size (256 KiB): the server drops the connection
    with pytest.raises(Exception):  # noqa: B017 - either a timeout or a disconnect
        await offender.call("chat message", {"text": "x" * (400 * 1024)}, timeout=2)
    left = await bystander.wait_for("participant left")
    assert left["reason"] == "disconnected"
    assert (await bystander.call("chat message", {"text": "fine"}))["ok"]
