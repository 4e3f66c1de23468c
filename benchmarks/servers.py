"""The two ways tests and benchmarks start a server, and no others.

- In process: `start_server(config)` (or the `running(config)` context manager) serves
  `signaling.app.create_app(config)` on a free 127.0.0.1 port of this event loop and
  returns a `RunningServer` (its URL and app, so tests can look at the rooms). The tests'
  `server` fixture (tests/conftest.py) and `benchmarks.soak` use it.
- As a subprocess: `ServerProcess(*flags)` runs `sfu-server` on a free loopback port (ICE
  on 127.0.0.1 only) with the given flags, `wait_ready()` polls `/healthz`, `stop()` sends
  SIGTERM and, past `stop_timeout`, SIGKILL, by PID. Its output goes to a log file
  (`log_path`, or a temporary file removed by `stop()`); `tail()` reads it. Used by
  `benchmarks.loadtest`, tests/test_hardening_ops.py and tests/e2e/harness.py.

The server modules are imported lazily, so a benchmark parent that only starts a
subprocess does not load them.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from signaling.lifecycle import stop_process  # stdlib only: loads no server module

if TYPE_CHECKING:
    from aiohttp import web

    from signaling.config import ServerConfig

__all__ = ["RunningServer", "ServerProcess", "free_port", "running", "start_server"]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- in process


@dataclasses.dataclass
class RunningServer:
    """An in-process server: its base URL and aiohttp app."""

    url: str
    app: web.Application

    @property
    def rooms(self) -> Any:
        """The app's `RoomManager`."""
        from signaling.app import ROOMS

        return self.app[ROOMS]


async def start_server(config: ServerConfig) -> tuple[RunningServer, web.AppRunner]:
    """Serve `config` on a free 127.0.0.1 port of the running loop; the caller cleans the
    runner up (`await runner.cleanup()`)."""
    from aiohttp import web

    from signaling.app import create_app

    runner = web.AppRunner(create_app(config), shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return RunningServer(f"http://{HOST}:{port}", runner.app), runner


@contextlib.asynccontextmanager
async def running(config: ServerConfig) -> AsyncIterator[RunningServer]:
    """`start_server` as a context manager: cleaned up on exit."""
    server, runner = await start_server(config)
    try:
        yield server
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------- subprocess


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def server_command() -> list[str]:
    """`sfu-server` next to this interpreter, else `python -m signaling`."""
    exe = Path(sys.executable).with_name("sfu-server")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "signaling"]


class ServerProcess:
    """An `sfu-server` subprocess on a free 127.0.0.1 port (see the module doc).

    `scheme` is the URL's (`https` with `--self-signed` or TLS flags). `SFU_*` variables
    of this environment are not passed on unless `inherit_sfu_env`: the flags say it all.
    `die_with_parent` makes the server get SIGTERM when this process dies. `stop()` is
    idempotent; the class is also a context manager (started and ready on enter)."""

    def __init__(
        self,
        *flags: str,
        port: int | None = None,
        scheme: str = "http",
        log_path: Path | None = None,
        inherit_sfu_env: bool = False,
        die_with_parent: bool = False,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"{scheme}://{HOST}:{self.port}"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._own_log = log_path is None
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="sfu-server-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("ab")
        cmd = [*server_command(), "--host", HOST, "--port", str(self.port)]
        cmd += ["--ice-address", HOST, *flags]
        env = {k: v for k, v in os.environ.items() if inherit_sfu_env or not k.startswith("SFU_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
        self.pid = self.proc.pid

    def __enter__(self) -> ServerProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self) -> None:
        """Poll `/healthz` until it answers 200 (`RuntimeError` if the server exits or
        does not answer within `start_timeout` s)."""
        context = ssl._create_unverified_context()  # self-signed certificates
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sfu-server exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(
                    self.url + "/healthz", timeout=2, context=context
                ) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"sfu-server did not answer /healthz within {self.start_timeout} s: "
                    f"{self.tail()}"
                )
            time.sleep(0.1)

    def terminate(self) -> None:
        """Send SIGTERM (the server drains, then exits 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """The exit status, waiting up to `timeout` s (`subprocess.TimeoutExpired`)."""
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL past `stop_timeout` s; close (and, when it is ours, remove)
        the log. Returns the exit status."""
        stop_process(self.proc, self.stop_timeout)
        if not self._log.closed:
            self._log.close()
            if self._own_log:
                self.log_path.unlink(missing_ok=True)
        return self.proc.returncode

    def tail(self, lines: int = 15) -> str:
        """The last `lines` lines of the server's output."""
        try:
            self._log.flush()
            text = self.log_path.read_text(errors="replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.splitlines()[-lines:])
