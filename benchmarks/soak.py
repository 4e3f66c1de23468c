"""Churn soak: many join/publish/leave cycles against one server, then check that nothing
leaked (peer connections, asyncio tasks, threads, file descriptors, memory).

    python -m benchmarks.soak --cycles 1000 --parallel 4 [--json FILE]

By default the server runs in this process (`benchmarks.servers.start_server`, so its
leftovers are measurable); every participant is a `signaling.client.SfuClient`; two
long-lived publishers ("bystanders") sit in the same room and must keep receiving each
other's video all along. Each cycle: connect, join, publish a small VP8 track, wait until
the peer connection is connected, answer the server's offers, leave, close. Every wait is
bounded. The test suite runs a shorter version (tests/test_hardening_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

from benchmarks.servers import start_server
from signaling.client import PatternVideoTrack, SfuClient

CYCLE_TIMEOUT = 20.0


async def join_and_publish(url: str, room: str, name: str) -> SfuClient:
    """A participant (`SfuClient`, decoding everything it receives) that joined `room`,
    publishes a 64x48 `PatternVideoTrack` and whose peer connection is connected."""
    client = await SfuClient.connect(url, timeout=10.0)
    try:
        await client.join(room, name)
        await client.publish(video=PatternVideoTrack(64, 48))
        await client.wait_connected(10)
    except BaseException:
        await client.close()
        raise
    return client


async def until(pred: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - state owned by aiortc tasks
            await asyncio.sleep(0.02)


async def cycle(url: str, room: str, index: int) -> None:
    """One join/publish/leave cycle, bounded by CYCLE_TIMEOUT."""
    client: SfuClient | None = None
    try:
        async with asyncio.timeout(CYCLE_TIMEOUT):
            client = await join_and_publish(url, room, f"churn-{index}")
            await client.leave()
    finally:
        if client is not None:
            await client.close()


def snapshot() -> dict[str, int]:
    gc.collect()
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {
        "tasks": sum(
            1
            for t in asyncio.all_tasks()
            if not t.done()
            # engine.io's ping sleeper outlives its socket by up to 25 s (bounded)
            and getattr(t.get_coro(), "__qualname__", "") != "AsyncSocket._send_ping"
        ),
        "threads": sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_")),
        "fds": len(os.listdir("/proc/self/fd")),
        "rss": rss,
        "peer_connections": sum(
            1
            for o in gc.get_objects()
            if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
        ),
        "pc_objects": sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection)),
    }


async def churn(
    url: str,
    cycles: int,
    parallel: int,
    room: str = "soak",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run `cycles` cycles, `parallel` at a time; return counts and timings."""
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    queue = iter(range(cycles))

    async def worker() -> None:
        for index in queue:
            started = time.monotonic()
            try:
                await cycle(url, room, index)
                outcomes["ok"] += 1
            except Exception as exc:  # counted and reported, the soak goes on
                outcomes[type(exc).__name__] += 1
                logging.getLogger(__name__).warning("cycle %d failed: %r", index, exc)
            durations.append(time.monotonic() - started)
            if progress is not None:
                progress(index, sum(outcomes.values()))

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    durations.sort()
    return {
        "cycles": cycles,
        "parallel": parallel,
        "outcomes": dict(outcomes),
        "seconds": round(time.monotonic() - started, 2),
        "cycle_p50": round(durations[len(durations) // 2], 3) if durations else None,
        "cycle_max": round(durations[-1], 3) if durations else None,
    }


async def run_in_process(cycles: int, parallel: int) -> dict[str, Any]:
    """Start a server in this process, two bystanders, churn, and measure leftovers."""
    from sfu.config import SfuConfig
    from signaling.config import ServerConfig

    config = ServerConfig(
        sfu=SfuConfig(ice_addresses=("127.0.0.1",), max_participants=parallel + 2),
        join_burst=10_000,
        join_per_second=10_000,
    )
    server, runner = await start_server(config)
    url = server.url
    before = snapshot()
    bystanders = [await join_and_publish(url, "soak", f"bystander-{i}") for i in range(2)]
    warm = snapshot()

    rss_by_cycle: dict[int, float] = {}

    def progress(index: int, done: int) -> None:
        if done % 100 == 0:
            rss_by_cycle[done] = round(snapshot()["rss"] / 2**20, 1)
            print(f"  {done}/{cycles} cycles, rss {rss_by_cycle[done]} MiB", flush=True)

    result = await churn(url, cycles, parallel, "soak", progress)
    frames_before = [p.frames for p in bystanders]
    await asyncio.sleep(1.0)
    result["bystanders_receiving"] = all(
        p.frames > f for p, f in zip(bystanders, frames_before, strict=True)
    )
    after_churn = snapshot()
    for peer in bystanders:
        await peer.close()
    del bystanders, peer
    rooms = server.rooms
    await until(lambda: not rooms.rooms, 10)
    await runner.cleanup()
    await asyncio.sleep(0.5)
    after = snapshot()
    result.update(
        {
            "before": before,
            "warm": warm,
            "after_churn": after_churn,
            "after": after,
            "rss_growth_mib": round((after_churn["rss"] - warm["rss"]) / 2**20, 1),
            "rss_mib_by_cycle": rss_by_cycle,
        }
    )
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--json", default=None, help="write the result to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import aioice.ice

    # loopback only (the in-process server installs the same policy while it runs)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    result = asyncio.run(run_in_process(args.cycles, args.parallel))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    ok = result["outcomes"].get("ok", 0) == args.cycles and result["bystanders_receiving"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
