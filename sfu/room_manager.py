"""All rooms of one server process: created on first join, dropped when empty."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter

from sfu.config import SfuConfig
from sfu.errors import SfuError
from sfu.participant import Participant
from sfu.room import Room
from sfu.signaler import Signaler

logger = logging.getLogger(__name__)


class RoomManager:
    """Owns every `Room`. `close()` (idempotent) closes all rooms and their participants;
    after it, joins are refused with `server_busy`."""

    def __init__(self, config: SfuConfig, signaler: Signaler) -> None:
        self.config = config
        self._signaler = signaler
        self.rooms: dict[str, Room] = {}
        self._ids = itertools.count(1)
        self.removals: Counter[str] = Counter()
        #: malformed datagrams dropped on participants' transports, by kind
        self.malformed: Counter[str] = Counter()
        self._closing = False

    @property
    def draining(self) -> bool:
        return self._closing

    def start_draining(self) -> None:
        """Refuse new joins from now on (shutdown in progress)."""
        self._closing = True

    def join(
        self, room_name: str, name: str, can_publish: bool = True, can_subscribe: bool = True
    ) -> tuple[Room, Participant]:
        """Add a participant to a room, creating the room on first join."""
        if self._closing:
            raise SfuError("server_busy", "the server is shutting down")
        room = self.rooms.get(room_name)
        if room is None:
            if len(self.rooms) >= self.config.max_rooms:
                raise SfuError("server_busy", f"too many rooms ({self.config.max_rooms})")
            room = Room(
                room_name,
                self.config,
                self._signaler,
                self._ids,
                self._drop_if_empty,
                self.removals,
                self.malformed,
            )
            self.rooms[room_name] = room
        try:
            participant = room.add(name, can_publish, can_subscribe)
        except SfuError:
            if not room.participants:
                self.rooms.pop(room_name, None)
            raise
        return room, participant

    def _drop_if_empty(self, room: Room) -> None:
        if not room.participants and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            logger.info("room %s closed (empty)", room.name)

    def participant_count(self) -> int:
        return sum(len(r) for r in self.rooms.values())

    async def close(self) -> None:
        self._closing = True
        rooms = list(self.rooms.values())
        self.rooms.clear()
        await asyncio.gather(*(r.close() for r in rooms), return_exceptions=True)
