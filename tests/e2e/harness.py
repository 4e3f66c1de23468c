"""Shared pieces of the browser end-to-end tests: tool checks, the loopback-only network
namespace, the server subprocess (``benchmarks.servers.ServerProcess``) and Chromium's
flags.

Used from two sides: by pytest (``conftest.py``, outside the namespace) to decide whether
the tests can run, to start a scenario inside a namespace and to assert on its result
(``assert_scenario``), and by the scenario modules (inside the namespace, run as
``python -m tests.e2e.scenario_x`` from the repository root) to start the server and the
browser (``launch_chromium``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.servers import ServerProcess
from benchmarks.servers import free_port as free_port  # re-exported for the scenarios

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NETNS = HERE / "run_in_netns.sh"
ARTIFACTS = REPO / "test-artifacts"

CHROMIUM = os.environ.get("SFU_CHROMIUM", "/usr/bin/chromium")

# ARCHITECTURE.md "Testing without leaving loopback". Never --disable-features (it would
# replace Playwright's own) nor --user-data-dir (use contexts).
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-sandbox",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]


def missing_tools() -> list[str]:
    """What the browser tests need and this machine lacks (empty: all there)."""
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium, or set SFU_CHROMIUM)")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` (util-linux / iproute2)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install -e '.[dev]')")
    if not missing:
        probe = subprocess.run(
            [str(NETNS), "true"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode != 0:
            missing.append(
                "a loopback-only network namespace (unshare --net failed: "
                f"{probe.stderr.strip() or probe.returncode}; "
                "run as root or enable user namespaces)"
            )
    return missing


def run_scenario(script: str, out_dir: Path, timeout: float, *args: str) -> dict[str, Any]:
    """Run the scenario ``tests/e2e/<script>`` (``scenario_x.py`` or ``scenario_x``) as the
    module ``tests.e2e.scenario_x`` from the repository root, inside a fresh loopback-only
    namespace, and return the JSON result it wrote (plus its exit status and output)."""
    result_file = out_dir / "result.json"
    module = "tests.e2e." + script.removesuffix(".py")
    cmd = [
        str(NETNS),
        sys.executable,
        "-m",
        module,
        "--out",
        str(result_file),
        "--artifacts",
        str(ARTIFACTS),
        *args,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = -1
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr) + f"\nscenario timed out after {timeout} s"
    data: dict[str, Any]
    try:
        data = json.loads(result_file.read_text())
    except (OSError, ValueError) as exc:
        data = {"ok": False, "checks": {}, "error": f"no result file: {exc}"}
    data["returncode"] = rc
    data["stdout"] = stdout[-20000:]
    data["stderr"] = stderr[-20000:]
    return data


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


@contextlib.contextmanager
def sfu_server(log_path: Path, *extra: str, port: int | None = None) -> Iterator[str]:
    """Start ``sfu-server`` on 127.0.0.1 (ICE on 127.0.0.1 only) as a subprocess
    (``benchmarks.servers.ServerProcess``; it dies with the scenario process); yield its
    URL once /healthz answers; stop it afterwards."""
    with ServerProcess(
        *extra,
        port=port,
        log_path=log_path,
        inherit_sfu_env=True,
        die_with_parent=True,
        stop_timeout=10.0,
    ) as server:
        yield server.url


def in_netns() -> bool:
    """True when the only network interface is loopback (we are inside the namespace)."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return False
    return names == ["lo"]


async def apoll(
    fn: Callable[[], Awaitable[Any]],
    pred: Callable[[Any], bool],
    timeout: float,
    every: float = 0.5,
) -> tuple[bool, Any]:
    """Await ``fn`` until ``pred`` holds or the deadline passes (an exception counts as
    "not yet": a page mid-update); return (ok, last value). The async ``poll``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await fn()
            if pred(last):
                return True, last
        except Exception as exc:
            last = {"exception": repr(exc)}
        if time.monotonic() > deadline:
            return False, last
        await asyncio.sleep(every)


def launch_chromium(pw: Any, args: Sequence[str] = CHROMIUM_ARGS) -> Any:
    """Launch headless ``CHROMIUM`` with ``args`` (default ``CHROMIUM_ARGS``) from a
    Playwright instance, sync or async (then await the result)."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=list(args), headless=True)


def explain(result: dict[str, Any]) -> str:
    """A readable failure message: failed checks, then the scenario's own output."""
    lines = []
    for name, check in result.get("checks", {}).items():
        if not check["ok"]:
            lines.append(f"FAILED {name}: {check['detail']}")
    if result.get("error"):
        lines.append(f"scenario error:\n{result['error']}")
    lines.append(f"exit status: {result.get('returncode')}")
    errors = result.get("info", {}).get("console_errors")
    if errors:
        lines.append(f"browser console errors: {errors}")
    lines.append("--- scenario stdout ---\n" + result.get("stdout", "")[-6000:])
    lines.append("--- scenario stderr ---\n" + result.get("stderr", "")[-6000:])
    return "\n".join(lines)


def assert_scenario(
    result: dict[str, Any],
    expected_checks: Iterable[str] = (),
    *,
    screenshot: str | None = None,
    screenshots: Iterable[str] = (),
) -> None:
    """The pytest side of a scenario: it passed (else ``explain``), it really ran every
    expected step (a silently skipped step is a failure too), it ran inside the
    loopback-only namespace, and it wrote its screenshots: ``screenshot`` describes the one
    at ``info["screenshot"]`` (its path is printed first, pass or fail); ``screenshots``
    names files in ``ARTIFACTS`` listed in ``info["screenshots"]``."""
    info = result.get("info", {})
    if screenshot is not None and info.get("screenshot"):
        print(f"\nscreenshot of {screenshot}: {info['screenshot']}")
    assert result.get("ok"), explain(result)
    checks = result.get("checks", {})
    for name in expected_checks:
        assert name in checks, f"missing check {name!r}"
    if screenshot is not None:
        path = info.get("screenshot")
        assert path and Path(path).is_file(), f"missing screenshot of {screenshot}"
    shots = info.get("screenshots", {})
    for name in screenshots:
        assert name in shots and (ARTIFACTS / name).is_file(), f"missing screenshot {name}"
    assert info.get("in_netns") is True


class Scenario:
    """One scenario run: named checks (printed as they happen), extra info and browser
    console lines, written as the JSON result the pytest side asserts on."""

    def __init__(self, out: Path, artifacts: Path) -> None:
        self.out = out
        self.artifacts = artifacts
        self.checks: dict[str, dict[str, Any]] = {}
        self.console: dict[str, list[str]] = {}
        self.info: dict[str, Any] = {}

    def check(self, name: str, ok: bool, detail: Any) -> bool:
        self.checks[name] = {"ok": bool(ok), "detail": detail}
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {json.dumps(detail)[:400]}", flush=True)
        return ok

    def follow_console(self, page: Any, name: str) -> list[str]:
        """Keep ``page``'s console lines and uncaught errors under ``console[name]``."""
        log = self.console.setdefault(name, [])
        page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
        return log

    def write(self, error: str | None = None) -> bool:
        ok = error is None and bool(self.checks) and all(c["ok"] for c in self.checks.values())
        result = {
            "ok": ok,
            "error": error,
            "checks": self.checks,
            "info": self.info,
            "console": self.console,
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(result, indent=2, default=str))
        return ok


def scenario_main(doc: str | None, run: Callable[[Scenario], None]) -> int:
    """Command line of a scenario module: note whether it runs inside the loopback-only
    namespace (``info["in_netns"]``), run it, write its JSON result, exit 0 if ok."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    parser.add_argument("--artifacts", type=Path, default=Path("test-artifacts"))
    args = parser.parse_args()
    sc = Scenario(args.out, args.artifacts)
    sc.info["in_netns"] = in_netns()
    error = None
    try:
        run(sc)
    except Exception:
        error = traceback.format_exc()
        print(error, file=sys.stderr, flush=True)
    return 0 if sc.write(error) else 1
