"""Time for the runtime: a real clock with one timer thread, and a fake one tests advance by hand."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

_COMPACT_ABOVE: Final = 64
"""A heap this long or longer is compacted when more than half of it is cancelled timers."""


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the runtime needs of time. Injected into a System, never read from a global."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once, ``delay`` seconds from now, on the clock's own thread."""
        ...

    def close(self) -> None:
        """Stop the clock's thread; pending callbacks are dropped."""
        ...


def _nothing() -> None:
    """What a cancelled timer calls instead of its callback (it may already be on its way to run)."""


class _Entry:
    __slots__ = ("when", "order", "callback", "cancelled", "_schedule")

    def __init__(self, when: float, order: int, callback: Callable[[], None], schedule: _Schedule) -> None:
        self.when = when
        self.order = order
        self.callback = callback
        self.cancelled = False
        self._schedule: _Schedule | None = schedule
        """While the entry is in its schedule's heap."""

    def __lt__(self, other: _Entry) -> bool:
        return (self.when, self.order) < (other.when, other.order)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # Let go of the callback now, not at its due time: it holds what it would have run on (a
        # component, its actor), and a VM's liveness poll may be due long after the VM ended.
        self.callback = _nothing
        schedule = self._schedule
        if schedule is not None:
            schedule.cancelled += 1


class _Schedule:
    """A heap of timed callbacks shared by both clocks.

    Its clock's lock guards it, except ``cancelled``: timers are cancelled from any thread without
    that lock, so the count may lag behind; it only decides when the heap is worth compacting.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._order = itertools.count()
        self.cancelled = 0
        """Cancelled entries still in the heap (about: see the class)."""

    def add(self, when: float, callback: Callable[[], None]) -> _Entry:
        if len(self._heap) >= _COMPACT_ABOVE and self.cancelled * 2 > len(self._heap):
            self._compact()
        entry = _Entry(when, next(self._order), callback, self)
        heapq.heappush(self._heap, entry)
        return entry

    def _compact(self) -> None:
        """Drop every cancelled entry at once (they would otherwise stay until they are due)."""
        self._heap = [entry for entry in self._heap if not entry.cancelled]
        heapq.heapify(self._heap)
        self.cancelled = 0

    def _pop(self) -> _Entry:
        entry = heapq.heappop(self._heap)
        entry._schedule = None
        if entry.cancelled:
            self.cancelled = max(self.cancelled - 1, 0)
        return entry

    def pop_due(self, now: float) -> _Entry | None:
        while self._heap and self._heap[0].cancelled:
            self._pop()
        if self._heap and self._heap[0].when <= now:
            return self._pop()
        return None

    def first(self) -> _Entry | None:
        """The entry due first (perhaps cancelled)."""
        return self._heap[0] if self._heap else None

    def next_time(self) -> float | None:
        while self._heap and self._heap[0].cancelled:
            self._pop()
        return self._heap[0].when if self._heap else None

    def clear(self) -> None:
        for entry in self._heap:
            entry._schedule = None
        self._heap.clear()
        self.cancelled = 0


class RealClock:
    """``time.monotonic`` with one daemon timer thread, started on first use."""

    def __init__(self, *, name: str = "sd-actors-clock") -> None:
        self._schedule = _Schedule()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._name = name

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        with self._condition:
            if self._closed:
                raise RuntimeError("the clock is closed")
            entry = self._schedule.add(time.monotonic() + max(delay, 0.0), callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            if self._schedule.first() is entry:  # the thread sleeps until the first: only an earlier one wakes it
                self._condition.notify()
            return entry

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._closed:
                        return
                    entry = self._schedule.pop_due(time.monotonic())
                    if entry is not None:
                        break
                    next_time = self._schedule.next_time()
                    self._condition.wait(None if next_time is None else max(next_time - time.monotonic(), 0))
            entry.callback()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._schedule.clear()
            self._condition.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class FakeClock:
    """A clock that only moves when a test calls :meth:`advance`; callbacks run in ``advance``."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._schedule = _Schedule()
        self._lock = threading.RLock()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        with self._lock:
            return self._schedule.add(self._now + max(delay, 0.0), callback)

    def advance(self, seconds: float) -> None:
        """Move time forward, running every callback that falls due, in time order."""
        with self._lock:
            target = self._now + seconds
            while True:
                entry = self._schedule.pop_due(target)
                if entry is None:
                    break
                self._now = max(self._now, entry.when)
                entry.callback()
            self._now = target

    def close(self) -> None:
        with self._lock:
            self._schedule.clear()
