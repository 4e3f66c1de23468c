"""The aiohttp application: Socket.IO signaling, HTTP endpoints and the web client."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry

from sfu.compat.check import check_internals
from sfu.ice_policy import IcePolicy
from sfu.rate_limit import TokenBucket
from sfu.room_manager import RoomManager
from sfu.stats import StatsSampler
from sfu.turn import TurnCredentials
from signaling import monitoring, recording_api
from signaling.config import ServerConfig
from signaling.events import SignalingEvents, SocketSignaler
from signaling.session import SessionRegistry
from signaling.validation import ROOM_RE

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", ServerConfig)
ROOMS = web.AppKey("rooms", RoomManager)
EVENTS = web.AppKey("events", SignalingEvents)
SIO = web.AppKey("sio", socketio.AsyncServer)
SAMPLER = web.AppKey("sampler", StatsSampler)
REGISTRY = web.AppKey("registry", CollectorRegistry)

VENDOR = {"socket.io-client": "socket.io-client/dist", "chart.js": "chart.js/dist"}


def create_app(config: ServerConfig) -> web.Application:
    """Build the server. All state lives in the returned app; nothing is global except the
    ICE host-address policy, which aioice only offers process-wide (installed while the app
    runs, restored at cleanup)."""
    missing = check_internals()
    if missing and config.sfu.forwarding == "passthrough":
        raise RuntimeError(
            "aiortc internals used by passthrough forwarding changed: " + ", ".join(missing)
        )
    app = web.Application(client_max_size=1024 * 1024)
    app[CONFIG] = config
    # None is engine.io's same-origin default; a plain list would REPLACE same-origin,
    # so an allowlist is checked by a callable that also accepts the server's own origin
    origins = _OriginCheck(config.cors_allowed_origins) if config.cors_allowed_origins else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        max_http_buffer_size=config.max_http_buffer_size,
        cors_allowed_origins=origins,
        logger=False,
        engineio_logger=False,
    )
    sio.attach(app)
    app[SIO] = sio
    app.cleanup_ctx.append(_media_core)
    app.on_shutdown.append(_drain)

    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/api/stats", _api_stats)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/api/rooms/{room}/recording", _recording_start)
    app.router.add_delete("/api/rooms/{room}/recording", _recording_stop)
    app.router.add_get("/stats", _stats_page)
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/room/{room}", _room_page)
    if config.web_root.is_dir():
        app.router.add_static("/static/", config.web_root, follow_symlinks=False)
    for name, sub in VENDOR.items():
        path = config.vendor_root / sub
        if path.is_dir():
            app.router.add_static(f"/vendor/{name}/", path)
        else:
            logger.warning("%s missing: run `npm ci` (the web client needs it)", path)
    return app


class _OriginCheck:
    """Socket.IO Origin policy: the server's own origin plus `--cors-origin` entries."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self._allowed = frozenset(o.rstrip("/") for o in allowed)

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None or origin in self._allowed:
            return True
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin == own


async def _media_core(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the ICE policy, the room manager and the event handlers, closed in
    reverse order at shutdown."""
    config = app[CONFIG]
    policy = IcePolicy(config.sfu.ice_addresses)
    policy.install()
    try:
        sio = app[SIO]
        registry = SessionRegistry()
        rooms = RoomManager(config.sfu, SocketSignaler(sio, registry))
        turn = None
        if config.turn_secret:
            turn = TurnCredentials(config.turn_secret, config.turn_urls, config.turn_ttl)
        events = SignalingEvents(
            sio,
            rooms,
            registry,
            config.jwt_secret,
            join_limit=TokenBucket(config.join_burst, config.join_per_second),
            turn=turn,
        )
        app[ROOMS] = rooms
        app[EVENTS] = events
        sampler = StatsSampler(rooms, interval=config.stats_interval)
        app[SAMPLER] = sampler
        events.stats_snapshot = sampler.snapshot
        app[REGISTRY] = monitoring.build_registry(sampler, events)
        sampler.start()
        yield
    finally:
        if SAMPLER in app:
            await app[SAMPLER].close()
        if ROOMS in app:
            await app[ROOMS].close()
        policy.uninstall()


async def _drain(app: web.Application) -> None:
    if ROOMS in app:
        app[ROOMS].start_draining()
    if EVENTS in app:
        await app[EVENTS].drain()
    sio = app[SIO]
    if sio.eio.service_task_handle is not None:  # engine.io's shutdown is not idempotent
        await sio.shutdown()  # stops engine.io's service task (else it outlives the app)


async def _healthz(request: web.Request) -> web.Response:
    rooms = request.app[ROOMS]
    return web.json_response(
        {
            "status": "draining" if rooms.draining else "ok",
            "rooms": len(rooms.rooms),
            "participants": rooms.participant_count(),
            "forwarding": rooms.config.forwarding,
        }
    )


def _page(filename: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        path: Path = request.app[CONFIG].web_root / filename
        # FileResponse answers 404 itself when the file is missing
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return handler


_BAD_ROOM_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>No such room \u00b7 sfu-relay</title>
<link rel="stylesheet" href="/static/css/app.css"></head>
<body class="landing"><main class="card landing-card" role="alert">
<h1>That is not a room name</h1>
<p>Room names are 1-64 letters, digits, "_" or "-" (no spaces or other signs).
Check the link you were given, or pick a room on the start page.</p>
<p><a class="button-link" href="/">Go to the start page</a></p>
</main></body></html>
"""


async def _room_page(request: web.Request) -> web.StreamResponse:
    room = request.match_info["room"]
    if not ROOM_RE.fullmatch(room):
        if "text/html" in request.headers.get("Accept", ""):
            # a person typed a bad URL: a page that says what is wrong and links back
            raise web.HTTPBadRequest(text=_BAD_ROOM_HTML, content_type="text/html")
        raise web.HTTPBadRequest(
            text=json.dumps({"code": "bad_request", "message": "room must be 1-64 of A-Za-z0-9_-"}),
            content_type="application/json",
        )
    response: web.StreamResponse = await _page("room.html")(request)
    return response


async def _api_stats(request: web.Request) -> web.Response:
    monitoring.check_admin(request, request.app[CONFIG].admin_token)
    history = request.query.get("history", "0")
    if history not in ("0", "1"):
        raise web.HTTPBadRequest(
            text='{"code": "bad_request", "message": "history must be 0 or 1"}',
            content_type="application/json",
        )
    payload = monitoring.stats_payload(request.app[SAMPLER], history == "1")
    return web.json_response(payload, headers={"Cache-Control": "no-store"})


async def _recording_start(request: web.Request) -> web.Response:
    monitoring.check_admin(request, request.app[CONFIG].admin_token)
    return await recording_api.start(request.app[ROOMS], request.match_info["room"])


async def _recording_stop(request: web.Request) -> web.Response:
    monitoring.check_admin(request, request.app[CONFIG].admin_token)
    return await recording_api.stop(request.app[ROOMS], request.match_info["room"])


async def _metrics(request: web.Request) -> web.Response:
    monitoring.check_admin(request, request.app[CONFIG].admin_token)
    body, content_type = monitoring.metrics_text(request.app[REGISTRY])
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _stats_page(request: web.Request) -> web.StreamResponse:
    monitoring.check_admin(request, request.app[CONFIG].admin_token)
    return await _page("stats.html")(request)
