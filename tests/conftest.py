"""Shared fixtures: one embedded broker per test session (per xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vigil.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A real Tansu broker on a free port, stopped at the end of the session."""
    with EmbeddedBroker() as running:
        yield running
