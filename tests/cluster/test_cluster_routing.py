"""Cluster routing against a real redis-server and node subprocesses: a join through a
non-owner is moved and media flows; 307 for the room page; ack and stats fields; a claim
race of 20 first joins over 3 nodes ends in one room on one node; bad flags exit 2."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import socketio

from signaling.cli import ConfigError, parse_config
from signaling.client import SfuClient
from signaling.sources import PacedVideoTrack
from tests.cluster.conftest import Nodes, failed_start, free_port, get_json


@pytest.mark.parametrize(
    "argv",
    [
        ["--redis-url", "http://x"],
        ["--node-id", "a"],
        ["--public-url", "http://h:1"],
        ["--redis-url", "redis://127.0.0.1:1", "--public-url", "ftp://h"],
        ["--redis-url", "redis://127.0.0.1:1", "--public-url", "http://h:1/path"],
        ["--redis-url", "redis://127.0.0.1:1", "--node-id", "a b"],
        ["--workers", "0"],
        ["--workers", "3", "--port", "65535"],
    ],
)
def test_bad_cluster_flags(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_config(argv)


def test_cluster_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_config([]).cluster is None
    monkeypatch.setenv("SFU_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("SFU_NODE_ID", "a")
    cfg = parse_config(["--port", "9000"]).cluster
    assert cfg is not None and cfg.node_id == "a" and cfg.public_url == "http://127.0.0.1:9000"
    cfg = parse_config(["--public-url", "https://sfu.example.org/"]).cluster
    assert cfg is not None and cfg.public_url == "https://sfu.example.org"


async def test_unreachable_redis_exits_2() -> None:
    code, lines = await failed_start(
        "--port", str(free_port()), "--redis-url", f"redis://127.0.0.1:{free_port()}/0"
    )
    assert code == 2
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], lines


async def test_moved_join_media_and_redirect(nodes: Nodes) -> None:
    n1, n2 = await nodes.start_many(2)
    a = await SfuClient.connect(n1.url, decode=False, timeout=10)
    b = await SfuClient.connect(n2.url, decode=False, timeout=10)
    try:
        ra = await a.join("demo", "alice")  # first join: placed on the receiving node
        assert ra.node == "n1" and set(ra.nodes) == {n1.url, n2.url}
        await a.chat("hi from n1")
        rb = await b.join("demo", "bob")  # through the non-owner: moved, followed
        assert b.url == n1.url and rb.node == "n1"
        assert [m.text for m in rb.chat] == ["hi from n1"]
        assert ra.id != rb.id
        await a.publish(video=PacedVideoTrack(marker=1))
        await b.publish(video=PacedVideoTrack(marker=2))
        for client in (a, b):
            track = await client.wait_for_track(kind="video", timeout=10)
            await track.wait_frames(10, timeout=10)
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{n2.url}/room/demo?name=Carol&x=1", allow_redirects=False
            ) as resp:
                assert resp.status == 307
                assert resp.headers["Location"] == f"{n1.url}/room/demo?name=Carol&x=1"
            async with http.get(f"{n1.url}/room/demo", allow_redirects=False) as resp:
                assert resp.status == 200
            async with http.get(f"{n2.url}/room/elsewhere", allow_redirects=False) as resp:
                assert resp.status == 200  # nobody owns it yet: served here
        assert (await get_json(f"{n2.url}/api/stats"))["cluster"] is True
        stats = await get_json(f"{n2.url}/api/stats?scope=cluster")
        assert {n["id"] for n in stats["nodes"]} == {"n1", "n2"}
        row = next(n for n in stats["nodes"] if n["id"] == "n1")
        assert set(row) >= {
            "id",
            "url",
            "state",
            "rooms",
            "participants",
            "forwardedStreams",
            "cpu",
        }
        assert row["url"] == n1.url and row["state"] == "serving"
    finally:
        await a.close()
        await b.close()


async def test_claim_race_one_owner(nodes: Nodes) -> None:
    spread = await nodes.start_many(3, "--max-participants", "32")
    clients = [SfuClient(decode=False, timeout=15) for _ in range(20)]
    try:
        await asyncio.gather(*(c.open(spread[i % 3].url) for i, c in enumerate(clients)))
        results = await asyncio.gather(*(c.join("race", f"bot{i}") for i, c in enumerate(clients)))
        owners = {r.node for r in results}
        assert len(owners) == 1, owners
        assert len({c.url for c in clients}) == 1
        assert len({r.id for r in results}) == 20
        owner = next(n for n in spread if n.node_id in owners)
        health = await get_json(owner.url + "/healthz")
        assert health["rooms"] == 1 and health["participants"] == 20
        for other in spread:
            if other is not owner:
                assert (await get_json(other.url + "/healthz"))["rooms"] == 0
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_origin_check_accepts_cluster_nodes(nodes: Nodes) -> None:
    n1, n2 = await nodes.start_many(2)
    await get_json(n1.url + "/api/stats?scope=cluster")  # both records are in Redis

    async def connects(origin: str) -> bool:
        sio = socketio.AsyncClient(reconnection=False)
        try:
            await sio.connect(
                n2.url, headers={"Origin": origin}, transports=["websocket"], wait_timeout=5
            )
        except socketio.exceptions.ConnectionError:
            return False
        await sio.disconnect()
        return True

    # a page served by n1 that fails over to n2 (n2 learns n1's URL from Redis)
    ok = False
    deadline = asyncio.get_running_loop().time() + 6
    while not ok and asyncio.get_running_loop().time() < deadline:
        ok = await connects(n1.url)
        await asyncio.sleep(0.2)
    assert ok
    assert await connects(n2.url)
    assert not await connects("http://evil.example.org")
