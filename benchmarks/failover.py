"""Cluster failover and drain handover times, measured on this box.

    python -m benchmarks.failover --runs 5

Each run starts a private redis-server (free loopback port) and three `sfu-server` nodes,
puts two roaming bots (`signaling.roaming.RoamingClient`, publishing paced VP8) in a room
entered through two different nodes, waits for video both ways, then either kills the
room's node with SIGKILL (`kill`) or sends it SIGTERM (`drain`), and measures the time
until every bot receives a remote video frame again on its new node. Prints p50
and max per scenario (and writes JSON with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aioice.ice

from signaling.client import SfuClient
from signaling.roaming import RoamingClient
from signaling.sources import PacedVideoTrack

SERVER = Path(sys.executable).parent / "sfu-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(0.05)


class Cluster:
    """A private redis-server and `count` nodes; `stop()` ends them all by PID."""

    def __init__(self, count: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="sfu-failover-")
        port = free_port()
        binary = shutil.which("redis-server") or "redis-server"
        self.redis = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.nodes: list[tuple[subprocess.Popen[bytes], str]] = []
        for i in range(count):
            node_port = free_port()
            proc = subprocess.Popen(
                [str(SERVER), "--port", str(node_port), "--ice-address", "127.0.0.1",
                 "--log-level", "ERROR", "--redis-url", f"redis://127.0.0.1:{port}/0",
                 "--node-id", f"n{i + 1}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self.nodes.append((proc, f"http://127.0.0.1:{node_port}"))
        for _, url in self.nodes:
            wait(lambda u=url: healthy(u), 30, f"{url} to start")

    def stop(self) -> None:
        for proc, _ in self.nodes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.redis.terminate()
        self.redis.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


async def one_run(scenario: str) -> float:
    cluster = await asyncio.to_thread(Cluster, 3)
    bots: list[RoamingClient] = []
    try:
        urls = [u for _, u in cluster.nodes]
        for i, entry in enumerate(urls[:2]):

            async def publish(c: SfuClient, marker: int = i + 1) -> None:
                await c.publish(video=PacedVideoTrack(marker=marker))

            order = [entry, *(u for u in urls if u != entry)]
            bots.append(await RoamingClient(order, "f", f"bot{i}", publish=publish).start())
        for bot in bots:
            await bot.wait_video(time.monotonic() + 15)
        owner = next(p for p, u in cluster.nodes if u == bots[0].client.url)  # type: ignore[union-attr]
        started = time.monotonic()
        owner.send_signal(signal.SIGKILL if scenario == "kill" else signal.SIGTERM)
        deadline = started + 30
        while not all(b.recoveries for b in bots):
            if time.monotonic() > deadline:
                raise RuntimeError("bots did not recover")
            await asyncio.sleep(0.02)
        back = [await b.wait_video(deadline) for b in bots]
        return max(back) - started
    finally:
        await asyncio.gather(*(b.close() for b in bots), return_exceptions=True)
        await asyncio.to_thread(cluster.stop)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in args.scenarios.split(","):
        times = []
        for i in range(args.runs):
            t = await one_run(scenario)
            print(f"{scenario} run {i + 1}: {t:.2f} s", flush=True)
            times.append(t)
        out[scenario] = {
            "runs": [round(t, 3) for t in times],
            "p50": round(statistics.median(times), 3),
            "max": round(max(times), 3),
        }
        print(f"{scenario}: p50 {out[scenario]['p50']:.2f} s, max {out[scenario]['max']:.2f} s")
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.failover", description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--scenarios", default="kill,drain", help="kill,drain")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    # loopback only, as the nodes (--ice-address 127.0.0.1)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    os.environ.pop("SFU_REDIS_URL", None)
    result = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
