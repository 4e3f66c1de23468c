"""Chromium as one participant of a network benchmark run, reading its own `getStats()`.

`python -m benchmarks.net_chromium --url U --room R --name N` runs inside an
emulated-network host (`benchmarks.netbench` starts it there): headless Chromium
(Playwright; fake camera and microphone) opens ``U/room/R?name=N``, which joins and
publishes, and prints ``{"event": "joined", ...}`` on stdout. Then each line
``snapshot`` on stdin takes a `getStats()` snapshot of the page's peer connection (the
window's two ends: per inbound video stream its publisher, `framesDecoded`,
`framesPerSecond`, `freezeCount`, `totalFreezesDuration`, `nackCount`, `pliCount`,
`packetsLost`, `packetsReceived`...; the outbound video's `framesPerSecond`,
`nackCount`, `pliCount`, `qualityLimitationReason`; per remote camera tile the frames
it rendered and its gaps over `FREEZE_GAP_MS`), stamped with `time.monotonic()`;
``stop`` (or the end of stdin) closes the browser and prints the last line
``{"event": "result", "snapshots": [...], ...}``. Bounded: `JOIN_TIMEOUT` s to join,
`--timeout` s in all. ``SFU_CHROMIUM`` overrides the browser path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/net_chromium.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHROMIUM = os.environ.get("SFU_CHROMIUM", "/usr/bin/chromium")
JOIN_TIMEOUT = 40.0
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-sandbox",
]

#: getStats of the room page's peer connection (`window.sfuApp`, web/js), by kind.
STATS_JS = """
async () => {
  const app = window.sfuApp;
  if (!app || !app.pc) return null;
  const byMid = {};
  try { for (const t of app.trackMap()) byMid[t.mid] = t; } catch (e) {}
  const report = await app.pc.getStats();
  const pick = (s, keys) => Object.fromEntries(keys.map((k) => [k, s[k] ?? null]));
  const inbound = [], outbound = [];
  report.forEach((s) => {
    if (s.kind !== "video") return;
    if (s.type === "inbound-rtp") {
      const info = byMid[s.mid] || null;
      inbound.push({ mid: s.mid ?? null, ssrc: s.ssrc,
        participantId: info ? info.participantId : null,
        source: info ? info.source : null,
        ...pick(s, ["framesDecoded", "framesReceived", "framesDropped", "framesPerSecond",
                    "freezeCount", "totalFreezesDuration", "pauseCount", "nackCount",
                    "pliCount", "firCount", "packetsLost", "packetsReceived", "bytesReceived",
                    "frameWidth", "frameHeight"]) });
    } else if (s.type === "outbound-rtp") {
      outbound.push({ ssrc: s.ssrc, ...pick(s, ["framesEncoded", "framesSent",
        "framesPerSecond", "nackCount", "pliCount", "firCount", "packetsSent", "bytesSent",
        "qualityLimitationReason", "frameWidth", "frameHeight", "scalabilityMode"]) });
    }
  });
  const rendered = {};
  for (const [id, g] of Object.entries(window.__sfuRendered || {})) {
    rendered[id] = { frames: g.frames, last: g.last, long: g.long.slice() };
  }
  return { self: app.client.id, state: app.client.state,
           connection: app.pc.connectionState, inbound, outbound,
           rendered, now: performance.now(), wall: Date.now() };
}
"""

#: The frames each remote camera tile renders (`requestVideoFrameCallback`), by the tile's
#: participant id: how many, the last one's time, and every gap longer than
#: `FREEZE_GAP_MS` as [end, length] (ms, `performance.now()`): freezes as the issue
#: defines them (the bots' measure), next to Chromium's own `freezeCount` (which counts
#: gaps from about 150 ms on).
FREEZE_GAP_MS = 500
RENDER_WATCH_JS = """
() => {
  if (window.__sfuRendered) return;
  const out = (window.__sfuRendered = {});
  const watched = new WeakSet();
  const watch = (video) => {
    if (watched.has(video) || !video.requestVideoFrameCallback) return;
    watched.add(video);
    const onFrame = (now) => {
      const tile = video.closest("[data-participant-id]");
      const id = tile ? tile.dataset.participantId : null;
      if (id) {
        const g = out[id] || (out[id] = { frames: 0, last: null, long: [] });
        if (g.last !== null && now - g.last > GAP) g.long.push([now, now - g.last]);
        g.last = now;
        g.frames += 1;
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };
  const scan = () => document.querySelectorAll("video.remote-video.camera-video").forEach(watch);
  scan();
  setInterval(scan, 250);
}
""".replace("GAP", str(FREEZE_GAP_MS))


async def _stats(page: Any) -> dict[str, Any] | None:
    try:
        value: dict[str, Any] | None = await page.evaluate(STATS_JS)
    except Exception as exc:  # a page mid-update
        return {"exception": repr(exc)}
    if value is not None:
        value["t"] = time.monotonic()
    return value


def emit(message: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def run(url: str, room: str, name: str) -> dict[str, Any]:
    """Join, then follow the commands on stdin (see the module doc); the result dict."""
    from playwright.async_api import async_playwright

    out: dict[str, Any] = {"name": name, "ok": False, "error": None, "snapshots": []}
    console: list[str] = []
    loop = asyncio.get_running_loop()
    async with async_playwright() as pw:
        # the server's origin is plain http on a lab address: not a secure context, so
        # no getUserMedia unless Chromium is told to treat it as one
        secure = f"--unsafely-treat-insecure-origin-as-secure={url}"
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, secure], headless=True
        )
        try:
            out["browserVersion"] = browser.version
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            await context.grant_permissions(["camera", "microphone"], origin=url)
            page = await context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"[:300]))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"[:300]))
            await page.goto(f"{url}/room/{room}?name={name}")
            deadline = time.monotonic() + JOIN_TIMEOUT
            state = None
            while time.monotonic() < deadline:
                state = await page.evaluate("() => window.sfuApp?.client?.state ?? null")
                if state == "joined":
                    break
                await asyncio.sleep(0.25)
            joined = state == "joined"
            out["id"] = await page.evaluate("() => window.sfuApp?.client?.id ?? null")
            emit(
                {
                    "event": "joined",
                    "name": name,
                    "ok": joined,
                    "id": out["id"],
                    "error": None if joined else f"state {state!r} after {JOIN_TIMEOUT} s",
                }
            )
            if not joined:
                out["error"] = f"not joined within {JOIN_TIMEOUT} s (state {state!r})"
                return out
            await page.evaluate(RENDER_WATCH_JS)
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                command = line.strip()
                if command == "snapshot":
                    out["snapshots"].append(await _stats(page))
                elif command == "stop" or not line:
                    break
            out["ok"] = True
        except Exception:
            out["error"] = traceback.format_exc()
        finally:
            out["console"] = console[-30:]
            await browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.net_chromium")
    parser.add_argument("--url", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--timeout", type=float, default=300.0, help="s, at most")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(asyncio.wait_for(run(args.url, args.room, args.name), args.timeout))
    except BaseException:
        result = {"name": args.name, "ok": False, "error": traceback.format_exc()}
    emit({"event": "result", **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
