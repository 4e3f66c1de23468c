"""A room's running recording: one relay subscription per published track, like any other
subscriber, pumped into `sfu.recorder` (remux only, no decoding)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from sfu.compat.relay import end_relay_proxy
from sfu.errors import SfuError
from sfu.participant import Participant
from sfu.published_track import PublishedTrack
from sfu.recorder import Recording, RecordingError, record_track

logger = logging.getLogger(__name__)

#: Frames a recording's relay proxy holds before dropping its oldest (about 2 s of video).
RECORD_PROXY_LIMIT = 64
#: How often the watchdog looks for a failed file (disk full, unwritable directory).
WATCH_INTERVAL = 0.5


class _Tap:
    """One recorded publication: its relay proxy and the task pumping it into a file."""

    def __init__(self, pub: PublishedTrack, proxy: MediaStreamTrack, task: asyncio.Task[int]):
        self.pub = pub
        self.proxy = proxy
        self.task = task

    def close(self) -> None:
        self.task.cancel()
        end_relay_proxy(self.proxy)
        self.proxy.stop()


class RoomRecording:
    """Owns one room's running `Recording`, a `_Tap` (bounded relay proxy + pump task) per
    recorded publication and a watchdog task that reports the first file or manifest
    error through `on_failed` (the room then stops the recording; the room goes on).

    `started_by` is the participant id that started it (None: the admin API). `sync()`
    brings the taps in line with the room's live publications (new publisher, new track,
    unpublished track); `participant_left()` closes a participant's file. `await stop()`
    (idempotent) closes every tap, waits for the muxer threads and returns the final
    manifest. Recording costs the forwarding path one more relay proxy per track.
    """

    def __init__(
        self,
        room: str,
        directory: Path,
        started_by: str | None,
        on_failed: Callable[[BaseException], None],
    ) -> None:
        self.recording = Recording(room, directory)
        self.started_by = started_by
        self._on_failed = on_failed
        self._taps: dict[tuple[str, str], _Tap] = {}
        self._watch: asyncio.Task[None] | None = None
        self._stopped = False
        self.drops = 0

    async def start(self, participants: Iterable[Participant]) -> None:
        """Create the directory and manifest (off the event loop), then tap every live
        publication and ask each video publisher for a keyframe. `SfuError` when the
        directory is not writable; nothing is left running then."""
        try:
            await asyncio.to_thread(self.recording.start)
        except RecordingError as exc:
            raise SfuError("internal_error", f"recording not started: {exc}") from None
        self._watch = asyncio.create_task(self._watchdog(), name=f"rec-{self.recording.id}")
        self.sync(participants)

    def info(self) -> dict[str, Any]:
        """The protocol's `recording` object."""
        return self.recording.info()

    def sync(self, participants: Iterable[Participant]) -> None:
        """Tap new live publications, drop taps of closed or gone ones."""
        if self._stopped:
            return
        live: dict[tuple[str, str], tuple[Participant, PublishedTrack]] = {}
        for participant in participants:
            if participant.closed:
                continue
            for pub in participant.live_publications():
                if not pub.closed:
                    live[(participant.id, pub.key)] = (participant, pub)
        for key in [
            k for k, tap in self._taps.items() if live.get(k, (None, None))[1] is not tap.pub
        ]:
            self._taps.pop(key).close()
        for key, (participant, pub) in live.items():
            if key in self._taps:
                continue
            recorder = self.recording.add_participant(participant.id, participant.name)
            if recorder is None:
                return
            proxy = pub.subscribe_recorder(RECORD_PROXY_LIMIT, self._dropped)
            task = asyncio.create_task(
                record_track(recorder, proxy, source=f"{participant.id}/{pub.key}"),
                name=f"rec-{participant.id}-{pub.key}",
            )
            self._taps[key] = _Tap(pub, proxy, task)
            pub.request_keyframe()

    def participant_left(self, participant_id: str) -> None:
        """Close the participant's taps and its file (a rejoin gets a new file)."""
        for key in [k for k in self._taps if k[0] == participant_id]:
            self._taps.pop(key).close()
        self.recording.remove_participant(participant_id)

    def _dropped(self) -> None:
        self.drops += 1

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            error = self.recording.error
            if error is not None:
                logger.error("recording %s failed: %r", self.recording.id, error)
                self._on_failed(error)
                return

    async def stop(self) -> dict[str, Any]:
        """Close every tap and file, wait for them; return the final manifest."""
        if not self._stopped:
            self._stopped = True
            watch, self._watch = self._watch, None
            if watch is not None and watch is not asyncio.current_task():
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            taps = list(self._taps.values())
            self._taps.clear()
            for tap in taps:
                tap.close()
            await asyncio.gather(*(tap.task for tap in taps), return_exceptions=True)
        return await self.recording.stop()
