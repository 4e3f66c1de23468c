"""`NodeRegistry`: every node's Redis record (a heartbeat with a TTL: expired = dead)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from signaling.cluster.redis_link import RedisLink, as_str

logger = logging.getLogger(__name__)

NodeState = Literal["serving", "draining"]


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """What a node publishes about itself (PROTOCOL.md `?scope=cluster` node row, plus the
    participants of each of its rooms)."""

    id: str
    url: str
    state: NodeState = "serving"
    rooms: dict[str, int] = field(default_factory=dict)
    participants: int = 0
    forwarded_streams: int = 0
    cpu: float = 0.0
    loop_lag: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "url": self.url,
                "state": self.state,
                "rooms": self.rooms,
                "participants": self.participants,
                "forwardedStreams": self.forwarded_streams,
                "cpu": self.cpu,
                "eventLoopLag": self.loop_lag,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> NodeRecord | None:
        try:
            d: Any = json.loads(raw)
            rooms = d.get("rooms", {})
            return cls(
                id=str(d["id"]),
                url=str(d["url"]),
                state="draining" if d.get("state") == "draining" else "serving",
                rooms={str(k): int(v) for k, v in rooms.items()} if isinstance(rooms, dict) else {},
                participants=int(d.get("participants", 0)),
                forwarded_streams=int(d.get("forwardedStreams", 0)),
                cpu=float(d.get("cpu", 0.0)),
                loop_lag=float(d.get("eventLoopLag", 0.0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            logger.warning("ignoring a malformed node record: %.200r", raw)
            return None

    def row(self) -> dict[str, Any]:
        """The node row of `/api/stats?scope=cluster`."""
        return {
            "id": self.id,
            "url": self.url,
            "state": self.state,
            "rooms": len(self.rooms),
            "participants": self.participants,
            "forwardedStreams": self.forwarded_streams,
            "cpu": self.cpu,
            "eventLoopLag": self.loop_lag,
        }


class NodeRegistry:
    """Reads and writes node records: `<prefix>node:<id>` (JSON, expires after the TTL)
    and the set `<prefix>nodes` of ids (pruned when a record is gone). Owns nothing that
    needs closing (the link belongs to the `ClusterNode`)."""

    def __init__(self, link: RedisLink, prefix: str, ttl: float) -> None:
        self._link = link
        self._prefix = prefix
        self._ttl_ms = int(ttl * 1000)

    def key(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    async def publish(self, record: NodeRecord) -> None:
        key, ttl, nodes = self.key(record.id), self._ttl_ms, self._prefix + "nodes"

        async def op(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(key, record.to_json(), px=ttl)
                pipe.sadd(nodes, record.id)
                return await pipe.execute()

        await self._link.call(op)

    async def remove(self, node_id: str) -> None:
        key, nodes = self.key(node_id), self._prefix + "nodes"

        async def op(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.srem(nodes, node_id)
                return await pipe.execute()

        await self._link.call(op)

    async def get(self, node_id: str) -> NodeRecord | None:
        raw = as_str(await self._link.call(lambda r: r.get(self.key(node_id))))
        return NodeRecord.from_json(raw) if raw is not None else None

    async def live(self) -> list[NodeRecord]:
        """Every node whose record has not expired, sorted by id."""
        members = await self._link.call(lambda r: r.smembers(self._prefix + "nodes"))
        ids = sorted(str(as_str(m)) for m in members)
        if not ids:
            return []
        raws = await self._link.call(lambda r: r.mget([self.key(i) for i in ids]))
        records, dead = [], []
        for node_id, raw in zip(ids, raws, strict=True):
            text = as_str(raw)
            record = NodeRecord.from_json(text) if text is not None else None
            if record is None:
                dead.append(node_id)
            else:
                records.append(record)
        if dead:
            await self._link.call(lambda r: r.srem(self._prefix + "nodes", *dead))
        return records
