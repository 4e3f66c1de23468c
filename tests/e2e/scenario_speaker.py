"""Active speaker and recording on the room page (issue 15), end to end (run INSIDE a
loopback-only network namespace; ``test_browser_speaker.py`` does that through
``run_in_netns.sh``).

A Python bot (``SfuClient``, paced VP8 + Opus whose packets carry a loud RFC 6464 level)
and two Chromium pages (Alice, Bob, microphones muted) in one room of a server started
with ``--record-dir`` and an admin token. Checks: the bot's tile is highlighted and its
level meter moves on both pages; at 390 px the active speaker is the large tile; a
recording started through the admin API shows the indicator on every page, also on a
late joiner's (Carol); Alice stops it from her page's button and the indicator goes away
everywhere. Writes a JSON result (``--out``) and PNGs to ``--artifacts``.

    tests/e2e/run_in_netns.sh .venv/bin/python -m tests.e2e.scenario_speaker --out r.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import urllib.request
from typing import Any

from tests.e2e.harness import Scenario, apoll, launch_chromium, scenario_main, sfu_server

ROOM = "speakers"
ADMIN = "e2e-admin-token"

#: the tile of participant `pid`: highlighted, large, its meter level
TILE_JS = """
(pid) => { const t = document.querySelector(`.tile[data-participant-id="${pid}"]`);
  if (!t) return null;
  const m = t.querySelector(".level-meter");
  return { speaking: t.classList.contains("speaking"), large: t.classList.contains("large"),
           level: Number(t.dataset.level || 0), meter: Number(m.getAttribute("aria-valuenow")),
           layout: document.getElementById("tiles").dataset.layout,
           speakingTiles: document.querySelectorAll(".tile.speaking").length }; }
"""

REC_JS = """
() => { const i = document.getElementById("rec-indicator");
  const b = document.getElementById("rec-btn");
  return { shown: !i.hidden && i.getClientRects().length > 0, text: i.textContent,
           button: b.hidden ? null : b.textContent, recording: sfuApp.client.recording }; }
"""


def admin(method: str, url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method)
    request.add_header("Authorization", f"Bearer {ADMIN}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


async def run(sc: Scenario) -> None:
    from playwright.async_api import async_playwright

    from sfu.ice_policy import IcePolicy
    from signaling.client import PacedAudioTrack, PacedVideoTrack, SfuClient, encode_clip

    art = sc.artifacts
    art.mkdir(parents=True, exist_ok=True)
    shots: dict[str, str] = {}
    sc.info["screenshots"] = shots
    policy = IcePolicy(["127.0.0.1"])
    policy.install()
    bot: Any = None
    started = time.monotonic()
    try:
        flags = ("--log-level", "INFO", "--record-dir", str(art / "rec"), "--admin-token", ADMIN)
        with sfu_server(art / "e2e-speaker-server.log", *flags) as url:
            clip = await asyncio.to_thread(
                encode_clip, width=320, height=240, fps=15, seconds=2.0, bitrate=200_000, marker=9
            )
            bot = await SfuClient.connect(url, decode=False, timeout=20)
            await bot.join(ROOM, "Loud bot")
            await bot.publish(video=PacedVideoTrack(clip), audio=PacedAudioTrack())
            sc.info["bot"] = bot.id

            async with async_playwright() as pw:
                browser = await launch_chromium(pw)
                pages: dict[str, Any] = {}

                async def open_page(name: str) -> Any:
                    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
                    await ctx.grant_permissions(["camera", "microphone"], origin=url)
                    page = await ctx.new_page()
                    log = sc.console.setdefault(name, [])
                    page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
                    page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
                    await page.goto(f"{url}/room/{ROOM}?name={name}")
                    ok, state = await apoll(
                        lambda: page.evaluate("() => sfuApp.client.state"),
                        lambda s: s == "joined",
                        20,
                    )
                    sc.check(f"{name} joined", ok, state)
                    # a quiet room apart from the bot: the pages' fake microphones beep
                    await page.click("#mic-btn")
                    pages[name] = page
                    return page

                async def shot(page: Any, name: str, what: str) -> None:
                    path = art / f"speaker-{name}.png"
                    await page.screenshot(path=str(path))
                    shots[path.name] = what

                alice = await open_page("Alice")
                await open_page("Bob")  # joins after the bot took the floor

                # --- the loud bot's tile is highlighted, with a moving level meter
                for name, page in pages.items():
                    ok, tile = await apoll(
                        lambda page=page: page.evaluate(TILE_JS, bot.id),
                        lambda t: bool(t) and t["speaking"] and t["level"] > 0.05,
                        30,
                    )
                    sc.check(f"{name}: the speaking bot's tile is highlighted", ok, tile)
                    sc.check(
                        f"{name}: the bot's level meter shows its level",
                        ok and tile["meter"] > 20 and tile["speakingTiles"] == 1,
                        tile,
                    )
                await shot(alice, "highlight-1280", "Alice's page: the loud bot highlighted")
                # a grid at 1280 px with 3 tiles; the speaker is large on a narrow screen
                wide = await alice.evaluate(TILE_JS, bot.id)
                sc.check("1280 px, 3 tiles: a grid, nobody large", not wide["large"], wide)
                await alice.set_viewport_size({"width": 390, "height": 844})
                ok, narrow = await apoll(
                    lambda: alice.evaluate(TILE_JS, bot.id), lambda t: t["large"], 10
                )
                sc.check("390 px: the active speaker is the large tile", ok, narrow)
                await shot(alice, "narrow-390", "Alice's page at 390 px: speaker view")
                await alice.set_viewport_size({"width": 1280, "height": 800})

                # --- recording started by the admin API: an indicator on every page
                base = f"{url}/api/rooms/{ROOM}/recording"
                status, body = await asyncio.to_thread(admin, "POST", base)
                sc.check("admin API starts the recording", status == 200, body)
                for name, page in pages.items():
                    ok, rec = await apoll(
                        lambda page=page: page.evaluate(REC_JS), lambda r: r["shown"], 15
                    )
                    sc.check(f"{name}: the recording indicator appears", ok, rec)
                carol = await open_page("Carol")
                ok, rec = await apoll(lambda: carol.evaluate(REC_JS), lambda r: r["shown"], 15)
                sc.check("Carol (joined later) sees the recording indicator", ok, rec)
                await shot(carol, "recording-1280", "Carol's page while the room is recorded")
                await asyncio.sleep(2.0)

                # --- Alice stops it from her page (no join tokens: anyone in the room may)
                rec = await alice.evaluate(REC_JS)
                sc.check(
                    "Alice's page offers 'Stop recording'", rec["button"] == "Stop recording", rec
                )
                await alice.click("#rec-btn")
                for name, page in pages.items():
                    ok, rec = await apoll(
                        lambda page=page: page.evaluate(REC_JS), lambda r: not r["shown"], 30
                    )
                    sc.check(f"{name}: the indicator goes away when it stops", ok, rec)
                status, body = await asyncio.to_thread(admin, "DELETE", base)
                sc.check("admin API: stopping again is 409", status == 409, body)
                manifest = body_manifest = None
                with contextlib.suppress(Exception):
                    body_manifest = sorted((art / "rec").glob("*/manifest.json"))[-1]
                    manifest = json.loads(body_manifest.read_text())
                sc.check(
                    "the recording's manifest lists the bot and the three pages",
                    manifest is not None and len(manifest["participants"]) == 4,
                    None if manifest is None else manifest["files"],
                )
                sc.info["console_errors"] = {
                    n: [x for x in lines if x.startswith(("error", "pageerror"))]
                    for n, lines in sc.console.items()
                }
                await browser.close()
    finally:
        if bot is not None:
            with contextlib.suppress(Exception):  # best effort at the end
                await bot.close()
        policy.uninstall()
        sc.info["seconds"] = round(time.monotonic() - started, 1)


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, lambda sc: asyncio.run(run(sc))))
