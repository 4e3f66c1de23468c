"""The Redis parts in-process against the real redis-server: room claims (taken over only
when the owner's record is gone), renew/handover/release, the chat store, node records."""

from __future__ import annotations

import asyncio

from signaling.cluster.chat_store import ChatStore
from signaling.cluster.config import ClusterConfig
from signaling.cluster.directory import RoomDirectory
from signaling.cluster.node import ClusterNode, LocalLoad
from signaling.cluster.redis_link import LinkDown, RedisLink
from signaling.cluster.registry import NodeRecord, NodeRegistry


async def test_claims_registry_and_chat(redis_url: str) -> None:
    link = RedisLink(redis_url)
    await link.start()
    try:
        registry = NodeRegistry(link, "t:", ttl=0.5)
        directory = RoomDirectory(link, "t:", claim_ttl=5.0)
        await registry.publish(NodeRecord("a", "http://a", rooms={"r": 2}, participants=2))
        await registry.publish(NodeRecord("b", "http://b"))
        assert [n.id for n in await registry.live()] == ["a", "b"]
        # first claim wins; a live owner keeps the room against any other candidate
        assert await directory.claim("r", "a") == "a"
        assert await asyncio.gather(*(directory.claim("r", "b") for _ in range(10))) == ["a"] * 10
        # renew keeps a's claim, reports a room held by someone else
        assert await directory.renew("a", ["r"]) == []
        assert await directory.renew("b", ["r"]) == ["r"]
        # a's record expires (dead node): the next claimer takes the room over
        await asyncio.sleep(0.7)
        await registry.publish(NodeRecord("b", "http://b"))
        assert [n.id for n in await registry.live()] == ["b"]
        assert await directory.claim("r", "b") == "b"
        # handover only from the holder; release only by the holder
        assert await directory.handover("r", "a", "c") == "b"
        assert await directory.handover("r", "b", "c") == "c"
        await directory.release("r", "b")
        assert await directory.owner("r") == "c"
        await directory.release("r", "c")
        assert await directory.owner("r") is None
        # chat: ordered, trimmed to the last `size`
        store = ChatStore(link, "t:", size=3, ttl=60)
        store.start()
        for i in range(5):
            store.append("r", {"id": f"m{i}", "from": "p1", "name": "n", "text": str(i), "ts": 1.0})
        await store.close()
        assert [m["text"] for m in await store.load("r")] == ["2", "3", "4"]
    finally:
        await link.close()


async def test_link_down_is_one_exception() -> None:
    link = RedisLink("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        await link.start()
        raise AssertionError("connected to nothing")
    except LinkDown as exc:
        assert "cannot reach Redis" in str(exc)
    try:
        await link.call(lambda r: r.ping())
        raise AssertionError("pinged nothing")
    except LinkDown:
        assert not link.up
    finally:
        await link.close()


async def test_heartbeat_keeps_a_claim_whose_room_is_not_created_yet(redis_url: str) -> None:
    """A join claims a room in `admit()` and creates it only afterwards: a heartbeat in
    between must renew that claim, not release it as a closed room (two nodes then served
    one room). Once the room exists and later closes, the claim is released."""
    rooms: dict[str, int] = {}
    config = ClusterConfig(redis_url=redis_url, node_id="n1", public_url="http://n1")
    node = ClusterNode(config, lambda: LocalLoad(rooms=dict(rooms)), max_rooms=10)
    await node.start()
    try:
        await node.admit("fresh", local_rooms=list(rooms))
        assert await node.directory.owner("fresh") == "n1"
        await node._beat()  # the room is not in the local load yet
        assert await node.directory.owner("fresh") == "n1"
        rooms["fresh"] = 1  # the join created it
        await node._beat()
        assert await node.directory.owner("fresh") == "n1"
        del rooms["fresh"]  # its last participant left
        await node._beat()
        assert await node.directory.owner("fresh") is None
    finally:
        await node.close()
