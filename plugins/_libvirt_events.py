"""libvirt's event loop: the one piece of process-wide state sd-actors keeps, because libvirt does.

libvirt delivers domain events (a guest stopped, crashed, …) only through an event loop
implementation registered with the C library itself, for the whole process:
``virEventRegisterDefaultImpl`` must be called once, before the connections that want events are
opened, and some thread must then run ``virEventRunDefaultImpl`` forever. There is no way to give
each System a loop of its own, so the first connection opened through :func:`open_connection`
registers the loop and starts its thread; every later one, from any System, shares it. The thread
is a daemon thread that lives as long as the process (libvirt cannot unregister the loop).

Callbacks run on that thread: a component must hand them to its own actor thread
(``context.call_soon``) before touching its state.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

import libvirt

logger = logging.getLogger(__name__)

EVENT_THREAD_NAME: Final = "sd-actors-libvirt-events"

# Process-wide because libvirt's event loop is (see the module's docstring). Guarded by the lock.
_LOCK: Final = threading.Lock()
_STARTED: Final[list[threading.Thread]] = []


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and start the thread that runs it, once per process."""
    with _LOCK:
        if _STARTED:
            return
        # libvirt prints every error to stderr unless a handler is set; sd-actors reports them
        # itself, from the libvirtError each failing call raises. Also process-wide in libvirt.
        libvirt.registerErrorHandler(_ignore_error, None)
        libvirt.virEventRegisterDefaultImpl()
        thread = threading.Thread(target=_run_event_loop, name=EVENT_THREAD_NAME, daemon=True)
        thread.start()
        _STARTED.append(thread)


def open_connection(uri: str) -> libvirt.virConnect:
    """Open a read-write connection to the hypervisor at ``uri``, with domain events working.

    :raises libvirt.libvirtError: when libvirt cannot connect (unknown driver, no daemon, …).
    """
    ensure_event_loop()
    return libvirt.open(uri)


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # one bad callback must not stop event delivery for the whole process
            logger.exception("libvirt event loop: a callback raised")


def _ignore_error(_context: object, _error: object) -> None:
    return None
