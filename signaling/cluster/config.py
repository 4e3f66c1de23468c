"""Settings of cluster mode (`ClusterConfig`), built by the CLI from `--redis-url`,
`--node-id` and `--public-url` (PROTOCOL.md "Cluster")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where Redis is, who this node is, and the timing of records and claims.

    A node refreshes its record every `heartbeat_interval` s; the record expires after
    `node_ttl` s without a refresh (a dead node). A room claim expires after `claim_ttl` s
    unless its owner renews it (each heartbeat). Chat history keeps the last `chat_size`
    messages of a room for `chat_ttl` s after the last message.
    """

    redis_url: str
    node_id: str
    public_url: str
    heartbeat_interval: float = 2.0
    node_ttl: float = 5.0
    claim_ttl: float = 10.0
    chat_size: int = 100
    chat_ttl: float = 7 * 86400.0
    key_prefix: str = "sfu:"
    connect_timeout: float = 2.0

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ValueError("node id must not be empty")
        if self.node_ttl <= self.heartbeat_interval:
            raise ValueError("node_ttl must be longer than heartbeat_interval")
