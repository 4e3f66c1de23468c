"""`ClusterNode`: this server process as one node of a cluster (registry record, room
claims, chat store, drain handover)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from sfu.errors import SfuError
from signaling.cluster.chat_store import ChatStore
from signaling.cluster.config import ClusterConfig
from signaling.cluster.directory import RoomDirectory
from signaling.cluster.redis_link import LinkDown, RedisLink
from signaling.cluster.registry import NodeRecord, NodeRegistry, NodeState
from signaling.lifecycle import cancel_and_wait

logger = logging.getLogger(__name__)


# KEYS[1] = serial counter, ARGV[1] = this node's serial: raise the counter to it.
BUMP_SERIAL = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 0
"""


class MovedError(SfuError):
    """The `moved` refusal of PROTOCOL.md "Cluster": the room lives at `url`."""

    def __init__(self, url: str, room: str) -> None:
        super().__init__("moved", f"room {room} lives on another node")
        self.url = url

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "url": self.url}


@dataclass(frozen=True, slots=True)
class LocalLoad:
    """This node's rooms (name -> participants) and load, read at each heartbeat."""

    rooms: dict[str, int] = field(default_factory=dict)
    participants: int = 0
    forwarded_streams: int = 0
    cpu: float = 0.0
    loop_lag: float = 0.0


class ClusterNode:
    """Owns the Redis link, this node's record and heartbeat task, the chat store, and
    the room placement policy.

    `start()` fails with `LinkDown` (one line) when Redis is unreachable. While running,
    the heartbeat task refreshes the record, renews the claims of the rooms this node
    holds and releases those that closed; when Redis goes away it keeps serving the rooms
    it holds, retries with backoff, and re-claims its rooms when Redis is back. `drain()`
    hands every room to another serving node; `close()` (idempotent) stops the heartbeat,
    releases this node's claims, deletes its record and closes the link.
    """

    def __init__(
        self,
        config: ClusterConfig,
        local: Callable[[], LocalLoad],
        max_rooms: int,
    ) -> None:
        self.config = config
        self.id = config.node_id
        self.url = config.public_url.rstrip("/")
        self._local = local
        self._max_rooms = max_rooms
        self.link = RedisLink(config.redis_url, timeout=config.connect_timeout)
        prefix = config.key_prefix
        self.registry = NodeRegistry(self.link, prefix, config.node_ttl)
        self.directory = RoomDirectory(self.link, prefix, config.claim_ttl)
        self.chat = ChatStore(self.link, prefix, config.chat_size, config.chat_ttl)
        self.state: NodeState = "serving"
        self.serial = 0
        #: live nodes at the last heartbeat (this node included while its record lives)
        self.nodes: list[NodeRecord] = []
        #: public URLs of every node seen alive since start (Socket.IO origin check)
        self.known_urls: set[str] = {self.url}
        self._held: set[str] = set()  # rooms whose claim this node renews
        #: rooms admitted (claimed) here that may not exist locally yet: the join that
        #: claimed one creates the room after `admit()` returns, so a heartbeat in between
        #: must keep (renew) that claim, not release it as "closed"
        self._admitted: dict[str, float] = {}  # room -> when admitted (monotonic)
        self._pending: dict[str, dict[str, float]] = {}  # node id -> room -> until
        self._handed: dict[str, str] = {}  # room -> new owner's url (drain)
        self._split: set[str] = set()  # rooms another node claims too (warned once)
        self._bump_serial = self.link.redis.register_script(BUMP_SERIAL)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.link.on_reconnect(self._wake.set)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.link.start()
        self.serial = int(await self.link.call(lambda r: r.incr(self.config.key_prefix + "serial")))
        await self._beat()
        self.chat.start()
        self._task = asyncio.create_task(self._heartbeat(), name="cluster-heartbeat")
        logger.info("cluster node %s (%s) joined via %s", self.id, self.url, self.link.url)

    async def _heartbeat(self) -> None:
        backoff = 0.25
        while True:
            try:
                await self._beat()
                backoff = 0.25
                delay = self.config.heartbeat_interval
            except LinkDown:
                delay = backoff
                backoff = min(backoff * 2, self.config.heartbeat_interval)
            except Exception:  # pragma: no cover - never let the heartbeat die
                logger.exception("cluster heartbeat failed")
                delay = self.config.heartbeat_interval
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def record(self) -> NodeRecord:
        load = self._local()
        return NodeRecord(
            id=self.id,
            url=self.url,
            state=self.state,
            rooms=dict(load.rooms),
            participants=load.participants,
            forwarded_streams=load.forwarded_streams,
            cpu=round(load.cpu, 1),
            loop_lag=round(load.loop_lag, 4),
        )

    async def _beat(self) -> None:
        record = self.record()
        await self.registry.publish(record)
        local = set(record.rooms) - set(self._handed)
        now = time.monotonic()
        grace = 2 * self.config.heartbeat_interval
        self._admitted = {
            room: at
            for room, at in self._admitted.items()
            if room not in local and room not in self._handed and now - at < grace
        }
        closed = self._held - local - set(self._admitted)  # closed since the last beat
        for room in closed:
            with contextlib.suppress(LinkDown):
                await self.directory.release(room, self.id)
        # `admit()` may have added rooms during the awaits above: keep them
        self._held = (self._held - closed) | local
        lost = set(await self.directory.renew(self.id, sorted(self._held)))
        for room in lost - self._split:
            logger.warning("room %s is claimed by another node too (split after a fault)", room)
        self._split = lost
        # after a Redis restart (data lost) the serial counter must not hand out ours again
        await self.link.call(
            lambda r: self._bump_serial(
                keys=[self.config.key_prefix + "serial"], args=[self.serial]
            )
        )
        self.nodes = await self.registry.live()
        self.known_urls.update(n.url for n in self.nodes)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.chat.close()
        with contextlib.suppress(LinkDown):
            for room in self._held:
                await self.directory.release(room, self.id)
            await self.registry.remove(self.id)
        await self.link.close()

    # ------------------------------------------------------------------ placement

    async def admit(self, room: str, local_rooms: Collection[str]) -> None:
        """Return when `room` lives here (claimed now if nobody held it); raise
        `MovedError` with the owner's URL, or `server_busy` when no owner can be known."""
        if self.state == "draining":
            url = self._handed.get(room)
            if url is not None:
                raise MovedError(url, room)
            raise SfuError("server_busy", "this node is shutting down")
        if room in local_rooms:
            self._held.add(room)
            return
        self._admitted[room] = time.monotonic()
        try:
            candidate = self._pick(local_rooms)
            owner = await self.directory.claim(room, candidate.id)
        except LinkDown:
            raise SfuError(
                "server_busy", "the cluster directory is unreachable; retry soon"
            ) from None
        if owner == self.id:
            self._held.add(room)
            return
        self._admitted.pop(room, None)
        self._pending.setdefault(owner, {})[room] = time.monotonic() + 2 * (
            self.config.heartbeat_interval
        )
        url = await self._url_of(owner)
        if url is None:
            raise SfuError("server_busy", "the room's node just went away; retry soon")
        raise MovedError(url, room)

    def _pick(self, local_rooms: Collection[str]) -> NodeRecord:
        """The least-loaded serving node (fewest rooms, including rooms placed on it in
        the last heartbeats; then fewest participants); this node wins ties, and is left
        out when it has reached its room limit."""
        now = time.monotonic()
        me = self.record()
        candidates = [n for n in self.nodes if n.state == "serving" and n.id != self.id]
        if len(local_rooms) < self._max_rooms and self.state == "serving":
            candidates.append(me)
        if not candidates:
            return me

        def score(n: NodeRecord) -> tuple[int, int, bool]:
            pending = {r for r, until in self._pending.get(n.id, {}).items() if until > now}
            return (len(set(n.rooms) | pending), n.participants, n.id != self.id)

        for node_id in list(self._pending):
            self._pending[node_id] = {r: u for r, u in self._pending[node_id].items() if u > now}
        best = min(candidates, key=score)
        if best.id == self.id:
            self._pending.setdefault(self.id, {})
        return best

    async def _url_of(self, node_id: str) -> str | None:
        for n in self.nodes:
            if n.id == node_id:
                return n.url
        record = await self.registry.get(node_id)
        if record is None:
            return None
        self.known_urls.add(record.url)
        return record.url

    async def redirect_url(self, room: str, local_rooms: Collection[str]) -> str | None:
        """The owner's base URL when `room` lives on another live node, else None (serve
        the page here; the join places the room)."""
        if room in local_rooms:
            return None
        try:
            owner = await self.directory.owner(room)
            if owner is None or owner == self.id:
                return None
            return await self._url_of(owner)
        except LinkDown:
            return None

    async def ack_fields(self) -> dict[str, Any]:
        """`node` and `nodes` of the join ack (PROTOCOL.md "Cluster"): the live nodes as
        Redis has them now (the last heartbeat's view when Redis is down)."""
        with contextlib.suppress(LinkDown):
            self.nodes = await self.registry.live()
            self.known_urls.update(n.url for n in self.nodes)
        urls = [n.url for n in self.nodes if n.state == "serving"]
        if self.state == "serving" and self.url not in urls:
            urls.insert(0, self.url)
        return {"node": self.id, "nodes": urls}

    # ------------------------------------------------------------------ chat

    def chat_posted(self, room: str, message: dict[str, Any]) -> None:
        self.chat.append(room, message)

    async def chat_history(self, room: str) -> list[dict[str, Any]]:
        return await self.chat.load(room)

    # ------------------------------------------------------------------ drain

    async def drain(
        self, local_rooms: Collection[str], notify: Callable[[str, str], Awaitable[None]]
    ) -> int:
        """Mark this node draining, hand each room to the least-loaded other serving node
        and `notify(room, url)` its participants; return the number of rooms handed over."""
        self.state = "draining"
        try:
            await self.registry.publish(self.record())
            self.nodes = await self.registry.live()
        except LinkDown:
            logger.warning("drain: Redis unreachable; rooms close as on a single node")
            return 0
        handed = 0
        for room in list(local_rooms):
            targets = [n for n in self.nodes if n.state == "serving" and n.id != self.id]
            if not targets:
                break
            now = time.monotonic()

            def score(n: NodeRecord, now: float = now) -> tuple[int, int]:
                pending = {r for r, u in self._pending.get(n.id, {}).items() if u > now}
                return (len(set(n.rooms) | pending), n.participants)

            target = min(targets, key=score)
            try:
                owner = await self.directory.handover(room, self.id, target.id)
            except LinkDown:
                break
            url = await self._url_of(owner)
            if url is None:
                continue
            self._pending.setdefault(owner, {})[room] = now + 2 * self.config.heartbeat_interval
            self._handed[room] = url
            self._held.discard(room)
            logger.info("drain: room %s handed to %s", room, owner)
            await notify(room, url)
            handed += 1
        return handed

    # ------------------------------------------------------------------ monitoring

    async def cluster_stats(self) -> dict[str, Any]:
        """`GET /api/stats?scope=cluster` (PROTOCOL.md)."""
        try:
            nodes = await self.registry.live()
        except LinkDown:
            nodes = [self.record()]
        rooms = [
            {"name": name, "node": n.id, "participants": count}
            for n in nodes
            for name, count in sorted(n.rooms.items())
        ]
        return {"nodes": [n.row() for n in nodes], "rooms": rooms, "redis": self.link.up}
