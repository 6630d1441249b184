"""Bearer-token checks, client-address rules and the token fingerprint used by the audit log."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress


def bearer_token(header: str | None) -> str | None:
    """The token of 'Bearer <token>' (scheme case-insensitive, RFC 7235), else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant time over fixed-length SHA-256 digests: neither content nor length leaks."""
    given = hashlib.sha256((presented or "").encode()).digest()
    want = hashlib.sha256(expected.encode()).digest()
    return hmac.compare_digest(given, want) and presented is not None


def fingerprint(token: str | None) -> str:
    """First 8 hex of SHA-256, enough to tell tokens apart in an audit log without leaking them."""
    if not token:
        return "anonymous"
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback
