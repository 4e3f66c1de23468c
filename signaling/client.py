"""`SfuClient`: a Python participant speaking PROTOCOL.md, for bots, tests and the benchmark.

One Socket.IO connection and ONE `RTCPeerConnection` to the server, like the browser client::

    client = await SfuClient.connect("http://127.0.0.1:8080", decode=False)
    joined = await client.join("demo", "bot-1")
    await client.publish(video=PacedVideoTrack(marker=1), audio=PacedAudioTrack())
    remote = await client.wait_for_track(kind="video", timeout=10)
    await remote.wait_frames(30, timeout=10)
    await client.close()

Negotiation (PROTOCOL.md "Negotiation"): `publish()` adds send-only transceivers (VP8 / Opus
only), offers with `sdp` and applies the answer from the ack; the server's `sdp` offers
(with `tracks`, labelling each of our receiving transceivers by `mid`) are answered in the
event's ack. One negotiation at a time (`asyncio.Lock`). Glare: aiortc cannot roll back a
local offer, so our offer is built WITHOUT touching the peer connection's state (ICE is
gathered through the public `RTCIceGatherer.gather()`, the transport attributes are added
with `aiortc.rtcpeerconnection.add_transport_description`, exactly what
`setLocalDescription` adds) and only applied with `setLocalDescription` once the server
answered. When the server refuses it with `invalid_state` (its own offer is pending), the
peer connection is untouched: the client answers the server's offer, then offers again.

Receiving: every remote track is drained by the client at all times. `decode=True` runs
stock aiortc decoding (frames are `av.VideoFrame` / `av.AudioFrame`); `decode=False`
installs `sfu.compat.receiver.install_receiver_sink` on each receiver, so frames are
`sfu.frame_assembler.EncodedFrame` (codec bytes, RTP timestamp, keyframe flag) and nothing is
decoded. A `RemoteTrack` names who sent what (`participant_id`, `kind`, `source`, `mid`)
and counts frames; a new `RemoteTrack` is made whenever the server (re)assigns a `mid` to
another publisher (the server reuses transceivers of departed publishers).

Cluster (docs/protocol.md "Cluster"): `join()` follows a `moved` refusal to the room's
node (the socket is swapped, no `disconnect` callback fires) and keeps the ack's `nodes`
in `nodes` for failover; `signaling.roaming.RoamingClient` rejoins after a node's drain or
death.

Every wait is bounded (`timeout`, default `DEFAULT_TIMEOUT` seconds). Refusals and failures
raise `SfuError(code, message)`: the server's codes, plus `timeout`, `disconnected`,
`negotiation_failed` and `closed` raised by the client itself.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import socketio
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from sfu.compat.negotiation import (
    add_transport_description,
    claim_ice_controlling,
    park_transceivers,
    release_ice_role,
)
from sfu.compat.receiver import ReceiverHook, install_receiver_sink
from sfu.compat.sender import install_sender_keyframe_hook
from sfu.frame_assembler import EncodedFrame

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ChatMessage",
    "JoinResult",
    "Kind",
    "Participant",
    "RemoteTrack",
    "ServerEvent",
    "SfuClient",
    "SfuError",
    "Source",
    "TrackInfo",
    "TrackStats",
]

Kind = Literal["audio", "video"]
Source = Literal["camera", "microphone", "screen"]

#: Seconds any single wait may take unless told otherwise.
DEFAULT_TIMEOUT = 15.0
#: Offers refused for glare are retried at most this many times.
MAX_GLARE_RETRIES = 5
#: Frames kept per remote track for `RemoteTrack.next_frame()` (oldest dropped first).
FRAME_QUEUE_SIZE = 16
#: Cluster: `moved` refusals a `join` follows before giving up.
MAX_MOVES = 3
#: Server events kept in `SfuClient.events` (oldest dropped first).
MAX_EVENTS = 10_000

SERVER_EVENTS = (
    "participant joined",
    "participant left",
    "participant updated",
    "chat message",
    "error",
)

_CODECS: dict[str, tuple[str, ...]] = {
    "video": ("video/vp8", "video/rtx"),
    "audio": ("audio/opus",),
}


class SfuError(Exception):
    """A refusal from the server (`code` from PROTOCOL.md's error envelope) or a client-side
    failure (`timeout`, `disconnected`, `negotiation_failed`, `closed`). `url`: the
    owner's base URL of a cluster `moved` refusal."""

    def __init__(self, code: str, message: str, url: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.url = url

    def __repr__(self) -> str:
        return f"SfuError({self.code!r}, {self.message!r})"


# ---------------------------------------------------------------------- wire types


@dataclass(frozen=True, slots=True)
class Participant:
    """PROTOCOL.md `Participant`."""

    id: str
    name: str
    audio_muted: bool = False
    video_muted: bool = False

    @classmethod
    def from_wire(cls, data: Any) -> Participant:
        d = _object(data, "Participant")
        return cls(
            id=str(d.get("id", "")),
            name=str(d.get("name", "")),
            audio_muted=bool(d.get("audioMuted", False)),
            video_muted=bool(d.get("videoMuted", False)),
        )


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
        d = _object(data, "ChatMessage")
        return cls(
            id=str(d.get("id", "")),
            sender=str(d.get("from", "")),
            name=str(d.get("name", "")),
            text=str(d.get("text", "")),
            ts=float(d.get("ts", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """PROTOCOL.md `TrackInfo`: what the server sends on our transceiver `mid`."""

    mid: str
    participant_id: str
    kind: Kind
    source: Source

    @classmethod
    def from_wire(cls, data: Any) -> TrackInfo:
        d = _object(data, "TrackInfo")
        kind = d.get("kind")
        if kind not in ("audio", "video"):
            raise ValueError(f"TrackInfo.kind must be audio or video, got {kind!r}")
        source = d.get("source")
        if source not in ("camera", "microphone", "screen"):
            source = "camera" if kind == "video" else "microphone"
        return cls(
            mid=str(d.get("mid", "")),
            participant_id=str(d.get("participantId", "")),
            kind=cast(Kind, kind),
            source=cast(Source, source),
        )


@dataclass(frozen=True, slots=True)
class JoinResult:
    """The `join` ack: our id, the others already in the room, ICE servers, chat history."""

    id: str
    room: str
    participants: list[Participant]
    ice_servers: list[dict[str, Any]]
    chat: list[ChatMessage]
    #: cluster: the id of the node that serves the room, and the serving nodes' URLs
    node: str | None = None
    nodes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One server-to-client event as received (`at`: monotonic receive time)."""

    name: str
    payload: Any
    at: float


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------- remote tracks


@dataclass(slots=True)
class TrackStats:
    """Counters of one `RemoteTrack` (times from `time.monotonic()`).

    `bytes` and `keyframes` are counted in `decode=False` mode only (aiortc's decoded
    frames carry neither their encoded size nor a keyframe flag)."""

    frames: int = 0
    bytes: int = 0
    keyframes: int = 0
    created_at: float = field(default_factory=time.monotonic)
    first_frame_at: float | None = None
    last_frame_at: float | None = None

    @property
    def time_to_first_frame(self) -> float | None:
        if self.first_frame_at is None:
            return None
        return self.first_frame_at - self.created_at


class RemoteTrack:
    """One remote participant's track as received on our transceiver `mid`.

    The client reads the underlying aiortc `track` itself (do not call `track.recv()`):
    frames are counted in `stats`, kept in `last_frame`, queued for `next_frame()` (the
    newest `FRAME_QUEUE_SIZE`) and passed to the client's `"frame"` callbacks. Frames are
    `av.VideoFrame` / `av.AudioFrame` with `decode=True`, `EncodedFrame` otherwise.
    `ended` is set when the server stops sending it (publisher left, transceiver reused)
    or the connection closes.

    Frames in flight while the server switches a reused transceiver to another publisher
    may be counted on the old `RemoteTrack`: compare content (e.g. the marker of
    `signaling.sources`) when attribution must be exact.
    """

    def __init__(
        self,
        info: TrackInfo,
        track: MediaStreamTrack | None,
        receiver: RTCRtpReceiver | None,
    ) -> None:
        self.info = info
        self.participant_id = info.participant_id
        self.kind: Kind = info.kind
        self.source: Source = info.source
        self.mid = info.mid
        self.track = track
        self.receiver = receiver
        self.stats = TrackStats()
        self.last_frame: Any = None
        self.ended = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue(FRAME_QUEUE_SIZE)
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"RemoteTrack(mid={self.mid!r}, participant_id={self.participant_id!r}, "
            f"kind={self.kind!r}, source={self.source!r}, frames={self.stats.frames}, "
            f"ended={self.ended})"
        )

    def _deliver(self, frame: Any, size: int, keyframe: bool) -> None:
        now = time.monotonic()
        stats = self.stats
        stats.frames += 1
        stats.bytes += size
        if keyframe:
            stats.keyframes += 1
        if stats.first_frame_at is None:
            stats.first_frame_at = now
        stats.last_frame_at = now
        self.last_frame = frame
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)
        self._changed.set()

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self._changed.set()

    async def next_frame(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The oldest queued frame, waiting up to `timeout` s for one (`SfuError` timeout;
        `SfuError` closed when the track ended with nothing queued)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not self._queue.empty():
                        return self._queue.get_nowait()
                    if self.ended:
                        raise SfuError("closed", f"track {self.mid} ended")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise SfuError("timeout", f"no frame on track {self.mid} within {timeout} s") from None

    async def wait_frames(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until at least `count` frames were received in total."""
        try:
            async with asyncio.timeout(timeout):
                while self.stats.frames < count:
                    if self.ended:
                        raise SfuError("closed", f"track {self.mid} ended")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise SfuError(
                "timeout",
                f"track {self.mid}: {self.stats.frames}/{count} frames within {timeout} s",
            ) from None


Callback = Callable[..., Any]


@dataclass(slots=True)
class _Receiving:
    """Our side of one receiving transceiver: the drain (reader task or passthrough hook)
    and the `RemoteTrack` currently labelled on it."""

    transceiver: RTCRtpTransceiver
    hook: ReceiverHook | None = None
    task: asyncio.Task[None] | None = None
    current: RemoteTrack | None = None
    unlabelled_frames: int = 0


# ---------------------------------------------------------------------- client


class SfuClient:
    """A participant: one Socket.IO connection, one peer connection (see module doc).

    Create with `await SfuClient.connect(url)`. Callbacks (`on(event, fn)`; plain or async
    functions) get: `"participant joined"` / `"participant updated"` -> `Participant`,
    `"participant left"` -> `(id, reason)`, `"chat message"` -> `ChatMessage`, `"error"` ->
    `SfuError`, `"track"` -> `RemoteTrack`, `"frame"` -> `(RemoteTrack, frame)` (sync
    callbacks only, called on every frame), `"disconnect"` -> no argument. Every server event
    is also recorded in `events` and can be awaited with `wait_for_event()`; new remote
    tracks go to the `remote_tracks` queue and the `tracks_by_mid` / `all_tracks` views.
    """

    def __init__(self, *, decode: bool = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.decode = decode
        self.timeout = timeout
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pc: RTCPeerConnection | None = None
        self.id: str | None = None
        self.room: str | None = None
        self.participants: dict[str, Participant] = {}
        self.chat_history: list[ChatMessage] = []
        self.events: list[ServerEvent] = []
        self.errors: list[SfuError] = []
        self.remote_tracks: asyncio.Queue[RemoteTrack] = asyncio.Queue()
        self.all_tracks: list[RemoteTrack] = []
        #: TrackInfo of the server's last offer, by mid
        self.tracks: dict[str, TrackInfo] = {}
        self.server_offers = 0
        #: server offers handled, answered or not (glare waits for this to move)
        self.server_offers_handled = 0
        self.client_offers = 0
        self.glare_retries = 0
        self.connected = False
        self._receiving: dict[str, _Receiving] = {}  # by mid
        self._pending_tracks: list[tuple[MediaStreamTrack, RTCRtpTransceiver]] = []
        self._local: dict[RTCRtpTransceiver, Source] = {}
        self._callbacks: dict[str, list[Callback]] = {}
        self._negotiation = asyncio.Lock()
        self._changed = asyncio.Event()
        self._joined = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connect_error: Any = None
        self._closed = False
        #: base URL of the node this client is connected to (changes when `moved`)
        self.url: str | None = None
        self._token: str | None = None
        #: cluster: the serving nodes' URLs from the last join ack (failover candidates)
        self.nodes: list[str] = []
        self._moving = False
        self._register_handlers()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        token: str | None = None,
        decode: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> SfuClient:
        """Open the Socket.IO connection (websocket transport). A refused connection raises
        `SfuError` with the server's code (e.g. `unauthorized`)."""
        client = cls(decode=decode, timeout=timeout)
        await client._open(url, token)
        return client

    async def _open(self, url: str, token: str | None) -> None:
        self.url, self._token = url.rstrip("/"), token
        auth = {"token": token} if token is not None else None
        try:
            async with asyncio.timeout(self.timeout):
                await self.sio.connect(
                    url, auth=auth, transports=["websocket"], wait_timeout=self.timeout
                )
        except socketio.exceptions.ConnectionError as exc:
            await self._discard_socket()
            raise _refusal(self._connect_error, str(exc)) from None
        except TimeoutError:
            await self._discard_socket()
            raise SfuError(
                "timeout", f"could not connect to {url} within {self.timeout} s"
            ) from None
        self.connected = True

    async def _discard_socket(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 5.0)

    async def close(self) -> None:
        """Close the peer connection and the socket, cancel the client's tasks (idempotent).
        The server treats the disconnect as an implicit `leave`."""
        if self._closed:
            return
        self._closed = True
        await self._close_media()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        await self._discard_socket()
        self.connected = False
        self._changed.set()

    async def __aenter__(self) -> SfuClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _close_media(self) -> None:
        for receiving in self._receiving.values():
            if receiving.hook is not None:
                receiving.hook.close()
            if receiving.task is not None:
                receiving.task.cancel()
            if receiving.current is not None:
                receiving.current._end()
        for receiving in self._receiving.values():
            if receiving.task is not None:
                with contextlib.suppress(BaseException):
                    await receiving.task
        self._receiving.clear()
        self._local.clear()
        self._pending_tracks.clear()
        pc, self.pc = self.pc, None
        if pc is not None:
            try:
                await asyncio.wait_for(pc.close(), 10.0)
            except (TimeoutError, Exception) as exc:
                logger.warning("peer connection close: %r", exc)

    # ------------------------------------------------------------------ requests

    async def request(
        self, event: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a client event and return its ack's result fields; raise `SfuError` when
        the ack is an error, does not come within `timeout`, or the socket is gone."""
        if self._closed:
            raise SfuError("closed", "the client is closed")
        if not self.sio.connected:
            raise SfuError("disconnected", "not connected to the server")
        wait = self.timeout if timeout is None else timeout
        try:
            reply = await self.sio.call(event, payload, timeout=wait)
        except socketio.exceptions.TimeoutError:
            raise SfuError("timeout", f"no ack to {event!r} within {wait} s") from None
        except socketio.exceptions.BadNamespaceError:
            raise SfuError("disconnected", "not connected to the server") from None
        if not isinstance(reply, dict):
            raise SfuError("bad_reply", f"ack to {event!r} is not an object: {reply!r}")
        if reply.get("ok") is True:
            return reply
        error = reply.get("error")
        if isinstance(error, dict):
            url = error.get("url")
            raise SfuError(
                str(error.get("code", "unknown")),
                str(error.get("message", "")),
                url if isinstance(url, str) else None,
            )
        raise SfuError("bad_reply", f"ack to {event!r} has no ok/error: {reply!r}")

    async def join(self, room: str, name: str) -> JoinResult:
        """Join `room` as `name`; create the peer connection (ICE servers from the ack)."""
        if self.id is not None:
            raise SfuError("already_joined", "this client already joined a room")
        reply = await self._follow_moved({"room": room, "name": name})
        nodes = reply.get("nodes")
        result = JoinResult(
            id=str(reply["id"]),
            room=str(reply.get("room", room)),
            participants=[Participant.from_wire(p) for p in reply.get("participants", [])],
            ice_servers=[s for s in reply.get("iceServers", []) if isinstance(s, dict)],
            chat=[ChatMessage.from_wire(m) for m in reply.get("chat", [])],
            node=str(reply["node"]) if "node" in reply else None,
            nodes=[u for u in nodes if isinstance(u, str)] if isinstance(nodes, list) else [],
        )
        self.nodes = result.nodes
        self.id, self.room = result.id, result.room
        for p in result.participants:
            self.participants.setdefault(p.id, p)
        self.chat_history.extend(result.chat)
        self.pc = self._new_pc(result.ice_servers)
        self._joined.set()
        return result

    async def _follow_moved(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send `join`; on a cluster `moved` refusal, reconnect to the owner's URL and send
        it again there (at most `MAX_MOVES` times). The socket swap fires no `disconnect`."""
        for _ in range(MAX_MOVES):
            try:
                return await self.request("join", payload)
            except SfuError as exc:
                if exc.code != "moved" or not exc.url:
                    raise
                logger.info("room %s lives at %s: moving there", payload.get("room"), exc.url)
                self._moving = True
                try:
                    await self._discard_socket()
                    await self._open(exc.url, self._token)
                finally:
                    self._moving = False
        raise SfuError("moved", f"still moved after {MAX_MOVES} redirects")

    def _new_pc(self, ice_servers: list[dict[str, Any]]) -> RTCPeerConnection:
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
            if "urls" in s
        ]
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        pc.on("track", self._on_pc_track)
        pc.on("connectionstatechange", self._on_connection_state)
        return pc

    async def publish(
        self,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        *,
        video_source: Source = "camera",
        audio_source: Source = "microphone",
    ) -> None:
        """Send `video` (VP8) and/or `audio` (Opus) on new send-only transceivers and
        negotiate. A video track with a `request_keyframe()` method (e.g.
        `PacedVideoTrack`) gets the server's PLI/FIR through it."""
        if video is not None and video.kind != "video":
            raise ValueError("video must be a video track")
        if audio is not None and audio.kind != "audio":
            raise ValueError("audio must be an audio track")
        async with self._locked():
            # under the lock: a transceiver added while a server offer is being applied
            # would be taken for one of its m-lines
            pc = self._require_pc()
            for track, source in ((video, video_source), (audio, audio_source)):
                if track is None:
                    continue
                transceiver = pc.addTransceiver(track, direction="sendonly")
                _prefer_codecs(transceiver)
                request_keyframe = getattr(track, "request_keyframe", None)
                if track.kind == "video" and callable(request_keyframe):
                    install_sender_keyframe_hook(transceiver.sender, request_keyframe)
                self._local[transceiver] = source
        await self.negotiate()

    async def negotiate(self) -> None:
        """Offer our current transceivers to the server and apply its answer, handling
        glare (see module doc)."""
        for attempt in range(MAX_GLARE_RETRIES + 1):
            async with self._locked():
                seen = self.server_offers_handled
                try:
                    await self._offer_once()
                    return
                except SfuError as exc:
                    if exc.code != "invalid_state" or attempt == MAX_GLARE_RETRIES:
                        raise
                    self.glare_retries += 1
                    logger.debug("offer refused (%s): answering the server's offer first", exc)
            # _on_server_sdp handles the server's pending offer; then offer again
            await self._wait_until(_moved_past(self, seen), None, "server offer after glare")

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """Hold the negotiation lock, waiting at most `timeout` s for it."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._negotiation.acquire()
        except TimeoutError:
            raise SfuError("timeout", "another negotiation did not finish") from None
        try:
            yield
        finally:
            self._negotiation.release()

    async def _settle(self, pc: RTCPeerConnection) -> None:
        """Before renegotiating, let a connection being established finish connecting.

        aiortc starts the senders and receivers of newly negotiated transceivers only if
        the DTLS transport is already connected, or not started yet, when the description
        is applied; a DTLS handshake in progress (started by the previous negotiation) makes
        it skip them for good. Waits at most `timeout` s, then goes on anyway."""
        if pc.remoteDescription is None:
            return
        try:
            await self._wait_until(
                lambda: pc.connectionState not in ("new", "connecting"), None, "connection"
            )
        except SfuError as exc:
            if exc.code != "timeout":
                raise
            logger.warning("renegotiating while the peer connection is still connecting")

    async def _offer_once(self) -> None:
        pc = self._require_pc()
        await self._settle(pc)
        offer = await pc.createOffer()
        sdp, tracks = await self._complete_offer(pc, offer)
        self.client_offers += 1
        # the server starts its connectivity checks as soon as it answers, before we apply
        # the offer: take the offerer's (controlling) ICE role now, or both ends may start
        # as controlled and fight over the role
        claimed = claim_ice_controlling(pc)
        try:
            reply = await self.request(
                "sdp", {"description": {"type": "offer", "sdp": sdp}, "tracks": tracks}
            )
        except SfuError:
            release_ice_role(claimed)
            raise
        description = reply.get("description")
        if not isinstance(description, dict) or description.get("type") != "answer":
            raise SfuError("bad_reply", "the ack to our offer carries no answer")
        try:
            await pc.setLocalDescription(offer)
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=str(description.get("sdp", "")), type="answer")
            )
        except Exception as exc:
            raise SfuError("negotiation_failed", f"applying the answer failed: {exc!r}") from exc

    async def _complete_offer(
        self, pc: RTCPeerConnection, offer: RTCSessionDescription
    ) -> tuple[str, list[dict[str, str]]]:
        """The offer as `setLocalDescription` would complete it (ICE and DTLS attributes,
        candidates) without changing the peer connection's signaling state, and the
        `tracks` labels of our send-only m-lines."""
        transceivers = pc.getTransceivers()
        gatherers = {id(t.receiver.transport.transport.iceGatherer): t for t in transceivers}
        await asyncio.gather(
            *(t.receiver.transport.transport.iceGatherer.gather() for t in gatherers.values())
        )
        description = aiortc_sdp.SessionDescription.parse(offer.sdp)
        by_mid = {t.mid: t for t in transceivers if t.mid is not None}
        new = iter([t for t in transceivers if t.mid is None and not t.stopped])
        tracks: list[dict[str, str]] = []
        for media in description.media:
            mid = media.rtp.muxId
            transceiver = by_mid.get(mid)
            if transceiver is None and media.kind in ("audio", "video"):
                transceiver = next(new, None)
            if transceiver is None:
                raise SfuError("negotiation_failed", f"offer m-line {mid!r} has no transceiver")
            add_transport_description(media, transceiver.receiver.transport)
            source = self._local.get(transceiver)
            if source is not None:
                tracks.append({"mid": mid, "source": source})
        return str(description), tracks

    async def chat(self, text: str) -> ChatMessage:
        """Post a chat message; return it as the server stored it."""
        reply = await self.request("chat message", {"text": text})
        return ChatMessage.from_wire(reply.get("message"))

    async def mute(self, kind: Kind, muted: bool) -> None:
        """Tell the server to stop (or resume) forwarding our `kind` tracks."""
        await self.request("mute", {"kind": kind, "muted": muted})

    async def send_candidate(self, candidate: dict[str, Any] | None) -> None:
        """Trickle one ICE candidate (None: end of candidates). aiortc puts all candidates
        in the SDP, so the client itself never needs this; it is for protocol tests."""
        await self.request("ice candidates", {"candidate": candidate})

    async def leave(self) -> None:
        """Leave the room and close the peer connection; the socket stays open (a later
        `join` is allowed)."""
        try:
            await self.request("leave", {})
        finally:
            async with self._locked():
                await self._close_media()
            self.id = self.room = None
            self._joined.clear()
            self.participants.clear()
            self.tracks.clear()

    # ------------------------------------------------------------------ waiting

    async def wait_for_event(
        self,
        name: str,
        predicate: Callable[[Any], bool] = lambda _: True,
        timeout: float | None = None,
        *,
        since: int = 0,
    ) -> ServerEvent:
        """The first recorded server event `name` (from index `since` of `events`) whose
        payload satisfies `predicate`, waiting up to `timeout` s for it."""
        found: list[ServerEvent] = []

        def match() -> bool:
            for event in self.events[since:]:
                if event.name == name and predicate(event.payload):
                    found.append(event)
                    return True
            return False

        await self._wait_until(match, timeout, f"event {name!r}")
        return found[0]

    async def wait_for_track(
        self,
        participant_id: str | None = None,
        kind: Kind | None = None,
        timeout: float | None = None,
        *,
        live: bool = True,
    ) -> RemoteTrack:
        """A (by default live) remote track matching `participant_id` and `kind`."""
        found: list[RemoteTrack] = []

        def match() -> bool:
            for track in self.all_tracks:
                if (
                    (participant_id is None or track.participant_id == participant_id)
                    and (kind is None or track.kind == kind)
                    and not (live and track.ended)
                ):
                    found.append(track)
                    return True
            return False

        await self._wait_until(match, timeout, f"track {participant_id}/{kind}")
        return found[0]

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the peer connection is `connected` (`SfuError` if it fails)."""

        def done() -> bool:
            state = self.connection_state
            if state in ("failed", "closed"):
                raise SfuError("negotiation_failed", f"peer connection {state}")
            return state == "connected"

        await self._wait_until(done, timeout, "peer connection")

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState if self.pc is not None else "closed"

    @property
    def tracks_by_mid(self) -> dict[str, RemoteTrack]:
        """The live `RemoteTrack` on each receiving transceiver."""
        return {
            mid: r.current
            for mid, r in self._receiving.items()
            if r.current is not None and not r.current.ended
        }

    async def _wait_until(
        self, predicate: Callable[[], bool], timeout: float | None, what: str = "condition"
    ) -> None:
        wait = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(wait):
                # no await between predicate() and clear(): a change sets the event after
                while not predicate():
                    if self._closed:
                        raise SfuError("closed", "the client is closed")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise SfuError("timeout", f"no {what} within {wait} s") from None

    def _notify(self) -> None:
        """Wake every `_wait_until` waiter so it re-checks its predicate."""
        self._changed.set()

    # ------------------------------------------------------------------ callbacks

    def on(self, event: str, callback: Callback) -> Callback:
        """Register `callback` for `event` (see class doc); returns it (decorator use)."""
        self._callbacks.setdefault(event, []).append(callback)
        return callback

    def _fire(self, event: str, *args: Any) -> None:
        for callback in self._callbacks.get(event, []):
            try:
                result = callback(*args)
                if isinstance(result, Awaitable):
                    self._spawn(_guard(result, event))
            except Exception:
                logger.exception("%r callback failed", event)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ server events

    def _register_handlers(self) -> None:
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("sdp", self._on_server_sdp)
        for name in SERVER_EVENTS:
            self.sio.on(name, self._event_handler(name))

    def _on_connect_error(self, data: Any = None) -> None:
        self._connect_error = data

    def _on_disconnect(self, reason: Any = None) -> None:
        self.connected = False
        if self._moving:
            return
        self._record("disconnect", reason)
        self._fire("disconnect")

    def _event_handler(self, name: str) -> Callable[[Any], None]:
        def handler(data: Any = None) -> None:
            self._record(name, data)
            try:
                self._apply_event(name, data)
            except (ValueError, TypeError, KeyError) as exc:
                logger.warning("malformed %r event %r: %s", name, data, exc)

        return handler

    def _record(self, name: str, payload: Any) -> None:
        self.events.append(ServerEvent(name, payload, time.monotonic()))
        if len(self.events) > MAX_EVENTS:
            del self.events[: len(self.events) - MAX_EVENTS]
        self._notify()

    def _apply_event(self, name: str, data: Any) -> None:
        if name in ("participant joined", "participant updated"):
            participant = Participant.from_wire(data)
            self.participants[participant.id] = participant
            self._fire(name, participant)
        elif name == "participant left":
            d = _object(data, "participant left")
            pid = str(d.get("id", ""))
            self.participants.pop(pid, None)
            self._fire(name, pid, str(d.get("reason", "")))
        elif name == "chat message":
            message = ChatMessage.from_wire(data)
            self.chat_history.append(message)
            self._fire(name, message)
        elif name == "error":
            d = data if isinstance(data, dict) else {}
            url = d.get("url")
            error = SfuError(
                str(d.get("code", "unknown")),
                str(d.get("message", data)),
                url if isinstance(url, str) else None,
            )
            self.errors.append(error)
            logger.info("server error event: %s", error)
            self._fire(name, error)

    async def _on_server_sdp(self, data: Any = None) -> dict[str, Any]:
        """Answer a server offer; the returned object is the event's ack."""
        self._record("sdp", data)
        try:
            async with asyncio.timeout(self.timeout):
                await self._joined.wait()
            async with self._locked():
                answer = await self._answer(data)
            return {"description": {"type": "answer", "sdp": answer}}
        except Exception as exc:
            log = logger.debug if self._closed else logger.warning
            log("cannot answer the server's offer: %r", exc)
            self.errors.append(SfuError("negotiation_failed", repr(exc)))
            code = "invalid_sdp" if isinstance(exc, ValueError | TypeError) else "internal_error"
            return {"error": {"code": code, "message": f"client could not answer: {exc!r}"}}
        finally:
            self.server_offers_handled += 1
            self._notify()

    async def _answer(self, data: Any) -> str:
        pc = self._require_pc()
        d = _object(data, "sdp")
        description = _object(d.get("description"), "description")
        if description.get("type") != "offer" or not isinstance(description.get("sdp"), str):
            raise ValueError("the server's sdp event carries no offer")
        infos = [TrackInfo.from_wire(row) for row in d.get("tracks", [])]
        self.tracks = {info.mid: info for info in infos}
        offer = RTCSessionDescription(sdp=description["sdp"], type="offer")
        await self._settle(pc)
        with park_transceivers(pc, [t for t in self._local if t.mid is None]):
            await pc.setRemoteDescription(offer)
            await pc.setLocalDescription(await pc.createAnswer())
        self._relabel(pc)
        self.server_offers += 1
        self._notify()
        return str(pc.localDescription.sdp)

    # ------------------------------------------------------------------ receiving

    def _on_pc_track(self, track: MediaStreamTrack) -> None:
        """pc "track" event (inside setRemoteDescription, before the receiver starts)."""
        pc = self.pc
        if pc is None:
            return
        transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
        if transceiver is None or transceiver.mid is None:
            logger.warning("track %s without a transceiver", track.id)
            return
        mid = transceiver.mid
        _prefer_codecs(transceiver)  # our later offers must not list codecs the SFU lacks
        receiving = _Receiving(transceiver)
        self._receiving[mid] = receiving
        if self.decode:
            receiving.task = asyncio.ensure_future(self._drain(receiving, track))
        else:
            receiving.hook = install_receiver_sink(
                transceiver.receiver,
                track.kind,
                lambda frame: self._on_encoded(receiving, frame),
                on_end=lambda: self._on_receiver_end(receiving),
            )

    def _relabel(self, pc: RTCPeerConnection) -> None:
        """Match our receiving transceivers to the server's `tracks` labels."""
        for mid, receiving in self._receiving.items():
            info = self.tracks.get(mid)
            current = receiving.current
            if current is not None and (info is None or current.info != info):
                current._end()
                receiving.current = None
            if info is not None and receiving.current is None:
                transceiver = receiving.transceiver
                remote = RemoteTrack(info, transceiver.receiver.track, transceiver.receiver)
                receiving.current = remote
                self.all_tracks.append(remote)
                self.remote_tracks.put_nowait(remote)
                self._fire("track", remote)
        unknown = set(self.tracks) - set(self._receiving)
        if unknown:
            logger.warning("server labelled mids we do not receive on: %s", sorted(unknown))

    def _on_encoded(self, receiving: _Receiving, frame: EncodedFrame) -> None:
        remote = receiving.current
        if remote is None:
            receiving.unlabelled_frames += 1
            return
        remote._deliver(frame, len(frame.data), frame.keyframe)
        self._fire_frame(remote, frame)

    def _on_receiver_end(self, receiving: _Receiving) -> None:
        if receiving.current is not None:
            receiving.current._end()
            self._notify()

    async def _drain(self, receiving: _Receiving, track: MediaStreamTrack) -> None:
        """decode=True: read (and so decode) every frame of `track`, always."""
        try:
            while True:
                frame = await track.recv()
                remote = receiving.current
                if remote is None:
                    receiving.unlabelled_frames += 1
                    continue
                remote._deliver(frame, 0, False)
                self._fire_frame(remote, frame)
        except MediaStreamError:
            self._on_receiver_end(receiving)

    def _fire_frame(self, remote: RemoteTrack, frame: Any) -> None:
        for callback in self._callbacks.get("frame", ()):
            try:
                callback(remote, frame)
            except Exception:
                logger.exception("frame callback failed")

    def _on_connection_state(self) -> None:
        pc = self.pc
        if pc is not None:
            logger.debug("%s: peer connection %s", self.id, pc.connectionState)
        self._notify()

    def _require_pc(self) -> RTCPeerConnection:
        if self._closed:
            raise SfuError("closed", "the client is closed")
        if self.pc is None:
            raise SfuError("not_joined", "join a room first")
        return self.pc


def _moved_past(client: SfuClient, seen: int) -> Callable[[], bool]:
    return lambda: client.server_offers_handled > seen


def _prefer_codecs(transceiver: RTCRtpTransceiver) -> None:
    wanted = _CODECS[transceiver.kind]
    codecs = [
        c
        for c in RTCRtpSender.getCapabilities(transceiver.kind).codecs
        if c.mimeType.lower() in wanted
    ]
    transceiver.setCodecPreferences(codecs)


async def _guard(awaitable: Awaitable[Any], event: str) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("%r callback failed", event)


def _refusal(data: Any, fallback: str) -> SfuError:
    """`SfuError` from a `connect_error` payload: `{"code", "message"}`, or python-socketio's
    `{"message": str(...)}` wrapping of one."""
    if isinstance(data, dict):
        if "code" in data:
            return SfuError(str(data["code"]), str(data.get("message", "")))
        inner = data.get("data")
        if isinstance(inner, dict) and "code" in inner:
            return SfuError(str(inner["code"]), str(inner.get("message", "")))
        message = data.get("message")
        if isinstance(message, str) and message.startswith("{"):
            with contextlib.suppress(ValueError, SyntaxError):
                parsed = ast.literal_eval(message)
                if isinstance(parsed, dict) and "code" in parsed:
                    return SfuError(str(parsed["code"]), str(parsed.get("message", "")))
        if isinstance(message, str):
            return SfuError("connection_refused", message)
    return SfuError("connection_refused", fallback)
