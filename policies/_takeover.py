"""Takeover: a survivor deploys again an HARestarter whose daemon died (policies/README.md, "The
HARestarter's own host").

Every daemon keeps a replica of each HARestarter of the pool: what it takes to deploy it again
(application, path, the daemon running it, its epoch, its description as it is now), sent by that
daemon when it deploys or restarts something and kept in ``restarters.sqlite3`` in the state
folder. When the daemon running an HARestarter has been silent for the lease plus the margin, the
survivors claim its next epoch through the restart ledger, as a restart is claimed (the key is its
incarnation, which tells one ``sd-actors up`` of it from the next, and its path followed by
``#takeover``): one wins, and deploys it under the same application name;
the daemons running its children hand them over, as they do to a parent that comes back. A copy
from an older epoch is refused by the pool from then on: its restart claims, and its requests for
its children again.
"""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sd_actors.actors import ComponentFailed
from sd_actors.net._peer_protocol import (
    ClaimAnswer,
    ClaimRestart,
    ForgetRestarter,
    ReplicateRestarter,
    RestarterWhereabouts,
    WhereIsRestarter,
)
from sd_actors.net._protocol import Done, RequestFailed, TerminateApplication

if TYPE_CHECKING:
    from sd_actors.policies._high_availability import HighAvailability

logger = logging.getLogger(__name__)

REPLICAS_FILE_NAME: Final = "restarters.sqlite3"
TAKEOVER: Final = "#takeover"
"""Ends the path in the ledger key an HARestarter's takeover is claimed under, (its incarnation, its
path + ``#takeover``, the epoch): no component is named so (names are identifiers)."""
EPOCH_ATTRIBUTE: Final = "haEpoch"
"""How many takeovers an HARestarter has been through, written into the description a taker deploys."""
INCARNATION_ATTRIBUTE: Final = "haIncarnation"
"""Which deployment of an HARestarter (chosen when it is first deployed), written into its replica."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Replica:
    """What one daemon keeps of an HARestarter (see :class:`ReplicateRestarter`)."""

    app: str
    path: tuple[str, ...]
    host: str
    epoch: int
    incarnation: str
    description: str

    def message(self) -> ReplicateRestarter:
        return ReplicateRestarter(app=self.app, path=self.path, host=self.host, epoch=self.epoch,
                                  incarnation=self.incarnation, description=self.description)

    @property
    def takeover_path(self) -> tuple[str, ...]:
        """The path its takeovers are claimed under in the restart ledger (see :func:`takeover_path`)."""
        return takeover_path(self.path)


def takeover_path(path: tuple[str, ...]) -> tuple[str, ...]:
    """The path the takeovers of the HARestarter at ``path`` are claimed under in the restart ledger,
    with its incarnation and the epoch as the generation."""
    return (*path, TAKEOVER)


class ReplicaStore:
    """The replicas one daemon keeps, in SQLite (written before it answers). Safe from any thread."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS restarters (path TEXT PRIMARY KEY, app TEXT NOT NULL, host TEXT NOT NULL, "
            "epoch INTEGER NOT NULL, incarnation TEXT NOT NULL, description TEXT NOT NULL, updated REAL NOT NULL)")
        self._connection.execute("CREATE TABLE IF NOT EXISTS electorate (address TEXT PRIMARY KEY)")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS ended (path TEXT NOT NULL, incarnation TEXT NOT NULL, epoch INTEGER NOT NULL, "
            "PRIMARY KEY (path, incarnation))")
        self._lock = threading.Lock()

    def keep(self, replica: Replica) -> bool:
        """Keep ``replica`` unless one of a newer epoch of the same incarnation is kept, or this daemon
        forgot its deployment at that epoch or a later one (taken down: a stale copy's news); another
        incarnation is a new deployment: it replaces the old. Whether it was kept."""
        key = ":".join(replica.path)
        with self._lock:
            ended = self._connection.execute(
                "SELECT epoch FROM ended WHERE path = ? AND incarnation = ?", (key, replica.incarnation)).fetchone()
            if ended is not None and replica.epoch <= ended[0]:
                return False  # a stale copy's news: its deployment was taken down since
            cursor = self._connection.execute(
                "INSERT INTO restarters (path, app, host, epoch, incarnation, description, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET app = excluded.app, "
                "host = excluded.host, epoch = excluded.epoch, incarnation = excluded.incarnation, "
                "description = excluded.description, updated = excluded.updated "
                "WHERE excluded.epoch >= epoch OR excluded.incarnation != incarnation",
                (key, replica.app, replica.host, replica.epoch, replica.incarnation,
                 replica.description, time.time()))
            return cursor.rowcount > 0

    def forget(self, path: tuple[str, ...], incarnation: str, epoch: int) -> bool:
        """Forget the replica at ``path`` if it is of ``incarnation``, at ``epoch`` or older; whether one
        was. Its deployment has ended there: a replica of it at that epoch or older is refused from
        now on (one of a later epoch is a takeover this daemon had not heard of yet)."""
        with self._lock:
            self._connection.execute(
                "INSERT INTO ended (path, incarnation, epoch) VALUES (?, ?, ?) "
                "ON CONFLICT (path, incarnation) DO UPDATE SET epoch = MAX(epoch, excluded.epoch)",
                (":".join(path), incarnation, epoch))
            cursor = self._connection.execute(
                "DELETE FROM restarters WHERE path = ? AND incarnation = ? AND epoch <= ?",
                (":".join(path), incarnation, epoch))
            return cursor.rowcount > 0

    def get(self, path: tuple[str, ...]) -> Replica | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT app, host, epoch, incarnation, description FROM restarters WHERE path = ?",
                (":".join(path),)).fetchone()
        return None if row is None else Replica(app=row[0], path=path, host=row[1], epoch=row[2],
                                                incarnation=row[3], description=row[4])

    def all(self) -> list[Replica]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT path, app, host, epoch, incarnation, description FROM restarters ORDER BY path").fetchall()
        return [Replica(app=row[1], path=tuple(row[0].split(":")), host=row[2], epoch=row[3], incarnation=row[4],
                        description=row[5]) for row in rows]

    def electorate(self) -> set[str]:
        """Every daemon this daemon has counted in its pool's majority, in any of its runs."""
        with self._lock:
            return {row[0] for row in self._connection.execute("SELECT address FROM electorate")}

    def remember_electorate(self, addresses: set[str]) -> None:
        with self._lock:
            self._connection.executemany("INSERT OR IGNORE INTO electorate (address) VALUES (?)",
                                         [(address,) for address in sorted(addresses)])

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class Takeover:
    """One daemon's part in keeping HARestarters alive: it keeps the pool's replicas, spreads those of
    the HARestarters it runs, and takes over one whose daemon has been silent too long.

    :param high_availability: the daemon's lease, ledger and claims.
    :param state_dir: where the replicas' SQLite file lives.
    :param adopt: deploys application ``app`` from a description text, handing over what this daemon
        runs under ``path`` (the daemon's ``adopt_application``).
    :param end_stale: ends the application whose HARestarter at ``path`` was taken over and has now
        ended where it went (``sd-actors down`` there); the daemon's ``end_taken_over``.
    """

    def __init__(self, *, high_availability: HighAvailability, state_dir: Path,
                 adopt: Callable[[str, str, tuple[str, ...]], None],
                 end_stale: Callable[[tuple[str, ...], str], None]) -> None:
        self._ha = high_availability
        self._adopt = adopt
        self._end_stale = end_stale
        self.replicas = ReplicaStore(state_dir / REPLICAS_FILE_NAME)
        self._remembered = self.replicas.electorate()
        """The pool's daemons this daemon ever counted (kept: a restart starts from the whole pool)."""
        self._started = time.monotonic()
        self._spread_to: dict[tuple[str, ...], tuple[int, str, set[str]]] = {}
        """For each replica this daemon runs: its epoch and description, and the peers that have it."""
        self._lost: dict[tuple[str, ...], tuple[int, str, tuple[str, ...]]] = {}
        """Takeovers this daemon claimed and lost: the epoch, who holds it, and the silent daemons
        that claim named."""
        self._said: dict[tuple[str, ...], str] = {}
        self._confirmed: set[tuple[tuple[str, ...], int, str]] = set()
        """Replicas whose daemon said it runs them, since this daemon started."""
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sd-actors-takeover", daemon=True)
        self._thread.start()

    # -- what an HARestarter here tells the pool -------------------------------------------------------
    def replicate(self, replica: Replica) -> None:
        """Keep ``replica`` here and send it to every live daemon of the pool (soon, from a thread)."""
        self.replicas.keep(replica)
        self._wake.set()

    def forget(self, path: tuple[str, ...], incarnation: str, epoch: int) -> None:
        """The HARestarter at ``path`` ended: every daemon forgets it and its restarts' grants (those
        alive now; soon, from a thread)."""
        self._forget_restarts(path, incarnation, epoch)
        self.replicas.forget(path, incarnation, epoch)
        message = ForgetRestarter(path=path, incarnation=incarnation, epoch=epoch)
        peers = [host for host in self._ha.live_hosts() if host != self._ha.own_endpoint]
        threading.Thread(target=self._tell, args=(peers, message), daemon=True, name="sd-actors-forget").start()

    def where_is(self, path: tuple[str, ...], incarnation: str, timeout: float) -> RestarterWhereabouts | None:
        """The newest news of the HARestarter at ``path`` of ``incarnation``: this daemon's and every
        peer's that answers within ``timeout`` (a daemon that restarted asks before it re-deploys one).
        None unless more than half of the pool answered (this daemon included), counted over every
        daemon it ever counted and not forgotten since: such a majority holds a grantor of any
        takeover, so silence never reads as "not taken over"."""
        electorate = self.electorate()
        answers = [self.whereabouts(path, incarnation)]
        others = [address for address in electorate if address != self._ha.own_endpoint]
        if others:
            def ask(address: str) -> object:
                return self._ha.peers.link(address).request(WhereIsRestarter(path=path, incarnation=incarnation),
                                                            timeout=timeout)

            with concurrent.futures.ThreadPoolExecutor(max_workers=len(others)) as pool:
                futures = [pool.submit(ask, address) for address in others]
                for future in futures:
                    try:
                        reply = future.result()
                    except (TimeoutError, OSError, ComponentFailed):
                        continue
                    if isinstance(reply, RestarterWhereabouts):
                        answers.append(reply)
        if len(answers) <= len(electorate) // 2:
            return None
        newest = max(answers, key=lambda answer: answer.epoch)
        return RestarterWhereabouts(host=newest.host, epoch=newest.epoch,
                                    taken_over=max(answer.taken_over for answer in answers))

    def electorate(self) -> tuple[str, ...]:
        """The pool a majority is counted over: the lease's (the daemon seeds its membership with
        every daemon it counted before, less those forgotten: see :meth:`remembered`), kept for the
        next run."""
        current = set(self._ha.peers.electorate())
        self._remember(current)
        return tuple(sorted(current))

    def remembered(self) -> set[str]:
        """Every daemon this one counted in its pool in an earlier run (forgotten ones included)."""
        return set(self._remembered)

    def _remember(self, electorate: set[str]) -> None:
        if not electorate <= self._remembered:
            self.replicas.remember_electorate(electorate)
            self._remembered |= electorate

    def forward_down(self, app: str, path: tuple[str, ...]) -> None:
        """``sd-actors down`` of ``app`` here, whose HARestarter at ``path`` was taken over: the daemon
        it went to takes it down too (if it still runs it)."""
        replica = self.replicas.get(path)
        if replica is None or replica.host == self._ha.own_endpoint:
            return
        threading.Thread(target=self._tell, args=([replica.host], TerminateApplication(app=app, wait=False)),
                         daemon=True, name="sd-actors-forward-down").start()

    def _tell(self, hosts: list[str], message: object) -> None:
        for host in hosts:
            try:
                self._ha.peers.link(host).request(message, timeout=2.0)
            except (TimeoutError, OSError, ComponentFailed) as error:
                logger.info("could not tell %s (%s): %s", host, type(message).__name__, type(error).__name__)

    # -- answering other daemons -----------------------------------------------------------------------
    @staticmethod
    def answers(message: object) -> bool:
        return isinstance(message, ReplicateRestarter | ForgetRestarter | WhereIsRestarter)

    def answer(self, message: object) -> Done | RestarterWhereabouts | RequestFailed:
        match message:
            case ReplicateRestarter():
                self.replicas.keep(Replica(app=message.app, path=message.path, host=message.host,
                                           epoch=message.epoch, incarnation=message.incarnation,
                                           description=message.description))
                return Done()
            case ForgetRestarter(path=path, incarnation=incarnation, epoch=epoch):
                self._forget_restarts(path, incarnation, epoch)
                replica = self.replicas.get(path)
                if self.replicas.forget(path, incarnation, epoch) and replica is not None:
                    self._end_stale(path, replica.host)
                return Done()
            case WhereIsRestarter(path=path, incarnation=incarnation):
                return self.whereabouts(path, incarnation)
        return RequestFailed(error=f"{type(message).__name__} is not a takeover request")

    def whereabouts(self, path: tuple[str, ...], incarnation: str) -> RestarterWhereabouts:
        """What this daemon knows of the HARestarter at ``path`` of ``incarnation`` (or of any
        incarnation, for an empty one)."""
        replica = self.replicas.get(path)
        if replica is not None and incarnation and replica.incarnation != incarnation:
            replica = None  # another deployment of it
        taken_over = max(self._ha.ledger.newest(takeover_path(path), incarnation=incarnation), 0) if incarnation else 0
        return RestarterWhereabouts(host=replica.host if replica else "", epoch=replica.epoch if replica else -1,
                                    taken_over=taken_over)

    def refuse_claim(self, claim: ClaimRestart) -> ClaimAnswer | None:
        """Why ``claim`` may not be granted under the takeover rules (None: it may, as far as they go).

        A takeover is granted only by a daemon that keeps a replica of that HARestarter at an epoch
        before the one claimed (not of one taken down) on a daemon the claim names silent, has
        granted no later epoch, and granted each epoch in between, if any, to the claimant, to nobody
        or to a daemon the claim names silent; never of this daemon's own HARestarter. A restart is
        refused to an HARestarter of an older epoch than this daemon knows."""
        if claim.path and claim.path[-1] == TAKEOVER:
            restarter = claim.path[:-1]
            if self._ha.own_endpoint in claim.unreachable:
                return ClaimAnswer(granted=False, reason="this daemon runs it and is alive")
            replica = self.replicas.get(restarter)
            if replica is None or replica.incarnation != claim.incarnation:
                return ClaimAnswer(granted=False, reason=f"no replica of {':'.join(restarter)} here (taken down, or "
                                   "never replicated to this daemon)")
            if replica.host not in claim.unreachable:  # the claimant has not heard of the epoch kept here
                return ClaimAnswer(granted=False, holder=replica.host, reason=f"{':'.join(restarter)} is at epoch "
                                   f"{replica.epoch} on {replica.host}, which the claim does not name silent")
            if replica.epoch >= claim.generation:
                return ClaimAnswer(granted=False, holder=replica.host, reason=f"{':'.join(restarter)} is at epoch "
                                   f"{replica.epoch} on {replica.host}, not {claim.generation - 1}")
            ledger, incarnation = self._ha.ledger, claim.incarnation
            newest = ledger.newest(claim.path, incarnation=incarnation)
            if newest > claim.generation:
                holder = ledger.holder(claim.path, newest, incarnation=incarnation) or ""
                return ClaimAnswer(granted=False, holder=holder, reason=f"epoch {newest} of {':'.join(restarter)} "
                                   f"was granted here to {holder}")
            # An epoch skipped (its winner fell silent before its replica came here) only when this
            # daemon's grant of it went to the claimant or to a daemon the claim names as silent, whose
            # silence is checked like the old host's: a majority that won it shares a daemon with this claim's.
            for skipped in range(replica.epoch + 1, claim.generation):
                granted = ledger.holder(claim.path, skipped, incarnation=incarnation)
                if granted is not None and granted != claim.claimant and granted not in claim.unreachable:
                    return ClaimAnswer(granted=False, holder=granted, reason=f"epoch {skipped} of "
                                       f"{':'.join(restarter)} was granted here to {granted}")
            return None
        if claim.restarter:
            newest = self._newest_epoch(claim.restarter, claim.incarnation)
            if newest > claim.epoch:
                replica = self.replicas.get(claim.restarter)
                where = f" to {replica.host}" if replica is not None and replica.incarnation == claim.incarnation and (
                    replica.epoch == newest) else ""
                return ClaimAnswer(granted=False, reason=f"{':'.join(claim.restarter)} was taken over{where} (epoch "
                                   f"{newest}); the claimant's copy (epoch {claim.epoch}) is stale")
        return None

    def _newest_epoch(self, path: tuple[str, ...], incarnation: str) -> int:
        """The newest epoch this daemon knows of the HARestarter at ``path`` of ``incarnation``: its
        replica's, or a takeover it granted (0: none)."""
        replica = self.replicas.get(path)
        kept = replica.epoch if replica is not None and replica.incarnation == incarnation else 0
        return max(self._ha.ledger.newest(takeover_path(path), incarnation=incarnation), kept)

    def replica_above(self, path: tuple[str, ...]) -> Replica | None:
        """The replica of the HARestarter that ``path`` is below, if this daemon keeps one."""
        for replica in self.replicas.all():
            if path[:len(replica.path)] == replica.path and len(path) > len(replica.path):
                return replica
        return None

    def stale_parent(self, path: tuple[str, ...], parent: str) -> str | None:
        """Why a component at ``path`` may not be created or terminated for ``parent`` (a daemon's
        endpoint): the HARestarter above it runs on another daemon now. None: nothing known against it."""
        replica = self.replica_above(path)
        if replica is None or replica.host == parent:
            return None
        newest = self._ha.ledger.newest(replica.takeover_path, incarnation=replica.incarnation)
        if newest > replica.epoch and self._ha.ledger.holder(replica.takeover_path, newest,
                                                             incarnation=replica.incarnation) == parent:
            return None  # it took the HARestarter over (granted here); its replica is on its way
        return (f"{':'.join(replica.path)} was taken over: it runs on {replica.host} (epoch {replica.epoch}), "
                f"not on {parent}")

    # -- the watch --------------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._ha.peers.interval)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self._look()
            except Exception:  # the watch goes on; the next round may do better
                logger.exception("takeover: looking at the replicas failed")

    def _look(self) -> None:
        self._remember(set(self._ha.peers.electorate()))
        live = self._ha.live_hosts()
        for replica in self.replicas.all():
            if replica.host == self._ha.own_endpoint:
                self._spread(replica, live)
            else:
                self._spread_to.pop(replica.path, None)
                self._consider(replica, live)

    def _spread(self, replica: Replica, live: tuple[str, ...]) -> None:
        """Send ``replica`` (one this daemon runs) to each live peer that does not have it yet."""
        epoch, description, have = self._spread_to.get(replica.path, (-1, "", set()))
        if (epoch, description) != (replica.epoch, replica.description):
            have = set()
            self._spread_to[replica.path] = (replica.epoch, replica.description, have)
        for host in live:
            if host == self._ha.own_endpoint or host in have:
                continue
            try:
                reply = self._ha.peers.link(host).request(replica.message(), timeout=2 * self._ha.peers.interval)
            except (TimeoutError, OSError, ComponentFailed):
                continue  # tried again next round
            if isinstance(reply, Done):
                have.add(host)

    def _silence(self, host: str) -> float:
        """How long this daemon has heard nothing from ``host`` (at most since it started: a daemon
        just started has heard nobody yet)."""
        try:
            heard = self._ha.peers.link(host).silent_for()
        except ComponentFailed:
            heard = float("inf")
        return min(heard, time.monotonic() - self._started)

    def _consider(self, replica: Replica, live: tuple[str, ...]) -> None:
        """Take over ``replica`` if its daemon has been silent long enough and this daemon's turn came."""
        terms = self._ha.terms
        silent = self._silence(replica.host)
        if replica.host in live and (replica.path, replica.epoch, replica.host) not in self._confirmed:
            self._confirm(replica)
            return
        # The daemons of the pool take turns, by address, a lease apart: one claims at a time, mostly
        # (two claiming the same epoch at once can split the votes; the later turn then hands its own
        # to the earlier, below). The order is the electorate's, the same on every daemon, not what
        # each believes alive.
        order = [host for host in self._ha.peers.electorate() if host != replica.host]
        turn = _turn(order, self._ha.own_endpoint)
        wait = terms.duration + terms.margin + turn * terms.duration
        if silent < wait:
            self._said.pop(replica.path, None)
            return
        epoch = replica.epoch + 1
        unreachable: tuple[str, ...] = (replica.host,)
        lost = self._lost.get(replica.path)
        if lost is not None and lost[0] > replica.epoch:
            lost_epoch, holder, named = lost
            if holder != self._ha.own_endpoint and self._silence(holder) < wait and _turn(order, holder) > turn:
                # A split with a live claimant of a later turn: claim the same epoch again; that one
                # gives its own grant up to this daemon (below), and the split ends.
                epoch, unreachable = lost_epoch, named
            elif holder == self._ha.own_endpoint or self._silence(holder) < wait:
                if holder != self._ha.own_endpoint and self._ha.ledger.hand_over(
                        replica.takeover_path, lost_epoch, self._ha.own_endpoint, holder,
                        incarnation=replica.incarnation):
                    logger.warning("takeover of %s: epoch %d split with %s, of an earlier turn: this daemon gives "
                                   "its own vote up to it", ":".join(replica.path), lost_epoch, holder)
                self._say(replica.path, f"takeover of {':'.join(replica.path)}: {holder} holds epoch {lost_epoch}; "
                          "waiting for it to take over")
                return
            else:
                # It won or held grants, then fell silent before its replica came here: the next epoch,
                # claimed with it named silent too (policies/README.md).
                epoch, unreachable = lost_epoch + 1, tuple(sorted({*named, holder}))
        outcome = self._ha.claim(replica.takeover_path, epoch, unreachable, incarnation=replica.incarnation)
        if not outcome.won:
            if outcome.holders:
                # The holder of the earliest turn: a split ends in its favour.
                holder = min(outcome.holders, key=lambda address: _turn(order, address))
                self._lost[replica.path] = (epoch, holder, unreachable)
            self._say(replica.path, f"takeover of {':'.join(replica.path)} from {replica.host} (silent for "
                      f"{terms.duration + terms.margin:g} s or more) not possible now: {outcome}")
            return
        logger.warning("takeover: %s ran on %s, silent for %.1f s; this daemon takes it over as epoch %d (%s)",
                       ":".join(replica.path), replica.host, silent, epoch, outcome)
        # The pool learns of the new epoch before its children are asked for (their daemons refuse
        # them to any daemon but the one their replica names).
        taken = Replica(app=replica.app, path=replica.path, host=self._ha.own_endpoint, epoch=epoch,
                        incarnation=replica.incarnation, description=_with_epoch(replica, epoch))
        self.replicas.keep(taken)
        self._spread(taken, live)
        try:
            self._adopt(taken.app, taken.description, taken.path)
        except Exception as error:  # noqa: BLE001 (said, and the application's status says it too)
            # It runs nowhere now: the pool forgets it (a daemon back from the dead learns from the
            # ledger that it was taken over, and ends its copy of the application).
            logger.error("takeover of %s failed: %s; it is forgotten, deploy it again with sd-actors up",
                         ":".join(replica.path), error)
            self._lost[replica.path] = (epoch, self._ha.own_endpoint, unreachable)
            self.forget(taken.path, taken.incarnation, taken.epoch)

    def _confirm(self, replica: Replica) -> None:
        """Ask the daemon running ``replica`` whether it still does, once: a daemon that was away when
        it was taken down (``sd-actors down``) forgets it then."""
        try:
            reply = self._ha.peers.link(replica.host).request(
                WhereIsRestarter(path=replica.path, incarnation=replica.incarnation),
                timeout=2 * self._ha.peers.interval)
        except (TimeoutError, OSError, ComponentFailed):
            return  # asked again next round
        if not isinstance(reply, RestarterWhereabouts):
            return
        gone = reply.epoch < 0
        if gone:
            self._forget_restarts(replica.path, replica.incarnation, replica.epoch)
        if gone and self.replicas.forget(replica.path, replica.incarnation, replica.epoch):
            logger.info("takeover: %s no longer keeps %s (taken down while this daemon was away): forgotten",
                        replica.host, ":".join(replica.path))
        else:
            self._confirmed.add((replica.path, replica.epoch, replica.host))

    def _forget_restarts(self, path: tuple[str, ...], incarnation: str, epoch: int) -> None:
        """The HARestarter at ``path`` of ``incarnation`` ended at ``epoch``: forget the ledger's grants
        of its children's restarts, which no copy of it wins again, unless this daemon knows of an
        epoch past ``epoch`` (the news then comes from a stale copy, and the newer one may still need
        them). Called before its replica is forgotten. The grants of its takeovers stay (one per
        takeover): they refuse a copy of an older epoch that comes back (policies/README.md)."""
        if self._newest_epoch(path, incarnation) <= epoch:
            self._ha.ledger.forget(incarnation, keeping=takeover_path(path))

    def _say(self, path: tuple[str, ...], text: str) -> None:
        """Log ``text`` once while it stays the same (the watch looks every heartbeat interval)."""
        if self._said.get(path) != text:
            self._said[path] = text
            logger.warning("%s", text)

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.replicas.close()


def _turn(order: list[str], host: str) -> int:
    """``host``'s turn to take over, by its place in ``order`` (the pool's addresses; after all of them
    if it is not there)."""
    return order.index(host) if host in order else len(order)


def _with_epoch(replica: Replica, epoch: int) -> str:
    """The replica's description with the HARestarter's ``haEpoch`` set to ``epoch``."""
    from sd_actors.descriptions import ComponentDescription, parse_string, to_sf

    config = parse_string(replica.description, filename=f"<{':'.join(replica.path)}>", use_library=False)
    node = config
    for name in replica.path[1:]:
        child = node.get(name)
        assert isinstance(child, ComponentDescription), f"{name} missing in the replica of {replica.path}"
        node = child
    node.set(EPOCH_ATTRIBUTE, epoch)
    return to_sf(config)
