"""Admin API of room recording: `POST` / `DELETE /api/rooms/<room>/recording` (the
caller checks the admin token first). Owns nothing: it maps a room's answer to HTTP."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sfu.errors import SfuError
from sfu.room import Room
from sfu.room_manager import RoomManager
from signaling.validation import ROOM_RE


def _fail(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"ok": False, "error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json")


def _room(rooms: RoomManager, name: str) -> Room | web.Response:
    if not ROOM_RE.fullmatch(name):
        return _fail(400, "bad_request", "room must be 1-64 of A-Za-z0-9_-")
    room = rooms.rooms.get(name)
    if room is None:
        return _fail(404, "not_found", f"no room {name!r} (rooms exist while occupied)")
    return room


def _refused(exc: SfuError) -> web.Response:
    """`invalid_state` (already / not recording, disabled) is 409; a directory that
    cannot be written is 500 with the reason."""
    status = 409 if exc.code == "invalid_state" else 500
    return _fail(status, exc.code, exc.message)


async def start(rooms: RoomManager, name: str) -> web.Response:
    """Start recording room `name`: 200 with the `recording` object, 404 unknown room,
    409 already recording (or recording disabled), 500 unwritable directory."""
    room = _room(rooms, name)
    if isinstance(room, web.Response):
        return room
    try:
        info: dict[str, Any] = await room.start_recording(started_by=None)
    except SfuError as exc:
        return _refused(exc)
    return web.json_response({"ok": True, "recording": info})


async def stop(rooms: RoomManager, name: str) -> web.Response:
    """Stop recording room `name` (waits for the files): 200 with the `recording`
    object, 404 unknown room, 409 not recording."""
    room = _room(rooms, name)
    if isinstance(room, web.Response):
        return room
    try:
        info = await room.stop_recording()
    except SfuError as exc:
        return _refused(exc)
    return web.json_response({"ok": True, "recording": info})
