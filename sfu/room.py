"""A room: its participants, its chat history, and who receives what."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

from sfu.active_speaker import ActiveSpeakerDetector
from sfu.chat import ChatHistory, ChatMessage
from sfu.config import SfuConfig
from sfu.errors import SfuError
from sfu.participant import Participant, PeerConnectionFactory
from sfu.published_track import PublishedTrack
from sfu.publisher_cap import PublisherCapPolicy
from sfu.room_recording import RoomRecording
from sfu.signaler import Signaler
from sfu.wire import Kind

logger = logging.getLogger(__name__)


class Room:
    """Owns its participants, chat history, active-speaker detector (with the task that
    ticks it and broadcasts `active speaker`), its publisher cap policy (with its task:
    `sfu.publisher_cap`) and its running `RoomRecording`, if any.
    Every participant receives every other participant's publications. `close()`
    (idempotent) cancels the detector task, stops the recording and closes every
    participant; the last participant leaving does the first two as well, and both stop
    the publisher cap policy (lifting its caps).

    Failures a participant reports (ICE failed, negotiation failed) are handled here by
    removing it; `on_empty` tells the owner when the last participant has gone.
    """

    def __init__(
        self,
        name: str,
        config: SfuConfig,
        signaler: Signaler,
        ids: itertools.count[int],
        on_empty: Callable[[Room], None],
        removals: Counter[str] | None = None,
        malformed: Counter[str] | None = None,
        peer_connection: PeerConnectionFactory = RTCPeerConnection,
    ) -> None:
        self._peer_connection = peer_connection
        self.removals: Counter[str] = Counter() if removals is None else removals
        #: malformed datagrams dropped, by kind, over every participant (shared sink)
        self.malformed: Counter[str] = Counter() if malformed is None else malformed
        self.name = name
        self._config = config
        self._signaler = signaler
        self._ids = ids
        self._on_empty = on_empty
        self.participants: dict[str, Participant] = {}
        self.chat = ChatHistory(config.chat_history)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.speaker = ActiveSpeakerDetector()
        self._speaker_task: asyncio.Task[None] | None = None
        self.recording: RoomRecording | None = None
        #: the error that stopped the last recording, for /api/stats (None: none)
        self.recording_error: str | None = None
        #: caps a published video when even its base layer exceeds its slowest subscriber
        self.publisher_caps = PublisherCapPolicy(lambda: list(self.participants.values()))

    def __len__(self) -> int:
        return len(self.participants)

    def add(self, name: str, can_publish: bool = True, can_subscribe: bool = True) -> Participant:
        """Create a participant (refused with `room_full` at the limit) and announce it."""
        if self._closed:
            raise SfuError("invalid_state", "room is closing")
        if len(self.participants) >= self._config.max_participants:
            raise SfuError(
                "room_full", f"room {self.name} is full ({self._config.max_participants})"
            )
        pid = f"p{next(self._ids)}"
        participant = Participant(
            pid,
            name,
            self._config,
            self._signaler,
            publications=(lambda: self.publications(exclude=pid)) if can_subscribe else list,
            on_published=lambda: self._resync(exclude=pid),
            on_failed=self._participant_failed,
            can_publish=can_publish,
            peer_connection=self._peer_connection,
            malformed_total=self.malformed,
            level_sink=self._report_level,
            notify=lambda event, payload: self._broadcast(event, payload, [pid]),
        )
        if self._speaker_task is None:
            self._speaker_task = asyncio.create_task(
                self.speaker.run(self._speaker_event), name=f"speaker-{self.name}"
            )
        if self._config.adapt_downlink:
            self.publisher_caps.start()
        others = list(self.participants)
        self.participants[pid] = participant
        self._broadcast("participant joined", participant.info(), others)
        current = self._speaker_state()
        if current is not None:  # events only come on changes: tell the newcomer now
            self._broadcast("active speaker", current, [pid])
        participant.schedule_sync()
        return participant

    def publications(self, exclude: str | None = None) -> list[PublishedTrack]:
        return [
            pub
            for p in self.participants.values()
            if p.id != exclude and not p.closed
            for pub in p.live_publications()
        ]

    def _resync(self, exclude: str | None = None) -> None:
        for p in self.participants.values():
            if p.id != exclude:
                p.schedule_sync()
        if self.recording is not None:
            self.recording.sync(self.participants.values())

    async def remove(self, participant_id: str, reason: str) -> bool:
        """Remove and close a participant, tell the others, renegotiate their slots."""
        participant = self.participants.pop(participant_id, None)
        if participant is None:
            return False
        self.removals[reason] += 1
        self.speaker.remove(participant_id)
        if self.recording is not None:
            self.recording.participant_left(participant_id)
        self._broadcast(
            "participant left", {"id": participant_id, "reason": reason}, list(self.participants)
        )
        self._resync()
        await participant.close()
        if not self.participants:
            self._stop_speaker()
            self.publisher_caps.close()
            await self._end_recording()
            if not self.participants:
                self._on_empty(self)
        return True

    def _participant_failed(self, participant: Participant, reason: str) -> None:
        if participant.id not in self.participants:
            return
        logger.info("room %s: removing %s (%s)", self.name, participant.id, reason)

        async def reap() -> None:
            if await self.remove(participant.id, reason):
                with contextlib.suppress(Exception):
                    await self._signaler.emit(
                        participant.id,
                        "error",
                        {
                            "code": "internal_error" if reason == "ice_failed" else "invalid_state",
                            "message": f"removed from the room: {reason}",
                        },
                    )
                    await self._signaler.disconnect(participant.id)

        self._spawn(reap())

    def set_muted(self, participant_id: str, kind: Kind, muted: bool) -> None:
        participant = self._get(participant_id)
        if kind == "audio":
            self.speaker.set_muted(participant_id, muted)
        if participant.set_muted(kind, muted):
            self._broadcast(
                "participant updated",
                participant.info(),
                [p for p in self.participants if p != participant_id],
            )

    def post_chat(self, participant_id: str, text: str) -> ChatMessage:
        participant = self._get(participant_id)
        message = self.chat.add(participant.id, participant.name, text)
        self._broadcast(
            "chat message", message.to_dict(), [p for p in self.participants if p != participant_id]
        )
        return message

    # ------------------------------------------------------------------ active speaker

    def _report_level(self, participant_id: str, level_dbov: int, voice: bool) -> None:
        """A published audio frame's RFC 6464 level (from the receive path): O(1)."""
        self.speaker.report(participant_id, level_dbov, voice, time.monotonic())

    def _speaker_event(self, event: dict[str, Any]) -> None:
        """Broadcast the detector's `active speaker` event (rate-limited by the detector)."""
        self._broadcast("active speaker", event, list(self.participants))

    def _speaker_state(self) -> dict[str, Any] | None:
        """The current `active speaker` payload, None when nobody speaks."""
        levels = {str(k): v for k, v in self.speaker.levels().items()}
        dominant = self.speaker.dominant
        if dominant is None and not levels:
            return None
        return {"participantId": None if dominant is None else str(dominant), "levels": levels}

    def _stop_speaker(self) -> None:
        """Cancel the detector's task (the room emptied or closes); restarted by `add`."""
        task, self._speaker_task = self._speaker_task, None
        if task is not None:
            task.cancel()
        self.speaker.clear()

    def speaker_info(self) -> dict[str, Any]:
        """The room's speaker for `/api/stats`: the dominant id and smoothed levels."""
        return {
            "activeSpeaker": self.speaker.dominant,
            "speakerLevels": {str(k): round(v, 4) for k, v in self.speaker.levels().items()},
        }

    # ------------------------------------------------------------------ recording

    @property
    def recording_active(self) -> bool:
        return self.recording is not None

    @property
    def can_record(self) -> bool:
        """Recording is possible here (`record_dir` set, passthrough forwarding)."""
        return self._config.record_dir is not None and self._config.forwarding == "passthrough"

    async def start_recording(self, started_by: str | None = None) -> dict[str, Any]:
        """Start recording every participant into `config.record_dir`; return the
        protocol's `recording` object. `invalid_state` when recording is disabled, not
        possible (transcode forwarding) or already running; `internal_error` when the
        directory is not writable (nothing changes then)."""
        directory = self._config.record_dir
        if directory is None:
            raise SfuError("invalid_state", "recording is not enabled on this server")
        if self._config.forwarding != "passthrough":
            raise SfuError("invalid_state", "recording needs passthrough forwarding")
        if self._closed:
            raise SfuError("invalid_state", "room is closing")
        if self.recording is not None:
            raise SfuError("invalid_state", "this room is already being recorded")
        recording = RoomRecording(self.name, directory, started_by, self._recording_failed)
        self.recording = recording  # reserved: a concurrent start sees it
        try:
            await recording.start(self.participants.values())
        except BaseException:
            self.recording = None
            raise
        self.recording_error = None
        info = recording.info()
        logger.info("room %s: recording %s started", self.name, info["id"])
        self._broadcast("recording", {"active": True}, list(self.participants))
        return info

    async def stop_recording(self) -> dict[str, Any]:
        """Stop the recording, wait for its files; return its `recording` object.
        `invalid_state` when the room is not being recorded."""
        if self.recording is None:
            raise SfuError("invalid_state", "this room is not being recorded")
        info = self.recording.info()
        await self._end_recording()
        return info

    async def _end_recording(self) -> dict[str, Any] | None:
        recording, self.recording = self.recording, None
        if recording is None:
            return None
        manifest = await recording.stop()
        self._broadcast("recording", {"active": False}, list(self.participants))
        return manifest

    def _recording_failed(self, error: BaseException) -> None:
        """A file or the manifest failed (disk full, directory gone): stop the recording,
        tell the room it stopped and whoever started it why; the room goes on."""
        recording = self.recording
        if recording is None:
            return
        message = f"recording stopped: {error}"
        self.recording_error = message
        starter = recording.started_by

        async def stop() -> None:
            if self.recording is recording:
                await self._end_recording()
            if starter is not None and starter in self.participants:
                await self._signaler.emit(
                    starter, "error", {"code": "internal_error", "message": message}
                )

        self._spawn(stop())

    def media_info(self) -> dict[str, Any]:
        """The room's speaker and recording for `/api/stats`."""
        recording = self.recording
        return {
            **self.speaker_info(),
            "recording": None if recording is None else recording.info(),
            "recordingError": self.recording_error,
            "publisherCaps": self.publisher_caps.caps(),
        }

    def _get(self, participant_id: str) -> Participant:
        participant = self.participants.get(participant_id)
        if participant is None:
            raise SfuError("not_joined", "not in this room")
        return participant

    def _broadcast(self, event: str, payload: dict[str, Any], to: list[str]) -> None:
        for pid in to:
            self._spawn(self._signaler.emit(pid, event, payload))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Idempotent: close every participant and wait for pending notifications."""
        if self._closed:
            return
        self._closed = True
        task = self._speaker_task
        self._stop_speaker()
        self.publisher_caps.close()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._end_recording()
        participants = list(self.participants.values())
        self.participants.clear()
        await asyncio.gather(*(p.close() for p in participants), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
