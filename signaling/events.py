"""Socket.IO events of PROTOCOL.md, bound to the media core through the `Signaler` port."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from sfu.chat import ChatMessage
from sfu.errors import SfuError
from sfu.rate_limit import TokenBucket
from sfu.room_manager import RoomManager
from sfu.turn import TurnCredentials
from signaling import validation
from signaling.auth import verify_token
from signaling.cluster import ClusterNode
from signaling.session import Session, SessionRegistry

logger = logging.getLogger(__name__)

Handler = Callable[[Session, Any], Awaitable[dict[str, Any]]]


class SocketSignaler:
    """Implements `sfu.signaler.Signaler` over a Socket.IO server; owns nothing."""

    def __init__(self, sio: socketio.AsyncServer, sessions: SessionRegistry) -> None:
        self._sio = sio
        self._sessions = sessions

    async def emit(self, participant_id: str, event: str, payload: dict[str, Any]) -> None:
        sid = self._sessions.sid_of.get(participant_id)
        if sid is not None:
            await self._sio.emit(event, payload, to=sid)

    async def request(
        self, participant_id: str, event: str, payload: dict[str, Any], timeout: float
    ) -> Any:
        sid = self._sessions.sid_of.get(participant_id)
        if sid is None:
            raise ConnectionError(f"participant {participant_id} has no connection")
        try:
            return await self._sio.call(event, payload, to=sid, timeout=timeout)
        except socketio.exceptions.TimeoutError:
            raise TimeoutError(f"no answer to {event!r} within {timeout} s") from None
        except socketio.exceptions.DisconnectedError as exc:  # pragma: no cover - race
            raise ConnectionError(str(exc)) from None

    async def disconnect(self, participant_id: str) -> None:
        sid = self._sessions.sid_of.get(participant_id)
        if sid is not None:
            await self._sio.disconnect(sid)


class SignalingEvents:
    """Owns the session registry and the event handlers registered on `sio`.

    Each client event runs under its session's lock (python-socketio runs every event in
    its own task); every handler returns PROTOCOL.md's ack envelope and never raises.
    `drain()` (shutdown) tells every connected client `server_busy` and disconnects it;
    the room manager closes the media.
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        rooms: RoomManager,
        sessions: SessionRegistry,
        jwt_secret: str | None = None,
        join_limit: TokenBucket | None = None,
        turn: TurnCredentials | None = None,
        cluster: ClusterNode | None = None,
    ) -> None:
        self.sio = sio
        self.cluster = cluster
        self._jwt_secret = jwt_secret
        self._join_limit = join_limit
        self._turn = turn
        self.rooms = rooms
        self.sessions = sessions
        self.rejected: Counter[str] = Counter()
        self.rejected_by_event: Counter[tuple[str, str]] = Counter()
        self.unknown_events = 0
        self.joins: Counter[str] = Counter()
        #: the stats sampler's latest snapshot (set by the app once the sampler exists)
        self.stats_snapshot: Callable[[], dict[str, Any]] | None = None
        self._handlers: dict[str, Handler] = {
            "join": self._join,
            "sdp": self._sdp,
            "ice candidates": self._candidates,
            "chat message": self._chat,
            "mute": self._mute,
            "leave": self._leave,
            "stats": self._stats,
            "recording": self._recording,
            "video pause": self._video_pause,
        }
        sio.on("connect", self._connect)
        sio.on("disconnect", self._disconnect)
        for event in self._handlers:
            sio.on(event, self._bind(event))
        sio.on("*", self._unknown)

    # ------------------------------------------------------------------ plumbing

    def _bind(self, event: str) -> Callable[[str, Any], Awaitable[dict[str, Any]]]:
        async def handler(sid: str, data: Any = None) -> dict[str, Any]:
            return await self.dispatch(sid, event, data)

        return handler

    async def dispatch(self, sid: str, event: str, data: Any) -> dict[str, Any]:
        """Run one event for one session; return the ack envelope."""
        session = self.sessions.by_sid.get(sid)
        if session is None:
            return _error(SfuError("invalid_state", "connection is closing"))
        try:
            async with session.lock:
                result = await self._handlers[event](session, data)
            return {"ok": True, **result}
        except SfuError as exc:
            self.rejected[exc.code] += 1
            self.rejected_by_event[(event, exc.code)] += 1
            if event == "join":
                self.joins[exc.code] += 1
            logger.debug("%s %r refused: %s", sid, event, exc)
            return _error(exc)
        except Exception:
            self.rejected["internal_error"] += 1
            self.rejected_by_event[(event, "internal_error")] += 1
            logger.exception("%s: %r handler failed", sid, event)
            return _error(SfuError("internal_error", "internal error; see server log"))

    async def _unknown(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        self.unknown_events += 1
        self.rejected["bad_request"] += 1
        logger.debug("%s sent unknown event %r", sid, event)
        return _error(SfuError("bad_request", f"unknown event {event!r}"))

    # ------------------------------------------------------------------ connection

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        grant = None
        if self._jwt_secret is not None:
            try:
                grant = verify_token(self._jwt_secret, auth)
            except SfuError as exc:
                self.rejected[exc.code] += 1
                self.joins[exc.code] += 1
                logger.info("%s refused at connect: %s", sid, exc.message)
                # (message, data): the client's connect_error carries err.data = {code, message}
                raise socketio.exceptions.ConnectionRefusedError(
                    exc.message, exc.to_dict()
                ) from None
        config = self.rooms.config
        session = Session(
            sid,
            TokenBucket(config.chat_burst, config.chat_per_second),
            TokenBucket(config.video_pause_burst, config.video_pause_per_second),
        )
        session.grant = grant
        self.sessions.add(session)

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        session = self.sessions.by_sid.get(sid)
        if session is None:
            return
        async with session.lock:
            await self._depart(session, "disconnected")
            self.sessions.pop(sid)

    async def _depart(self, session: Session, reason: str) -> None:
        room, pid = session.room, session.participant_id
        self.sessions.unbind(session)
        if room is not None and pid is not None:
            await room.remove(pid, reason)

    def _joined(self, session: Session) -> tuple[Any, str]:
        if session.room is None or session.participant_id is None:
            raise SfuError("not_joined", "join a room first")
        if session.participant_id not in session.room.participants:
            self.sessions.unbind(session)
            raise SfuError("not_joined", "you were removed from the room; join again")
        return session.room, session.participant_id

    # ------------------------------------------------------------------ events

    async def _join(self, session: Session, data: Any) -> dict[str, Any]:
        if self._join_limit is not None and not self._join_limit.take():
            raise SfuError("rate_limited", "too many join attempts on this server; retry soon")
        room_name, name = validation.parse_join(data)
        if session.participant_id is not None:
            raise SfuError("already_joined", "this connection already joined a room")
        grant = session.grant
        if grant is not None:
            if grant.room != room_name:
                raise SfuError("unauthorized", "your token is for another room")
            name = grant.name
        history: list[ChatMessage] = []
        if self.cluster is not None:  # raises `moved` when the room lives elsewhere
            await self.cluster.admit(room_name, self.rooms.rooms)
            if room_name not in self.rooms.rooms:
                history = _chat_messages(await self.cluster.chat_history(room_name))
        room, participant = self.rooms.join(
            room_name,
            name,
            can_publish=grant.can_publish if grant else True,
            can_subscribe=grant.can_subscribe if grant else True,
        )
        if history and len(room.chat) == 0:
            room.chat.restore(history)
        self.sessions.bind(session, room, participant.id)
        self.joins["ok"] += 1
        logger.info("%s joined room %s as %s (%r)", session.sid, room.name, participant.id, name)
        ice_servers = [s.to_dict() for s in self.rooms.config.ice_servers]
        if self._turn is not None:
            ice_servers.append(self._turn.ice_server(participant.id))
        result = {
            "id": participant.id,
            "room": room.name,
            "participants": [
                p.info() for p in room.participants.values() if p.id != participant.id
            ],
            "iceServers": ice_servers,
            "chat": room.chat.to_list(),
            "recording": room.recording_active,
            "canRecord": self._may_record(session) and room.can_record,
        }
        if self.cluster is not None:
            result.update(await self.cluster.ack_fields())
        return result

    async def _sdp(self, session: Session, data: Any) -> dict[str, Any]:
        room, pid = self._joined(session)
        sdp, sources = validation.parse_sdp(data, self.rooms.config.max_sdp_bytes)
        answer = await room.participants[pid].handle_offer(sdp, sources)
        return {"description": {"type": "answer", "sdp": answer}}

    async def _candidates(self, session: Session, data: Any) -> dict[str, Any]:
        room, pid = self._joined(session)
        candidate = validation.parse_candidate(data)
        await room.participants[pid].add_candidate(candidate)
        return {}

    async def _chat(self, session: Session, data: Any) -> dict[str, Any]:
        room, pid = self._joined(session)
        text = validation.parse_chat(data)
        if not session.chat_bucket.take():
            raise SfuError("rate_limited", "too many chat messages; slow down")
        message = room.post_chat(pid, text)
        if self.cluster is not None:
            self.cluster.chat_posted(room.name, message.to_dict())
        return {"message": message.to_dict()}

    async def _mute(self, session: Session, data: Any) -> dict[str, Any]:
        room, pid = self._joined(session)
        kind, muted = validation.parse_mute(data)
        room.set_muted(pid, kind, muted)
        return {}

    async def _video_pause(self, session: Session, data: Any) -> dict[str, Any]:
        """The subscriber stops (or resumes) receiving one remote video it does not show."""
        room, pid = self._joined(session)
        publisher, source, paused = validation.parse_video_pause(data)
        bucket = session.pause_bucket
        if bucket is not None and not bucket.take():
            raise SfuError("rate_limited", "too many video pause requests; slow down")
        room.participants[pid].set_viewer_paused(publisher, source, paused)
        return {}

    def _may_record(self, session: Session) -> bool:
        """Without join tokens anyone in the room may record; with them, the grant says."""
        if self._jwt_secret is None:
            return True
        return session.grant is not None and session.grant.can_record

    async def _recording(self, session: Session, data: Any) -> dict[str, Any]:
        """Start/stop the room's recording: needs the `canRecord` grant when join tokens
        are in use (anyone in the room otherwise)."""
        room, pid = self._joined(session)
        active = validation.parse_recording(data)
        if not self._may_record(session):
            raise SfuError("unauthorized", "your token does not allow recording")
        if active:
            return {"recording": await room.start_recording(started_by=pid)}
        return {"recording": await room.stop_recording()}

    async def _leave(self, session: Session, data: Any) -> dict[str, Any]:
        validation.parse_leave(data)
        self._joined(session)
        await self._depart(session, "left")
        return {}

    async def _stats(self, session: Session, data: Any) -> dict[str, Any]:
        """This participant's own rows of the sampler's last snapshot (no new sampling)."""
        validation.parse_stats(data)
        room, pid = self._joined(session)
        snapshot = self.stats_snapshot() if self.stats_snapshot is not None else {}
        for room_row in snapshot.get("rooms", []):
            if room_row.get("name") != room.name:
                continue
            for person in room_row.get("participants", []):
                if person.get("id") == pid:
                    return {
                        "connectionState": person.get("connectionState"),
                        "published": person.get("published", []),
                        "subscriptions": person.get("subscriptions", []),
                    }
        # joined after the last sample: nothing measured yet
        return {"connectionState": None, "published": [], "subscriptions": []}

    # ------------------------------------------------------------------ shutdown

    async def drain(self) -> None:
        """Tell every connected client the server is going away, then disconnect them.

        Everyone hears it before anyone is disconnected: the `participant left` events the
        disconnects cause then reach clients that already know why (no false "X left")."""
        sids = list(self.sessions.by_sid)
        for sid in sids:
            try:
                await self.sio.emit(
                    "error",
                    {"code": "server_busy", "message": "the server is shutting down"},
                    to=sid,
                )
            except Exception:  # pragma: no cover - best effort during shutdown
                logger.debug("drain: %s already gone", sid)
        for sid in sids:
            try:
                await self.sio.disconnect(sid)
            except Exception:  # pragma: no cover - best effort during shutdown
                logger.debug("drain: %s already gone", sid)


def _chat_messages(raw: list[dict[str, Any]]) -> list[ChatMessage]:
    out = []
    for item in raw:
        try:
            out.append(ChatMessage.from_dict(item))
        except (KeyError, ValueError, TypeError):
            logger.warning("ignoring a malformed stored chat message: %.200r", item)
    return out


def _error(exc: SfuError) -> dict[str, Any]:
    return {"ok": False, "error": exc.to_dict()}
