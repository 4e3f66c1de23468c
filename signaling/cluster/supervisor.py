"""`--workers N`: N node processes of one cluster on one box, under one supervisor.

The supervisor runs `python -m signaling` N times with the same flags, on ports
`port .. port+N-1`, with node ids `<node-id>-<i>` (default `host:port`). Without
`--redis-url` it first starts a private `redis-server` on a unix socket in a temporary
directory (no TCP port, no persistence) and stops it at exit.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import redis

from signaling.lifecycle import stop_process

logger = logging.getLogger(__name__)

#: flags the supervisor sets per worker (dropped from the flags it passes on)
PER_WORKER = ("--workers", "--port", "--redis-url", "--node-id", "--public-url")
RESTART_DELAY = 1.0
STOP_TIMEOUT = 25.0
#: a worker that exits with 1 or 2 this soon after its start failed to start (bad flag,
#: port taken, Redis unreachable): the supervisor stops instead of restarting it in a loop
STARTUP_WINDOW = 5.0


class SupervisorError(Exception):
    """Cannot start (no redis-server binary, Redis did not come up): one line, exit 2."""


def worker_flags(argv: Sequence[str]) -> list[str]:
    """`argv` without the per-worker flags (`--flag value` and `--flag=value` forms)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in PER_WORKER:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


class PrivateRedis:
    """Owns a redis-server child on a unix socket in its own temporary directory;
    `stop()` terminates it and removes the directory (idempotent)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SupervisorError(
                "--workers without --redis-url needs redis-server on PATH "
                "(Debian: apt-get install redis-server)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="sfu-redis-"))
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5)
        while True:
            try:
                client.ping()
                break
            except (redis.exceptions.ConnectionError, FileNotFoundError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SupervisorError("the private redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Supervisor:
    """Owns the worker processes (and the private Redis, if any). `run()` starts them,
    restarts any that dies while the supervisor runs (one that dies at start-up stops
    everything instead), and on SIGTERM/SIGINT sends SIGTERM to
    every worker (each drains), waits for them (then kills leftovers by PID), stops the
    private Redis and returns the exit status (0 when every worker exited 0)."""

    def __init__(
        self,
        argv: Sequence[str],
        host: str,
        port: int,
        workers: int,
        redis_url: str | None,
        node_id: str | None,
        tls: bool,
    ) -> None:
        self._flags = worker_flags(argv)
        self._host, self._port, self._workers = host, port, workers
        self._redis_url = redis_url
        self._node_id = node_id
        self._scheme = "https" if tls else "http"
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._started: dict[int, float] = {}
        self._stopping = False
        self.restarts = 0

    def _command(self, index: int) -> list[str]:
        port = self._port + index
        node_id = f"{self._node_id}-{index + 1}" if self._node_id else f"{self._host}:{port}"
        assert self._redis_url is not None
        return [
            sys.executable, "-m", "signaling", *self._flags, "--port", str(port),
            "--workers", "1", "--redis-url", self._redis_url, "--node-id", node_id,
        ]  # fmt: skip

    def _spawn(self, index: int) -> None:
        self._procs[index] = subprocess.Popen(self._command(index))
        self._started[index] = time.monotonic()

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        private = None
        if self._redis_url is None:
            private = PrivateRedis()
            self._redis_url = private.url
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self._workers):
                self._spawn(index)
            last = self._port + self._workers - 1
            print(
                f"sfu-server supervisor: {self._workers} workers on ports {self._port}..{last}"
                f" (redis: {'private' if private else 'shared'})",
                flush=True,
            )
            while not self._stopping:
                for index, proc in list(self._procs.items()):
                    code = proc.poll()
                    if code is None or self._stopping:
                        continue
                    early = time.monotonic() - self._started[index] < STARTUP_WINDOW
                    if early and code in (1, 2):  # killed by a signal: always restarted
                        print(
                            f"sfu-server: error: worker {index + 1} failed at start-up"
                            f" (exit {code}); stopping",
                            file=sys.stderr,
                        )
                        self._shutdown()
                        return code
                    logger.warning(
                        "worker %d (pid %d) exited with %s: restarting", index + 1, proc.pid, code
                    )
                    time.sleep(RESTART_DELAY)
                    if not self._stopping:
                        self.restarts += 1
                        self._spawn(index)
                time.sleep(0.2)
            return self._shutdown()
        finally:
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if private is not None:
                private.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _shutdown(self) -> int:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        status = 0
        for proc in self._procs.values():
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            status = status or (0 if code == 0 else 1)
        return status
