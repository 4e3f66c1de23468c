"""Stopping what a component started: a background task (cancel, then wait for it to end)
and a child process (SIGTERM, then SIGKILL past a timeout). Shared by the cluster node,
the roaming client, the worker supervisor and the test and benchmark harnesses."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if any) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> int:
    """SIGTERM `proc` if it still runs, SIGKILL it when it has not exited within `timeout`
    seconds; return its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
