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
from sfu.signaler import Signaler
from sfu.wire import Kind

logger = logging.getLogger(__name__)


class Room:
    """Owns its participants, chat history and active-speaker detector (with the task that
    ticks it and broadcasts `active speaker`). Every participant receives every other
    participant's publications. `close()` (idempotent) cancels the detector task and
    closes every participant.

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
        peer_connection: PeerConnectionFactory = RTCPeerConnection,
    ) -> None:
        self._peer_connection = peer_connection
        self.removals: Counter[str] = Counter() if removals is None else removals
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
            level_sink=self._report_level,
        )
        if self._speaker_task is None:
            self._speaker_task = asyncio.create_task(
                self.speaker.run(self._speaker_event), name=f"speaker-{self.name}"
            )
        others = list(self.participants)
        self.participants[pid] = participant
        self._broadcast("participant joined", participant.info(), others)
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

    async def remove(self, participant_id: str, reason: str) -> bool:
        """Remove and close a participant, tell the others, renegotiate their slots."""
        participant = self.participants.pop(participant_id, None)
        if participant is None:
            return False
        self.removals[reason] += 1
        self.speaker.remove(participant_id)
        self._broadcast(
            "participant left", {"id": participant_id, "reason": reason}, list(self.participants)
        )
        self._resync()
        await participant.close()
        if not self.participants:
            self._stop_speaker()
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
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        participants = list(self.participants.values())
        self.participants.clear()
        await asyncio.gather(*(p.close() for p in participants), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
