"""Enrichment belongs to the discovery feature: `-k discovery` selects these tests too."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/unit/enrich/" in str(item.path):
            item.extra_keyword_matches.add("discovery")
