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
decoded. `receive="light"` (implies no decoding) installs
`sfu.compat.light_receiver.install_light_receiver` instead: frames are counted at the RTP
layer after SRTP and arrive as `LightFrame`s (SSRC, RTP timestamp, keyframe flag, size,
no codec bytes); RTCP receiver reports, NACKs and REMB are still sent.

A `RemoteTrack` names who sent what (`participant_id`, `kind`, `source`, `mid`)
and counts frames; a new `RemoteTrack` is made whenever the server (re)assigns a `mid` to
another publisher (the server reuses transceivers of departed publishers).

Cluster (docs/protocol.md "Cluster"): `join()` follows a `moved` refusal to the room's
node (the socket is swapped, no `disconnect` callback fires) and keeps the ack's `nodes`
in `nodes` for failover; `signaling.roaming.RoamingClient` rejoins after a node's drain or
death.

Every wait is bounded (`timeout`, default `DEFAULT_TIMEOUT` seconds). Refusals and failures
raise `SfuError(code, message)` (`str()` is the message, as for the server's errors): the
server's codes (`sfu.wire.ERROR_CODES`) and the client's own (`sfu.wire.CLIENT_ERROR_CODES`:
`timeout`, `disconnected`, `negotiation_failed`, `closed`, ...). `request()` is the checked
way to send an event; `call()` sends anything and returns the raw ack (protocol tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import socketio
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from sfu.compat import negotiation
from sfu.compat.lean_sender import install_lean_sender
from sfu.compat.light_receiver import LightFrame, LightReceiverHook, install_light_receiver
from sfu.compat.receiver import ReceiverHook, install_receiver_sink
from sfu.compat.sender import (
    install_sender_audio_level,
    install_sender_feedback,
    install_sender_keyframe_hook,
)
from sfu.frame_assembler import EncodedFrame
from sfu.wire import PREFERRED_CODECS, SERVER_EVENTS, VIDEO_STATES, Kind, Source
from signaling.client.tracks import DEFAULT_TIMEOUT, RemoteTrack
from signaling.client.wire import (
    ChatMessage,
    JoinResult,
    Participant,
    ServerEvent,
    SfuError,
    TrackInfo,
    error_event,
    error_from_ack,
    refusal,
    wire_object,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_EVENTS",
    "MAX_GLARE_RETRIES",
    "MAX_KEPT_ENDED_TRACKS",
    "MAX_QUEUED_TRACKS",
    "SfuClient",
    "follow_remb",
    "prefer_codecs",
]

#: Offers refused for glare are retried at most this many times.
MAX_GLARE_RETRIES = 5
#: Cluster: `moved` refusals a `join` follows before giving up.
MAX_MOVES = 3
#: Server events kept in `SfuClient.events` (oldest dropped first).
MAX_EVENTS = 10_000
#: Unread tracks kept in `SfuClient.remote_tracks` (oldest dropped first).
MAX_QUEUED_TRACKS = 256
#: Ended tracks kept in `SfuClient.all_tracks` (oldest dropped first).
MAX_KEPT_ENDED_TRACKS = 64


Callback = Callable[..., Any]

#: How a client receives remote tracks (see the module doc).
ReceiveMode = Literal["decode", "frames", "light"]
RECEIVE_MODES: tuple[ReceiveMode, ...] = ("decode", "frames", "light")


@dataclass(slots=True)
class _Receiving:
    """Our side of one receiving transceiver: the drain (reader task or passthrough hook)
    and the `RemoteTrack` currently labelled on it."""

    transceiver: RTCRtpTransceiver
    hook: ReceiverHook | LightReceiverHook | None = None
    task: asyncio.Task[None] | None = None
    current: RemoteTrack | None = None


# ---------------------------------------------------------------------- client


class SfuClient:
    """A participant: one Socket.IO connection, one peer connection (see module doc).

    Create with `await SfuClient.connect(url)`. Callbacks (`on(event, fn)`; plain or async
    functions) get: `"participant joined"` / `"participant updated"` -> `Participant`,
    `"participant left"` -> `(id, reason)`, `"chat message"` -> `ChatMessage`, `"error"` ->
    `SfuError`, `"active speaker"` -> `(id or None, levels)`, `"recording"` -> `active`,
    `"video state"` -> `(id, source, state, layer or None)`, `"track"` -> `RemoteTrack`,
    `"frame"` -> `(RemoteTrack, frame)` (sync callbacks only, called on every frame),
    `"disconnect"` -> no argument. Every server event is also recorded in `events` and can
    be awaited with `wait_for_event()`; new remote tracks go to the `remote_tracks` queue
    and the `tracks_by_mid` / `all_tracks` views.
    Both are bounded for long-lived clients in churning rooms: `remote_tracks` keeps the
    newest `MAX_QUEUED_TRACKS` unread tracks, `all_tracks` every live track and the newest
    `MAX_KEPT_ENDED_TRACKS` ended ones (the frames of dropped ones stay in `frames`).
    """

    def __init__(
        self,
        *,
        decode: bool = True,
        receive: ReceiveMode | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        ssl_verify: bool = True,
        ice_servers: list[RTCIceServer] | None = None,
        relay_only: bool = False,
    ) -> None:
        #: "decode" (stock aiortc decoding), "frames" (encoded frames, no decoding) or
        #: "light" (counted at the RTP layer); None: "decode" or "frames" after `decode`
        self.receive: ReceiveMode = receive or ("decode" if decode else "frames")
        if self.receive not in RECEIVE_MODES:
            raise ValueError(f"receive must be one of {', '.join(RECEIVE_MODES)}")
        self.decode = self.receive == "decode"
        self.timeout = timeout
        #: join token sent in the Socket.IO `auth` payload; extra handshake headers
        self.token = token
        self.headers = headers or {}
        #: False: accept any TLS certificate (self-signed test servers)
        self.ssl_verify = ssl_verify
        #: ICE servers of the peer connection; None: the ones of the join ack
        self.ice_servers = ice_servers
        #: gather relay candidates only (TURN), like RTCIceTransportPolicy "relay"
        self.relay_only = relay_only
        #: frames received on receivers not (yet) labelled by the server's `tracks`
        self.unlabelled_frames = 0
        self._dropped_frames = 0  # frames of ended tracks dropped from all_tracks
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pc: RTCPeerConnection | None = None
        self.id: str | None = None
        self.room: str | None = None
        self.participants: dict[str, Participant] = {}
        #: the room is being recorded (join ack, then `recording` events)
        self.recording = False
        #: the room's active speaker and levels (last `active speaker` event)
        self.active_speaker: str | None = None
        self.speaker_levels: dict[str, float] = {}
        #: the server's forwarding state of each remote video we receive, by (participant
        #: id, source), from `video state` events (absent: "active")
        self.video_states: dict[tuple[str, str], str] = {}
        self.chat_history: list[ChatMessage] = []
        self.events: list[ServerEvent] = []
        self.errors: list[SfuError] = []
        self.remote_tracks: asyncio.Queue[RemoteTrack] = asyncio.Queue(MAX_QUEUED_TRACKS)
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
        #: cluster: the serving nodes' URLs from the last join ack (failover candidates)
        self.nodes: list[str] = []
        self._moving = False
        self._register_handlers()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def connect(cls, url: str, **options: Any) -> SfuClient:
        """`SfuClient(**options)`, then `open(url)`: the usual way to make a client."""
        client = cls(**options)
        await client.open(url)
        return client

    async def open(self, url: str) -> None:
        """Open the Socket.IO connection (websocket transport; `token` in the `auth`
        payload, `headers` with the handshake). A refused connection raises `SfuError` with
        the server's code (e.g. `unauthorized`)."""
        self.url = url.rstrip("/")
        auth = {"token": self.token} if self.token is not None else None
        self.sio.eio.ssl_verify = self.ssl_verify
        try:
            async with asyncio.timeout(self.timeout):
                await self.sio.connect(
                    url,
                    auth=auth,
                    headers=self.headers,
                    transports=["websocket"],
                    wait_timeout=self.timeout,
                )
        except socketio.exceptions.ConnectionError as exc:
            await self._discard_socket()
            raise refusal(self._connect_error, str(exc)) from None
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

    async def close_media(self) -> None:
        """Close the peer connection (and stop receiving) but keep the socket open: the
        server sees a participant whose media went away."""
        async with self._locked():
            await self._close_media()

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
        error = error_from_ack(event, reply)
        if error is not None:
            raise error
        return dict(reply)

    async def call(self, event: str, payload: Any = None, timeout: float | None = None) -> Any:
        """Send any event with any payload and return the raw ack, whatever it is (for
        protocol and adversarial tests; `request()` is the checked form). The client's own
        state (joined room, peer connection) is not touched."""
        wait = self.timeout if timeout is None else timeout
        return await self.sio.call(event, payload, timeout=wait)

    async def join(self, room: str, name: str) -> JoinResult:
        """Join `room` as `name`; create the peer connection (ICE servers from the ack)."""
        if self.id is not None:
            raise SfuError("already_joined", "this client already joined a room")
        reply = await self._follow_moved({"room": room, "name": name})
        result = JoinResult.from_wire(reply, room)
        self.nodes = result.nodes
        self.id, self.room = result.id, result.room
        for p in result.participants:
            self.participants.setdefault(p.id, p)
        self.chat_history.extend(result.chat)
        self.recording = result.recording
        self.pc = self._new_pc(result.ice_servers)
        self._joined.set()
        return result

    async def _follow_moved(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send `join`; on a cluster `moved` refusal, reconnect to the owner's URL and send
        it again there (at most `MAX_MOVES` times). The socket swap fires no `disconnect`."""
        for _ in range(MAX_MOVES):
            try:
                reply: dict[str, Any] = await self.request("join", payload)
                return reply
            except SfuError as exc:
                if exc.code != "moved" or not exc.url:
                    raise
                logger.info("room %s lives at %s: moving there", payload.get("room"), exc.url)
                self._moving = True
                try:
                    await self._discard_socket()
                    await self.open(exc.url)
                finally:
                    self._moving = False
        raise SfuError("moved", f"still moved after {MAX_MOVES} redirects")

    def _new_pc(self, ice_servers: list[dict[str, Any]]) -> RTCPeerConnection:
        servers = self.ice_servers
        if servers is None:
            servers = [
                RTCIceServer(
                    urls=s["urls"], username=s.get("username"), credential=s.get("credential")
                )
                for s in ice_servers
                if "urls" in s
            ]
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=servers,
                iceTransportPolicy=policy,
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
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
        adapt_bitrate: bool = True,
    ) -> None:
        """Send `video` (VP8) and/or `audio` (Opus) on new send-only transceivers and
        negotiate. A video track with a `request_keyframe()` method (e.g.
        `PacedVideoTrack`) gets the server's PLI/FIR through it. A video track whose
        `temporal_layers` attribute is above 1 (a `PacedVideoTrack` of an L1T3 clip) is
        sent by `sfu.compat.lean_sender` with the VP8 temporal-layer descriptor fields.
        With `adapt_bitrate` (default) a video track with a `set_target_bitrate(bps)`
        method (a `PacedVideoTrack`, which switches between its bitrate variants) gets
        every REMB the server sends about it, as an encoder would; False ignores REMB."""
        if video is not None and video.kind != "video":
            raise ValueError("video must be a video track")
        if audio is not None and audio.kind != "audio":
            raise ValueError("audio must be an audio track")
        if not isinstance(adapt_bitrate, bool):
            raise ValueError(f"adapt_bitrate must be a bool, got {adapt_bitrate!r}")
        async with self._locked():
            # under the lock: a transceiver added while a server offer is being applied
            # would be taken for one of its m-lines
            pc = self._require_pc()
            for track, source in ((video, video_source), (audio, audio_source)):
                if track is None:
                    continue
                transceiver = pc.addTransceiver(track, direction="sendonly")
                prefer_codecs(transceiver)
                if track.kind == "video" and getattr(track, "temporal_layers", 1) > 1:
                    install_lean_sender(transceiver.sender, temporal_layers=True)
                request_keyframe = getattr(track, "request_keyframe", None)
                if track.kind == "video" and callable(request_keyframe):
                    install_sender_keyframe_hook(transceiver.sender, request_keyframe)
                if adapt_bitrate:
                    follow_remb(transceiver.sender, track)
                audio_level = getattr(track, "current_audio_level", None)
                if track.kind == "audio" and callable(audio_level):
                    install_sender_audio_level(transceiver.sender, audio_level)
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
        claimed = negotiation.claim_ice_controlling(pc)
        try:
            reply = await self.request(
                "sdp", {"description": {"type": "offer", "sdp": sdp}, "tracks": tracks}
            )
        except SfuError:
            negotiation.release_ice_role(claimed)
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
            negotiation.add_transport_description(media, transceiver.receiver.transport)
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

    async def pause_video(self, participant_id: str, source: Source, paused: bool) -> None:
        """Tell the server we do not show (True) or show again (False) the `source`
        ("camera" or "screen") video of `participant_id`: it stops forwarding it, and
        resumes with a keyframe. The server confirms with a `video state` event."""
        await self.request(
            "video pause", {"participantId": participant_id, "source": source, "paused": paused}
        )

    async def set_recording(self, active: bool) -> dict[str, Any]:
        """Start (True) or stop the room's recording; return the server's `recording`
        object (`unauthorized` without the token's canRecord grant)."""
        reply = await self.request("recording", {"active": active})
        recording = reply.get("recording")
        return recording if isinstance(recording, dict) else {}

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
            await self.forget_room()

    async def forget_room(self) -> None:
        """Drop the room state and close the peer connection, as after `leave()`, without
        telling the server (for a `leave` sent another way, e.g. with `call()`)."""
        async with self._locked():
            await self._close_media()
        self.id = self.room = None
        self._joined.clear()
        self.participants.clear()
        self.recording = False
        self.active_speaker = None
        self.speaker_levels = {}
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

    def named(self, name: str) -> list[Any]:
        """Payloads of the recorded server events `name`, oldest first."""
        return [event.payload for event in self.events if event.name == name]

    @property
    def frames(self) -> int:
        """Frames received so far on all remote tracks (labelled or not)."""
        received = sum(t.stats.frames for t in self.all_tracks)
        return self.unlabelled_frames + self._dropped_frames + received

    async def wait_more_frames(self, more: int, timeout: float | None = None) -> None:
        """Wait until `more` frames beyond the current `frames` were received."""
        target = self.frames + more
        await self._wait_until(lambda: self.frames >= target, timeout, f"{more} more frames")

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
            d = wire_object(data, "participant left")
            pid = str(d.get("id", ""))
            self.participants.pop(pid, None)
            self._fire(name, pid, str(d.get("reason", "")))
        elif name == "chat message":
            message = ChatMessage.from_wire(data)
            self.chat_history.append(message)
            self._fire(name, message)
        elif name == "active speaker":
            d = wire_object(data, "active speaker")
            speaker = d.get("participantId")
            self.active_speaker = speaker if isinstance(speaker, str) else None
            levels = d.get("levels")
            self.speaker_levels = (
                {str(k): float(v) for k, v in levels.items()} if isinstance(levels, dict) else {}
            )
            self._fire(name, self.active_speaker, self.speaker_levels)
        elif name == "recording":
            d = wire_object(data, "recording")
            self.recording = d.get("active") is True
            self._fire(name, self.recording)
        elif name == "video state":
            d = wire_object(data, "video state")
            key = (str(d["participantId"]), str(d["source"]))
            state = str(d["state"])
            if state not in VIDEO_STATES:
                raise ValueError(f"unknown video state {state!r}")
            layer = d.get("layer")
            self.video_states[key] = state
            self._fire(name, key[0], key[1], state, layer if isinstance(layer, int) else None)
        elif name == "error":
            error = error_event(data)
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
            # a client that is closing, or whose peer connection the server just closed
            # (a leave in flight), has nothing to answer with: not worth a warning
            leaving = self._closed or self.pc is None or self.pc.signalingState == "closed"
            log = logger.debug if leaving else logger.warning
            # the text, not the exception: a kept log record must not keep its traceback
            # (and with it this client and its peer connection) alive
            log("cannot answer the server's offer: %s", repr(exc))
            self.errors.append(SfuError("negotiation_failed", repr(exc)))
            code = "invalid_sdp" if isinstance(exc, ValueError | TypeError) else "internal_error"
            return {"error": {"code": code, "message": f"client could not answer: {exc!r}"}}
        finally:
            self.server_offers_handled += 1
            self._notify()

    async def _answer(self, data: Any) -> str:
        pc = self._require_pc()
        d = wire_object(data, "sdp")
        description = wire_object(d.get("description"), "description")
        if description.get("type") != "offer" or not isinstance(description.get("sdp"), str):
            raise ValueError("the server's sdp event carries no offer")
        infos = [TrackInfo.from_wire(row) for row in d.get("tracks", [])]
        self.tracks = {info.mid: info for info in infos}
        offer = RTCSessionDescription(sdp=description["sdp"], type="offer")
        await self._settle(pc)
        with negotiation.park_transceivers(pc, [t for t in self._local if t.mid is None]):
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
        prefer_codecs(transceiver)  # our later offers must not list codecs the SFU lacks
        receiving = _Receiving(transceiver)
        self._receiving[mid] = receiving
        if self.decode:
            receiving.task = asyncio.ensure_future(self._drain(receiving, track))
        elif self.receive == "light":
            receiving.hook = install_light_receiver(
                transceiver.receiver,
                track.kind,
                lambda frame: self._on_light(receiving, frame),
                on_end=lambda: self._on_receiver_end(receiving),
            )
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
                self._keep_track(remote)
                self._fire("track", remote)
        unknown = set(self.tracks) - set(self._receiving)
        if unknown:
            logger.warning("server labelled mids we do not receive on: %s", sorted(unknown))

    def _keep_track(self, remote: RemoteTrack) -> None:
        """Record a new remote track in the bounded `all_tracks` and `remote_tracks`."""
        self.all_tracks.append(remote)
        ended = [t for t in self.all_tracks if t.ended]
        if len(ended) > MAX_KEPT_ENDED_TRACKS:
            drop = {id(t) for t in ended[: len(ended) - MAX_KEPT_ENDED_TRACKS]}
            self._dropped_frames += sum(t.stats.frames for t in ended if id(t) in drop)
            self.all_tracks = [t for t in self.all_tracks if id(t) not in drop]
        if self.remote_tracks.full():
            self.remote_tracks.get_nowait()
        self.remote_tracks.put_nowait(remote)

    def _on_encoded(self, receiving: _Receiving, frame: EncodedFrame) -> None:
        remote = receiving.current
        if remote is None:
            self.unlabelled_frames += 1
            return
        remote._deliver(frame, len(frame.data), frame.keyframe)
        self._notify()
        self._fire_frame(remote, frame)

    def _on_light(self, receiving: _Receiving, frame: LightFrame) -> None:
        remote = receiving.current
        if remote is None:
            self.unlabelled_frames += 1
            return
        remote._deliver(frame, frame.size, frame.keyframe)
        self._notify()
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
                    self.unlabelled_frames += 1
                    continue
                remote._deliver(frame, 0, False)
                self._notify()
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


def follow_remb(sender: RTCRtpSender, track: MediaStreamTrack) -> bool:
    """Hand every REMB the server sends about `sender`'s stream to `track`'s
    `set_target_bitrate(bps)` (`sfu.compat.sender.install_sender_feedback`), as an encoder
    would take it; True when installed, False (nothing done) for a track that is not video
    or has no such method. Install once per sender."""
    set_target = getattr(track, "set_target_bitrate", None)
    if track.kind != "video" or not callable(set_target):
        return False

    def on_remb(bps: int, ssrcs: list[int]) -> None:
        set_target(int(bps))

    install_sender_feedback(sender, on_remb, _ignore_report)
    return True


def _ignore_report(fraction_lost: int, highest_sequence: int, ssrc: int, lost: int) -> None:
    """A sender report sink that keeps nothing (aiortc still handles the report)."""


def prefer_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Limit `transceiver` to the room's codecs (`sfu.wire.PREFERRED_CODECS`)."""
    wanted = PREFERRED_CODECS[transceiver.kind]
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
