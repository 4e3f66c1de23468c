"""A browser whose camera and microphone are refused joins receive-only (run INSIDE a
loopback-only network namespace; ``test_browser_receive_only.py`` does that).

Starts ``sfu-server``, one Python publisher (``SfuClient``, a small paced VP8 clip) in a
room, then opens ``/room/<room>?name=Dave`` in Chromium with ``getUserMedia`` rejecting
with ``NotAllowedError`` (what a user's "Block" gives). Checks that the page says the
camera was refused, stays in the room, decodes the publisher's video (``getStats``), that
the publisher sees Dave join, and that the server holds no track published by Dave.

    tests/e2e/run_in_netns.sh .venv/bin/python -m tests.e2e.scenario_receive_only --out r.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from typing import Any

from tests.e2e.harness import Scenario, launch_chromium, scenario_main, sfu_server
from tests.e2e.scenario_room import STATS_JS, frames_by_participant

ROOM = "receive-only"

#: Installed before any page script: the user refused camera and microphone.
REFUSE_MEDIA_JS = """
navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException("Permission denied", "NotAllowedError");
};
"""


def api_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/stats", timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


async def poll(page: Any, pred: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await page.evaluate(STATS_JS)
        if pred(value):
            return value
        await asyncio.sleep(0.5)
    return value


async def run(sc: Scenario) -> None:
    from playwright.async_api import async_playwright

    from sfu.ice_policy import IcePolicy
    from signaling.client import SfuClient
    from signaling.sources import PacedVideoTrack, encode_clip

    server_log = sc.artifacts / "e2e-receive-only-server.log"
    policy = IcePolicy(["127.0.0.1"])
    policy.install()
    publisher: SfuClient | None = None
    try:
        with sfu_server(server_log, "--log-level", "INFO") as url:
            clip = await asyncio.to_thread(
                encode_clip, width=320, height=240, fps=15, seconds=2.0, bitrate=250_000, marker=5
            )
            publisher = await SfuClient.connect(url, decode=False, timeout=20)
            await publisher.join(ROOM, "publisher")
            await publisher.publish(video=PacedVideoTrack(clip))
            await publisher.wait_connected(timeout=20)
            async with async_playwright() as pw:
                browser = await launch_chromium(pw)
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                await context.add_init_script(REFUSE_MEDIA_JS)
                page = await context.new_page()
                sc.follow_console(page, "Dave")
                await page.goto(f"{url}/room/{ROOM}?name=Dave")

                joined = await publisher.wait_for_event(
                    "participant joined", lambda p: p.get("name") == "Dave", 20
                )
                dave = joined.payload["id"]
                sc.check("the publisher sees Dave join", bool(dave), joined.payload)

                first = await poll(
                    page, lambda s: frames_by_participant(s).get(publisher.id, 0) > 0, 30
                )
                await asyncio.sleep(2.0)
                second = await page.evaluate(STATS_JS)
                before = frames_by_participant(first).get(str(publisher.id), 0)
                after = frames_by_participant(second).get(str(publisher.id), 0)
                sc.check(
                    "Dave decodes the publisher's video (framesDecoded increasing)",
                    0 < before < after,
                    {"before": before, "after": after},
                )
                banner = " ".join(await page.locator(".banner-item").all_text_contents())
                sc.check(
                    "the page says the camera was refused",
                    "camera" in banner.lower() or "microphone" in banner.lower(),
                    banner,
                )
                stats = api_stats(url)
                [room] = [r for r in stats["rooms"] if r["name"] == ROOM]
                published = {p["id"]: len(p["published"]) for p in room["participants"]}
                sc.check(
                    "the server holds no track published by Dave",
                    published.get(dave) == 0,
                    published,
                )
                shot = sc.artifacts / "room-receive-only.png"
                sc.artifacts.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(shot))
                sc.info["screenshot"] = str(shot)
                print(f"screenshot: {shot}", flush=True)
                await browser.close()
    finally:
        if publisher is not None:
            await publisher.close()
        policy.uninstall()


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, lambda sc: asyncio.run(run(sc))))
