"""Cluster failures against a real redis-server and node subprocesses, with roaming bots
(`signaling.roaming.RoamingClient`, the Python client's failover): kill -9 of the room's
node, SIGTERM drain with `moved`, and a Redis restart under a running room."""

from __future__ import annotations

import asyncio
import signal
import time

import redis

from signaling.client import SfuClient, SfuError
from signaling.roaming import RoamingClient
from signaling.sources import PacedVideoTrack
from tests.cluster.conftest import NodeProcess, Nodes, RedisProcess, get_json, wait_for


def publisher(marker: int):  # type: ignore[no-untyped-def]
    async def publish(client: SfuClient) -> None:
        await client.publish(video=PacedVideoTrack(marker=marker))

    return publish


async def start_bots(
    entries: list[NodeProcess], everyone: list[NodeProcess], room: str
) -> list[RoamingClient]:
    bots = []
    for i, entry in enumerate(entries):
        urls = [entry.url, *(n.url for n in everyone if n is not entry)]
        bot = RoamingClient(urls, room, f"bot{i}", publish=publisher(i + 1), timeout=8)
        bots.append(await bot.start())
    return bots


async def video_everywhere(bots: list[RoamingClient], deadline: float) -> list[float]:
    """Every bot receives a remote video frame by `deadline`; when each did."""
    return [await bot.wait_video(deadline) for bot in bots]


async def room_node(node: NodeProcess, room: str) -> str | None:
    stats = await get_json(node.url + "/api/stats?scope=cluster")
    return next((r["node"] for r in stats["rooms"] if r["name"] == room), None)


async def test_kill9_owner_bots_back_with_video(nodes: Nodes) -> None:
    everyone = await nodes.start_many(3)
    n1, n2, _ = everyone
    bots = await start_bots([n1, n2], everyone, "failover")
    try:
        assert {b.client.url for b in bots if b.client} == {n1.url}
        await bots[0].client.chat("before the crash")  # type: ignore[union-attr]
        await video_everywhere(bots, time.monotonic() + 10)
        killed = time.monotonic()
        n1.proc.send_signal(signal.SIGKILL)
        deadline = killed + 10
        await wait_for(lambda: all(b.recoveries for b in bots), 10, "bots to rejoin")
        back = await video_everywhere(bots, deadline)
        print(f"\nkill -9 -> video again: {max(back) - killed:.2f} s")
        assert max(back) - killed < 10
        urls = {b.client.url for b in bots if b.client}
        assert len(urls) == 1 and n1.url not in urls
        for bot in bots:
            assert bot.client is not None
            assert "before the crash" in [m.text for m in bot.client.chat_history]
    finally:
        await asyncio.gather(*(b.close() for b in bots))


async def test_sigterm_drain_moves_everyone(nodes: Nodes) -> None:
    everyone = await nodes.start_many(2)
    n1, n2 = everyone
    bots = await start_bots([n1, n2], everyone, "drain")
    try:
        await bots[1].client.chat("kept")  # type: ignore[union-attr]
        await video_everywhere(bots, time.monotonic() + 10)
        started = time.monotonic()
        n1.proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: all(b.recoveries for b in bots), 10, "bots to move")
        back = await video_everywhere(bots, started + 10)
        print(f"\nSIGTERM -> video again on the new node: {max(back) - started:.2f} s")
        async with asyncio.timeout(15):
            code = await n1.proc.wait()
        assert code == 0, (await n1.proc.stderr.read()).decode()  # type: ignore[union-attr]
        for bot in bots:
            assert [r.reason for r in bot.recoveries] == ["moved"]
            assert bot.client is not None and bot.client.url == n2.url
            assert "kept" in [m.text for m in bot.client.chat_history]
        health = await get_json(n2.url + "/healthz")
        assert health["rooms"] == 1 and health["participants"] == 2
    finally:
        await asyncio.gather(*(b.close() for b in bots))


async def test_redis_restart_keeps_the_room(nodes: Nodes, redis_server: RedisProcess) -> None:
    everyone = await nodes.start_many(2)
    n1, n2 = everyone
    bots = await start_bots([n1, n2], everyone, "keep")
    extra: list[SfuClient] = []
    try:
        await video_everywhere(bots, time.monotonic() + 10)
        redis_server.stop()
        # Redis gone: the owner keeps serving its room, a room nobody holds is refused
        client = await SfuClient.connect(n2.url, decode=False, timeout=8)
        extra.append(client)
        try:
            await client.join("new-room", "late")
            raise AssertionError("a join for an unplaced room succeeded without Redis")
        except SfuError as exc:
            assert exc.code == "server_busy", exc
        client = await SfuClient.connect(n1.url, decode=False, timeout=8)
        extra.append(client)
        await client.join("keep", "during-outage")
        for bot in bots:
            assert bot.client is not None
            track = await bot.client.wait_for_track(kind="video", timeout=5)
            await track.wait_frames(15, timeout=5)
        redis_server.start()  # empty: the nodes re-register and re-claim their rooms

        async def claimed() -> bool:
            return await room_node(n2, "keep") == "n1"

        await wait_for(claimed, 10, "the room's claim to come back")
        # the id serial counter came back too (ids stay unique for nodes started later)
        serial = redis.Redis(port=redis_server.port, socket_timeout=2).get("sfu:serial")
        assert serial is not None and int(serial) >= 2
        client = await SfuClient.connect(n2.url, decode=False, timeout=8)
        extra.append(client)
        joined = await client.join("keep", "after")
        assert joined.node == "n1" and client.url == n1.url
        assert all(not b.recoveries for b in bots)
    finally:
        await asyncio.gather(*(c.close() for c in extra))
        await asyncio.gather(*(b.close() for b in bots))
