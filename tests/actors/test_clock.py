"""RealClock: callbacks run on its thread, in time order, an earlier one never held up by a later one."""

from __future__ import annotations

import threading

from sd_actors.actors._clock import RealClock


def test_a_callback_due_sooner_than_those_waiting_runs_first() -> None:
    clock = RealClock()
    ran: list[str] = []
    soon = threading.Event()
    try:
        late = clock.call_later(3600, lambda: ran.append("late"))
        for index in range(3):  # due after the first: the thread needs no waking for these
            clock.call_later(3600 + index, lambda: ran.append("later"))
        clock.call_later(0.01, lambda: (ran.append("soon"), soon.set()))

        assert soon.wait(10), "the callback due in 10 ms waited behind the one due in an hour"
        assert ran == ["soon"]
        late.cancel()
    finally:
        clock.close()


def test_callbacks_run_in_the_order_they_are_due_on_the_clocks_thread() -> None:
    clock = RealClock(name="test-clock")
    ran: list[tuple[int, str]] = []
    done = threading.Event()
    try:
        for index, delay in enumerate((0.03, 0.01, 0.02)):
            clock.call_later(delay, lambda index=index: ran.append((index, threading.current_thread().name)))
        clock.call_later(0.05, done.set)

        assert done.wait(10)
        assert ran == [(1, "test-clock"), (2, "test-clock"), (0, "test-clock")]
    finally:
        clock.close()
