"""A daemon's part in high availability: its lease and self-fencing, its restart ledger, and the
claims the HARestarters it runs make to the rest of the pool (policies/README.md, "HARestarter")."""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from sd_actors.actors import Component, ComponentFailed, DeploymentError, TerminationRecord
from sd_actors.descriptions import ComponentDescription
from sd_actors.net._peer_protocol import (
    ClaimAnswer,
    ClaimRestart,
    DomainsReply,
    ForgetHost,
    HostForgotten,
    ListDomains,
    TerminateSubtree,
)
from sd_actors.net._protocol import GetHosts, HostsReply, RecordInfo, RequestFailed
from sd_actors.plugins.hookspecs import hookimpl
from sd_actors.policies._lease import LeaseTerms, lease_expiry
from sd_actors.policies._ledger import LEDGER_FILE_NAME, ClaimOutcome, RestartLedger, Voter, claim_majority
from sd_actors.policies._watchdog import GuardedDomain, HostWatchdog, LeaseNews

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef, System
    from sd_actors.actors._remote import Peers
    from sd_actors.policies._takeover import Takeover

logger = logging.getLogger(__name__)

HIGH_AVAILABILITY_KEY: Final = "sd_actors.policies.high_availability"
"""The key of a daemon's :class:`HighAvailability` among its System's shared objects."""

HA_GENERATION: Final = "haGeneration"
"""The attribute an HARestarter gives each child and everything nested in it: which restart it is
(0 for the first deployment). A component that has it is stopped by its daemon when that daemon
loses its lease."""

FORGET_TIMEOUT: Final = 3.0
"""How long ``sd-actors forget-host`` waits for each daemon of the pool (they are asked side by side)."""


class HighAvailability:
    """One daemon's lease, fencing and restart ledger; what its HARestarters ask of the pool.

    :param system: the daemon's System (its components are fenced; this object is shared in it).
    :param peers: the daemon's peers: membership, heartbeat answers, links.
    :param state_dir: where the ledger's SQLite file lives.
    :param terms: the lease's duration, how early to fence, the margin.
    :param hypervisor: the libvirt URI ``ListDomains`` looks at (the VMs' default when None).
    :param is_this_host: whether an ``sfProcessHost`` names this daemon.
    """

    def __init__(self, *, system: System, peers: Peers, state_dir: Path, terms: LeaseTerms, hypervisor: str | None,
                 is_this_host: Callable[[str], bool]) -> None:
        from sd_actors.plugins._vm import DEFAULT_HYPERVISOR

        self.system = system
        self.peers = peers
        self.own_endpoint = peers.own_endpoint
        self.terms = terms
        self.hypervisor = hypervisor or DEFAULT_HYPERVISOR
        self.is_this_host = is_this_host
        self.ledger = RestartLedger(state_dir / LEDGER_FILE_NAME)
        self.retry_interval = peers.interval
        self.takeover: Takeover | None = None
        """Its HARestarters' replicas and their takeover (set by the daemon: policies/_takeover.py)."""
        # The host watchdog stops the HA domains here if this daemon dies or freezes (policies/_watchdog.py);
        # a daemon restarted within the lease its previous run held continues that lease.
        self.watchdog = HostWatchdog.open(state_dir, self.own_endpoint)
        self._inherited_expiry = -math.inf
        if self.watchdog.inherited is not None:
            self._inherited_expiry = self.watchdog.inherited.lease_expiry
            logger.warning("lease: continuing the lease of this folder's previous daemon (%.2f s left), as "
                           "the host watchdog (pid %s) last heard it", self._inherited_expiry - time.monotonic(),
                           self.watchdog.adopted_pid)
        elif self.watchdog.adopted_pid is not None:
            logger.info("watchdog: adopted the host watchdog (pid %s) of %s", self.watchdog.adopted_pid, state_dir)
        self._domains: dict[tuple[str, ...], tuple[GuardedDomain, ComponentRef, int]] = {}
        """The HA domains here by component path: the component that noted it, and :attr:`_lapses` then."""
        # Held while the domains, the lease's state below and what the watchdog hears change together.
        self._domains_lock = threading.Lock()
        self._holding: bool | None = None
        self._fence_at: float | None = None
        """When this daemon must fence unless a lease check renewed the lease before (None: none held)."""
        self._lapses = 0
        """How many times the lease was lost (also each time a check came after :attr:`_fence_at`)."""
        self._started = time.monotonic()
        self._stopped = threading.Event()
        self._closed = False
        # The lease thread never waits for the watchdog (a slow one would make its checks late, and a
        # late check fences): it leaves its newest news here and this reporter thread tells the watchdog.
        self._report_wanted = threading.Condition()
        self._next_report: LeaseNews | None = None
        self._told_fence_at = -math.inf
        """The fence time of the newest lease news the watchdog acknowledged: it may lag this daemon's own."""
        self._reporter = threading.Thread(target=self._report_leases, name="sd-actors-lease-report", daemon=True)
        self._reporter.start()
        self._thread = threading.Thread(target=self._keep_lease, name="sd-actors-lease", daemon=True)
        self._thread.start()
        system.shared(HIGH_AVAILABILITY_KEY, lambda: self)

    # -- the lease ---------------------------------------------------------------------------------
    def lease_expiry(self) -> float:
        """When this daemon's lease runs out (monotonic clock; ``-inf``: it holds none)."""
        electorate = self.peers.electorate()
        acknowledged = []
        for address in electorate:
            if address != self.own_endpoint:
                try:
                    acknowledged.append(self.peers.link(address).last_acknowledged)
                except ComponentFailed:  # known by gossip, no key yet: it never answered us
                    acknowledged.append(None)
        return max(self._inherited_expiry, lease_expiry(now=time.monotonic(), acknowledged=acknowledged,
                                                        electorate=len(electorate), duration=self.terms.duration))

    def holds_lease(self) -> bool:
        """Whether this daemon's lease runs long enough that it need not fence."""
        return self.lease_expiry() - time.monotonic() >= self.terms.fence_before

    def wait_to_redeploy(self, app: str, config: ComponentDescription) -> bool:
        """Before this daemon re-deploys ``app`` from its journal after a restart: an application with
        an HARestarter waits until this daemon holds a lease (at once when it continues the lease of
        its previous run). Its HA components must not start here while the pool may be restarting
        them elsewhere: only a daemon that holds its lease may run them. False: the daemon stopped."""
        if not _holds_restarter(config, self.system.runtime.component_types):
            return True
        check = min(self.peers.interval, self.terms.fence_before / 4)
        if not self.holds_lease():
            logger.warning("%s: re-deployed once this daemon holds a lease (a majority of the pool answers it): "
                           "its HA components may not run here before", app)
        while not self.holds_lease():
            if self._stopped.wait(check):
                return False
        return True

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False (at once) when this daemon stops."""
        return not self._stopped.wait(seconds)

    def _keep_lease(self) -> None:
        check = min(self.peers.interval, self.terms.fence_before / 4)
        while not self._stopped.wait(check):
            with self._domains_lock:
                expiry, remaining, holding = self._check_lease()
            # A lease not held is over for the watchdog too (a lapsed one may look long: it is not).
            with self._report_wanted:
                self._next_report = LeaseNews(endpoint=self.own_endpoint,
                                              lease_expiry=expiry if holding else -math.inf,
                                              fence_before=self.terms.fence_before)
                self._report_wanted.notify()
            if holding != self._holding:
                if holding:
                    logger.info("lease: held (a majority of the pool answers this daemon)")
                elif self._holding is not None:
                    logger.warning("lease: lost (no answer from a majority of the pool); stopping the components "
                                   "HARestarters would restart elsewhere")
                self._holding = holding
            if not holding:
                self.fence(remaining, lapsed=remaining >= self.terms.fence_before)

    def _report_leases(self) -> None:
        """Tell the watchdog the newest lease news with every HA domain here, until the daemon stops
        (the last news is told first). The domains are read while the watchdog's lock is held, so a
        domain noted meanwhile (:meth:`note_resource`) is either in this report or told after it."""
        while True:
            with self._report_wanted:
                while self._next_report is None and not self._stopped.is_set():
                    self._report_wanted.wait()
                news, self._next_report = self._next_report, None
            if news is None:
                return
            with self.watchdog.lock:
                if self.watchdog.report(news, self.guarded_domains()):
                    self._told_fence_at = news.fence_at

    def _check_lease(self) -> tuple[float, float, bool]:
        """The lease's end, the time left, and whether it is held, as the lease thread sees it now
        (``_domains_lock`` held). Fencing is sticky: a check that comes after the fence time the
        previous one computed (this daemon was frozen) counts the lease lost, whatever newer answers say."""
        now = time.monotonic()
        expiry = self.lease_expiry()
        remaining = expiry - now
        late = -math.inf if self._fence_at is None else now - self._fence_at
        lapsed = late >= 0
        if lapsed:
            logger.warning("lease: checked %.2f s after the time to fence (this daemon was frozen?): counted as "
                           "lost, whatever the peers answered since", late)
        holding = remaining >= self.terms.fence_before and not lapsed
        if lapsed or (not holding and self._fence_at is not None):
            self._lapses += 1
        self._fence_at = expiry - self.terms.fence_before if holding else None
        return expiry, remaining, holding

    def note_resource(self, ref: ComponentRef, resource: str | None) -> None:
        """What a component of this daemon holds now (``ComponentContext.set_resource``): the host
        watchdog guards the domains of HA components from now until the component says it holds
        nothing, told at once (acknowledged) when a domain is new. Not those of libvirt's test
        driver: they live in this process and die with it.

        A VM notes its domain when it defines it and, with ``haGeneration``, again just before it
        starts it: an HA domain may run here only while this daemon holds its lease, without a
        lapse since it was first noted (a daemon frozen in between may find it restarted elsewhere:
        policies/README.md).

        :raises DeploymentError: an HA domain here cannot be guarded or may not run now.
        """
        from sd_actors.plugins._vm import parse_domain_resource

        domain = parse_domain_resource(resource) if resource else None
        with self._domains_lock:
            if domain is None or domain[0].startswith("test:") or HA_GENERATION not in ref.description:
                self._domains.pop(ref.path, None)
                return
            guarded = GuardedDomain(domain[0], domain[1], ref.name_text)
            now = time.monotonic()
            known = self._domains.get(ref.path)
            again = known is not None and known[0] == guarded and known[1] is ref
            lapses = known[2] if known is not None and again else self._lapses
            self._domains[ref.path] = (guarded, ref, lapses)
            expiry = self.lease_expiry()
            # Past the fence time the watchdog knows, it may have stopped guarding a domain it found
            # stopped: from then on only a domain it is told of anew may start (first note, not again).
            if ((self._fence_at is not None and now >= self._fence_at) or lapses != self._lapses
                    or (again and now >= self._told_fence_at)):
                why = "its lease lapsed since it was deployed (this daemon was frozen or cut off)"
            elif expiry - now < self.terms.fence_before:
                why = "this daemon holds no lease (no answer from a majority of the pool)"
            elif again:
                return
            else:
                why = ""
                news = LeaseNews(endpoint=self.own_endpoint, lease_expiry=expiry, fence_before=self.terms.fence_before)
                if self._fence_at is None:
                    # Before the first lease check, the watchdog's fence time is this one: known here
                    # before the watchdog hears it. Set after its answer, a daemon frozen in between
                    # never learnt that it had been late (the watchdog had stopped guarding meanwhile).
                    self._fence_at = news.fence_at
        if not why:
            # Told outside _domains_lock (the reporter thread holds the watchdog's lock, then takes that one).
            if self.watchdog.report(news, [guarded], partial=True):
                with self._domains_lock:
                    self._told_fence_at = max(self._told_fence_at, news.fence_at)
                return
            why = f"the host watchdog does not answer (see {self.watchdog.state_dir / 'watchdog.log'})"
        raise DeploymentError(f"{ref.name_text}: domain {guarded.uuid} on {guarded.hypervisor} may not run here: "
                              f"{why}; its HARestarter restarts it where it may")

    def guarded_domains(self) -> list[GuardedDomain]:
        """The HA domains here that would outlive this daemon: every one noted until its component
        said it holds nothing, even if that component ended (a domain it failed to stop still runs)."""
        with self._domains_lock:
            return [domain for domain, _, _ in self._domains.values()]

    def leave_to_watchdog(self) -> None:
        """Stop keeping the lease (the daemon stops): the host watchdog goes on guarding the HA domains
        it last heard of, and destroys them when that lease runs out unless a daemon of this state
        folder comes back in time and reports them again."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._report_wanted:
            self._report_wanted.notify()
        if self._reporter is not threading.current_thread():
            self._reporter.join()
        self.watchdog.close()

    def fence(self, remaining: float, *, lapsed: bool = False) -> list[str]:
        """Stop every running component that carries ``haGeneration``; return their names
        (``lapsed``: the lease thread ran too late to know whether the lease held meanwhile).

        Not the stand-ins of parts other daemons run (RemoteComponent): those daemons hold leases
        of their own, and stopping a stand-in would stop a part that a daemon still in the majority
        keeps running (a daemon that restarts has no lease until it hears its pool again)."""
        from sd_actors.actors._remote import RemoteComponent

        runtime = self.system.runtime
        with runtime.changed:
            refs = sorted((ref for ref in runtime.components.values()
                           if ref.alive and HA_GENERATION in ref.description
                           and not isinstance(ref.component, RemoteComponent)),
                          key=lambda ref: len(ref.path))
        left = "it has run out" if remaining == -math.inf or remaining <= 0 else f"it runs out in {remaining:.2f} s"
        why = ("was frozen past its time to fence: its lease may have run out meanwhile, whatever it hears now"
               if lapsed else "is out of contact with the majority of its pool and may not keep running it past "
               f"its lease ({left})")
        stopped = []
        for ref in refs:
            if not ref.alive:
                continue  # an ancestor's termination took it along
            record = TerminationRecord.abnormal(
                f"fenced: this daemon ({self.own_endpoint}) {why}; the HARestarter restarts it elsewhere",
                ref.path, "self-fencing")
            logger.warning("lease: stopping %s", ref.name_text)
            runtime.terminate_component(ref, record, notify_parent=True)
            stopped.append(ref.name_text)
        return stopped

    # -- answering other daemons -----------------------------------------------------------------------
    def answers(self, message: object) -> bool:
        """Whether ``message`` is a request this object answers (see :meth:`answer`)."""
        return isinstance(message, ClaimRestart | ListDomains | ForgetHost) or (
            self.takeover is not None and self.takeover.answers(message))

    def answer(self, message: object) -> object:
        """The reply to a ``ClaimRestart``, a ``ListDomains``, a ``ForgetHost`` or a takeover's request."""
        if self.takeover is not None and self.takeover.answers(message):
            return self.takeover.answer(message)
        if isinstance(message, ClaimRestart):
            return self.answer_claim(message)
        if isinstance(message, ForgetHost):
            return self.forget_host(message)
        return self.list_domains()

    def forget_host(self, message: ForgetHost) -> HostForgotten | RequestFailed:
        """Forget a dead daemon here and on the others of the pool; asked by the user (not
        forwarded), only once a majority of the pool this daemon counts, the dead one and the
        unreachable included, confirms it: each counts the same pool and sees it dead. Otherwise
        nothing is forgotten: two sides of a partition never count disjoint majorities
        (policies/README.md, "Assumptions")."""
        address = message.address

        def refused(error: str) -> RequestFailed:
            return RequestFailed(error=f"{self.own_endpoint} cannot forget {address}: {error}",
                                 hint="sd-actors hosts shows each daemon's state")

        try:
            self.peers.check_forget(address)
            if message.forwarded:
                self.peers.forget(address)
                return HostForgotten(address=address, by=(self.own_endpoint,))
        except ValueError as error:
            return refused(str(error))
        pool = set(self.peers.electorate()) | {address}
        others = sorted(pool - {self.own_endpoint, address})
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(len(others), 1)) as ask:
            answers = dict(zip(others, ask.map(lambda other: self._confirms_forget(other, address, pool), others),
                               strict=True))
        confirmed = [other for other, why_not in answers.items() if why_not is None]
        failed = [f"{other}: {why_not}" for other, why_not in answers.items() if why_not is not None]
        if 2 * (1 + len(confirmed)) <= len(pool):
            return refused(f"only {1 + len(confirmed)} of the {len(pool)} daemons of the pool confirmed it, and a "
                           f"majority is {len(pool) // 2 + 1}; nothing was forgotten ({'; '.join(failed)})")
        try:
            self.peers.forget(address)
        except ValueError as error:
            return refused(str(error))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(len(confirmed), 1)) as tell:
            told = dict(zip(confirmed, tell.map(lambda other: self._tell_forget(other, address), confirmed),
                            strict=True))
        by = [self.own_endpoint, *(other for other, why_not in told.items() if why_not is None)]
        failed += [f"{other}: {why_not}" for other, why_not in told.items() if why_not is not None]
        return HostForgotten(address=address, by=tuple(sorted(by)), failed=tuple(sorted(failed)))

    def _confirms_forget(self, other: str, address: str, pool: set[str]) -> str | None:
        """None if the daemon at ``other`` counts ``pool`` (``address`` aside) and does not see
        ``address`` alive; otherwise why not."""
        try:
            reply = self.peers.link(other).request(GetHosts(), timeout=FORGET_TIMEOUT)
        except (TimeoutError, OSError, ComponentFailed) as error:
            return f"no answer ({type(error).__name__})"
        if not isinstance(reply, HostsReply):
            return f"{reply.error if isinstance(reply, RequestFailed) else reply}"
        counted = {host.address: host.state for host in reply.hosts}
        if counted.get(address, "dead") not in ("dead", "unheard"):
            return f"sees it {counted[address]}"
        if counted.keys() - {address} != pool - {address}:
            also, missing = sorted(counted.keys() - pool), sorted(pool - {address} - counted.keys())
            return "counts another pool (" + "; ".join(
                [*([f"also {', '.join(also)}"] if also else []), *([f"not {', '.join(missing)}"] if missing else [])]
            ) + "): forget one host at a time, on every daemon"
        return None

    def _tell_forget(self, other: str, address: str) -> str | None:
        """None once the daemon at ``other`` forgot ``address``; otherwise why not."""
        try:
            reply = self.peers.link(other).request(ForgetHost(address=address, forwarded=True),
                                                   timeout=FORGET_TIMEOUT)
        except (TimeoutError, OSError, ComponentFailed) as error:
            return f"no answer ({type(error).__name__})"
        if isinstance(reply, HostForgotten):
            return None
        return f"{reply.error if isinstance(reply, RequestFailed) else reply}"

    def answer_claim(self, claim: ClaimRestart) -> ClaimAnswer:
        """Grant ``claim`` unless an unreachable host may still hold its lease, or another claimant holds it."""
        needed = self.terms.duration + self.terms.margin
        for host in claim.unreachable:
            try:
                silent = self.peers.link(host).silent_for()
            except ComponentFailed:
                silent = math.inf  # a daemon this one never heard from
            if silent < needed:
                return ClaimAnswer(granted=False, reason=f"{host} was heard from {silent:.2f} s ago; its lease may "
                                   f"still run (wait {needed:g} s after its last news)")
            running = time.monotonic() - self._started
            if running < needed:  # restarted, it may have heard that host just before
                return ClaimAnswer(granted=False, reason=f"this daemon started {running:.2f} s ago: it cannot "
                                   f"vouch that {host} has been silent for {needed:g} s")
        refusal = self.takeover.refuse_claim(claim) if self.takeover is not None else None
        if refusal is not None:
            return refusal
        holder = self.ledger.grant(claim.path, claim.generation, claim.claimant, incarnation=claim.incarnation)
        if holder != claim.claimant:
            return ClaimAnswer(granted=False, holder=holder, reason=f"already granted to {holder}")
        return ClaimAnswer(granted=True, holder=holder)

    def list_domains(self) -> DomainsReply:
        import libvirt

        from sd_actors.plugins import hypervisor_connection

        # The System's own connection: with test:///path/host.xml it is the only one that sees its VMs.
        connection = hypervisor_connection(self.system, self.hypervisor)
        names = [domain.name() for domain in connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
        return DomainsReply(hypervisor=self.hypervisor, running=tuple(sorted(names)))

    # -- what an HARestarter asks ----------------------------------------------------------------------
    def live_hosts(self) -> tuple[str, ...]:
        """The daemons this one believes alive, itself included, as endpoints, sorted."""
        return tuple(sorted(member.address for member in self.peers.members() if member.state == "alive"))

    def confirm_gone(self, host: str, path: tuple[str, ...]) -> bool:
        """Make sure the component at ``path`` no longer runs on ``host``: True when that host's daemon
        says so (it terminates it if it still runs), False when it does not answer in time."""
        if self.is_this_host(host):
            return True  # a child here: its termination finished before its parent heard of it
        record = RecordInfo(kind="abnormal", description="its HARestarter restarts it", path=path)
        try:
            reply = self.peers.link(host).request(TerminateSubtree(path=path, record=record,
                                                                   parent_endpoint=self.own_endpoint),
                                                  timeout=2 * self.peers.interval)
        except (TimeoutError, OSError, ComponentFailed):
            return False
        return not isinstance(reply, RequestFailed) or "no component" in reply.error

    def claim(self, path: tuple[str, ...], generation: int, unreachable: tuple[str, ...], *,
              restarter: tuple[str, ...] = (), incarnation: str = "", epoch: int = 0) -> ClaimOutcome:
        """Ask the whole pool to grant this daemon the restart of ``path`` as ``generation`` in the
        HARestarter deployment ``incarnation``, once the ``unreachable`` daemons that ran parts of it
        are out of their leases; ``restarter`` (the HARestarter's path) at ``epoch`` claims it
        (policies/_takeover.py)."""
        claim = ClaimRestart(path=path, generation=generation, claimant=self.own_endpoint, unreachable=unreachable,
                             restarter=restarter, incarnation=incarnation, epoch=epoch)
        if not self.holds_lease():
            # Out of contact with the majority: no claim can win, and what it would start here
            # would be fenced at once. (Just started: the first heartbeats are answered shortly.)
            return ClaimOutcome(won=False, granted_by=(), electorate=len(self.peers.electorate()),
                                refusals=(f"{self.own_endpoint}: this daemon holds no lease",))
        voters: dict[str, Voter] = {
            address: self.answer_claim if address == self.own_endpoint else functools.partial(self._ask, address)
            for address in self.peers.electorate()}
        return claim_majority(claim, voters, window=self.terms.margin)

    def _ask(self, address: str, claim: ClaimRestart) -> ClaimAnswer:
        reply = self.peers.link(address).request(claim, timeout=self.terms.margin)
        if isinstance(reply, ClaimAnswer):
            return reply
        error = reply.error if isinstance(reply, RequestFailed) else type(reply).__name__
        return ClaimAnswer(granted=False, reason=error)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.leave_to_watchdog()
        if self.takeover is not None:
            self.takeover.close()
        self.ledger.close()


def _holds_restarter(description: ComponentDescription, types: Mapping[str, type[Component]]) -> bool:
    """Whether ``description`` or a component nested in it is an HARestarter."""
    from sd_actors.policies._restarter import HARestarter  # it builds on this module

    component_type = types.get(str(description.get("sfClass", "")))
    if component_type is not None and issubclass(component_type, HARestarter):
        return True
    return any(_holds_restarter(value, types) for value in description.values()
               if isinstance(value, ComponentDescription) and value.eager)


# -- sd-actors domains, sd-actors forget-host -----------------------------------------------------------
def _run_domains(arguments: argparse.Namespace, out: TextIO) -> int:
    from sd_actors.actors import client

    with client.connect(arguments, out) as connection:
        reply = client.request(connection, ListDomains(), timeout=arguments.timeout or 10.0)
    assert isinstance(reply, DomainsReply)
    if arguments.json:
        print(json.dumps({"hypervisor": reply.hypervisor, "running": list(reply.running)}), file=out)
    else:
        print(f"{reply.hypervisor}: {len(reply.running)} running", file=out)
        for name in reply.running:
            print(f"  {name}", file=out)
    return 0


def _run_forget_host(arguments: argparse.Namespace, out: TextIO) -> int:
    from sd_actors.actors import client
    from sd_actors.actors._remote import endpoint_of_host

    address = endpoint_of_host(arguments.address)
    with client.connect(arguments, out) as connection:
        reply = client.request(connection, ForgetHost(address=address), timeout=arguments.timeout or 30.0)
    assert isinstance(reply, HostForgotten)
    print(f"forgot {reply.address} on {', '.join(reply.by)}", file=out)
    for failure in reply.failed:
        print(f"not forgotten on {failure}: run this command against that daemon too", file=out)
    return 1 if reply.failed else 0


@hookimpl
def sd_actors_cli_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                           client_options: Callable[[argparse.ArgumentParser], None]) -> None:
    domains = commands.add_parser(
        "domains", help="list the domains running on a daemon's hypervisor",
        description="List the domains running on the hypervisor of a daemon (its --hypervisor), whoever made "
        "them: summed over the daemons of a pool, each virtual machine should appear once.")
    domains.add_argument("--json", action="store_true")
    client_options(domains)
    domains.set_defaults(run=_run_domains)
    forget = commands.add_parser(
        "forget-host", help="remove a dead daemon from the pool, on every daemon of the pool",
        description="Remove a dead daemon (a host taken out of the pool) from the membership of the daemon "
        "--host names and of the others of the pool, so that it no longer counts against the majority a "
        "daemon needs to keep its lease (policies/README.md): only if a majority of the pool (the dead one "
        "counted) confirms it counts the same pool and sees it dead, else nothing is forgotten. Each keeps the "
        "forget in its state folder, so it holds across restarts. A daemon that is not dead is refused; one that "
        "comes back later rejoins by itself. Exits 1 naming each daemon not told.")
    forget.add_argument("address", metavar="ADDR", help="the forgotten daemon: tcp://HOST:PORT, HOST:PORT or HOST")
    client_options(forget)
    forget.set_defaults(run=_run_forget_host)
