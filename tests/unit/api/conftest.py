"""Fixtures for the API tests: a running server with a fake agent behind it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from telegen.api import ApiServer
from tests.unit.api.fake_control import FakeControl
from tests.unit.api.helpers import Client, running


@pytest.fixture
def api() -> Iterator[tuple[Client, ApiServer, FakeControl]]:
    with running() as trio:
        yield trio


@pytest.fixture
def client(api: tuple[Client, ApiServer, FakeControl]) -> Client:
    return api[0]
