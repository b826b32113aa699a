"""pytest fixtures for simulated hosts.

A test module that needs them says ``pytest_plugins = ["tests.hosts.fixtures"]``; tests that
make their own hosts with ``open_test_hosts`` ask for ``requires_netns`` to be skipped, with the
reason, where hosts cannot be made.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hosts._netns import TestHosts, netns_unavailable_reason, open_test_hosts


@pytest.fixture(scope="session")
def requires_netns() -> None:
    """Skip, saying why, unless this machine can make simulated hosts (checked once per session)."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def test_hosts(requires_netns: None) -> Iterator[TestHosts]:
    """Three simulated hosts h1, h2, h3, removed with everything they started after the test."""
    with open_test_hosts(3) as hosts:
        yield hosts
