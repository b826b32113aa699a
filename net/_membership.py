"""Membership of the pool of daemons, without a master.

Every daemon keeps its own view of the pool: each member's address, public key, incarnation (the
start time of its current life) and state. It learns members from ``--peer`` seeds and from what
the others tell it, and it decides states from its own clock only:

``alive``
    heard from (directly, or through another daemon's gossip) less than ``suspect_after`` ago;
``suspect``
    silent for ``suspect_after`` seconds, still sent heartbeats in case it is only slow;
``dead``
    silent for ``dead_after`` seconds. Once this daemon has declared a member dead, only direct
    news from it, or gossip about something heard *after* the verdict, or a newer incarnation,
    brings it back: news from before the verdict is stale, however it arrives.

Each :meth:`Membership.tick` returns one heartbeat for every member believed alive or suspect, so
every pair of daemons exchanges one heartbeat stream (DESIGN.md: "one heartbeat stream per pair";
the component pings between two daemons ride on it). Dead members are probed at most ``fanout``
per tick, in turn, so a dead host is retried but not hammered, and a healed one is found again.

A heartbeat is direct news about its sender, and carries gossip: the sender's view of the others,
each with ``heard``, the seconds since the sender last had news of it. Ages are relative, so no two
clocks need to agree. What gossip may change:

- it teaches unknown members (address and public key, so that a CURVE connection can be opened);
- it moves a member's last news forward (a higher incarnation, or the same one heard more recently),
  never back: second-hand gossip can never make a member look more silent than this daemon's own
  news says, so it never marks anyone suspect or dead;
- gossip about this daemon is never taken in; if another daemon calls us suspect or dead, the next
  tick sends it our full view with ourselves alive, which refutes it.

A heartbeat held in a queue (a link that went down and came back: TCP delivers what it had
buffered) must not pass old gossip off as new. Each heartbeat carries ``sent``, the sender's own
clock; the receiver keeps the smallest ``receive time - sent`` seen from that sender (its clock
offset plus the shortest transit), and a heartbeat that took longer is late by the difference:
its gossip is aged by that much. The floor may creep up by a little per heartbeat, so clocks that
drift apart (or a sender's clock that stepped) are followed without a burst ever looking fresh.

Cost, and how it would shrink. Each daemon sends n-1 heartbeats per interval. Only ``fanout``
random members, plus newcomers, seeds and probed dead members, get the full view; the others get a
heartbeat without gossip, so the bytes sent per daemon per interval stay O(n), and news still
spreads epidemically in O(log n) intervals. For pools where even n heartbeats per interval are too
many, the pair streams would stop being the failure detector: each daemon would probe ``fanout``
random members per interval and ask ``fanout`` others to probe one that does not answer (SWIM), and
would gossip its view to ``fanout`` members only, so its cost grows with ``fanout`` (a constant)
and detection with log(n) intervals. Pair streams would then exist only between daemons that share
components.

Everything is deterministic: time comes only from the injected clock and randomness only from the
injected :class:`random.Random`. Nothing here does I/O: the daemon calls :meth:`~Membership.tick`
every ``interval`` and :meth:`~Membership.receive` for each heartbeat, from one thread, and sends
what tick returns.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from random import Random
from typing import Final, Literal

from sd_actors.net._errors import InvalidKey, WireError, shorten
from sd_actors.net._keys import parse_key
from sd_actors.net._wire import wire_message

MemberState = Literal["alive", "suspect", "dead"]
"""A member's state as one daemon sees it."""

_RANK: Final[dict[str, int]] = {"alive": 0, "suspect": 1, "dead": 2}

# How fast the lowest "receive time - sent" from a sender may creep up (clocks drift apart by a
# few parts per million; 1% is far more), and by at most how many intervals per heartbeat: a
# heartbeat that waited minutes in a queue can lower no guard by more than this.
_OFFSET_DRIFT_PER_SECOND: Final = 0.01
_OFFSET_RISE_PER_HEARTBEAT: Final = 0.1  # in intervals

_MAX_ADDRESS_LENGTH: Final = 255
_TCP_ADDRESS: Final = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.\-_]*[A-Za-z0-9])?)"
                                 r":(?P<port>[0-9]{1,5})")
_LOCAL_ADDRESS: Final = re.compile(r"(?:ipc|inproc)://\S+")

_logger: Final = logging.getLogger(__name__)


class InvalidAddress(WireError):
    """A daemon address is not a ZeroMQ endpoint another daemon could connect to."""

    def __init__(self, address: object, problem: str) -> None:
        self.address = address
        self.problem = problem
        super().__init__(
            f"invalid daemon address {shorten(address)}: {problem}",
            hint="give the address the daemon listens on, as tcp://HOST:PORT (for example tcp://10.0.0.2:3800)",
        )


def check_address(address: object) -> str:
    """``address`` if another daemon could connect to it: ``tcp://HOST:PORT``, or ``ipc://``/``inproc://``.

    :raises InvalidAddress: saying what is wrong with it.
    """
    if not isinstance(address, str):
        raise InvalidAddress(address, f"expected a string, got {type(address).__name__}")
    if len(address) > _MAX_ADDRESS_LENGTH:
        raise InvalidAddress(address, f"it is longer than {_MAX_ADDRESS_LENGTH} characters")
    if address.startswith("tcp://*"):
        raise InvalidAddress(address, "'*' is every interface of this host, not an address others can reach")
    tcp = _TCP_ADDRESS.fullmatch(address)
    if tcp is not None:
        if not 1 <= int(tcp["port"]) <= 65535:
            raise InvalidAddress(address, f"port {tcp['port']} is not between 1 and 65535")
        return address
    if _LOCAL_ADDRESS.fullmatch(address):
        return address
    raise InvalidAddress(address, "it is not tcp://HOST:PORT, ipc://PATH or inproc://NAME")


# -- on the wire -------------------------------------------------------------------------------------


@wire_message("membership.member")
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    """What one daemon tells another about a member of the pool (itself, or one it knows)."""

    address: str
    """Where the member's daemon listens, ``tcp://HOST:PORT``."""
    public_key: str = ""
    """Its CURVE public key in Z85, or ``""`` when it runs ``--insecure``."""
    incarnation: int
    """The start of the member's current life (milliseconds since the epoch): bigger is newer."""
    state: MemberState = "alive"
    """The sender's view; receivers decide states from their own clock."""
    heard: float = 0.0
    """Seconds since the sender last had news of the member (0 for the sender itself)."""

    def __post_init__(self) -> None:
        check_address(self.address)
        if not isinstance(self.public_key, str):
            raise InvalidKey(self.public_key, f"expected a string, got {type(self.public_key).__name__}")
        if self.public_key:
            if self.public_key != self.public_key.strip():
                raise InvalidKey(self.public_key, "it has spaces around it")
            parse_key(self.public_key)
        if self.incarnation < 0:
            raise ValueError(f"incarnation {self.incarnation} of {self.address} is negative")
        if not 0.0 <= self.heard < math.inf:
            raise ValueError(f"heard {self.heard!r} of {self.address} is not a number of seconds >= 0")


@wire_message("membership.heartbeat")
@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """One beat of the stream between two daemons: direct news of the sender, and its gossip."""

    sender: MemberInfo
    members: tuple[MemberInfo, ...] = ()
    """The sender's view of the others (empty in most beats: see the module's note on cost)."""
    sent: float | None = None
    """The sender's clock when it sent the beat (its own time base: only differences between its
    beats mean anything); ``None`` when unknown, and the beat is then taken as on time."""

    def __post_init__(self) -> None:
        if self.sent is not None and not math.isfinite(self.sent):
            raise ValueError(f"sent {self.sent!r} is not a finite time")


# -- this daemon's view ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One member of the pool as this daemon sees it (a snapshot)."""

    address: str
    public_key: str
    state: MemberState
    incarnation: int
    last_heard: float | None
    """Clock time of the freshest news of it, direct or gossip; ``None`` for this daemon itself."""
    heard_directly: float | None
    """Clock time of its last heartbeat to us; ``None`` if known only through gossip, or itself."""
    is_self: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipChange:
    """A member joined (``old_state`` is None), was suspected, died, recovered or restarted.

    A restart is a higher incarnation (``restarted`` is True): it is reported even when the state
    stays alive, because whatever the old life was running is gone.
    """

    address: str
    old_state: MemberState | None
    new_state: MemberState
    old_incarnation: int | None
    new_incarnation: int

    @property
    def restarted(self) -> bool:
        return self.old_incarnation is not None and self.new_incarnation > self.old_incarnation


class _Entry:
    """What this daemon knows of another member (mutable; snapshots are :class:`Member`)."""

    __slots__ = ("address", "public_key", "incarnation", "state", "last_heard", "heard_directly", "died_at",
                 "offset", "offset_updated")

    def __init__(self, address: str, public_key: str, incarnation: int, *, last_heard: float,
                 state: MemberState = "alive") -> None:
        self.address = address
        self.public_key = public_key
        self.incarnation = incarnation
        self.state: MemberState = state
        self.last_heard = last_heard
        self.heard_directly: float | None = None
        self.died_at: float | None = None
        # The lowest "receive time - sent" of its heartbeats: see "held in a queue" above.
        self.offset: float | None = None
        self.offset_updated = 0.0

    def begin_life(self, incarnation: int, public_key: str) -> None:
        self.incarnation = incarnation
        self.public_key = public_key
        self.offset = None  # a new process, perhaps after a reboot: a new clock


class Membership:
    """This daemon's view of the pool, kept up to date by heartbeats and gossip.

    :param self_address: where this daemon listens, as others connect to it (``tcp://HOST:PORT``).
    :param self_public_key: its CURVE public key in Z85, ``""`` when insecure.
    :param incarnation: the start of this daemon's life (milliseconds since the epoch).
    :param clock: monotonic seconds; the only source of time.
    :param interval: how often the daemon calls :meth:`tick`, in seconds.
    :param suspect_after: seconds of silence after which a member is suspect.
    :param dead_after: seconds of silence after which a member is dead.
    :param fanout: how many dead members are probed per tick, and how many alive ones get the
        full view besides newcomers.
    :param random: the only source of randomness; a fresh unseeded one when None.
    :param forgotten: the members an earlier life of this daemon forgot on purpose and has not heard
        from since (what :meth:`forgotten` said then, kept by the daemon in its state folder): they
        stay forgotten, as though :meth:`forget` had been called again.
    :raises InvalidAddress, InvalidKey: the address or key of this daemon is malformed.
    :raises ValueError: the timings are not ``0 < interval < suspect_after < dead_after``, or
        ``fanout`` is below 1.
    """

    def __init__(
        self,
        self_address: str,
        self_public_key: str,
        *,
        incarnation: int,
        clock: Callable[[], float],
        interval: float = 1.0,
        suspect_after: float = 3.0,
        dead_after: float = 10.0,
        fanout: int = 3,
        random: Random | None = None,
        forgotten: Mapping[str, int] | None = None,
    ) -> None:
        _check_settings(interval=interval, suspect_after=suspect_after, dead_after=dead_after, fanout=fanout)
        self._self = MemberInfo(address=self_address, public_key=self_public_key, incarnation=incarnation)
        self._clock = clock
        self._interval = float(interval)
        self._suspect_after = float(suspect_after)
        self._dead_after = float(dead_after)
        self._fanout = fanout
        self._random = random if random is not None else Random()
        self._entries: dict[str, _Entry] = {}
        self._unheard_seeds: set[str] = set()
        self._needs_full_view: set[str] = set()
        self._probe_queue: list[str] = []
        self._subscribers: dict[int, Callable[[MembershipChange], object]] = {}
        self._next_subscription = 0
        self._last_tick: float | None = None
        self._resumed_at = -math.inf
        # Members forgotten on purpose (forget), with the incarnation they were forgotten in (-1: a
        # --peer seed never heard from), until they are heard from again.
        self._forgotten: dict[str, int] = {}
        for address, incarnation in (forgotten or {}).items():
            if check_address(address) != self.address:
                self._forgotten[address] = int(incarnation)

    # -- settings ------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._self.address

    @property
    def incarnation(self) -> int:
        return self._self.incarnation

    @property
    def interval(self) -> float:
        """How often :meth:`tick` should be called, in seconds."""
        return self._interval

    @property
    def suspect_after(self) -> float:
        return self._suspect_after

    @property
    def dead_after(self) -> float:
        return self._dead_after

    # -- what the daemon calls -----------------------------------------------------------------------

    def seed(self, addresses: Iterable[str]) -> None:
        """Contact these daemons (``--peer``) at every tick until each has sent a heartbeat.

        A seed is not a member until it is heard from: a seed that never answers is listed by
        :meth:`unheard_seeds`, and counts in no majority. Give the address the peer listens on
        (its ``--bind``): a seed is heard when a heartbeat comes *from that address*. A seed that
        was forgotten (:meth:`forgotten`) is left out: it rejoins by sending a heartbeat itself.

        :raises InvalidAddress: one of them is malformed; then none is added.
        """
        checked = [check_address(address) for address in addresses]
        for address in checked:
            entry = self._entries.get(address)
            if address != self.address and address not in self._forgotten and (
                    entry is None or entry.heard_directly is None):
                self._unheard_seeds.add(address)

    def tick(self) -> list[tuple[str, Heartbeat]]:
        """Update states from the clock, and return the heartbeats to send now, as (address, heartbeat).

        Call it every ``interval``. If it was not called for longer than ``suspect_after`` (this
        daemon, not the others, was stopped: a long pause, a suspended VM), that time is not held
        against the others: their silence is counted from now.
        """
        now = self._clock()
        if self._last_tick is not None and now - self._last_tick > self._suspect_after:
            self._resumed_at = now
        self._last_tick = now
        changes = []
        for address in sorted(self._entries):
            entry = self._entries[address]
            silence = now - max(entry.last_heard, self._resumed_at)
            state = _worse(entry.state, self._state_after(silence))
            if state != entry.state:
                old_state, entry.state = entry.state, state
                entry.died_at = now if state == "dead" else None
                changes.append(_change(entry, old_state=old_state, old_incarnation=entry.incarnation))
        heartbeats = self._heartbeats(now)
        self._announce(changes)
        return heartbeats

    def receive(self, heartbeat: Heartbeat) -> None:
        """Take in a heartbeat: direct news of its sender, and its gossip about the others.

        The caller should first check that ``heartbeat.sender.public_key`` is the key its frame was
        authenticated with: the sender's own word about itself is taken as it is. A heartbeat from
        an earlier life of a member (a lower incarnation, delivered late) is ignored.
        """
        now = self._clock()
        sender = heartbeat.sender
        if sender.address == self.address:
            if sender.incarnation != self.incarnation:
                _logger.warning("another daemon (incarnation %d) sends heartbeats as %s, this daemon's address",
                                sender.incarnation, sender.address)
            return
        changes: list[MembershipChange] = []
        self._forgotten.pop(sender.address, None)  # direct news: a forgotten member is back
        entry = self._entries.get(sender.address)
        if entry is None:
            entry = _Entry(sender.address, sender.public_key, sender.incarnation, last_heard=now)
            self._entries[sender.address] = entry
            self._needs_full_view.add(sender.address)
            changes.append(_change(entry, old_state=None, old_incarnation=None))
        elif sender.incarnation < entry.incarnation:
            return
        else:
            old_state, old_incarnation = entry.state, entry.incarnation
            if sender.incarnation > entry.incarnation or old_state == "dead":
                self._needs_full_view.add(sender.address)
            if sender.incarnation > entry.incarnation:
                entry.begin_life(sender.incarnation, sender.public_key)
            entry.public_key = sender.public_key
            entry.last_heard = max(entry.last_heard, now)
            entry.state = "alive"
            entry.died_at = None
            if (old_state, old_incarnation) != ("alive", entry.incarnation):
                changes.append(_change(entry, old_state=old_state, old_incarnation=old_incarnation))
        entry.heard_directly = now
        self._unheard_seeds.discard(sender.address)
        sent_at = now - self._lateness(entry, heartbeat.sent, now)
        for info in heartbeat.members:
            self._learn(info, via=sender.address, sent_at=sent_at, now=now, changes=changes)
        self._announce(changes)

    # -- what the daemon asks ------------------------------------------------------------------------

    def members(self) -> tuple[Member, ...]:
        """Every member, this daemon included, sorted by address."""
        members = [self._snapshot(entry) for entry in self._entries.values()]
        members.append(self._own_snapshot())
        return tuple(sorted(members, key=lambda member: member.address))

    def member(self, address: str) -> Member | None:
        """The member at ``address``, or None if it is not known (an unheard seed is not known)."""
        if address == self.address:
            return self._own_snapshot()
        entry = self._entries.get(address)
        return None if entry is None else self._snapshot(entry)

    def alive_addresses(self) -> tuple[str, ...]:
        """The addresses of the members believed alive, this daemon included, sorted."""
        alive = [address for address, entry in self._entries.items() if entry.state == "alive"]
        alive.append(self.address)
        return tuple(sorted(alive))

    def public_key(self, address: str) -> str | None:
        """The CURVE public key of the member at ``address`` (``""`` if insecure), None if unknown."""
        if address == self.address:
            return self._self.public_key
        entry = self._entries.get(address)
        return None if entry is None else entry.public_key

    def forgotten(self) -> dict[str, int]:
        """The members forgotten on purpose (:meth:`forget`) and not heard from since: address → the
        incarnation forgotten (-1 for a ``--peer`` seed never heard from). Gossip about that life
        of them is ignored; news of a later one, or a heartbeat from them, takes them off this list."""
        return dict(self._forgotten)

    def unheard_seeds(self) -> tuple[str, ...]:
        """The ``--peer`` seeds that have not sent a heartbeat yet, sorted."""
        return tuple(sorted(self._unheard_seeds))

    def majority_visible(self) -> bool:
        """Whether this daemon hears from a strict majority of the members it knows, itself included.

        Only members in state alive count as heard; suspect and dead members count as known. A
        daemon that loses the majority must stop its own virtual machines before its lease
        expires (DESIGN.md, reliability rule 1). Reflects the last tick or heartbeat.
        """
        alive = 1 + sum(entry.state == "alive" for entry in self._entries.values())
        return 2 * alive > 1 + len(self._entries)

    def forget(self, address: str) -> None:
        """Remove a dead member (a host taken out of the pool): it no longer counts in any majority.

        Gossip about it from the life it was forgotten in is ignored; a heartbeat from it, or news
        of a newer incarnation, brings it back. Forget it on every daemon, or their majorities are
        counted over different pools.

        A ``--peer`` seed never heard from is forgotten too, and forgetting a member already forgotten
        changes nothing (so the same forget can be sent again). What is forgotten is listed by
        :meth:`forgotten`, for the daemon to keep.

        :raises ValueError: it is unknown, this daemon itself, or not dead (stop its daemon first).
        """
        self.check_forget(address)
        entry = self._entries.get(address)
        if entry is None:
            if address in self._unheard_seeds:  # a --peer seed never heard from
                self._unheard_seeds.discard(address)
                self._forgotten[address] = -1
            return
        del self._entries[address]
        self._unheard_seeds.discard(address)
        self._needs_full_view.discard(address)
        self._forgotten[address] = entry.incarnation

    def check_forget(self, address: str) -> None:
        """Raise what :meth:`forget` would raise for ``address``, changing nothing.

        :raises ValueError: it is unknown, this daemon itself, or not dead.
        """
        if address == self.address:
            raise ValueError(f"{address} is this daemon")
        entry = self._entries.get(address)
        if entry is None:
            if address in self._unheard_seeds or address in self._forgotten:
                return
            raise ValueError(f"{address} is not a member; members: {', '.join(sorted(self._entries)) or 'none'}")
        if entry.state != "dead":
            raise ValueError(f"{address} is {entry.state}: only a dead member can be forgotten; stop its daemon and "
                             f"wait until it is dead (sd-actors hosts)")

    def subscribe(self, callback: Callable[[MembershipChange], object]) -> Callable[[], None]:
        """Call ``callback`` with every :class:`MembershipChange`, from tick and receive.

        The callback runs on the daemon's I/O thread, after the view is updated: keep it short.
        An exception it raises is logged and does not stop the others. Returns a function that
        unsubscribes (calling it twice is harmless).
        """
        token = self._next_subscription
        self._next_subscription += 1
        self._subscribers[token] = callback

        def unsubscribe() -> None:
            self._subscribers.pop(token, None)

        return unsubscribe

    # -- inside --------------------------------------------------------------------------------------

    def _state_after(self, silence: float) -> MemberState:
        if silence >= self._dead_after:
            return "dead"
        if silence >= self._suspect_after:
            return "suspect"
        return "alive"

    def _lateness(self, entry: _Entry, sent: float | None, now: float) -> float:
        """How much longer than its fastest heartbeats this one took to arrive (0 if unknown)."""
        if sent is None:
            return 0.0
        delay = now - sent  # the clocks' offset plus the time in transit
        if entry.offset is None:
            entry.offset = delay
        else:
            rise = min(_OFFSET_DRIFT_PER_SECOND * (now - entry.offset_updated),
                       _OFFSET_RISE_PER_HEARTBEAT * self._interval)
            entry.offset = min(entry.offset + max(rise, 0.0), delay)
        entry.offset_updated = now
        return delay - entry.offset

    def _learn(self, info: MemberInfo, *, via: str, sent_at: float, now: float,
               changes: list[MembershipChange]) -> None:
        """Take in what ``via`` says of one member; ``sent_at`` is when it said it, on our clock."""
        address = info.address
        if address == via:
            return  # the sender's word about itself was direct news
        if address in self._forgotten:
            if info.incarnation <= self._forgotten[address]:
                return  # a member forgotten on purpose, in the life it was forgotten in
            del self._forgotten[address]  # news of a later life: it is back
        if address == self.address:
            if info.state != "alive":
                self._needs_full_view.add(via)  # refute: our next beat to it says alive
            return
        heard_at = sent_at - info.heard
        entry = self._entries.get(address)
        if entry is None:
            entry = _Entry(address, info.public_key, info.incarnation, last_heard=heard_at,
                           state=self._state_after(now - heard_at))
            entry.died_at = now if entry.state == "dead" else None
            self._entries[address] = entry
            self._needs_full_view.add(address)
            changes.append(_change(entry, old_state=None, old_incarnation=None))
            return
        if info.incarnation < entry.incarnation:
            return
        old_state, old_incarnation = entry.state, entry.incarnation
        if info.incarnation > entry.incarnation:
            entry.begin_life(info.incarnation, info.public_key)
        else:
            if not entry.public_key:
                entry.public_key = info.public_key
            if heard_at <= entry.last_heard:
                return  # not fresher than what we know
            if entry.died_at is not None and heard_at <= entry.died_at:
                return  # news from before we declared it dead: stale, however it reached us
        entry.last_heard = max(entry.last_heard, heard_at)
        state = self._state_after(now - entry.last_heard)
        entry.state = state if old_state == "dead" else _better(old_state, state)
        if entry.state != "dead":
            entry.died_at = None
        elif entry.died_at is None:
            entry.died_at = now
        if (entry.state, entry.incarnation) != (old_state, old_incarnation):
            changes.append(_change(entry, old_state=old_state, old_incarnation=old_incarnation))

    def _heartbeats(self, now: float) -> list[tuple[str, Heartbeat]]:
        reachable = {address for address, entry in self._entries.items() if entry.state != "dead"}
        probes = self._next_probes()
        targets = reachable | self._unheard_seeds | set(probes)
        full_view = (self._unheard_seeds | set(probes) | self._needs_full_view) & targets
        others = sorted(targets - full_view)
        full_view.update(self._random.sample(others, min(self._fanout, len(others))))
        self._needs_full_view.clear()
        bare = Heartbeat(sender=self._self, sent=now)
        full = bare
        if full_view and self._entries:
            gossip = tuple(self._gossip(self._entries[address], now) for address in sorted(self._entries))
            full = Heartbeat(sender=self._self, members=gossip, sent=now)
        return [(address, full if address in full_view else bare) for address in sorted(targets)]

    def _next_probes(self) -> list[str]:
        """Up to ``fanout`` dead members, in turns: each is probed once before any is probed twice."""
        dead = {address for address, entry in self._entries.items() if entry.state == "dead"}
        probes: list[str] = []
        while len(probes) < min(self._fanout, len(dead)):
            if not self._probe_queue:
                self._probe_queue = sorted(dead.difference(probes))
                self._random.shuffle(self._probe_queue)
            address = self._probe_queue.pop()
            if address in dead and address not in probes:
                probes.append(address)
        return probes

    def _gossip(self, entry: _Entry, now: float) -> MemberInfo:
        return MemberInfo(address=entry.address, public_key=entry.public_key, incarnation=entry.incarnation,
                          state=entry.state, heard=max(0.0, now - entry.last_heard))

    def _snapshot(self, entry: _Entry) -> Member:
        return Member(address=entry.address, public_key=entry.public_key, state=entry.state,
                      incarnation=entry.incarnation, last_heard=entry.last_heard,
                      heard_directly=entry.heard_directly, is_self=False)

    def _own_snapshot(self) -> Member:
        return Member(address=self.address, public_key=self._self.public_key, state="alive",
                      incarnation=self.incarnation, last_heard=None, heard_directly=None, is_self=True)

    def _announce(self, changes: list[MembershipChange]) -> None:
        for change in changes:
            for callback in tuple(self._subscribers.values()):
                try:
                    callback(change)
                # A subscriber's bug must not stop the membership, nor the subscribers after it:
                # the daemon keeps serving (reliability rule 7), and the traceback is in the log.
                except Exception:
                    _logger.exception("a membership subscriber failed on %s", change)


def _change(entry: _Entry, *, old_state: MemberState | None, old_incarnation: int | None) -> MembershipChange:
    """The change from ``old_state`` and ``old_incarnation`` to where ``entry`` is now."""
    return MembershipChange(address=entry.address, old_state=old_state, new_state=entry.state,
                            old_incarnation=old_incarnation, new_incarnation=entry.incarnation)


def _worse(first: MemberState, second: MemberState) -> MemberState:
    return first if _RANK[first] >= _RANK[second] else second


def _better(first: MemberState, second: MemberState) -> MemberState:
    return first if _RANK[first] <= _RANK[second] else second


def _check_settings(*, interval: float, suspect_after: float, dead_after: float, fanout: int) -> None:
    for name, value in (("interval", interval), ("suspect_after", suspect_after), ("dead_after", dead_after)):
        if not 0 < value < math.inf:
            raise ValueError(f"{name} must be a number of seconds above 0, not {value!r}")
    if not suspect_after > interval:
        raise ValueError(
            f"suspect_after ({suspect_after} s) must be longer than interval ({interval} s), or members are "
            "suspected between two of their heartbeats; 3 intervals or more leaves room for a lost one"
        )
    if not dead_after > suspect_after:
        raise ValueError(f"dead_after ({dead_after} s) must be longer than suspect_after ({suspect_after} s)")
    if isinstance(fanout, bool) or not isinstance(fanout, int) or fanout < 1:
        raise ValueError(f"fanout must be an int of 1 or more, not {fanout!r}")
