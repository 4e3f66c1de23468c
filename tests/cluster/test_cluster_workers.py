"""`sfu-server --workers N`: one supervisor, N nodes on consecutive ports, a private
redis-server on a unix socket; a crashed worker is restarted; SIGTERM stops everything."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import aiohttp

from tests.cluster.conftest import SERVER, failed_start, free_port, get_json


def free_pair() -> int:
    """A port P with P+1 free too (best effort)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


async def healthz(url: str) -> dict | None:  # type: ignore[type-arg]
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
            return await resp.json() if resp.status == 200 else None  # type: ignore[no-any-return]
    except aiohttp.ClientError:
        return None


async def wait_health(url: str, timeout: float, pid_not: int | None = None) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        health = await healthz(url)
        if health is not None and health.get("pid") != pid_not:
            return health
        assert time.monotonic() < deadline, f"{url} not healthy"
        await asyncio.sleep(0.1)


async def test_workers_supervise_and_stop() -> None:
    port = free_pair()
    proc = await asyncio.create_subprocess_exec(
        str(SERVER), "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
        "--ice-address", "127.0.0.1", "--log-level", "WARNING",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    urls = [f"http://127.0.0.1:{port + i}" for i in range(2)]
    pids: list[int] = []
    try:
        for url in urls:
            health = await wait_health(url, 20)
            assert health["node"] == url.removeprefix("http://")
            pids.append(health["pid"])
        stats = await get_json(urls[0] + "/api/stats?scope=cluster")
        assert sorted(n["url"] for n in stats["nodes"]) == urls
        os.kill(pids[0], signal.SIGKILL)
        started = time.monotonic()
        health = await wait_health(urls[0], 15, pid_not=pids[0])
        print(f"\nworker restarted in {time.monotonic() - started:.2f} s")
        pids[0] = health["pid"]
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
        assert code == 0, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        for pid in pids:
            try:
                os.kill(pid, 0)
                raise AssertionError(f"worker {pid} outlived its supervisor")
            except ProcessLookupError:
                pass
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_workers_without_redis_binary_exit_2() -> None:
    code, lines = await failed_start(
        "--port", str(free_pair()), "--workers", "2", env={**os.environ, "PATH": "/nonexistent"}
    )
    assert code == 2
    assert len(lines) == 1 and "redis-server" in lines[0], lines
