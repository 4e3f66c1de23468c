"""`FastQueue`: `asyncio.Queue` (FIFO) with fewer Python calls per item.

Every forwarded frame passes one relay proxy queue per subscriber (`sfu.compat.relay`):
a `put_nowait` from the relay's task and a `get` in the subscriber's sender. The stock
methods call four to six small Python methods per item (`full` -> `qsize`, `_put`,
`_wakeup_next`, `empty`, `get_nowait` -> `_get`), and every wait asks for the running
loop (`_get_loop()`: `asyncio.events._get_running_loop()`, whose C implementation makes a
`getpid()` system call each time to detect a fork). `FastQueue` waits on the loop it is
bound to (bound at its first wait, as stock binds it; a future of another loop still
fails when a task awaits it), and keeps the stock state exactly (`_queue` deque,
`_getters` / `_putters` deques of futures, `_unfinished_tasks`, `_finished`, `_maxsize`,
the loop binding) and inlines the rest, so code written against `asyncio.Queue`
(subclasses calling `full()`, `get_nowait()`, `super().put_nowait()`, or reading
`_queue`) keeps working. FIFO only: `_put` / `_get` overrides are not consulted.

`use_fast_ice_queue(dtls_transport)` switches the queue of datagrams an aioice ICE
connection received (one item per datagram a peer sends) to `FastQueue` in place.

Standard library private internals relied upon (CPython 3.11-3.13 `asyncio.queues` and
`asyncio.mixins`; `check_fast_queue_internals()` verifies them): the attributes above,
set by `Queue.__init__` / `Queue._init`, and `_LoopBoundMixin._get_loop()` binding
`self._loop` on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar

from aioice.ice import Connection

from sfu.compat.introspect import source_has

T = TypeVar("T")


class FastQueue(asyncio.Queue[T]):
    """A FIFO `asyncio.Queue` with the same state and behaviour, inlined (module
    docstring). Owns its items and waiters as any `asyncio.Queue`; nothing to close."""

    def full(self) -> bool:
        maxsize: int = self._maxsize  # type: ignore[attr-defined]
        return maxsize > 0 and len(self._queue) >= maxsize  # type: ignore[attr-defined]

    def put_nowait(self, item: T) -> None:
        queue = self._queue  # type: ignore[attr-defined]
        maxsize: int = self._maxsize  # type: ignore[attr-defined]
        if maxsize > 0 and len(queue) >= maxsize:
            raise asyncio.QueueFull
        queue.append(item)
        self._unfinished_tasks += 1  # type: ignore[attr-defined]
        self._finished.clear()  # type: ignore[attr-defined]
        getters = self._getters  # type: ignore[attr-defined]
        while getters:
            getter = getters.popleft()
            if not getter.done():
                getter.set_result(None)
                break

    def get_nowait(self) -> T:
        queue = self._queue  # type: ignore[attr-defined]
        if not queue:
            raise asyncio.QueueEmpty
        item: T = queue.popleft()
        putters = self._putters  # type: ignore[attr-defined]
        while putters:
            putter = putters.popleft()
            if not putter.done():
                putter.set_result(None)
                break
        return item

    async def get(self) -> T:
        queue = self._queue  # type: ignore[attr-defined]
        if not queue:
            # the loop the queue is bound to (bound by the first wait, as stock does);
            # stock re-checks the running loop per wait, which costs a getpid() system
            # call: a future of another loop still fails when a task awaits it
            loop: Any = self._loop  # type: ignore[attr-defined]
            if loop is None:
                loop = self._get_loop()  # type: ignore[attr-defined]
            getters = self._getters  # type: ignore[attr-defined]
            while not queue:
                getter = loop.create_future()
                getters.append(getter)
                try:
                    await getter
                except BaseException:  # as asyncio.Queue.get: clean up, re-raise
                    getter.cancel()  # just in case the getter is not done yet
                    with contextlib.suppress(ValueError):  # removed by a put_nowait
                        getters.remove(getter)
                    if queue and not getter.cancelled():
                        # woken by put_nowait but cannot take the item: wake the next
                        self._wakeup_next(getters)  # type: ignore[attr-defined]
                    raise
        return self.get_nowait()


def use_fast_ice_queue(dtls_transport: Any) -> bool:
    """Make the received-datagram queue of `dtls_transport`'s ICE connection (aioice
    `Connection._queue`, a plain `asyncio.Queue`: one `put_nowait` and one `get` per
    datagram the peer sends) a `FastQueue`, in place: the object keeps its state, waiters
    included, and only its class changes, so a reader already waiting in the stock `get()`
    is woken as before. True when switched; idempotent; anything else is left alone."""
    connection = getattr(getattr(dtls_transport, "transport", None), "_connection", None)
    queue = getattr(connection, "_queue", None)
    if type(queue) is not asyncio.Queue:
        return False
    queue.__class__ = FastQueue
    return True


def check_fast_queue_internals() -> list[str]:
    """The `asyncio.Queue` internals `FastQueue` relies on that are missing or changed;
    empty when all are present."""
    problems: list[str] = []
    try:
        probe: Any = asyncio.Queue(3)
    except Exception as exc:  # a changed constructor is a changed internal
        return [f"constructing asyncio.Queue: {exc!r}"]
    for name in ("_queue", "_getters", "_putters", "_unfinished_tasks", "_finished", "_maxsize"):
        if not hasattr(probe, name):
            problems.append(f"asyncio.Queue.{name}")
    if not callable(getattr(probe, "_get_loop", None)) or not hasattr(probe, "_loop"):
        problems.append("asyncio.Queue._get_loop / _loop")
    problems += source_has(asyncio.Queue._init, "self._queue = collections.deque()")
    problems += source_has(asyncio.Queue._get, "return self._queue.popleft()")
    problems += source_has(asyncio.Queue._put, "self._queue.append(item)")
    problems += source_has(
        asyncio.Queue.put_nowait,
        "self._unfinished_tasks += 1",
        "self._finished.clear()",
        "self._wakeup_next(self._getters)",
    )
    problems += source_has(asyncio.Queue.get_nowait, "self._wakeup_next(self._putters)")
    problems += source_has(
        asyncio.Queue.get, "self._get_loop().create_future()", "self._getters.append(getter)"
    )
    problems += source_has(
        type(probe)._get_loop, "if self._loop is None:", "self._loop = loop", "return loop"
    )
    # aioice: the ICE connection's received datagrams (`use_fast_ice_queue`)
    problems += source_has(
        Connection.__init__,
        "self._queue: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()",
    )
    problems += source_has(Connection.recvfrom, "await self._queue.get()")
    problems += source_has(Connection.data_received, "self._queue.put_nowait((data, component))")
    return problems
