"""Hardening 1-3: join tokens, grants and the Origin check. Each offender gets a clear
refusal while two publishers in the same room keep receiving each other's media, and the
server's resources return to baseline."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import socketio

from benchmarks.servers import RunningServer
from signaling.auth import mint_token
from signaling.client import SfuClient, SfuError
from signaling.config import ServerConfig
from tests.hardening_util import (
    Baseline,
    Bystanders,
    assert_empty,
    hardening_config,
    media_client,
    publish_video,
    running,
    start_bystanders,
    wait_until,
)

SECRET = "test-secret-0123456789abcdef0123456789"  # HS256 wants >= 32 bytes


async def media_room(server: RunningServer, tokens: bool) -> Bystanders:
    def token(name: str) -> str | None:
        return mint_token(SECRET, "media", name) if tokens else None

    return await start_bystanders(server, token)


async def join_with_grants(
    server: RunningServer, name: str, join_as: str, **grants: bool
) -> SfuClient:
    """A client whose token for room `media` names `name` with `grants`, joined as
    `join_as` (the token's name wins)."""
    client = await media_client(server.url, token=mint_token(SECRET, "media", name, **grants))
    await client.join("media", join_as)
    return client


async def close_all_and_check(server: RunningServer, *clients: SfuClient) -> None:
    """Close `clients`; then the server has no room nor participant left."""
    for client in clients:
        await client.close()
    await wait_until(lambda: not server.rooms.rooms, 10)
    assert_empty(server)


@pytest.fixture
async def baseline() -> AsyncIterator[Baseline]:
    base = Baseline.take()
    yield base
    await base.wait_back()


async def refused_connect(url: str, auth: Any = None, headers: Any = None) -> Any:
    """Connect and expect a refusal; return the connect_error data (None if no data)."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", lambda data=None: errors.append(data))
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(
                url, transports=["websocket"], wait_timeout=5, auth=auth, headers=headers or {}
            )
    finally:
        await sio.disconnect()
    return errors[0] if errors else None


def raw_token(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"room": "media", "name": "Mallory", "nbf": now - 1, "exp": now + 600}
    base.update(overrides)
    return base


AUTH_CASES: list[tuple[str, Any]] = [
    ("no auth", None),
    ("no token", {}),
    ("token not a string", {"token": 42}),
    ("empty token", {"token": ""}),
    ("garbage", {"token": "not.a.jwt"}),
    ("bad signature", {"token": mint_token("another-secret-0123456789abcdef01", "media", "M")}),
    ("expired", {"token": mint_token(SECRET, "media", "M", ttl=60, now=time.time() - 3600)}),
    ("not valid yet", {"token": raw_token(claims(nbf=int(time.time()) + 600))}),
    ("alg none", {"token": raw_token(claims(), key=None, algorithm="none")}),
    ("HS512 not allowed", {"token": raw_token(claims(), key=SECRET * 2, algorithm="HS512")}),
    ("missing exp", {"token": raw_token({"room": "media", "name": "M", "nbf": 0})}),
    ("over-long name", {"token": raw_token(claims(name="n" * 65))}),
    ("control chars in name", {"token": raw_token(claims(name="a\x00b"))}),
    ("bad room claim", {"token": raw_token(claims(room="../etc"))}),
    ("grant not bool", {"token": raw_token(claims(canPublish="yes"))}),
    ("token too long", {"token": raw_token(claims(pad="x" * 5000))}),
]


async def test_auth_matrix(baseline: Baseline) -> None:
    config = ServerConfig(sfu=hardening_config(), jwt_secret=SECRET)
    async with running(config) as server:
        room = await media_room(server, tokens=True)
        for case, auth in AUTH_CASES:
            data = await refused_connect(server.url, auth=auth)
            # socket.io's connect_error: {"message", "data": PROTOCOL.md's error object}
            assert isinstance(data, dict) and isinstance(data.get("data"), dict), (case, data)
            assert data["data"]["code"] == "unauthorized", (case, data)
            assert isinstance(data["data"]["message"], str) and data["data"]["message"], case
        # no session nor room state for any refused connection
        assert len(server.app[_events_key()].sessions.by_sid) == 2
        # a valid token for another room: connected, but the join is refused
        wrong = await media_client(server.url, token=mint_token(SECRET, "elsewhere", "M"))
        ack = await wrong.call("join", {"room": "media", "name": "M"})
        assert ack["ok"] is False and ack["error"]["code"] == "unauthorized", ack
        # the name in the token wins over the one asked for
        ok = await media_client(server.url, token=mint_token(SECRET, "elsewhere", "Token Name"))
        joined = await ok.call("join", {"room": "elsewhere", "name": "Other"})
        assert joined["ok"]
        await room.still_flowing()
        assert set(server.rooms.rooms) == {"media", "elsewhere"}
        await close_all_and_check(server, wrong, ok, room.a, room.b)
        assert server.app[_events_key()].rejected["unauthorized"] >= len(AUTH_CASES) + 1


def _events_key() -> Any:
    from signaling.app import EVENTS

    return EVENTS


async def test_subscribe_only_cannot_publish(baseline: Baseline) -> None:
    config = ServerConfig(sfu=hardening_config(), jwt_secret=SECRET)
    async with running(config) as server:
        room = await media_room(server, tokens=True)
        viewer = await join_with_grants(server, "Viewer", "ignored", can_publish=False)
        with pytest.raises(SfuError) as refused:
            await publish_video(viewer)  # a sendonly VP8 m-line
        assert refused.value.code == "unauthorized", repr(refused.value)
        assert "publish" in refused.value.message
        # the viewer still subscribes: the refused offer was never applied (the client
        # builds offers without touching its peer connection); it answers the server's offer
        await viewer.wait_more_frames(10, timeout=15)
        participant = server.rooms.rooms["media"].participants[viewer.id]
        assert participant.published == {}
        await room.still_flowing()
        await close_all_and_check(server, viewer, room.a, room.b)


async def test_publish_only_receives_nothing(baseline: Baseline) -> None:
    config = ServerConfig(sfu=hardening_config(), jwt_secret=SECRET)
    async with running(config) as server:
        room = await media_room(server, tokens=True)
        camera = await join_with_grants(server, "Camera", "Camera", can_subscribe=False)
        await publish_video(camera)
        # the others receive the camera (three-way frames grow), the camera gets nothing
        await room.still_flowing()
        participant = server.rooms.rooms["media"].participants[camera.id]
        await wait_until(lambda: len(participant.published) == 1, 10)
        assert participant.subscriptions() == []
        assert camera.frames == 0
        await close_all_and_check(server, camera, room.a, room.b)


async def test_foreign_origin_refused(baseline: Baseline) -> None:
    config = ServerConfig(sfu=hardening_config(), cors_allowed_origins=("http://good.example",))
    async with running(config) as server:
        room = await media_room(server, tokens=False)
        await refused_connect(server.url, headers={"Origin": "http://evil.example"})
        await refused_connect(server.url, headers={"Origin": server.url.replace("127", "128")})
        # same origin and the configured allowlist are accepted
        for origin in (server.url, "http://good.example"):
            client = await media_client(server.url, headers={"Origin": origin})
            await client.close()
        await wait_until(lambda: len(server.app[_events_key()].sessions.by_sid) == 2, 5)
        await room.still_flowing()
        await close_all_and_check(server, room.a, room.b)


async def test_default_is_same_origin_only(baseline: Baseline) -> None:
    async with running(ServerConfig(sfu=hardening_config())) as server:
        await refused_connect(server.url, headers={"Origin": "http://evil.example"})
        client = await media_client(server.url, headers={"Origin": server.url})
        await client.close()
