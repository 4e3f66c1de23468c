"""`benchmarks.servers.ServerProcess`: the one way tests and benchmarks run `sfu-server`
as a subprocess."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from benchmarks.servers import ServerProcess


def test_server_process_starts_serves_and_stops() -> None:
    with ServerProcess("--log-level", "INFO") as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
            assert json.loads(response.read())["status"] == "ok"
        pid, log_path = server.pid, server.log_path
    assert server.proc.returncode == 0  # SIGTERM: a clean drain
    assert not log_path.exists()  # our temporary log is removed
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert server.stop() == 0  # idempotent


def test_server_process_that_cannot_start_reports_its_log() -> None:
    server = ServerProcess("--forwarding", "nonsense", start_timeout=10)
    with pytest.raises(RuntimeError) as failed:
        server.wait_ready()
    assert "exited" in str(failed.value) and "nonsense" in str(failed.value)
    assert server.stop() not in (None, 0)
