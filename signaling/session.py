"""Per-connection signaling state: which participant a Socket.IO session is."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sfu.rate_limit import TokenBucket
from sfu.room import Room
from signaling.auth import Grant


@dataclass(slots=True)
class Session:
    """One Socket.IO connection. Owns its event lock (one event at a time per client) and
    its rate limiters; `room`/`participant_id` are set between join and leave."""

    sid: str
    chat_bucket: TokenBucket
    #: `video pause` requests (None: unlimited)
    pause_bucket: TokenBucket | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    room: Room | None = None
    participant_id: str | None = None
    grant: Grant | None = None


class SessionRegistry:
    """Owns the sid -> Session and participant id -> sid maps of one server."""

    def __init__(self) -> None:
        self.by_sid: dict[str, Session] = {}
        self.sid_of: dict[str, str] = {}

    def add(self, session: Session) -> None:
        self.by_sid[session.sid] = session

    def pop(self, sid: str) -> Session | None:
        session = self.by_sid.pop(sid, None)
        if session is not None and session.participant_id is not None:
            self.sid_of.pop(session.participant_id, None)
        return session

    def bind(self, session: Session, room: Room, participant_id: str) -> None:
        session.room, session.participant_id = room, participant_id
        self.sid_of[participant_id] = session.sid

    def unbind(self, session: Session) -> None:
        if session.participant_id is not None:
            self.sid_of.pop(session.participant_id, None)
        session.room, session.participant_id = None, None
