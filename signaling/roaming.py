"""`RoamingClient`: a participant that stays in its room when the cluster moves the room
(planned drain: the server's `moved` event) or loses its node (kill -9: the socket drops).

It owns one `SfuClient` at a time. On `moved` (an `error` event with code `moved` and a
`url`) or an unexpected disconnect it closes that client, connects a new one to the first
node that answers (the `moved` URL, then the `nodes` of the last join ack, then the entry
URLs), joins the same room as the same name (following `moved` refusals), and publishes
again through the caller's `publish` callback. Every wait has a deadline; `close()` closes
the current client and stops recovering (idempotent).

The browser client does the same (docs/protocol.md "Cluster").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from signaling.client import SfuClient, SfuError
from signaling.lifecycle import cancel_and_wait

logger = logging.getLogger(__name__)

Publish = Callable[[SfuClient], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Recovery:
    """One move: why (`moved` or `disconnected`), when it started, when the new client
    had joined and published (monotonic seconds), and the node it landed on."""

    reason: str
    started: float
    joined: float
    url: str


class RoamingClient:
    """See the module doc. `client` is the current `SfuClient`; `recoveries` lists every
    move; `changed` is set whenever a new client took over."""

    def __init__(
        self,
        urls: Sequence[str],
        room: str,
        name: str,
        *,
        publish: Publish | None = None,
        decode: bool = False,
        timeout: float = 10.0,
        recover_within: float = 30.0,
    ) -> None:
        if not urls:
            raise ValueError("at least one URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.room, self.name = room, name
        self._publish = publish
        self._decode = decode
        self._timeout = timeout
        self._recover_within = recover_within
        self.client: SfuClient | None = None
        self.recoveries: list[Recovery] = []
        self.failures = 0
        self.changed = asyncio.Event()
        self._trouble: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._moving = False
        self._closed = False

    async def start(self) -> RoamingClient:
        """Connect, join and publish through the entry URLs; then watch for moves."""
        self.client = await self._session(None, time.monotonic() + self._recover_within)
        self._task = asyncio.create_task(self._watch(), name=f"roaming-{self.name}")
        return self

    async def wait_video(self, deadline: float) -> float:
        """Wait until the current client receives a remote video frame, by `deadline`
        (monotonic seconds); return when it came (the client's timeout error past the deadline)."""
        client = self.client
        if client is None:
            raise RuntimeError(f"{self.name} has no client (not started, or could not rejoin)")
        track = await client.wait_for_track(
            kind="video", timeout=max(0.1, deadline - time.monotonic())
        )
        await track.wait_frames(1, timeout=max(0.1, deadline - time.monotonic()))
        return time.monotonic()

    async def _session(self, first: str | None, deadline: float) -> SfuClient:
        old = self.client
        candidates = [first] if first else []
        if old is not None:
            candidates += old.nodes
        candidates += self.urls
        order = list(dict.fromkeys(u.rstrip("/") for u in candidates if u))
        delay = 0.1
        while True:
            for url in order:
                client: SfuClient | None = None
                try:
                    client = await SfuClient.connect(
                        url, decode=self._decode, timeout=self._timeout
                    )
                    await client.join(self.room, self.name)
                    logger.debug("%s: joined %s at %.3f", self.name, client.url, time.monotonic())
                    if self._publish is not None:
                        await self._publish(client)
                except (SfuError, OSError, TimeoutError) as exc:
                    self.failures += 1
                    logger.debug("%s: %s failed: %s", self.name, url, exc)
                    if client is not None:
                        await client.close()
                    continue
                self._hook(client)
                return client
            if time.monotonic() + delay > deadline:
                raise SfuError("timeout", f"no node took room {self.room} in time")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _hook(self, client: SfuClient) -> None:
        def on_error(error: SfuError) -> None:
            if error.code == "moved" and error.url:
                self._trouble.put_nowait(("moved", error.url))

        def on_disconnect() -> None:
            if client is self.client and not self._closed and not self._moving:
                self._trouble.put_nowait(("disconnected", None))

        client.on("error", on_error)
        client.on("disconnect", on_disconnect)

    async def _watch(self) -> None:
        while not self._closed:
            reason, url = await self._trouble.get()
            old = self.client
            if old is None:
                continue
            self._moving = True
            started = time.monotonic()
            # make before break: the old client (its node draining or dead) is closed in
            # the background; closing an aiortc peer connection can take seconds
            self._closing.add(asyncio.create_task(old.close()))
            try:
                new = await self._session(url, started + self._recover_within)
            except SfuError as exc:
                logger.warning("%s could not rejoin %s: %s", self.name, self.room, exc)
                self.client = None
                return
            self.client = new
            self._moving = False
            while not self._trouble.empty():  # events of the old client
                self._trouble.get_nowait()
            self.recoveries.append(Recovery(reason, started, time.monotonic(), new.url or ""))
            self.changed.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.client is not None:
            await self.client.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
