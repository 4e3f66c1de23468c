"""`sfu.compat.fast_queue.FastQueue` behaves as `asyncio.Queue` (FIFO)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from sfu.compat.fast_queue import FastQueue, check_fast_queue_internals


def test_internals_present() -> None:
    assert check_fast_queue_internals() == []


async def _script(queue: asyncio.Queue[Any], seed: int) -> list[Any]:
    """A random mix of put_nowait / get_nowait / get (with waiting getters, some
    cancelled) / full / qsize / empty; returns everything observed, in order."""
    rng = random.Random(seed)
    seen: list[Any] = []
    getters: list[asyncio.Task[Any]] = []
    for step in range(400):
        op = rng.random()
        if op < 0.35:
            try:
                queue.put_nowait(step)
                seen.append(("put", step))
            except asyncio.QueueFull:
                seen.append(("full", step))
        elif op < 0.55:
            try:
                seen.append(("get_nowait", queue.get_nowait()))
            except asyncio.QueueEmpty:
                seen.append(("empty", step))
        elif op < 0.75:
            getters.append(asyncio.ensure_future(queue.get()))
        elif op < 0.8 and getters:
            victim = getters.pop(rng.randrange(len(getters)))
            victim.cancel()
            seen.append(("cancel", step))
        else:
            seen.append(("state", queue.qsize(), queue.empty(), queue.full()))
        await asyncio.sleep(0)
        for task in [t for t in getters if t.done()]:
            getters.remove(task)
            seen.append(("got", task.result()))
    for task in getters:
        task.cancel()
    await asyncio.gather(*getters, return_exceptions=True)
    seen.append(("end", queue.qsize(), len(queue._getters)))  # type: ignore[attr-defined]
    return seen


@pytest.mark.parametrize("maxsize", [0, 1, 5])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_same_behaviour_as_asyncio_queue(maxsize: int, seed: int) -> None:
    stock = await _script(asyncio.Queue(maxsize), seed)
    fast = await _script(FastQueue(maxsize), seed)
    assert fast == stock
    assert any(item[0] == "got" for item in fast) and any(item[0] == "cancel" for item in fast)


async def test_a_waiting_getter_wakes_and_task_done_works() -> None:
    queue: FastQueue[int] = FastQueue(2)
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait(7)
    assert await getter == 7
    queue.task_done()
    await asyncio.wait_for(queue.join(), 1)
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert queue.full()
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait(3)
    putter = asyncio.ensure_future(queue.put(3))  # waits for room
    await asyncio.sleep(0)
    assert not putter.done()
    assert queue.get_nowait() == 1
    await putter
    assert [queue.get_nowait(), queue.get_nowait()] == [2, 3]


def test_bound_to_one_loop() -> None:
    """A queue bound to one loop (by its first wait) fails in another, as stock does."""
    queue: FastQueue[int] = FastQueue()

    async def wait_briefly() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(queue.get(), 0.01)

    asyncio.run(wait_briefly())
    with pytest.raises(RuntimeError):
        asyncio.run(wait_briefly())


async def test_ice_queue_switches_in_place_and_a_waiting_reader_still_wakes() -> None:
    from types import SimpleNamespace

    from aioice.ice import Connection

    from sfu.compat.fast_queue import use_fast_ice_queue

    connection = Connection(ice_controlling=True)
    connection._nominated[1] = object()  # type: ignore[assignment]  # as if connected
    dtls = SimpleNamespace(transport=SimpleNamespace(_connection=connection))
    queue = connection._queue
    reader = asyncio.ensure_future(connection.recvfrom())  # waits in the stock get()
    await asyncio.sleep(0)
    assert use_fast_ice_queue(dtls) is True
    assert connection._queue is queue and type(queue) is FastQueue
    assert use_fast_ice_queue(dtls) is False  # idempotent
    assert use_fast_ice_queue(SimpleNamespace()) is False  # anything else: left alone
    connection.data_received(b"one", 1)
    connection.data_received(b"two", 1)
    async with asyncio.timeout(5):
        assert await reader == (b"one", 1)
        assert await connection.recvfrom() == (b"two", 1)
    connection._nominated.clear()
