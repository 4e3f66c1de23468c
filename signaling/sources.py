"""Moved to `signaling.client.sources`; import from `signaling.client` instead."""

from signaling.client.sources import *  # noqa: F403
from signaling.client.sources import __all__  # noqa: F401
