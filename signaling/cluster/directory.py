"""`RoomDirectory`: which node owns which room, as Redis claims changed only by Lua scripts
(each runs atomically in Redis, so two nodes can never both win a room)."""

from __future__ import annotations

from typing import Any

from signaling.cluster.redis_link import RedisLink, as_str

# KEYS[1] = room claim key. ARGV: candidate node id, claim TTL (ms), node record key prefix.
# The current owner keeps the room while its node record lives; otherwise (no claim, or
# the owner's record expired: a dead node) the candidate takes it.
CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

# KEYS = claim keys of the rooms this node holds. ARGV: node id, claim TTL (ms).
# Renews this node's claims, re-takes claims that vanished (Redis restarted), and returns
# the keys another node holds.
RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, key)
  end
end
return lost
"""

# KEYS[1] = claim key. ARGV: this node id, new owner id, TTL (ms). Hands a room over
# (planned drain) unless another node already holds it; returns the owner afterwards.
HANDOVER = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  return owner
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ARGV[2]
"""

# KEYS[1] = claim key. ARGV[1] = node id. Drops the claim if this node holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RoomDirectory:
    """Room claims `<prefix>room:<name>` -> owner node id, with a TTL the owner renews.
    Owns nothing that needs closing."""

    def __init__(self, link: RedisLink, prefix: str, claim_ttl: float) -> None:
        self._link = link
        self._prefix = prefix
        self._ttl_ms = int(claim_ttl * 1000)
        redis = link.redis
        self._claim = redis.register_script(CLAIM)
        self._renew = redis.register_script(RENEW)
        self._handover = redis.register_script(HANDOVER)
        self._release = redis.register_script(RELEASE)

    def key(self, room: str) -> str:
        return f"{self._prefix}room:{room}"

    async def claim(self, room: str, candidate: str) -> str:
        """The room's owner: the live current owner, else `candidate` (now claimed)."""
        args: list[str | int] = [candidate, self._ttl_ms, self._prefix + "node:"]
        owner = await self._link.call(lambda r: self._claim(keys=[self.key(room)], args=args))
        return as_str(owner) or candidate

    async def owner(self, room: str) -> str | None:
        return as_str(await self._link.call(lambda r: r.get(self.key(room))))

    async def renew(self, node_id: str, rooms: list[str]) -> list[str]:
        """Renew this node's claims; return the rooms another node holds now."""
        if not rooms:
            return []
        keys = [self.key(r) for r in rooms]
        lost: Any = await self._link.call(
            lambda r: self._renew(keys=keys, args=[node_id, self._ttl_ms])
        )
        cut = len(self._prefix + "room:")
        return [str(as_str(k))[cut:] for k in lost]

    async def handover(self, room: str, node_id: str, new_owner: str) -> str:
        args: list[str | int] = [node_id, new_owner, self._ttl_ms]
        owner = await self._link.call(lambda r: self._handover(keys=[self.key(room)], args=args))
        return as_str(owner) or new_owner

    async def release(self, room: str, node_id: str) -> None:
        await self._link.call(lambda r: self._release(keys=[self.key(room)], args=[node_id]))
