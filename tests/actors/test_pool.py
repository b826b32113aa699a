"""The worker pool's actors: one message at a time, in order; asks between actors on the asker's thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from sd_actors.actors._pool import PooledActor, WorkerPool, ask


class Recorder(PooledActor):
    """Runs the functions it is sent; records the thread and the order it ran them in."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        super().__init__()
        self.handled: list[str] = []

    def on_receive(self, message: Any) -> Any:
        label, function = message
        self.handled.append(label)
        return function()


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(name="test-pool", idle_timeout=1.0)
    yield workers
    assert workers.close(10.0) == []


def start(pool: WorkerPool) -> Recorder:
    actor = Recorder(pool)
    actor.start_on_pool()
    return actor


def from_worker(pool: WorkerPool, function: Callable[[], Any]) -> Any:
    """``function()`` run by an actor of ``pool`` (as a component asking its child would); its result."""
    return start(pool).actor_ref.ask(("from a worker", function), timeout=10)


def test_an_ask_from_a_worker_to_an_idle_actor_runs_on_the_askers_thread(pool: WorkerPool) -> None:
    child = start(pool)

    def parent() -> tuple[threading.Thread, threading.Thread]:
        asker = threading.current_thread()
        return asker, ask(child, ("where", threading.current_thread))

    asker, handler = from_worker(pool, parent)
    assert handler is asker
    assert child.handled == ["where"]


def test_an_exception_reaches_the_asker_and_the_actor_goes_on(pool: WorkerPool) -> None:
    child = start(pool)

    def fail() -> None:
        raise ValueError("bad step")

    def parent() -> str:
        with pytest.raises(ValueError, match="bad step"):
            ask(child, ("fail", fail))
        return str(ask(child, ("after", lambda: "still here")))

    assert from_worker(pool, parent) == "still here"


def test_a_busy_actor_gets_the_ask_queued_after_what_it_already_has(pool: WorkerPool) -> None:
    child = start(pool)
    release = threading.Event()
    running = threading.Event()

    def block() -> None:
        running.set()
        release.wait(10)

    child.actor_ref.tell(("busy", block))
    assert running.wait(10)

    def parent() -> threading.Thread:
        return ask(child, ("queued", threading.current_thread))  # type: ignore[no-any-return]

    answer = start(pool).actor_ref.ask(("parent", parent), block=False)
    release.set()
    handler = answer.get(timeout=10)
    assert child.handled == ["busy", "queued"]
    assert handler.name.startswith("test-pool")


def test_messages_that_arrive_during_an_inline_ask_are_handled_afterwards_in_order(pool: WorkerPool) -> None:
    child = start(pool)
    later: list[pykka.Future[Any]] = []

    def meanwhile() -> str:
        # Others send to the child while it handles the ask on the asker's thread.
        later.extend(child.actor_ref.ask((f"later {index}", lambda: None), block=False) for index in range(3))
        return "first"

    assert from_worker(pool, lambda: ask(child, ("first", meanwhile))) == "first"
    for future in later:
        future.get(timeout=10)
    assert child.handled == ["first", "later 0", "later 1", "later 2"]


def test_a_deep_chain_of_asks_needs_no_deep_stack(pool: WorkerPool) -> None:
    chain = [start(pool) for _ in range(200)]

    def down(index: int) -> int:
        if index == len(chain):
            return index
        return ask(chain[index], (f"step {index}", lambda: down(index + 1)))  # type: ignore[no-any-return]

    assert from_worker(pool, lambda: down(0)) == len(chain)
    assert all(actor.handled == [f"step {index}"] for index, actor in enumerate(chain))


def test_asks_with_a_time_limit_and_asks_from_other_threads_are_queued(pool: WorkerPool) -> None:
    child = start(pool)
    assert ask(child, ("from the test's thread", threading.current_thread)) is not threading.current_thread()
    asker, handler = from_worker(pool, lambda: (threading.current_thread(),
                                                ask(child, ("limited", threading.current_thread), timeout=10)))
    assert handler is not asker


def test_an_ask_to_a_stopped_actor_says_it_is_dead(pool: WorkerPool) -> None:
    child = start(pool)
    child.actor_ref.stop()
    with pytest.raises(pykka.ActorDeadError):
        from_worker(pool, lambda: ask(child, ("too late", lambda: None)))
