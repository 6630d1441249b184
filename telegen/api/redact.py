"""Secret redaction for /config: by key name over the whole tree, and every otlp.headers value."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(r"token|password|passwd|secret|key|credential|authorization", re.IGNORECASE)
_NOT_SECRET = re.compile(r"keepalive", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(_NOT_SECRET.sub("", name)))


def redact(tree: Any, path: str = "") -> Any:
    """A copy of tree with secrets replaced; lists are walked too (they hold mappings)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            child = f"{path}.{key}" if path else str(key)
            if path == "otlp.headers" or is_secret_key(str(key)):
                out[key] = REDACTED
            else:
                out[key] = redact(value, child)
        return out
    if isinstance(tree, list | tuple):
        return [redact(item, path) for item in tree]
    return tree
