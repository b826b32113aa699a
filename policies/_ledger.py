"""The restart ledger: who may restart a component, agreed by a majority of the pool.

Each daemon keeps a :class:`RestartLedger`, a SQLite file in its state folder. It grants each
(incarnation, component path, generation) to at most one claimant, and the grant is on disk before
the answer leaves (so a daemon that crashed and came back cannot grant it a second time). The
incarnation is which deployment of an HARestarter claims (a new ``sd-actors up`` of it starts its
generations afresh). A claimant acts only when a majority of *all* the daemons of the pool granted
its claim (:func:`claim_majority`); two majorities of the same pool share a daemon, and that daemon
granted only one of them, so two claimants never both win. policies/README.md gives the whole
safety argument.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sd_actors.net._peer_protocol import ClaimAnswer, ClaimRestart

LEDGER_FILE_NAME: Final = "restart-ledger.sqlite3"

Voter = Callable[[ClaimRestart], ClaimAnswer]
"""Asks one daemon to grant a claim; raises (TimeoutError, OSError, …) when it cannot answer."""


class RestartLedger:
    """One daemon's grants, one row per (incarnation, path, generation). Safe to use from any thread.

    Claims that name no incarnation (``""``) share one: that of a System without HARestarter
    deployments, as in tests.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # autocommit mode: each grant is its own transaction, on disk (synchronous=FULL) when it returns.
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        # (A file from before incarnations keeps its old table, "grants", unused: its keys name no
        # incarnation, so no claim matches them any more.)
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS restart_grants (incarnation TEXT NOT NULL, path TEXT NOT NULL, "
            "generation INTEGER NOT NULL, claimant TEXT NOT NULL, granted_at REAL NOT NULL, "
            "PRIMARY KEY (incarnation, path, generation))")
        self._lock = threading.Lock()

    def grant(self, path: tuple[str, ...], generation: int, claimant: str, *, incarnation: str = "") -> str:
        """Grant (incarnation, path, generation) to ``claimant`` unless someone holds it; return who
        holds it now.

        Asking again for a grant one already holds returns it again (an answer may have been lost).
        """
        key = (incarnation, ":".join(path), generation)
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                self._connection.execute(
                    "INSERT OR IGNORE INTO restart_grants (incarnation, path, generation, claimant, granted_at) "
                    "VALUES (?, ?, ?, ?, ?)", (*key, claimant, time.time()))
                row = self._connection.execute(
                    "SELECT claimant FROM restart_grants WHERE incarnation = ? AND path = ? AND generation = ?",
                    key).fetchone()
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        return str(row[0])

    def hand_over(self, path: tuple[str, ...], generation: int, claimant: str, to: str, *,
                  incarnation: str = "") -> bool:
        """Make this daemon's grant of (incarnation, path, generation) to ``claimant`` one to ``to``;
        whether it was ``claimant``'s. Only for this daemon's own grant to itself, once its claims of it
        lost and it claims it no more (a split takeover, policies/_takeover.py): that grant is in no
        winning majority, so the vote moves whole, and stays durable (``to``'s claims are still
        checked, as any claim is, before the grant is answered)."""
        with self._lock:
            cursor = self._connection.execute(
                "UPDATE restart_grants SET claimant = ?, granted_at = ? "
                "WHERE incarnation = ? AND path = ? AND generation = ? AND claimant = ?",
                (to, time.time(), incarnation, ":".join(path), generation, claimant))
        return cursor.rowcount > 0

    def holder(self, path: tuple[str, ...], generation: int, *, incarnation: str = "") -> str | None:
        """Who was granted (incarnation, path, generation), if anyone."""
        with self._lock:
            row = self._connection.execute(
                "SELECT claimant FROM restart_grants WHERE incarnation = ? AND path = ? AND generation = ?",
                (incarnation, ":".join(path), generation)).fetchone()
        return None if row is None else str(row[0])

    def newest(self, path: tuple[str, ...], *, incarnation: str = "") -> int:
        """The highest generation of (incarnation, path) granted to anyone (-1: none)."""
        with self._lock:
            row = self._connection.execute(
                "SELECT MAX(generation) FROM restart_grants WHERE incarnation = ? AND path = ?",
                (incarnation, ":".join(path))).fetchone()
        return -1 if row[0] is None else int(row[0])

    def forget(self, incarnation: str, *, keeping: tuple[str, ...]) -> int:
        """Forget every grant of ``incarnation`` but those of the path ``keeping``; return how many.

        Called when that deployment of an HARestarter was taken down: its restarts will never be
        claimed again, and the grants of its takeovers (``keeping``) still refuse a copy of an older
        epoch that comes back (policies/README.md).
        """
        if not incarnation:
            raise ValueError("only the grants of a named incarnation can be forgotten")
        with self._lock:
            cursor = self._connection.execute("DELETE FROM restart_grants WHERE incarnation = ? AND path != ?",
                                              (incarnation, ":".join(keeping)))
        return cursor.rowcount

    def __len__(self) -> int:
        """How many grants it holds."""
        with self._lock:
            row = self._connection.execute("SELECT COUNT(*) FROM restart_grants").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimOutcome:
    """The result of one round of :func:`claim_majority`."""

    won: bool
    granted_by: tuple[str, ...]
    electorate: int
    refusals: tuple[str, ...]
    """Why the others did not grant it: ``"ADDRESS: reason"``, sorted."""
    holders: tuple[str, ...] = ()
    """Other claimants the refusers granted it to, sorted."""

    def __str__(self) -> str:
        verdict = "won" if self.won else "not won"
        text = f"{verdict}: {len(self.granted_by)} of {self.electorate} daemons granted it"
        return text + (f" ({'; '.join(self.refusals)})" if self.refusals else "")


def claim_majority(claim: ClaimRestart, voters: Mapping[str, Voter], *, window: float,
                   clock: Callable[[], float] = time.monotonic) -> ClaimOutcome:
    """Ask every daemon of the pool (``voters``, by address, the claimant's own included) at once.

    The claim is won when more than half of *all* of them granted it within ``window`` seconds of
    the round's start: grants gathered over a longer time are not trusted (a host's lease could
    have been renewed between two of them; see policies/README.md). Unreachable daemons count as
    refusals. Returns as soon as the outcome is known.
    """
    needed = len(voters) // 2 + 1
    started = clock()
    granted: list[str] = []
    refusals: list[str] = []
    holders: set[str] = set()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(len(voters), 1),
                                                 thread_name_prefix="sd-actors-claim")
    try:
        futures = {pool.submit(vote, claim): address for address, vote in voters.items()}
        for future in concurrent.futures.as_completed(futures, timeout=None):
            address = futures[future]
            try:
                answer = future.result()
            except Exception as error:  # noqa: BLE001 (a daemon that cannot answer does not grant)
                refusals.append(f"{address}: no answer ({type(error).__name__})")
            else:
                if answer.granted:
                    granted.append(address)
                else:
                    refusals.append(f"{address}: {answer.reason or f'granted to {answer.holder}'}")
                    if answer.holder and answer.holder != claim.claimant:
                        holders.add(answer.holder)
            if len(granted) >= needed or len(refusals) > len(voters) - needed:
                break
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    elapsed = clock() - started
    won = len(granted) >= needed
    if won and elapsed > window:
        won = False
        refusals.append(f"the grants took {elapsed:.3f} s to gather, more than the {window:g} s allowed")
    return ClaimOutcome(won=won, granted_by=tuple(sorted(granted)), electorate=len(voters),
                        refusals=tuple(sorted(refusals)), holders=tuple(sorted(holders)))
