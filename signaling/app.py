"""The aiohttp application: Socket.IO signaling, HTTP endpoints and the web client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
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
from signaling.cluster import ClusterNode
from signaling.cluster.node import LocalLoad
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
CLUSTER = web.AppKey("cluster", ClusterNode)

#: planned drain (cluster): how long moved participants get to leave for their new node
DRAIN_MOVE_TIMEOUT = 10.0

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
    origins = None
    if config.cors_allowed_origins or config.cluster is not None:
        # a clustered page may reconnect to another node of the cluster after a failover
        origins = _OriginCheck(config.cors_allowed_origins, lambda: _cluster_urls(app))
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
    """Socket.IO Origin policy: the server's own origin, `--cors-origin` entries and
    (cluster mode) the public URLs of the cluster's nodes."""

    def __init__(
        self,
        allowed: tuple[str, ...],
        dynamic: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._allowed = frozenset(o.rstrip("/") for o in allowed)
        self._dynamic = dynamic

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None or origin in self._allowed or origin in self._dynamic():
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
        node = None
        if config.cluster is not None:
            node = ClusterNode(config.cluster, lambda: _local_load(app), config.sfu.max_rooms)
            app[CLUSTER] = node
            await node.start()  # LinkDown when Redis is unreachable: the CLI exits 2
        serial = node.serial if node is not None else 0
        rooms = RoomManager(config.sfu, SocketSignaler(sio, registry), node_serial=serial)
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
            cluster=node,
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
        if CLUSTER in app:
            await app[CLUSTER].close()
        policy.uninstall()


def _cluster_urls(app: web.Application) -> Collection[str]:
    node = app.get(CLUSTER)
    return node.known_urls if node is not None else ()


def _local_load(app: web.Application) -> LocalLoad:
    """This node's rooms and load for its cluster record."""
    rooms = app.get(ROOMS)
    if rooms is None:
        return LocalLoad()
    forwarded = sum(
        1
        for room in rooms.rooms.values()
        for p in room.participants.values()
        for s in p.send_slots()
        if s.published is not None
    )
    sampler = app.get(SAMPLER)
    return LocalLoad(
        rooms={name: len(room) for name, room in rooms.rooms.items()},
        participants=rooms.participant_count(),
        forwarded_streams=forwarded,
        cpu=sampler.cpu_percent if sampler is not None else 0.0,
        loop_lag=sampler.loop_lag if sampler is not None else 0.0,
    )


async def _cluster_handover(app: web.Application) -> None:
    """Planned drain of a cluster node: hand each room to another node, send its
    participants `moved`, and give them `DRAIN_MOVE_TIMEOUT` s to go."""
    node, rooms, events = app[CLUSTER], app[ROOMS], app[EVENTS]
    signaler = SocketSignaler(app[SIO], events.sessions)

    async def notify(room_name: str, url: str) -> None:
        room = rooms.rooms.get(room_name)
        if room is None:
            return
        payload = {"code": "moved", "message": "this node is shutting down", "url": url}
        await asyncio.gather(
            *(signaler.emit(pid, "error", payload) for pid in list(room.participants)),
            return_exceptions=True,
        )

    handed = await node.drain(list(rooms.rooms), notify)
    deadline = time.monotonic() + DRAIN_MOVE_TIMEOUT
    # polled: participants leave by disconnecting from this node, one event each
    while handed and rooms.participant_count() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    logger.info(
        "drain: %d room(s) handed over, %d participant(s) left behind",
        handed,
        rooms.participant_count(),
    )


async def _drain(app: web.Application) -> None:
    if CLUSTER in app and ROOMS in app and EVENTS in app:
        await _cluster_handover(app)
    if ROOMS in app:
        app[ROOMS].start_draining()
    if EVENTS in app:
        await app[EVENTS].drain()
    sio = app[SIO]
    if sio.eio.service_task_handle is not None:  # engine.io's shutdown is not idempotent
        await sio.shutdown()  # stops engine.io's service task (else it outlives the app)


async def _healthz(request: web.Request) -> web.Response:
    rooms = request.app[ROOMS]
    node = request.app.get(CLUSTER)
    draining = rooms.draining or (node is not None and node.state == "draining")
    payload: dict[str, Any] = {
        "status": "draining" if draining else "ok",
        "rooms": len(rooms.rooms),
        "participants": rooms.participant_count(),
        "forwarding": rooms.config.forwarding,
    }
    if node is not None:
        payload.update(node=node.id, redis=node.link.up, pid=os.getpid())
    return web.json_response(payload)


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
    node = request.app.get(CLUSTER)
    if node is not None:
        owner = await node.redirect_url(room, request.app[ROOMS].rooms)
        if owner is not None:
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPTemporaryRedirect(f"{owner}/room/{room}{query}")
    response: web.StreamResponse = await _page("room.html")(request)
    return response


async def _api_stats(request: web.Request) -> web.Response:
    monitoring.check_admin(request, request.app[CONFIG].admin_token)
    scope = request.query.get("scope", "node")
    if scope not in ("node", "cluster"):
        raise web.HTTPBadRequest(
            text='{"code": "bad_request", "message": "scope must be node or cluster"}',
            content_type="application/json",
        )
    if scope == "cluster":
        node = request.app.get(CLUSTER)
        if node is None:
            raise web.HTTPNotFound(
                text='{"code": "bad_request", "message": "not a cluster node (no --redis-url)"}',
                content_type="application/json",
            )
        payload = await node.cluster_stats()
        return web.json_response(payload, headers={"Cache-Control": "no-store"})
    history = request.query.get("history", "0")
    if history not in ("0", "1"):
        raise web.HTTPBadRequest(
            text='{"code": "bad_request", "message": "history must be 0 or 1"}',
            content_type="application/json",
        )
    payload = monitoring.stats_payload(request.app[SAMPLER], history == "1")
    # tells the dashboard whether `?scope=cluster` has anything to show
    payload["cluster"] = request.app.get(CLUSTER) is not None
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
