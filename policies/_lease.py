"""The lease a daemon holds while a majority of the pool answers it.

A daemon may run components that an HARestarter would restart elsewhere (they carry
``haGeneration``) only while it holds its lease. Its heartbeats are requests that every peer
answers; when a majority of the pool (itself included) answered heartbeats sent at or after time
``s``, the lease runs until ``s + duration``. Sending times, not answer times, count: the peers
heard the daemon no earlier than that. A daemon whose lease has less than ``fence_before`` seconds
left stops those components (self-fencing), so they are gone before the lease runs out; the others
restart them only once they have heard nothing from it for longer than the lease. A check that
comes after the fence time the previous one computed (the daemon was frozen) counts the lease lost
whatever the peers answered since: the daemon fences (``policies/_high_availability.py``). A daemon that
cannot fence (killed, frozen) has its host watchdog do it (``policies/_watchdog.py``), and a
daemon restarted on the same folder continues the lease its previous run held, as the watchdog
heard it: the lease belongs to the daemon's address, whose heartbeats renewed it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def lease_expiry(*, now: float, acknowledged: Iterable[float | None], electorate: int, duration: float) -> float:
    """When the lease runs out, on the daemon's monotonic clock (``-inf``: it holds none).

    :param now: the daemon's clock now (its own heartbeat is always answered).
    :param acknowledged: for each *other* member of the pool, when the newest heartbeat it answered
        was sent (None: never).
    :param electorate: how many daemons the pool has, this one included.
    :param duration: how long a renewal holds, in seconds.
    """
    others_needed = electorate // 2  # a strict majority is electorate // 2 + 1, this daemon included
    if others_needed == 0:
        return now + duration
    sends = sorted((s for s in acknowledged if s is not None), reverse=True)
    if len(sends) < others_needed:
        return -math.inf
    return sends[others_needed - 1] + duration


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseTerms:
    """How long a lease holds and how early before its end a daemon fences itself."""

    duration: float
    fence_before: float
    margin: float
    """How much longer than ``duration`` the others wait after the last news of a daemon before
    they restart what it ran; also the longest a round of grants may take."""

    @classmethod
    def for_dead_after(cls, dead_after: float) -> LeaseTerms:
        """The terms of a pool whose members are dead after ``dead_after`` seconds of silence: the
        lease is that long, so a daemon is out of its lease when the others call it dead."""
        return cls(duration=dead_after, fence_before=dead_after / 2, margin=dead_after / 4)
