"""Wire types of PROTOCOL.md as the client sees them: `Participant`, `ChatMessage`,
`TrackInfo`, `JoinResult`, `ServerEvent`, and `SfuError` (parsed from an ack's error
envelope or a `connect_error`). Kinds, sources and error codes come from `sfu.wire`, shared
with the server. Parsing is lenient where the protocol allows it and raises `ValueError`
for payloads of the wrong shape."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sfu.wire import DEFAULT_SOURCE, KINDS, SOURCES, Kind, ProtocolError, Source

__all__ = [
    "ChatMessage",
    "JoinResult",
    "Participant",
    "ServerEvent",
    "SfuError",
    "TrackInfo",
]


class SfuError(ProtocolError):
    """A refusal from the server (`code` from PROTOCOL.md's error envelope) or a client-side
    failure (`sfu.wire.CLIENT_ERROR_CODES`: `timeout`, `disconnected`, `negotiation_failed`,
    `closed`, ...). Same semantics as the server's `sfu.errors.SfuError`: `str()` is the
    message, `code` the stable identifier. `url`: the owner's base URL of a cluster `moved`
    refusal (docs/protocol.md "Cluster")."""

    def __init__(self, code: str, message: str, url: str | None = None) -> None:
        super().__init__(code, message)
        self.url = url


def wire_object(data: Any, what: str) -> dict[str, Any]:
    """`data` if it is a JSON object, else `ValueError` naming `what`."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


#: Converter and default of a wire field, by the dataclass field's annotation.
_SCALARS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "str": (str, ""),
    "bool": (bool, False),
    "float": (float, 0.0),
}
T = TypeVar("T")


def from_fields(cls: type[T], data: Any, renamed: dict[str, str] | None = None) -> T:
    """An instance of the flat dataclass `cls` from the wire object `data`: each field
    read from its camelCase key (or `renamed[field]`), converted by its annotation,
    defaulting when missing (`ValueError` when `data` is not an object or a value does
    not convert)."""
    d = wire_object(data, cls.__name__)
    values = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        convert, default = _SCALARS[str(f.type)]
        head, *rest = f.name.split("_")
        key = (renamed or {}).get(f.name, head + "".join(w.title() for w in rest))
        values.append(convert(d.get(key, default)))
    return cls(*values)


@dataclass(frozen=True, slots=True)
class Participant:
    """PROTOCOL.md `Participant`."""

    id: str
    name: str
    audio_muted: bool = False
    video_muted: bool = False

    @classmethod
    def from_wire(cls, data: Any) -> Participant:
        return from_fields(cls, data)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """PROTOCOL.md `ChatMessage` (`sender` is the wire's `from`)."""

    id: str
    sender: str
    name: str
    text: str
    ts: float

    @classmethod
    def from_wire(cls, data: Any) -> ChatMessage:
        return from_fields(cls, data, {"sender": "from"})


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """PROTOCOL.md `TrackInfo`: what the server sends on our transceiver `mid`."""

    mid: str
    participant_id: str
    kind: Kind
    source: Source

    @classmethod
    def from_wire(cls, data: Any) -> TrackInfo:
        d = wire_object(data, "TrackInfo")
        kind = d.get("kind")
        if kind not in KINDS:
            raise ValueError(f"TrackInfo.kind must be audio or video, got {kind!r}")
        source = d.get("source")
        if source not in SOURCES:
            source = DEFAULT_SOURCE[kind]
        return cls(
            mid=str(d.get("mid", "")),
            participant_id=str(d.get("participantId", "")),
            kind=cast(Kind, kind),
            source=cast(Source, source),
        )


@dataclass(frozen=True, slots=True)
class JoinResult:
    """The `join` ack: our id, the others already in the room, ICE servers, chat history,
    and whether the room is being recorded."""

    id: str
    room: str
    participants: list[Participant]
    ice_servers: list[dict[str, Any]]
    chat: list[ChatMessage]
    #: cluster: the id of the node that serves the room, and the serving nodes' URLs
    node: str | None = None
    nodes: list[str] = field(default_factory=list)
    recording: bool = False
    #: this participant may start/stop the recording (the server allows and records)
    can_record: bool = False

    @classmethod
    def from_wire(cls, data: Any, room: str) -> JoinResult:
        d = wire_object(data, "join ack")
        nodes = d.get("nodes")
        return cls(
            id=str(d["id"]),
            room=str(d.get("room", room)),
            participants=[Participant.from_wire(p) for p in d.get("participants", [])],
            ice_servers=[s for s in d.get("iceServers", []) if isinstance(s, dict)],
            chat=[ChatMessage.from_wire(m) for m in d.get("chat", [])],
            node=str(d["node"]) if "node" in d else None,
            nodes=[u for u in nodes if isinstance(u, str)] if isinstance(nodes, list) else [],
            recording=d.get("recording") is True,
            can_record=d.get("canRecord") is True,
        )


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One server-to-client event as received (`at`: monotonic receive time)."""

    name: str
    payload: Any
    at: float


def error_from_ack(event: str, reply: Any) -> SfuError | None:
    """None for an `{"ok": true, ...}` ack, else the `SfuError` it carries (`bad_reply` when
    the ack is not an envelope at all)."""
    if not isinstance(reply, dict):
        return SfuError("bad_reply", f"ack to {event!r} is not an object: {reply!r}")
    if reply.get("ok") is True:
        return None
    error = reply.get("error")
    if isinstance(error, dict):
        return _error_from(error, "")
    return SfuError("bad_reply", f"ack to {event!r} has no ok/error: {reply!r}")


def error_event(data: Any) -> SfuError:
    """The server's `error` event as an `SfuError` (lenient: any payload)."""
    return _error_from(data if isinstance(data, dict) else {}, data)


def _error_from(error: dict[str, Any], fallback: Any) -> SfuError:
    url = error.get("url")
    return SfuError(
        str(error.get("code", "unknown")),
        str(error.get("message", fallback)),
        url if isinstance(url, str) else None,
    )


def refusal(data: Any, fallback: str) -> SfuError:
    """`SfuError` from a `connect_error` payload: `{"code", "message"}`, or python-socketio's
    `{"message": str(...)}` wrapping of one."""
    if isinstance(data, dict):
        message = data.get("message")
        candidates = [data, data.get("data")]
        if isinstance(message, str) and message.startswith("{"):
            with contextlib.suppress(ValueError, SyntaxError):
                candidates.append(ast.literal_eval(message))
        for candidate in candidates:
            if isinstance(candidate, dict) and "code" in candidate:
                return SfuError(str(candidate["code"]), str(candidate.get("message", "")))
        if isinstance(message, str):
            return SfuError("connection_refused", message)
    return SfuError("connection_refused", fallback)
