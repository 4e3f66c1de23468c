"""`sfu-bench --record DIR`: record every room of a run through the server's admin API
(`POST`/`DELETE /api/rooms/<room>/recording`) and summarise the files it wrote.

Stateless helpers; the run owns the timing: start after the joins (so the measurement
window sees steady-state recording), stop after the window."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def _call(method: str, url: str, token: str | None, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise RuntimeError(f"{method} {url}: HTTP {exc.code} {detail}") from None


def start(url: str, rooms: list[str], token: str | None = None) -> list[dict[str, Any]]:
    """Start recording each room; return the server's `recording` objects."""
    return [
        _call("POST", f"{url}/api/rooms/{room}/recording", token, 10.0)["recording"]
        for room in rooms
    ]


def stop(url: str, rooms: list[str], token: str | None = None) -> list[dict[str, Any]]:
    """Stop recording each room (the server waits for its files)."""
    return [
        _call("DELETE", f"{url}/api/rooms/{room}/recording", token, 60.0)["recording"]
        for room in rooms
    ]


def summarise(recordings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per recorded file: path (relative to the record dir), duration, frames, from the
    manifests (readable when the server runs on this machine)."""
    files: list[dict[str, Any]] = []
    for info in recordings:
        manifest_path = Path(info["manifest"])
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            files.append({"recording": info["id"], "error": f"manifest unreadable: {exc}"})
            continue
        for entry in manifest.get("files", []):
            files.append(
                {
                    "file": f"{manifest_path.parent.name}/{entry['path']}",
                    "duration": entry.get("duration"),
                    "videoFrames": entry.get("videoFrames"),
                    "audioFrames": entry.get("audioFrames"),
                    "dropped": entry.get("dropped"),
                    "error": entry.get("error"),
                }
            )
    return files


def describe(files: list[dict[str, Any]]) -> str:
    """One line per recorded file, for the console."""
    lines = [f"recorded files ({len(files)}):"]
    for f in files:
        if "file" not in f:
            lines.append(f"  {f.get('recording')}: {f.get('error')}")
            continue
        lines.append(
            f"  {f['file']}: {f['duration']} s, {f['videoFrames']} video / "
            f"{f['audioFrames']} audio frames, {f['dropped']} dropped"
            + (f", error {f['error']}" if f.get("error") else "")
        )
    return "\n".join(lines)
