"""`sfu-server --event-loop auto|asyncio|uvloop` (and `SFU_EVENT_LOOP`)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from signaling import cli

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_default_is_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFU_EVENT_LOOP", raising=False)
    assert cli.parse_event_loop([]) == ("uvloop" if HAVE_UVLOOP else "asyncio")
    assert cli.parse_event_loop(["--event-loop", "asyncio"]) == "asyncio"
    monkeypatch.setenv("SFU_EVENT_LOOP", "asyncio")
    assert cli.parse_event_loop([]) == "asyncio"


def test_fallback_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFU_EVENT_LOOP", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name)
    )
    assert cli.parse_event_loop([]) == "asyncio"
    with pytest.raises(cli.ConfigError):
        cli.parse_event_loop(["--event-loop", "uvloop"])


def test_bad_value_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--event-loop", "trio"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--event-loop must be one of auto, asyncio, uvloop" in err


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed")
def test_new_event_loop_kinds() -> None:
    for kind, module in (("uvloop", "uvloop"), ("asyncio", "asyncio")):
        loop = cli.new_event_loop(kind)
        try:
            assert type(loop).__module__.split(".")[0] == module
            assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
        finally:
            loop.close()


def test_send_path_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFU_SEND_PATH", raising=False)
    assert cli.parse_config([]).sfu.send_path == "lean"
    assert cli.parse_config(["--send-path", "stock"]).sfu.send_path == "stock"
    monkeypatch.setenv("SFU_SEND_PATH", "stock")
    assert cli.parse_config([]).sfu.send_path == "stock"
    assert cli.parse_config(["--send-path", "lean"]).sfu.send_path == "lean"


def test_bad_send_path_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SFU_SEND_PATH", "fast")
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--send-path must be one of lean, stock" in err


def test_receive_path_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFU_RECEIVE_PATH", raising=False)
    assert cli.parse_config([]).sfu.receive_path == "lean"
    assert cli.parse_config(["--receive-path", "stock"]).sfu.receive_path == "stock"
    monkeypatch.setenv("SFU_RECEIVE_PATH", "stock")
    assert cli.parse_config([]).sfu.receive_path == "stock"
    assert cli.parse_config(["--receive-path", "lean"]).sfu.receive_path == "lean"


def test_bad_receive_path_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SFU_RECEIVE_PATH", "fast")
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--receive-path must be one of lean, stock" in err


def test_tune_garbage_collector() -> None:
    import gc

    threshold = gc.get_threshold()
    try:
        cli.tune_garbage_collector()
        assert gc.get_threshold()[0] >= cli.GC_GEN0_THRESHOLD
        assert gc.get_threshold()[1:] == threshold[1:]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
