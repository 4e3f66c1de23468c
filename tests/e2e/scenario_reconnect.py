"""The server goes away and comes back: two Chromium participants show "reconnecting",
then rejoin by themselves with new peer connections and see each other's video again.
Run INSIDE a loopback-only network namespace (``test_browser_room.py`` does that).

    tests/e2e/run_in_netns.sh .venv/bin/python -m tests.e2e.scenario_reconnect --out result.json
"""

from __future__ import annotations

import sys
from typing import Any

from tests.e2e.harness import Scenario, free_port, launch_chromium, scenario_main, sfu_server
from tests.e2e.scenario_room import STATS_JS, frames_by_participant, poll

STATE_JS = "() => window.sfuApp ? [sfuApp.client.state, sfuApp.client.id] : [null, null]"

#: the remote tiles as shown: name, greyed ("stale") or not
KEPT_JS = """
() => [...document.querySelectorAll('.tile:not(.local)')].map((t) => ({
  name: t.querySelector('.name').textContent, stale: t.classList.contains('stale') }))
"""


def decoding_from_all_others(page: Any) -> bool:
    stats = page.evaluate(STATS_JS)
    if not stats:
        return False
    frames = frames_by_participant(stats)
    return bool(stats["others"]) and all(frames.get(o, 0) > 0 for o in stats["others"])


def run(sc: Scenario) -> None:
    from playwright.sync_api import sync_playwright

    log = sc.artifacts / "e2e-reconnect-server.log"
    log.unlink(missing_ok=True)
    port = free_port()
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        pages = []
        with sfu_server(log, port=port) as url:
            for name in ("Dora", "Eve"):
                page = browser.new_context().new_page()
                page.goto(f"{url}/room/e2e-reconnect?name={name}")
                pages.append(page)
            for page in pages:
                ok, _ = poll(lambda page=page: decoding_from_all_others(page), bool, timeout=30)
                sc.check(f"{page.evaluate(STATE_JS)[1]} decodes video before the restart", ok, ok)
        # the server is gone now
        for page in pages:
            ok, state = poll(
                lambda page=page: page.evaluate(STATE_JS)[0], lambda s: s == "reconnecting", 10
            )
            banner = page.locator(".banner-item").all_text_contents()
            sc.check(
                "page shows reconnecting while the server is gone",
                ok and bool(banner),
                {"state": state, "banner": banner},
            )
            kept = page.evaluate(KEPT_JS)
            sc.check(
                "the other's tile and name stay (greyed) while reconnecting",
                len(kept) == 1 and kept[0]["stale"] and bool(kept[0]["name"]),
                kept,
            )
            sc.check("one banner at a time", len(banner) == 1, banner)
            notices = page.locator(".chat-notice").all_text_contents()
            sc.check(
                "no false 'left' line in the chat on server shutdown",
                not any(n.endswith(" left") for n in notices),
                notices,
            )
        sc.artifacts.mkdir(parents=True, exist_ok=True)
        shot = sc.artifacts / "room-reconnecting.png"
        pages[0].screenshot(path=str(shot))
        sc.info["screenshot"] = str(shot)
        with sfu_server(log, port=port):
            for page in pages:
                ok, state = poll(
                    lambda page=page: page.evaluate(STATE_JS)[0], lambda s: s == "joined", 30
                )
                sc.check("page rejoins by itself when the server is back", ok, state)
                ok, _ = poll(lambda page=page: decoding_from_all_others(page), bool, timeout=30)
                remote = page.locator(".tile:not(.local)").count()
                sc.check(
                    "video flows again after the rejoin",
                    ok and remote == 1,
                    {"remote_tiles": remote},
                )
                banner = page.locator(".banner-item").all_text_contents()
                sc.check("no stale connection message after the rejoin", banner == [], banner)
        browser.close()


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, run))
