"""Which host addresses ICE gathers on (aioice skips 127.0.0.1 by itself).

aioice has no per-connection setting for this, so the policy replaces
`aioice.ice.get_host_addresses` for the process while installed. `IcePolicy` owns that
replacement and restores the original on `uninstall()` (idempotent).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

import aioice.ice

logger = logging.getLogger(__name__)

HostAddresses = Callable[[bool, bool], list[str]]


def validate_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    """Return the addresses normalised; raise ValueError on anything not an IP address."""
    out: list[str] = []
    for address in addresses:
        try:
            out.append(str(ipaddress.ip_address(address.strip())))
        except ValueError:
            raise ValueError(f"not an IP address: {address!r}") from None
    return tuple(out)


class IcePolicy:
    """Restricts ICE host candidates to a fixed list of addresses (empty: aioice default)."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.addresses = validate_addresses(addresses)
        self._original: HostAddresses | None = None

    def install(self) -> None:
        if not self.addresses or self._original is not None:
            return
        self._original = aioice.ice.get_host_addresses
        addresses = list(self.addresses)

        def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [
                a
                for a in addresses
                if (use_ipv4 and ipaddress.ip_address(a).version == 4)
                or (use_ipv6 and ipaddress.ip_address(a).version == 6)
            ]

        setattr(aioice.ice, "get_host_addresses", host_addresses)  # noqa: B010
        logger.info("ICE gathers host candidates on %s only", ", ".join(addresses))

    def uninstall(self) -> None:
        if self._original is not None:
            setattr(aioice.ice, "get_host_addresses", self._original)  # noqa: B010
            self._original = None
