"""Cluster fixtures: ONE real redis-server per test run on a free loopback port (started
here, stopped at the end, restartable on the same port), and `sfu-server --redis-url`
node subprocesses, killed by PID at the end of each test."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aioice.ice
import pytest
import redis

from signaling.lifecycle import stop_process

SERVER = Path(sys.executable).parent / "sfu-server"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def failed_start(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int | None, list[str]]:
    """Run `sfu-server *args` until it exits (20 s at the most); its exit status and the
    lines of its standard error."""
    proc = await asyncio.create_subprocess_exec(
        str(SERVER), *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    return proc.returncode, err.decode().strip().splitlines()


class RedisProcess:
    """A private redis-server on 127.0.0.1:`port`, no persistence (a restart loses all)."""

    def __init__(self, port: int, workdir: str) -> None:
        self.port, self.workdir = port, workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def flush(self) -> None:
        redis.Redis(port=self.port, socket_timeout=2).flushall()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server missing (Debian package redis-server; .ci/run installs it)")
    with tempfile.TemporaryDirectory(prefix="sfu-redis-") as workdir:
        server = RedisProcess(free_port(), workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    if redis_server.proc is None:  # a test stopped it and failed before restarting
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the nodes run in other processes: this process's aiortc clients need the policy too
    monkeypatch.setattr(
        aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    )
    yield


class NodeProcess:
    def __init__(self, proc: asyncio.subprocess.Process, node_id: str, port: int) -> None:
        self.proc, self.node_id, self.port = proc, node_id, port
        self.url = f"http://127.0.0.1:{port}"


class Nodes:
    """Starts cluster nodes on free ports; kills the ones still running by PID at the end."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.made: list[NodeProcess] = []

    async def start(self, node_id: str, *flags: str) -> NodeProcess:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            str(SERVER), "--host", "127.0.0.1", "--port", str(port),
            "--ice-address", "127.0.0.1", "--log-level", "WARNING",
            "--redis-url", self.redis_url, "--node-id", node_id, *flags,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        node = NodeProcess(proc, node_id, port)
        self.made.append(node)
        await wait_healthy(node)
        return node

    async def start_many(self, count: int, *flags: str) -> list[NodeProcess]:
        return list(await asyncio.gather(*(self.start(f"n{i + 1}", *flags) for i in range(count))))

    async def kill_all(self) -> None:
        for node in self.made:
            if node.proc.returncode is None:
                node.proc.send_signal(signal.SIGKILL)
                await node.proc.wait()


async def wait_healthy(node: NodeProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            if node.proc.returncode is not None:
                err = await node.proc.stderr.read()  # type: ignore[union-attr]
                raise AssertionError(f"node {node.node_id} exited: {err.decode()}")
            try:
                async with http.get(node.url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"node {node.node_id} did not start"
            await asyncio.sleep(0.1)


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[Nodes]:
    made = Nodes(redis_url)
    try:
        yield made
    finally:
        await made.kill_all()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, (url, resp.status)
        return await resp.json()


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate()` (sync or async) every 0.1 s until true; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
