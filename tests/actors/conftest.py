"""Fixtures shared by the runtime's tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    """Fail the test when a thread it started is still alive once it is over.

    A System starts worker, clock and deploy threads; closing it must end every one of them
    (the issue: "no thread outlives a System"). Opt in with
    ``pytestmark = pytest.mark.usefixtures("no_leftover_threads")``, or request it from the
    fixture that opens the System so that it is checked after the System closed.
    """
    before = set(threading.enumerate())

    yield

    leftover = sorted(thread.name for thread in threading.enumerate() if thread not in before and thread.is_alive())
    assert not leftover, f"threads outlived the test's System: {', '.join(leftover)}"
