"""Actors on a shared pool of threads: pykka's Actor model without a thread per actor.

A thread per actor makes 5,000 components cost 5,000 thread starts (about a millisecond each on
a 2-core machine). Here an actor with messages waiting is queued for the pool; a worker handles
its messages one at a time, so each actor still sees one message at a time, in order. The pool
grows when every worker is busy (a handler may block, e.g. a parent waiting for its child's
``deploy``), so blocking never starves other actors, and idle workers exit after a while.
"""

from __future__ import annotations

import collections
import itertools
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

import pykka
from pykka import ThreadingFuture
from pykka._envelope import Envelope

logger = logging.getLogger(__name__)

_BATCH: Final = 64
"""Messages an actor handles before its worker moves on to other actors (fairness)."""

_INLINE_DEPTH: Final = 16
"""Asks a worker runs one inside another on its own stack before it queues them instead (recursion)."""

_worker = threading.local()
"""On a pool worker: ``inline``, how many asks it is running on its stack (see :func:`ask`)."""


class WorkerPool:
    """A cached thread pool: a new worker when none is idle, idle workers exit after ``idle_timeout``."""

    def __init__(self, *, name: str, idle_timeout: float = 5.0) -> None:
        self._tasks: collections.deque[Callable[[], None]] = collections.deque()
        self._condition = threading.Condition()
        self._idle = 0
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._name = name
        self._idle_timeout = idle_timeout
        self._counter = itertools.count(1)

    def submit(self, task: Callable[[], None]) -> None:
        with self._condition:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            self._tasks.append(task)
            if self._idle >= len(self._tasks):
                self._condition.notify()
                return
            thread = threading.Thread(target=self._work, name=f"{self._name}-{next(self._counter)}", daemon=True)
            self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        current = threading.current_thread()
        _worker.inline = 0
        while True:
            with self._condition:
                while not self._tasks:
                    if self._closed:
                        self._threads.discard(current)
                        return
                    self._idle += 1
                    woken = self._condition.wait(self._idle_timeout)
                    self._idle -= 1
                    if not woken and not self._tasks:
                        self._threads.discard(current)
                        return
                task = self._tasks.popleft()
            try:
                task()
            except Exception:  # a task must never kill its worker
                logger.exception("task %r failed", task)
            del task  # an idle worker must not keep its last actor (and what that holds) alive

    @property
    def threads(self) -> int:
        with self._condition:
            return len(self._threads)

    def close(self, timeout: float) -> list[threading.Thread]:
        """Stop idle workers; wait up to ``timeout`` for busy ones; return those still running."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        return [t for t in threads if t.is_alive()]


class _Inbox:
    """An actor's mailbox that queues its actor on the pool when the first message arrives."""

    def __init__(self, actor: PooledActor) -> None:
        self._actor = actor
        self._messages: collections.deque[Envelope[Any]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, envelope: Envelope[Any], /) -> None:
        with self._lock:
            self._messages.append(envelope)
            if self._scheduled:
                return
            self._scheduled = True
        self._actor.pool.submit(self._actor._drain)

    def get(self) -> Envelope[Any]:
        with self._lock:
            return self._messages.popleft()

    def empty(self) -> bool:
        with self._lock:
            return not self._messages

    def take(self) -> Envelope[Any] | None:
        """The next message, or None (and the actor no longer scheduled) when there is none."""
        with self._lock:
            if self._messages:
                return self._messages.popleft()
            self._scheduled = False
            return None

    def claim_idle(self) -> bool:
        """Mark the actor scheduled if nothing runs or waits for it: the caller then runs its next message."""
        with self._lock:
            if self._scheduled or self._messages:
                return False
            self._scheduled = True
            return True

    def yield_turn(self) -> bool:
        """After a batch: True if the actor must be queued again."""
        with self._lock:
            if self._messages:
                return True
            self._scheduled = False
            return False


class PooledActor(pykka.Actor):
    """A pykka actor whose messages are handled by a :class:`WorkerPool` instead of its own thread.

    Set ``pool`` before calling ``super().__init__()``. Start it with :meth:`start_on_pool`
    (it is never put in pykka's process-wide ActorRegistry).
    """

    pool: WorkerPool

    def _create_actor_inbox(self) -> _Inbox:  # type: ignore[override]
        return _Inbox(self)

    @staticmethod
    def _create_future() -> ThreadingFuture[Any]:
        return ThreadingFuture()

    def _start_actor_loop(self) -> None:
        self._actor_loop_setup()

    def start_on_pool(self) -> pykka.ActorRef[Any]:
        self._start_actor_loop()
        return self.actor_ref

    def _drain(self) -> None:
        inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        for _ in range(_BATCH):
            if self.actor_stopped.is_set():
                self._actor_loop_teardown()
                inbox.take()
                return
            envelope = inbox.take()
            if envelope is None:
                return
            self._handle(envelope)
        if self.actor_stopped.is_set():
            self._actor_loop_teardown()
            return
        if inbox.yield_turn():
            self.pool.submit(self._drain)

    def handle_inline(self, message: object) -> Any:
        """Handle ``message`` on this thread, as a worker would, after :meth:`_Inbox.claim_idle`; its answer."""
        inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        _worker.inline += 1
        try:
            if self.actor_stopped.is_set():  # stopped since the asker looked
                raise pykka.ActorDeadError(f"{self.actor_ref} stopped before handling the message")
            return self._handle_receive(message)
        except Exception:
            raise  # the asker gets the exception, as through a future
        except BaseException:
            logger.exception("%s stopped by %s", self, sys.exc_info()[0])
            self._stop()
            raise
        finally:
            _worker.inline -= 1
            # What arrived meanwhile is a worker's, as after a batch in _drain.
            if self.actor_stopped.is_set():
                self._actor_loop_teardown()
                inbox.take()
            elif inbox.yield_turn():
                self.pool.submit(self._drain)

    def _handle(self, envelope: Envelope[Any]) -> None:
        # pykka's own loop body, minus the ActorRegistry.stop_all() on BaseException: one
        # System's trouble must never stop another System's actors.
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:  # noqa: BLE001 (as pykka: the asker gets the exception)
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:  # noqa: BLE001 (as pykka: logged, the actor stops)
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            logger.exception("%s stopped by %s", self, sys.exc_info()[0])
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            self._stop()


def ask(actor: PooledActor, message: object, timeout: float | None = None) -> Any:
    """``actor.actor_ref.ask(message)``, run on the caller's thread when that changes nothing but the thread.

    A pool worker that asks and waits would sit idle while another worker wakes up, handles the
    message and wakes it again: two thread switches, most of a local ask's cost. When the asker
    is a worker with no time limit and the actor is idle (nothing queued, nobody handling it), the
    worker handles the message itself instead: the actor still sees one message at a time, in
    order, and the asker still waits for the answer or the exception. Asks nested deeper than
    ``_INLINE_DEPTH`` are queued as usual, so a deep tree cannot exhaust the stack.
    """
    if (timeout is None and getattr(_worker, "inline", _INLINE_DEPTH) < _INLINE_DEPTH
            and not actor.actor_stopped.is_set()):
        inbox: _Inbox = actor.actor_inbox  # type: ignore[assignment]
        if inbox.claim_idle():
            return actor.handle_inline(message)
    return actor.actor_ref.ask(message, timeout=timeout)
