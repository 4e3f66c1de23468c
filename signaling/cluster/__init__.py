"""Cluster mode (`--redis-url`): many sfu-server nodes share one Redis.

A room lives on exactly one node; Redis holds who owns which room (`directory`), which
nodes are alive (`registry`), the rooms' recent chat (`chat_store`) and nothing else.
Signaling never crosses nodes: a join for a room owned elsewhere is answered with the
error `moved` (and `GET /room/<room>` with 307), and the client goes there itself.
`ClusterNode` (`node.py`) ties the parts together for one server process;
`supervisor.py` runs `--workers N` node processes on one box.
"""

from signaling.cluster.config import ClusterConfig
from signaling.cluster.node import ClusterNode, MovedError

__all__ = ["ClusterConfig", "ClusterNode", "MovedError"]
