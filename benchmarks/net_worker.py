"""One benchmark bot process inside an emulated-network host (`benchmarks.netbench`).

`python -m benchmarks.net_worker --address A --spec JSON` runs the participants of one
`benchmarks.worker.WorkerSpec` (given as JSON) with ICE restricted to the host's address
`A`, like a `benchmarks.worker` process but talking over pipes instead of multiprocessing
queues (a process in another network namespace is started by `ip netns exec`, not
forked): each join is printed on stdout as a JSON line ``{"event": "joined", ...}``; a
line ``stop`` on stdin (or its end) ends the run, and the raw result of
`benchmarks.worker.run_participants` is printed as the last line
``{"event": "result", ...}``. Bounded: the worker stops by itself past the spec's
`planned_end` + `benchmarks.worker.STOP_GRACE`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/net_worker.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.worker import ParticipantSpec, WorkerSpec, run_participants


class LineStatus:
    """`status` for `run_participants`: each ("joined", name, ok, error) as a JSON line."""

    def put(self, item: tuple[Any, ...]) -> None:
        _, name, ok, error = item
        emit({"event": "joined", "name": name, "ok": bool(ok), "error": error})


def emit(message: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def spec_from_json(text: str) -> WorkerSpec:
    """A `WorkerSpec` from its JSON form (`dataclasses.asdict`); ValueError when bad."""
    try:
        raw = json.loads(text)
        participants = [ParticipantSpec(**p) for p in raw.pop("participants")]
        return WorkerSpec(participants=participants, **raw)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad worker spec: {exc}") from exc


def _watch_stdin(stop: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.net_worker")
    parser.add_argument("--address", required=True, help="the host's address (ICE)")
    parser.add_argument("--spec", required=True, help="a WorkerSpec as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "socketio", "engineio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    spec = spec_from_json(args.spec)
    from sfu.ice_policy import IcePolicy

    IcePolicy([args.address]).install()
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    try:
        out = asyncio.run(run_participants(spec, LineStatus(), stop))
    except BaseException:  # report, never hang the parent
        out = {"pid": os.getpid(), "error": traceback.format_exc(), "participants": []}
    emit({"event": "result", **out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
