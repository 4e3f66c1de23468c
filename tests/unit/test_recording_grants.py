"""`--record-dir`, the canRecord grant (`sfu-server token --can-record`) and the
`recording` request's validation."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from sfu.errors import SfuError
from signaling.auth import mint_token, verify_token
from signaling.cli import ConfigError, parse_config, token_command
from signaling.validation import parse_recording

SECRET = "test-secret-0123456789abcdef0123456789"


def test_record_dir_flag(tmp_path: Path) -> None:
    assert parse_config([]).sfu.record_dir is None
    assert parse_config(["--record-dir", str(tmp_path)]).sfu.record_dir == tmp_path
    not_dir = tmp_path / "f"
    not_dir.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        parse_config(["--record-dir", str(not_dir)])


def test_can_record_grant_round_trip() -> None:
    plain = token_command(["--room", "r", "--name", "n", "--jwt-secret", SECRET])
    granted = token_command(["--room", "r", "--name", "n", "--jwt-secret", SECRET, "--can-record"])
    assert verify_token(SECRET, {"token": plain}).can_record is False
    assert verify_token(SECRET, {"token": granted}).can_record is True
    assert verify_token(SECRET, {"token": mint_token(SECRET, "r", "n")}).can_record is False


def test_non_boolean_can_record_is_refused() -> None:
    claims = jwt.decode(mint_token(SECRET, "r", "n"), SECRET, algorithms=["HS256"])
    bad = jwt.encode({**claims, "canRecord": "yes"}, SECRET, algorithm="HS256")
    with pytest.raises(SfuError, match="canRecord"):
        verify_token(SECRET, {"token": bad})


@pytest.mark.parametrize("data", [None, [], {}, {"active": 1}, {"active": "true"}])
def test_recording_request_validation(data: object) -> None:
    with pytest.raises(SfuError) as exc:
        parse_recording(data)
    assert exc.value.code == "bad_request"
    assert parse_recording({"active": True}) is True
