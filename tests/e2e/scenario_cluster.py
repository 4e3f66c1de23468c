"""Two Chromium participants in one room on a two-node cluster; the room's node is
drained (SIGTERM) and both pages move to the other node by themselves (docs/protocol.md
"Cluster", browser behaviour). Run INSIDE a loopback-only network namespace
(``test_browser_cluster.py`` does that); starts its own redis-server on a free loopback
port there.

Steps: node 1 and node 2 share the private Redis. Page B opens the room on node 2 (the
pre-join screen: no join yet). Page A opens the room on node 1 and joins: node 1 owns the
room. B then joins from node 2: the join is refused with `moved` and B follows it to
node 1 (no error shown). Both see each other's video and names; A chats. SIGTERM to the
owner: both get `moved`, join on node 2 with new peer connections, and see each other's
video again; chat history intact (no duplicate lines), no "left" line, no error banner.

    tests/e2e/run_in_netns.sh .venv/bin/python tests/e2e/scenario_cluster.py --out result.json
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.servers import ServerProcess
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, Scenario, free_port, in_netns, scenario_main
from tests.e2e.scenario_room import STATS_JS, frames_by_participant, poll

ROOM = "e2e-cluster"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

CLIENT_JS = """
() => window.sfuApp ? {state: sfuApp.client.state, id: sfuApp.client.id, url: sfuApp.client.url ?? null,
  node: sfuApp.client.node, nodes: sfuApp.client.nodes,
  names: sfuApp.client.participants.map((p) => p.name)} : null
"""

PAGE_JS = """
() => ({
  notices: [...document.querySelectorAll('.chat-notice')].map((n) => n.textContent),
  lines: [...document.querySelectorAll('.chat-message')].map((n) => n.dataset.messageId),
  banner: [...document.querySelectorAll('.banner-item')].map((n) => n.textContent),
  people: [...document.querySelectorAll('#participant-list li')].map((n) => n.textContent),
  status: document.getElementById('conn-status').textContent,
})
"""


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a free 127.0.0.1 port, no persistence."""
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        + ["--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, socket_timeout=0.5).ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def decoding(page: Any, other_name: str) -> tuple[int, str | None]:
    """(camera framesDecoded from the participant named `other_name`, its id)."""
    stats = page.evaluate(STATS_JS)
    if not stats:
        return 0, None
    names = page.evaluate("() => sfuApp.client.participants.map((p) => [p.id, p.name])")
    ids = [pid for pid, name in names if name == other_name]
    if not ids:
        return 0, None
    return frames_by_participant(stats).get(ids[0], 0), ids[0]


def video_grows(page: Any, other_name: str, timeout: float) -> tuple[bool, Any]:
    """framesDecoded from `other_name` is > 0 and increasing (two samples 1 s apart)."""
    ok, first = poll(lambda: decoding(page, other_name), lambda d: d[0] > 0, timeout)
    if not ok:
        return False, {"first": first}
    time.sleep(1.0)
    second = decoding(page, other_name)
    return second[1] == first[1] and second[0] > first[0], {"before": first, "after": second}


def run(sc: Scenario) -> None:
    from playwright.sync_api import sync_playwright

    sc.info["in_netns"] = in_netns()
    sc.artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sfu-redis-") as workdir:
        redis_proc, redis_url = start_redis(workdir)
        nodes: list[ServerProcess] = []
        try:
            for i in (1, 2):
                log = sc.artifacts / f"e2e-cluster-node{i}.log"
                log.unlink(missing_ok=True)
                node = ServerProcess(
                    "--redis-url",
                    redis_url,
                    "--node-id",
                    f"n{i}",
                    "--log-level",
                    "INFO",
                    log_path=log,
                    inherit_sfu_env=True,
                    die_with_parent=True,
                    stop_timeout=20.0,
                )
                nodes.append(node)
            for node in nodes:
                node.wait_ready()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                run_pages(sc, browser, nodes)
                browser.close()
        finally:
            for node in nodes:
                node.stop()
            redis_proc.terminate()
            redis_proc.wait(5)


def open_page(sc: Scenario, browser: Any, name: str, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log = sc.console.setdefault(name, [])
    page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
    page.goto(url)
    return page


def run_pages(sc: Scenario, browser: Any, nodes: list[ServerProcess]) -> None:
    n1, n2 = nodes
    sc.info["nodes"] = [n1.url, n2.url]
    # B first opens the room on node 2 and stays on the pre-join screen (nobody owns the
    # room yet: no 307)
    page_b = open_page(sc, browser, "Bob", f"{n2.url}/room/{ROOM}")
    page_b.wait_for_selector("#name-input")
    page_a = open_page(sc, browser, "Alice", f"{n1.url}/room/{ROOM}?name=Alice")
    ok, a = poll(lambda: page_a.evaluate(CLIENT_JS), lambda c: bool(c and c["state"] == "joined"), 20)
    sc.check("Alice joined on node 1", ok and a["node"] == "n1", a)
    sc.check(
        "the join ack's nodes are kept",
        ok and sorted(a["nodes"]) == sorted([n1.url, n2.url]),
        a and a["nodes"],
    )
    # B joins from node 2's page: refused with `moved`, follows it to node 1
    page_b.fill("#name-input", "Bob")
    page_b.click("#name-form button[type=submit]")
    ok, b = poll(lambda: page_b.evaluate(CLIENT_JS), lambda c: bool(c and c["state"] == "joined"), 20)
    sc.check(
        "Bob's join on node 2 is moved to node 1 (the room's owner)",
        ok and b["node"] == "n1" and b["url"] == n1.url and page_b.url.startswith(n2.url),
        {"client": b, "page": page_b.url},
    )
    sc.check(
        "no error shown for the moved join", page_b.evaluate(PAGE_JS)["banner"] == [], b
    )
    for me, page, other in (("Alice", page_a, "Bob"), ("Bob", page_b, "Alice")):
        ok, names = poll(
            lambda page=page: page.evaluate(CLIENT_JS)["names"], lambda n, o=other: o in n, 15
        )
        sc.check(f"{me} sees {other} in the participant list", ok, names)
        ok, detail = video_grows(page, other, 30)
        sc.check(f"{me} decodes {other}'s video (framesDecoded increasing)", ok, detail)
    page_a.fill("#chat-input", "before the move")
    page_a.press("#chat-input", "Enter")
    ok, lines = poll(lambda: page_b.evaluate(PAGE_JS)["lines"], lambda x: len(x) == 1, 10)
    sc.check("Bob sees Alice's chat line", ok, lines)

    # --- drain the owner (node 1): both pages move to node 2
    owner, other_node = (n1, n2)
    t0 = time.monotonic()
    owner.terminate()
    handover: dict[str, float] = {}
    for me, page, other in (("Alice", page_a, "Bob"), ("Bob", page_b, "Alice")):
        ok, c = poll(
            lambda page=page: page.evaluate(CLIENT_JS),
            lambda c: bool(c and c["state"] == "joined" and c["url"] == other_node.url),
            15,
            every=0.1,
        )
        sc.check(f"{me} moved to node 2 by itself", ok and c["node"] == "n2", c)
        ok, d = poll(lambda page=page, o=other: decoding(page, o), lambda d: d[0] > 0, 15, 0.1)
        handover[me] = round(time.monotonic() - t0, 2)
        ok2, detail = video_grows(page, other, 5)
        sc.check(
            f"{me} decodes {other}'s video again on node 2 within 10 s",
            ok and ok2 and handover[me] <= 10,
            {"seconds": handover[me], **detail},
        )
    sc.info["handover_seconds"] = handover
    print(f"handover (SIGTERM -> video decoded on the new node): {handover}", flush=True)
    for me, page, other in (("Alice", page_a, "Bob"), ("Bob", page_b, "Alice")):
        ok, names = poll(
            lambda page=page: page.evaluate(CLIENT_JS)["names"], lambda n, o=other: o in n, 10
        )
        sc.check(f"{me} still sees {other} in the participant list after the move", ok, names)
        # the tile of the other is kept, not greyed, once they arrived on node 2 too
        ok, view = poll(
            lambda page=page: page.evaluate(PAGE_JS),
            lambda v: not any("stale" in p or "reconnecting" in p.lower() for p in v["people"]),
            5,
        )
        view = page.evaluate(PAGE_JS)
        sc.check(
            f"{me}: chat history intact (one line, no duplicate)", view["lines"] == [view["lines"][0]] if view["lines"] else False, view["lines"]
        )
        sc.check(
            f"{me}: no 'left' line in the chat",
            not any(n.endswith(" left") for n in view["notices"]),
            view["notices"],
        )
        sc.check(f"{me}: no error banner", view["banner"] == [], view["banner"])
        remote = page.locator(".tile:not(.local)").count()
        stale = page.locator(".tile.stale").count()
        sc.check(f"{me}: one remote tile, not greyed", remote == 1 and stale == 0, {"tiles": remote, "stale": stale})
    try:
        code = owner.wait(20)
    except subprocess.TimeoutExpired:
        code = None
    sc.check("the drained node exits cleanly", code == 0, code)
    shot = sc.artifacts / "room-cluster-after-move.png"
    page_b.screenshot(path=str(shot))
    sc.info["screenshot"] = str(shot)
    print(f"screenshot: {shot}", flush=True)


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, run))
