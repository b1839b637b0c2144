"""Fixtures of the integration tests: runtimes opened on the test's database.

``database_url`` / ``pg_database_url`` come from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infrastructure.runtime import Runtime
from tests.integration.helpers import runtime_on

OpenRuntime = Callable[..., Runtime]


@pytest.fixture
def open_rt() -> Iterator[OpenRuntime]:
    """``open_rt(url, **settings)`` opens a runtime; every one still open is closed afterwards."""
    opened: list[Runtime] = []

    def open_(url: str, **settings: Any) -> Runtime:
        opened.append(runtime_on(url, **settings))
        return opened[-1]

    yield open_
    for runtime in reversed(opened):
        runtime.close()
