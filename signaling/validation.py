"""Payload validation for client-to-server events: every rule raises `bad_request`."""

from __future__ import annotations

import re
from typing import Any

from sfu.errors import SfuError
from sfu.wire import PAUSABLE_SOURCES, SOURCES, Kind, Source

ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NAME = 64
MAX_CHAT = 2000
MAX_CANDIDATE = 1024
MAX_PARTICIPANT_ID = 64


def bad(message: str) -> SfuError:
    return SfuError("bad_request", message)


def require_object(data: Any, event: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise bad(f"'{event}' payload must be a JSON object")
    return data


def _string(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if value is None:
        raise bad(f"missing field '{field}'")
    if not isinstance(value, str):
        raise bad(f"field '{field}' must be a string")
    return value


def parse_join(data: Any) -> tuple[str, str]:
    """Return (room, name) of a `join` payload."""
    data = require_object(data, "join")
    room = _string(data, "room")
    if not ROOM_RE.fullmatch(room):
        raise bad("room must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    name = _string(data, "name").strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise bad(f"name must be 1-{MAX_NAME} characters")
    if not name.isprintable():
        raise bad("name must contain printable characters only")
    return room, name


def parse_sdp(data: Any, max_bytes: int) -> tuple[str, dict[str, Source]]:
    """Return (offer sdp, {mid: source}) of a client `sdp` event."""
    data = require_object(data, "sdp")
    description = data.get("description")
    if not isinstance(description, dict):
        raise bad("field 'description' must be an object")
    if description.get("type") != "offer":
        kind = description.get("type")
        raise SfuError(
            "invalid_state" if kind == "answer" else "bad_request",
            "answers go in the ack of the server's offer"
            if kind == "answer"
            else "description.type must be 'offer'",
        )
    sdp = description.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise bad("description.sdp must be a non-empty string")
    if len(sdp) > max_bytes:
        raise SfuError("invalid_sdp", f"offer larger than {max_bytes} bytes")
    sources: dict[str, Source] = {}
    tracks = data.get("tracks", [])
    if not isinstance(tracks, list) or len(tracks) > 64:
        raise bad("field 'tracks' must be a list of at most 64 {mid, source}")
    for row in tracks:
        if not isinstance(row, dict):
            raise bad("each of 'tracks' must be an object")
        mid, source = row.get("mid"), row.get("source")
        if not isinstance(mid, str) or not 1 <= len(mid) <= 32:
            raise bad("tracks[].mid must be a string of 1-32 characters")
        if source not in SOURCES:
            raise bad(f"tracks[].source must be one of {', '.join(SOURCES)}")
        sources[mid] = source
    return sdp, sources


def parse_candidate(data: Any) -> dict[str, Any] | None:
    """Return the candidate object of an `ice candidates` event (None = end)."""
    data = require_object(data, "ice candidates")
    if "candidate" not in data:
        raise bad("missing field 'candidate'")
    candidate = data["candidate"]
    if candidate is None:
        return None
    if not isinstance(candidate, dict):
        raise bad("field 'candidate' must be an object or null")
    text = candidate.get("candidate")
    if not isinstance(text, str) or len(text) > MAX_CANDIDATE:
        raise bad(f"candidate.candidate must be a string of at most {MAX_CANDIDATE} chars")
    mid = candidate.get("sdpMid")
    if mid is not None and (not isinstance(mid, str) or len(mid) > 32):
        raise bad("candidate.sdpMid must be a short string or null")
    index = candidate.get("sdpMLineIndex")
    if index is not None and (
        isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 1024
    ):
        raise bad("candidate.sdpMLineIndex must be an integer 0-1023 or null")
    return {"candidate": text, "sdpMid": mid, "sdpMLineIndex": index}


def parse_chat(data: Any) -> str:
    data = require_object(data, "chat message")
    text = _string(data, "text").strip()
    if not 1 <= len(text) <= MAX_CHAT:
        raise bad(f"text must be 1-{MAX_CHAT} characters after trimming")
    return text


def parse_mute(data: Any) -> tuple[Kind, bool]:
    data = require_object(data, "mute")
    kind = data.get("kind")
    if kind not in ("audio", "video"):
        raise bad("kind must be 'audio' or 'video'")
    muted = data.get("muted")
    if not isinstance(muted, bool):
        raise bad("muted must be a boolean")
    return ("audio" if kind == "audio" else "video"), muted


def parse_video_pause(data: Any) -> tuple[str, Source, bool]:
    """The `video pause` request: `{"participantId": str, "source": "camera"|"screen",
    "paused": bool}` -> (publisher id, source, paused)."""
    data = require_object(data, "video pause")
    publisher = _string(data, "participantId")
    if not 1 <= len(publisher) <= MAX_PARTICIPANT_ID:
        raise bad(f"participantId must be 1-{MAX_PARTICIPANT_ID} characters")
    source = data.get("source")
    if source not in PAUSABLE_SOURCES:
        raise bad(f"source must be one of {', '.join(PAUSABLE_SOURCES)} (video only)")
    paused = data.get("paused")
    if not isinstance(paused, bool):
        raise bad("paused must be a boolean")
    return publisher, ("screen" if source == "screen" else "camera"), paused


def parse_recording(data: Any) -> bool:
    """The `recording` request: `{"active": bool}` (start or stop)."""
    data = require_object(data, "recording")
    active = data.get("active")
    if not isinstance(active, bool):
        raise bad("active must be a boolean")
    return active


def parse_leave(data: Any) -> None:
    if data is not None:
        require_object(data, "leave")


def parse_stats(data: Any) -> None:
    if data is not None:
        require_object(data, "stats")
