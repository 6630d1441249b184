"""Raw 16-byte kernel addresses to text, cached: a node talks to few distinct peers."""

from __future__ import annotations

import ipaddress

AF_INET, AF_INET6 = 2, 10


def format_addr(raw: bytes, family: int) -> str:
    """IPv4 from the first 4 bytes, IPv6 (v4-mapped shown as IPv4); '' for other families."""
    if family == AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == AF_INET6:
        v6 = ipaddress.IPv6Address(raw)
        return str(v6.ipv4_mapped) if v6.ipv4_mapped else str(v6)
    return ""


class AddressCache:
    """format_addr with a bounded memo (cleared when full: cheap, and peers repeat)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.cache: dict[tuple[bytes, int], str] = {}  # read directly by hot loops: hit = one dict get
        self._max = max_entries

    def __call__(self, raw: bytes, family: int) -> str:
        key = (raw, family)
        got = self.cache.get(key)
        if got is None:
            if len(self.cache) >= self._max:
                self.cache.clear()
            got = self.cache[key] = format_addr(raw, family)
        return got

    def __len__(self) -> int:
        return len(self.cache)
