"""A participant: its ONE peer connection, its negotiation queue and its tracks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import candidate_from_sdp

from sfu.allocator import SubscriberAllocator
from sfu.compat.fast_queue import use_fast_ice_queue
from sfu.compat.negotiation import create_offer_keeping_negotiated, pin_negotiated_codecs
from sfu.compat.rtp_guard import guard_peer_connection
from sfu.config import SfuConfig
from sfu.downlink import DownlinkEstimate
from sfu.errors import SfuError
from sfu.published_track import PublishedTrack
from sfu.sdp_check import check_offer
from sfu.send_slot import SendSlot, SubscribedTrack
from sfu.signaler import Signaler
from sfu.wire import PREFERRED_CODECS, Kind, Source

logger = logging.getLogger(__name__)

#: Makes the participant's peer connection (tests pass a fake).
PeerConnectionFactory = Callable[[RTCConfiguration], RTCPeerConnection]


def pin_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Restrict a transceiver to the room's codecs (VP8 + RTX, Opus): no transcoding."""
    kind = transceiver.kind
    wanted = PREFERRED_CODECS[kind]
    codecs = [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() in wanted]
    transceiver.setCodecPreferences(codecs)


class Participant:
    """Owns ONE `RTCPeerConnection`, its negotiation lock, its `PublishedTrack`s and the
    `SendSlot`s that carry other participants' tracks to it, and the `DownlinkEstimate` of
    its peer connection's downlink (`downlink`), fed by all its send slots.

    `close()` is idempotent: it stops the negotiation task, closes every track it publishes
    (whose subscribers' slots release themselves at once and renegotiate), closes its send
    slots, and closes the peer connection with a timeout. It never calls its room;
    failures are reported through `on_failed`.
    """

    def __init__(
        self,
        participant_id: str,
        name: str,
        config: SfuConfig,
        signaler: Signaler,
        publications: Callable[[], list[PublishedTrack]],
        on_published: Callable[[], None],
        on_failed: Callable[[Participant, str], None],
        can_publish: bool = True,
        peer_connection: PeerConnectionFactory = RTCPeerConnection,
        malformed_total: Counter[str] | None = None,
        level_sink: Callable[[str, int, bool], None] | None = None,
        notify: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.can_publish = can_publish
        #: malformed datagrams dropped on this participant's transports, by kind
        self.malformed: Counter[str] = Counter()
        #: the same, summed over participants by the owner (survives this participant)
        self._malformed_total = malformed_total
        #: gets (participant id, -dBov, voice) for each audio frame it publishes
        self._level_sink = level_sink
        #: sends one server event to this participant (`video state`); None: not sent
        self._notify = notify
        #: the last `video state` told per slot (absent: "active")
        self._video_states: dict[SendSlot, str] = {}
        self._peer_connection = peer_connection
        self.id = participant_id
        self.name = name
        self.audio_muted = False
        self.video_muted = False
        self._config = config
        self._signaler = signaler
        self._publications = publications
        self._on_published = on_published
        self._on_failed = on_failed
        self._pc: RTCPeerConnection | None = None
        self._lock = asyncio.Lock()
        self._server_offer_pending = False
        self._negotiated = asyncio.Event()
        self._remote_set = False
        self._early_candidates: list[dict[str, Any] | None] = []
        self._candidate_count = 0
        self._pending_sources: dict[str, Source] = {}
        self._new_published: list[PublishedTrack] = []
        self._unsupported: list[str] = []
        self._live: set[str] = set()
        self.published: dict[str, PublishedTrack] = {}
        self._slots: list[SendSlot] = []
        self._slots_freed = False
        self._sync_wanted = False
        self._sync_task: asyncio.Task[None] | None = None
        self._deadline_task: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Event()
        self._closed = False
        self.negotiation_failures = 0
        self._downlink_budget: Callable[[], int | None] | None = None
        self._allocator: SubscriberAllocator | None = None
        #: what this participant's downlink can take, from its feedback on our streams
        self.downlink = DownlinkEstimate(sent_bytes=self._octets_sent)
        self.downlink.on_cut = self._downlink_cut
        if config.adapt_downlink:
            # the estimate drives the layers, and the link pause, of this subscriber's videos
            self.downlink_budget = self.downlink.bitrate

    # ------------------------------------------------------------------ info

    def info(self) -> dict[str, Any]:
        """PROTOCOL.md's `Participant` object."""
        return {
            "id": self.id,
            "name": self.name,
            "audioMuted": self.audio_muted,
            "videoMuted": self.video_muted,
        }

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pc(self) -> RTCPeerConnection | None:
        return self._pc

    def track_infos(self) -> list[dict[str, Any]]:
        """PROTOCOL.md's `TrackInfo` rows for every slot currently sending a track."""
        rows = []
        for slot in self._slots:
            pub = slot.published
            if pub is not None and slot.transceiver.mid is not None:
                rows.append(
                    {
                        "mid": slot.transceiver.mid,
                        "participantId": pub.publisher_id,
                        "kind": pub.kind,
                        "source": pub.source,
                    }
                )
        return rows

    def live_publications(self) -> list[PublishedTrack]:
        """Publications the client currently sends (a stopped screen share is not)."""
        return [pub for mid, pub in self.published.items() if mid in self._live]

    def send_slots(self) -> list[SendSlot]:
        return list(self._slots)

    def _octets_sent(self) -> int:
        """Payload bytes sent to this participant so far, over all its send slots."""
        return sum(slot.octets_sent() for slot in self._slots)

    def connection_state(self) -> str:
        return "new" if self._pc is None else str(self._pc.connectionState)

    def subscriptions(self) -> list[tuple[PublishedTrack, SubscribedTrack]]:
        """(published track, the slot's track) for every slot currently sending."""
        return [(s.published, s.track) for s in self._slots if s.published is not None]

    # ------------------------------------------------------------------ downlink budget

    @property
    def downlink_budget(self) -> Callable[[], int | None] | None:
        """The bps this participant's downlink can take (None from the callable: unknown);
        None: no budget, every video layer is forwarded."""
        return self._downlink_budget

    @downlink_budget.setter
    def downlink_budget(self, budget: Callable[[], int | None] | None) -> None:
        """Share `budget` between this participant's video send slots (a new
        `SubscriberAllocator`; the current and future slots use it)."""
        self._downlink_budget = budget
        if self._allocator is not None:
            self._allocator.close()
        self._allocator = None if budget is None else SubscriberAllocator(budget)
        for slot in self._slots:
            if slot.kind == "video":
                slot.track.set_allocator(self._allocator)
                slot.set_pacer(None if self._allocator is None else self._allocator.pacer)

    @property
    def allocator(self) -> SubscriberAllocator | None:
        return self._allocator

    def _downlink_cut(self) -> None:
        """The downlink estimate was cut: the allocator lowers layers at the next frame."""
        if self._allocator is not None:
            self._allocator.reallocate()

    # ------------------------------------------------------------------ peer connection

    def _ensure_pc(self) -> RTCPeerConnection:
        if self._pc is None:
            servers = [
                RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                for s in self._config.ice_servers
            ]
            pc = self._peer_connection(
                RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
            )
            pc.on("track", self._on_track)
            pc.on("connectionstatechange", self._on_connection_state)
            self._pc = pc
        return self._pc

    def _on_track(self, track: MediaStreamTrack) -> None:
        pc = self._pc
        if pc is None or self._closed:
            return
        transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
        if transceiver is None or transceiver.mid is None:
            logger.warning("participant %s: track without transceiver", self.id)
            return
        kind: Kind = "video" if track.kind == "video" else "audio"
        default: Source = "camera" if kind == "video" else "microphone"
        source = self._pending_sources.get(transceiver.mid, default)
        pin_codecs(transceiver)
        if not pin_negotiated_codecs(transceiver, PREFERRED_CODECS[kind]):
            self._unsupported.append(
                f"{kind} m-line {transceiver.mid} offers no {'VP8' if kind == 'video' else 'Opus'}"
            )
            return
        if self._config.forwarding == "passthrough":
            pub = PublishedTrack.passthrough(
                transceiver.receiver,
                kind,
                source,
                publisher_id=self.id,
                key=transceiver.mid,
                receive_path=self._config.receive_path,
            )
        else:
            pub = PublishedTrack.transcode(track, source, publisher_id=self.id, key=transceiver.mid)
        if (kind == "audio" and self.audio_muted) or (kind == "video" and self.video_muted):
            pub.paused = True
        if kind == "audio":
            pub.level_sink = self._level_sink
        self.published[transceiver.mid] = pub
        self._new_published.append(pub)
        logger.info(
            "participant %s publishes %s (%s) mid=%s", self.id, kind, source, transceiver.mid
        )

    def _arm_connect_deadline(self) -> None:
        """aioice has no deadline of its own: reap a peer connection that does not connect
        within the negotiation timeout (e.g. a client that offered and vanished)."""
        if self._deadline_task is None:
            self._deadline_task = asyncio.create_task(self._connect_deadline())

    async def _connect_deadline(self) -> None:
        await asyncio.sleep(self._config.negotiation_timeout)
        pc = self._pc
        if not self._closed and (pc is None or pc.connectionState != "connected"):
            logger.info(
                "participant %s: not connected after %.0f s",
                self.id,
                self._config.negotiation_timeout,
            )
            self._on_failed(self, "ice_timeout")

    def _on_connection_state(self) -> None:
        pc = self._pc
        self._state_changed.set()
        if pc is not None and pc.connectionState == "failed" and not self._closed:
            self._on_failed(self, "ice_failed")
        elif pc is not None and pc.connectionState == "closed" and not self._closed:
            # aiortc closes the pc by itself once DTLS ends: a close_notify from the client,
            # or ICE consent expiry (the media path went silent). Not ours: reap it.
            self._on_failed(self, "connection_closed")

    # ------------------------------------------------------------------ client offers

    async def handle_offer(self, sdp: str, sources: dict[str, Source]) -> str:
        """Apply a client offer and return the answer SDP (PROTOCOL.md negotiation 1)."""
        if self._closed:
            raise SfuError("invalid_state", "participant is closed")
        if self._server_offer_pending:
            raise SfuError(
                "invalid_state", "the server's offer awaits your answer: roll back and answer"
            )
        check_offer(sdp, self._config.max_sdp_bytes, self._config.max_sdp_lines)
        logger.debug(
            "participant %s: client offer (pc %s)",
            self.id,
            "none" if self._pc is None else self._pc.connectionState,
        )
        if not self.can_publish and _sends_media(sdp):
            raise SfuError("unauthorized", "your token does not allow publishing")
        async with self._lock:
            if self._closed:
                raise SfuError("invalid_state", "participant is closed")
            pc = self._ensure_pc()
            if pc.signalingState != "stable":
                raise SfuError("invalid_state", f"cannot take an offer in {pc.signalingState}")
            self._pending_sources = dict(sources)
            self._unsupported = []
            first = not self._remote_set
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                self._guard_transports(pc)
                if self._unsupported:
                    raise ValueError("; ".join(self._unsupported))
            except Exception as exc:
                logger.info("participant %s: offer refused: %s", self.id, exc)
                self._discard_new_publications()
                if first:
                    await self._reset_pc()
                else:
                    self._on_failed(self, "negotiation_failed")
                raise SfuError("invalid_sdp", f"offer refused: {exc}") from None
            self._remote_set = True
            await self._flush_candidates()
            try:
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
            except Exception as exc:
                logger.info("participant %s: cannot answer: %s", self.id, exc)
                self._discard_new_publications()
                self._on_failed(self, "negotiation_failed")
                raise SfuError("invalid_sdp", f"cannot answer this offer: {exc}") from None
            local = pc.localDescription
            self._negotiated.set()
            self._arm_connect_deadline()
            self._new_published = []
            live = {
                t.mid
                for t in pc.getTransceivers()
                if t.mid in self.published and t.currentDirection in ("recvonly", "sendrecv")
            }
            changed, self._live = live != self._live, live
        if changed:
            self._on_published()
        self.schedule_sync()
        return str(local.sdp)

    def _discard_new_publications(self) -> None:
        for pub in self._new_published:
            self.published.pop(pub.key, None)
            pub.close()
        self._new_published = []

    async def _reset_pc(self) -> None:
        pc, self._pc = self._pc, None
        self._remote_set = False
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), self._config.pc_close_timeout)

    # ------------------------------------------------------------------ ICE candidates

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        """Add a trickled client candidate (None: end of candidates); buffer early ones."""
        if self._closed:
            raise SfuError("invalid_state", "participant is closed")
        self._candidate_count += 1
        if self._candidate_count > self._config.max_candidates:
            raise SfuError("rate_limited", "too many ICE candidates for this peer connection")
        if candidate is not None:
            self._parse_candidate(candidate)  # refuse garbage before buffering it
        if not self._remote_set or self._pc is None:
            self._early_candidates.append(candidate)
            return
        await self._apply_candidate(self._pc, candidate)

    @staticmethod
    def _parse_candidate(candidate: dict[str, Any]) -> Any:
        text = str(candidate["candidate"])
        if text.startswith("candidate:"):
            text = text[len("candidate:") :]
        if not text:
            return None  # an empty candidate string is Chrome's end-of-generation marker
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts on short lines
            raise SfuError("bad_request", f"unparsable ICE candidate: {exc}") from None
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            parsed.sdpMLineIndex = 0
        return parsed

    async def _apply_candidate(
        self, pc: RTCPeerConnection, candidate: dict[str, Any] | None
    ) -> None:
        parsed = None if candidate is None else self._parse_candidate(candidate)
        if candidate is not None and parsed is None:
            return
        try:
            await pc.addIceCandidate(parsed)
        except Exception as exc:  # aioice refuses e.g. candidates after completion
            logger.debug("participant %s: candidate ignored: %s", self.id, exc)

    async def _flush_candidates(self) -> None:
        pending, self._early_candidates = self._early_candidates, []
        if self._pc is not None:
            for candidate in pending:
                await self._apply_candidate(self._pc, candidate)

    # ------------------------------------------------------------------ mute

    def set_muted(self, kind: Kind, muted: bool) -> bool:
        """Stop or resume forwarding this kind; return True when the state changed."""
        before = self.audio_muted if kind == "audio" else self.video_muted
        if kind == "audio":
            self.audio_muted = muted
        else:
            self.video_muted = muted
        for pub in self.published.values():
            if pub.kind == kind:
                pub.paused = muted
        return before != muted

    # ------------------------------------------------------------------ viewer pause

    def set_viewer_paused(self, publisher_id: str, source: str, paused: bool) -> None:
        """Stop (True) or resume (False) forwarding to us the `source` video of
        `publisher_id` (we do not show it); `not_found` when no slot carries it."""
        slots = [s for s in self._slots if s.published is not None and s.kind == "video"]
        from_publisher = [
            s for s in slots if s.published and s.published.publisher_id == publisher_id
        ]
        slot = next(
            (s for s in from_publisher if s.published and s.published.source == source), None
        )
        if slot is None:
            if not from_publisher:
                raise SfuError(
                    "not_found", f"you receive no video from participant {publisher_id!r}"
                )
            raise SfuError("not_found", f"participant {publisher_id} sends you no {source} video")
        slot.set_viewer_paused(paused)

    def _video_state(self, slot: SendSlot, state: str) -> None:
        """A slot's video forwarding state changed: tell this participant (`video state`),
        once per change. Viewer pause wins over the link state."""
        pub = slot.published
        if pub is None:
            return
        if slot.track.viewer_paused:
            state = "paused-viewer"
        if self._video_states.get(slot, "active") == state:
            return
        self._video_states[slot] = state
        notify = self._notify
        if notify is None:
            return
        layer = getattr(slot.track, "max_tid", None) if state == "active" else None
        notify(
            "video state",
            {
                "participantId": pub.publisher_id,
                "source": pub.source,
                "state": state,
                "layer": layer,
            },
        )

    # ------------------------------------------------------------------ server offers

    def schedule_sync(self) -> None:
        """Ask for the send slots to be brought in line with the room (renegotiating)."""
        if self._closed:
            return
        self._sync_wanted = True
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._sync_loop(), name=f"sync-{self.id}")

    async def _sync_loop(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._negotiated.wait(), self._config.initial_offer_grace)
        while self._sync_wanted and not self._closed:
            self._sync_wanted = False
            try:
                await self._settle()
                await self._sync_once()
                if (
                    self._sync_wanted
                    and self._pc is not None
                    and self._pc.signalingState != "stable"
                ):
                    # deferred (not stable yet): retry later; looping at once never yields
                    # and blocks the event loop (seen: a drained node deaf to SIGTERM)
                    await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.negotiation_failures += 1
                logger.info("participant %s: renegotiation failed: %r", self.id, exc)
                if not self._closed:
                    self._on_failed(self, "negotiation_failed")
                return

    async def _settle(self) -> None:
        """Wait (bounded) until a connection being established has connected: aiortc skips
        starting the senders of a description applied while DTLS is still handshaking."""
        async with asyncio.timeout(self._config.negotiation_timeout):
            while (
                self._remote_set
                and self._pc is not None
                and self._pc.connectionState in ("new", "connecting")
            ):
                self._state_changed.clear()
                await self._state_changed.wait()

    async def _sync_once(self) -> None:
        async with self._lock:
            if self._closed:
                return
            pc = self._ensure_pc()
            if pc.signalingState != "stable":
                # retried after the negotiation in progress; a closed peer connection never
                # becomes stable again (its owner reaps it): retrying it would spin forever
                self._sync_wanted = pc.signalingState != "closed"
                return
            if not self._apply_subscriptions(pc) and self._remote_set:
                return
            if not any(s.published for s in self._slots) and not self._remote_set:
                return  # nothing to send and nothing negotiated yet: wait for the client
            offer = await create_offer_keeping_negotiated(pc)
            await pc.setLocalDescription(offer)
            payload = {
                "description": {"type": "offer", "sdp": pc.localDescription.sdp},
                "tracks": self.track_infos(),
            }
            self._server_offer_pending = True
            logger.debug(
                "participant %s: server offer (%d tracks, pc %s)",
                self.id,
                len(payload["tracks"]),
                pc.connectionState,
            )
            try:
                reply = await self._signaler.request(
                    self.id, "sdp", payload, self._config.negotiation_timeout
                )
            finally:
                self._server_offer_pending = False
            answer = _answer_from_reply(reply)
            check_offer(
                answer, self._config.max_sdp_bytes, self._config.max_sdp_lines, kind="answer"
            )
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            self._guard_transports(pc)
            self._remote_set = True
            await self._flush_candidates()
            self._negotiated.set()
            self._arm_connect_deadline()

    def _guard_transports(self, pc: RTCPeerConnection) -> None:
        """A malformed datagram from the client is counted and dropped instead of ending
        aiortc's receive loop (`sfu.compat.rtp_guard`), and its ICE connection queues
        received datagrams in a `FastQueue`; idempotent per transport. Fake
        peer connections of unit tests have no DTLS transports to guard."""
        if isinstance(pc, RTCPeerConnection):
            for guard in guard_peer_connection(pc, self._count_malformed):
                use_fast_ice_queue(guard.transport)

    def _count_malformed(self, kind: str) -> None:
        self.malformed[kind] += 1
        if self._malformed_total is not None:
            self._malformed_total[kind] += 1

    def _apply_subscriptions(self, pc: RTCPeerConnection) -> bool:
        """Attach/release send slots to match the room; return True when anything changed
        (including slots released at once because their published track closed)."""
        desired = {(p.publisher_id, p.key): p for p in self._publications() if not p.closed}
        changed, self._slots_freed = self._slots_freed, False
        current: set[tuple[str, str]] = set()
        for slot in self._slots:
            pub = slot.published
            if pub is None:
                continue
            key = (pub.publisher_id, pub.key)
            if desired.get(key) is pub:
                current.add(key)
            else:
                slot.release()
                changed = True
        for key, pub in desired.items():
            if key in current:
                continue
            free = next(
                (s for s in self._slots if s.published is None and s.kind == pub.kind), None
            )
            if free is not None:
                slot = free
            else:
                track = SubscribedTrack(pub.kind)
                transceiver = pc.addTransceiver(track, direction="sendonly")
                pin_codecs(transceiver)
                # lean only for encoded frames: a transcoding sender encodes av.Frames
                lean = self._config.send_path == "lean" and self._config.forwarding == "passthrough"
                slot = SendSlot(
                    transceiver,
                    track,
                    self._slot_freed,
                    send_path="lean" if lean else "stock",
                    downlink=self.downlink,
                )
                slot.on_video_state = lambda state, slot=slot: self._video_state(slot, state)
                if self._allocator is not None and pub.kind == "video":
                    track.set_allocator(self._allocator)
                    slot.set_pacer(self._allocator.pacer)
                self._slots.append(slot)
            self._video_states.pop(slot, None)  # a new subscription starts active
            slot.attach(pub)
            changed = True
        return changed

    def _slot_freed(self, slot: SendSlot) -> None:
        """A slot's published track closed (the slot released itself): renegotiate now."""
        if not self._closed:
            self._slots_freed = True
            self.schedule_sync()

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Idempotent: end negotiation, published tracks, send slots and the peer connection."""
        if self._closed:
            return
        self._closed = True
        for task in (self._sync_task, self._deadline_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sync_task = self._deadline_task = None
        for pub in self.published.values():
            pub.close()
        self.published.clear()
        for slot in self._slots:
            slot.close()
        self._slots.clear()
        if self._allocator is not None:
            self._allocator.close()
        self._video_states.clear()
        pc, self._pc = self._pc, None
        if pc is not None:
            try:
                await asyncio.wait_for(pc.close(), self._config.pc_close_timeout)
            except (TimeoutError, Exception) as exc:
                logger.warning("participant %s: peer connection close: %r", self.id, exc)
        logger.info("participant %s closed", self.id)


def _answer_from_reply(reply: Any) -> str:
    """Extract the answer SDP from a client's ack to a server `sdp` offer."""
    if isinstance(reply, dict):
        description = reply.get("description")
        if (
            isinstance(description, dict)
            and description.get("type") == "answer"
            and isinstance(description.get("sdp"), str)
        ):
            return str(description["sdp"])
    raise SfuError(
        "invalid_sdp", f"the client's reply to our offer is not an answer: {reply!r:.300}"
    )


def _sends_media(sdp: str) -> bool:
    """True when an offer has a live m-line the client sends on."""
    sending = False
    live = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if sending and live:
                return True
            parts = line.split()
            live = len(parts) > 1 and parts[1] != "0" and not line.startswith("m=application")
            sending = True  # sendrecv is the default direction
        elif line in ("a=recvonly", "a=inactive"):
            sending = False
    return sending and live
