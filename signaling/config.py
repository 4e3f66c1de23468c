"""Server configuration (`ServerConfig`): HTTP/TLS settings plus the media core's `SfuConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sfu.config import SfuConfig
from signaling.cluster.config import ClusterConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `create_app` needs; built by the CLI or directly by tests."""

    host: str = "127.0.0.1"
    port: int = 8080
    sfu: SfuConfig = field(default_factory=SfuConfig)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    admin_token: str | None = None
    jwt_secret: str | None = None
    log_level: str = "INFO"
    web_root: Path = PROJECT_ROOT / "web"
    vendor_root: Path = PROJECT_ROOT / "node_modules"
    max_http_buffer_size: int = 256 * 1024
    cors_allowed_origins: tuple[str, ...] = ()
    stats_interval: float = 1.0
    join_burst: int = 100
    join_per_second: float = 50.0
    turn_secret: str | None = None
    turn_urls: tuple[str, ...] = ()
    turn_ttl: float = 86400.0
    self_signed: bool = False
    #: cluster mode (`--redis-url`); None = one node, no Redis
    cluster: ClusterConfig | None = None
    #: `--workers N`: the CLI runs N node processes under a supervisor (one box)
    workers: int = 1
