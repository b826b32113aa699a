"""Benchmark: daemons over ZeroMQ — remote ask round trip, pipelined throughput, ``up`` over 3 daemons.

What is measured (CURVE on everywhere unless said otherwise; every endpoint on 127.0.0.1, each
daemon and each echo server in its own process, so that a round trip crosses two processes and the
loopback TCP stack as it would cross two hosts, minus the wire)
    remote ask round trip
        Daemon A runs in this process (``open_daemon``), daemon B in a subprocess (``sd-actors
        daemon``), each with its keys, each authorizing and trusting the other: a real pair, with
        its heartbeat stream running. A asks B through the same ``PeerLink`` a RemoteComponent uses
        (a pooled ``Client``: one DEALER, one request at a time), two messages:
        ``GetHosts`` (the probe a RemoteComponent sends to a silent host; B answers with its
        membership view) and ``Heartbeat`` (what daemons send each other every interval; B updates
        its membership and answers ``Done``). Printed: p50 and p99 over ``--asks`` asks after
        ``--warmup`` unmeasured ones, each timed alone with ``perf_counter_ns``; the variants are
        run in interleaved blocks, so that all see the same machine state.
        Target: p50 ≤ 2× the bare CURVE round trip below.
    pipelined throughput
        One DEALER (A's keys) keeps ``--window`` Heartbeats in flight: it sends a window, then
        receives the window's answers, and so on for ``--messages`` messages, checking that each
        request id comes back once. Frames are encoded before the clock starts (the receiver's
        capacity is what is measured); the answers are decoded by the sender as a daemon would.
        The window stays at half ZeroMQ's default high-water mark (1,000 messages) or below: a
        ROUTER drops an answer to a peer whose pipe it believes full, and its count of what the
        peer has taken is updated in batches, so a window at the mark itself loses answers.
        Printed: requests/s, i.e. remote tells/s that one daemon takes from one peer.
        Target: ≥ 20,000 /s per daemon pair.
        Where the time goes: the CPU daemon B used per request (``/proc/PID/stat``, all threads,
        next to the echo server's); the per-request work the daemon does in Python, timed piece by
        piece in this process with the same registry and the same kind of thread pool (decode, the
        handler, encode, the hand-off to a worker thread and back to the I/O thread); and daemon B
        restarted under cProfile (one profiler per thread, counting thread CPU time, so waiting is
        not counted) for ``--profile-messages`` more Heartbeats: its steps with their inclusive
        CPU, and its busiest functions. The profiler slows the daemon several times and inflates
        functions called often, so read its shares, not its seconds.
    ``up`` of 1,000 components over 3 daemons
        Three ``sd-actors daemon`` subprocesses, each with ``--peer`` the other two, keys created
        and authorized/trusted before they start. The description holds a root Compound with three
        Compounds, one per daemon (``sfProcessHost`` the daemon's bind endpoint), of 332 Prims each:
        1,000 components. Printed: the wall time of ``sd-actors up FILE --host D1 --name big`` from
        its start to its exit (parsing, interpreter start and imports included: what a user waits
        for), the time ``up`` itself reports, the Prims each daemon says it runs (``status``), then
        ``sd-actors down big``, after which ``status`` on every daemon must show nothing of it left
        (a non-zero exit of ``down`` that leaves nothing running is printed as a PROBLEM line, not
        fatal, so that the figures still come out).
        Target: < 5 s up.

Baselines, measured in the same run on the same machine (microseconds depend on the machine; the
ratios compare across machines and runs where they do not)
    * bare round trip: a single-threaded pyzmq ROUTER echo server in a subprocess that unpacks each
      msgpack frame and packs an answer of the same shape as the daemon's (``{"v", "k", "i", "b"}``),
      asked by a DEALER that packs and unpacks with msgpack: what ZeroMQ, CURVE, msgpack and two
      Python processes cost with no framework at all. The server uses CURVE without a ZAP handler
      (ZAP runs once per connection, at the handshake, never per message). The same without CURVE
      is printed for reference: the difference is what encryption costs per message.
    * bare throughput: the same echo server, same window, same count: the ceiling one Python
      process reading and answering on one socket reaches on this machine.
    * for reference, the same CURVE echo server with the daemon's structure: each answer made on
      a 16-thread pool and handed back to the socket's thread through a queue and an inproc
      wake-up, as ``net._node.Node`` does. Between it and the bare server is what the structure
      costs; between it and the daemon, what the typed codec, the request plumbing and the
      handlers cost.
    * ``up``: the same 1,000 components on one daemon (no sfProcessHost), and ``sd-actors hosts``
      (the command line's own start: interpreter, imports, keys, one round trip). For reference,
      the journal writes a daemon makes while 1,000 components come up (created, deployed,
      started: SQLite with synchronous=FULL, one write reaching the disk per lifecycle step), done
      in this process on the same file system.

Usage: ``.venv/bin/python bench/net.py`` (``make bench`` runs it); ``--asks 5000``, ``--messages
50000``, ``--window 200``, ``--profile-messages 0`` (no profile), ``--skip-up``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack
import zmq
from _machine import machine  # bench/ is on sys.path when a benchmark runs as a script

from sd_actors.actors._client_commands import trust_daemon
from sd_actors.actors._daemon import DaemonSettings, make_registry, open_daemon
from sd_actors.net import Heartbeat, KeyPair, MemberInfo, authorize, load_keypair, load_or_create_keypair
from sd_actors.net._protocol import Done, GetHosts, HostsReply

TARGET_ASK_RATIO: Final = 2.0
TARGET_TELLS_PER_SECOND: Final = 20_000
TARGET_UP_SECONDS: Final = 5.0
UP_COMPONENTS: Final = 1_000
UP_DAEMONS: Final = 3
READY_TIMEOUT: Final = 30.0
ASK_TIMEOUT: Final = 10.0
BLOCK: Final = 100  # asks per variant per interleaved block
MAX_WINDOW: Final = 500  # pipelined requests in flight: half ZeroMQ's default high-water mark
SD_ACTORS: Final = Path(sys.executable).with_name("sd-actors")


# ------------------------------------------------------------------------------------- processes

def free_port() -> int:
    """A TCP port nobody listens on right now (the daemon binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first line the process prints on stdout, or "" if none comes within ``timeout`` seconds."""
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stream = process.stdout
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        return ""


def start_ready(command: list[str], *, env: dict[str, str] | None, log: Path, what: str) -> subprocess.Popen[str]:
    """Start ``command`` (stderr to ``log``) and wait for its ready line on stdout."""
    with log.open("ab") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL,
                                   text=True, env=env)
    line = read_line(process, READY_TIMEOUT)
    if "ready" not in line:
        stop(process)
        raise SystemExit(f"bench/net.py: {what} did not get ready ({line!r}); see {log}:\n{log.read_text()[-3000:]}")
    return process


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then wait (SIGKILL if it does not stop in 30 s)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@dataclass
class Pool:
    """Daemon state folders with keys, each authorizing and trusting every other, and a user."""

    root: Path
    endpoints: list[str]
    env: dict[str, str]

    def state(self, index: int) -> Path:
        return self.root / f"d{index}"

    @property
    def user_folder(self) -> Path:
        return self.root / "config" / "sd-actors"

    def cli(self, *arguments: str, timeout: float = 300) -> tuple[float, subprocess.CompletedProcess[str]]:
        started = time.perf_counter()
        result = subprocess.run([str(SD_ACTORS), *arguments], capture_output=True, text=True, env=self.env,
                                timeout=timeout, check=False)
        return time.perf_counter() - started, result


def make_pool(root: Path, endpoints: list[str]) -> Pool:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root),
           "XDG_CONFIG_HOME": str(root / "config"), "XDG_STATE_HOME": str(root / "state")}
    pool = Pool(root, endpoints, env)
    keys = [load_or_create_keypair(pool.state(index)).public.decode() for index in range(len(endpoints))]
    user_key = load_or_create_keypair(pool.user_folder).public.decode()
    for index, endpoint in enumerate(endpoints):
        for other, other_endpoint in enumerate(endpoints):
            authorize(pool.state(index), keys[other], f"d{other}")
            trust_daemon(other_endpoint, keys[other], pool.state(index))
        authorize(pool.state(index), user_key, "the benchmark's user")
        trust_daemon(endpoint, keys[index], pool.user_folder)
    return pool


def start_daemon(pool: Pool, index: int, *, python: list[str] | None = None) -> subprocess.Popen[str]:
    """``sd-actors daemon`` for pool member ``index``, with every other member as --peer."""
    peers = [arg for other in pool.endpoints if other != pool.endpoints[index] for arg in ("--peer", other)]
    command = python or [str(SD_ACTORS)]
    return start_ready([*command, "daemon", "--bind", pool.endpoints[index], "--state-dir", str(pool.state(index)),
                        *peers], env=pool.env, log=pool.root / f"d{index}.log", what=f"daemon {pool.endpoints[index]}")


# ------------------------------------------------------------------------------------- bare echo

def echo_server(bind: str, key_folder: str, hand_off: bool) -> None:
    """The baseline: a ROUTER that answers each msgpack frame with one of the daemon's shape.

    With ``hand_off``, each answer is made on a worker thread and handed back to the socket's
    thread as the daemon's Node does it (thread pool, a queue, an inproc wake-up): the cost of
    that structure alone, without the daemon's codec and handlers.
    """
    context: zmq.Context[Any] = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    if key_folder:
        keys = load_keypair(Path(key_folder))
        router.curve_server = True
        router.curve_secretkey = keys.secret
        router.curve_publickey = keys.public
    router.bind(bind)
    print(f"echo ready on {router.getsockopt_string(zmq.LAST_ENDPOINT)}", flush=True)
    if not hand_off:
        while True:
            identity, data = router.recv_multipart()
            frame = msgpack.unpackb(data, raw=False)
            router.send_multipart([identity, msgpack.packb({"v": 1, "k": "sd.ok", "i": frame["i"], "b": {}})])
    import collections
    import concurrent.futures

    wake_receiver = context.socket(zmq.PULL)
    wake_receiver.bind("inproc://wake")
    wake_sender = context.socket(zmq.PUSH)
    wake_sender.connect("inproc://wake")
    wake_lock = threading.Lock()
    outbox: collections.deque[tuple[bytes, bytes]] = collections.deque()
    workers = concurrent.futures.ThreadPoolExecutor(max_workers=16)

    def answer(identity: bytes, data: bytes) -> None:
        frame = msgpack.unpackb(data, raw=False)
        outbox.append((identity, msgpack.packb({"v": 1, "k": "sd.ok", "i": frame["i"], "b": {}})))
        with wake_lock:
            wake_sender.send(b"", zmq.NOBLOCK)

    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(wake_receiver, zmq.POLLIN)
    while True:
        events = dict(poller.poll(200))
        if wake_receiver in events:
            with contextlib.suppress(zmq.Again):
                while True:
                    wake_receiver.recv(zmq.NOBLOCK)
        while outbox:
            router.send_multipart(outbox.popleft(), zmq.NOBLOCK)
        if router in events:
            with contextlib.suppress(zmq.Again):
                while True:
                    identity, data = router.recv_multipart(zmq.NOBLOCK)
                    workers.submit(answer, identity, data)


# ------------------------------------------------------------------------------------- clients

Ask = Callable[[int], None]


def dealer(endpoint: str, keys: KeyPair | None, server_public: bytes | None) -> zmq.Socket[Any]:
    context: zmq.Context[Any] = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)  # answers are never refused on this side, however many are pending
    if keys is not None:
        assert server_public is not None
        sock.curve_serverkey = server_public
        sock.curve_publickey = keys.public
        sock.curve_secretkey = keys.secret
    sock.connect(endpoint)
    return sock


def bare_ask(sock: zmq.Socket[Any]) -> Ask:
    def ask(request_id: int) -> None:
        sock.send(msgpack.packb({"v": 1, "k": "sd.hosts", "i": request_id, "b": {}}))
        if not sock.poll(int(ASK_TIMEOUT * 1000)):
            raise TimeoutError("the echo server did not answer")
        answer = msgpack.unpackb(sock.recv(), raw=False)
        assert answer["i"] == request_id

    return ask


def percentiles(samples: list[int]) -> tuple[float, float]:
    """p50 and p99 in microseconds of nanosecond samples."""
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 / 1e3, p99 / 1e3


def measure_latency(variants: dict[str, Ask], asks: int, warmup: int) -> dict[str, tuple[float, float]]:
    """Interleaved blocks of BLOCK asks per variant; p50/p99 of each, in µs."""
    for ask in variants.values():
        for request_id in range(warmup):
            ask(request_id)
    samples: dict[str, list[int]] = {name: [] for name in variants}
    request_id = warmup
    clock = time.perf_counter_ns
    while any(len(taken) < asks for taken in samples.values()):
        for name, ask in variants.items():
            taken = samples[name]
            for _ in range(min(BLOCK, asks - len(taken))):
                request_id += 1
                started = clock()
                ask(request_id)
                taken.append(clock() - started)
    return {name: percentiles(taken) for name, taken in samples.items()}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process ``pid`` used so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Rate:
    per_second: float
    server_cpu: float  # CPU seconds of the answering process per request


def pipelined(sock: zmq.Socket[Any], frames: list[bytes], window: int, decode: Callable[[bytes], int],
              server_pid: int) -> Rate:
    """Windows of ``window`` frames sent, then their answers received (each request id once)."""
    answered = bytearray(len(frames))
    cpu_before = process_cpu(server_pid)
    started = time.perf_counter()
    for first in range(0, len(frames), window):
        batch = frames[first:first + window]
        for frame in batch:
            sock.send(frame)
        for _ in batch:
            if not sock.poll(int(ASK_TIMEOUT * 1000)):
                missing = len(frames) - sum(answered)
                raise SystemExit(f"bench/net.py: pipelined run to {sock.getsockopt_string(zmq.LAST_ENDPOINT)} lost "
                                 f"answers ({missing} of {len(frames)} missing, window {window})")
            request_id = decode(sock.recv())
            assert not answered[request_id], request_id
            answered[request_id] = 1
    elapsed = time.perf_counter() - started
    cpu = process_cpu(server_pid) - cpu_before
    assert all(answered)
    return Rate(len(frames) / elapsed, cpu / len(frames))


# ------------------------------------------------------------------------------------- where the time goes

def per_request_costs(heartbeat: Heartbeat, handle_heartbeat: Callable[[], object], repeat: int = 20_000
                      ) -> dict[str, float]:
    """µs of the Python work a daemon does per request, step by step, in this process (one thread)."""
    import concurrent.futures

    registry = make_registry()
    frame = registry.encode(heartbeat, request_id=1)
    costs: dict[str, float] = {}

    def timed(name: str, run: Callable[[], object], count: int = repeat) -> None:
        started = time.perf_counter()
        for _ in range(count):
            run()
        costs[name] = (time.perf_counter() - started) / count * 1e6

    timed("decode the Heartbeat frame (typed codec)", lambda: registry.decode(frame, max_size=1 << 26))
    timed("  of which MemberInfo() (checks address and key)", lambda: MemberInfo(
        address=heartbeat.sender.address, public_key=heartbeat.sender.public_key,
        incarnation=heartbeat.sender.incarnation))
    timed("handler: Peers.receive(Heartbeat) (daemon A)", handle_heartbeat)
    timed("encode the Done answer (typed codec)", lambda: registry.encode(Done(), request_id=1))
    timed("  baseline: msgpack.unpackb of the same frame", lambda: msgpack.unpackb(frame, raw=False))
    done = {"v": 1, "k": "sd.ok", "i": 1, "b": {}}
    timed("  baseline: msgpack.packb of a frame like it", lambda: msgpack.packb(done))

    # The hand-off to the worker pool and back, as Node does it: submit, then the worker's answer
    # is queued and the I/O thread woken through an inproc PUSH/PULL pair.
    context: zmq.Context[Any] = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind("inproc://bench-wake")
    push = context.socket(zmq.PUSH)
    push.connect("inproc://bench-wake")
    lock = threading.Lock()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as workers:
        def wake() -> None:
            with lock:
                push.send(b"", zmq.NOBLOCK)

        def round_trip() -> None:
            workers.submit(wake)
            pull.recv()

        timed("hand-off: pool submit → worker → inproc wake → back", round_trip, repeat // 4)
    push.close(0)
    pull.close(0)
    context.term()
    return costs


def profile_daemon_child(arguments: list[str], output: str) -> int:
    """Run ``sd-actors daemon ARGS`` with one cProfile (thread CPU time) per thread; stats to ``output``."""
    from sd_actors.actors._cli import main as cli_main

    profiles: list[tuple[threading.Thread, cProfile.Profile]] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append((self, profile))
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    status = cli_main(arguments)
    with lock:
        finished = [profile for thread, profile in profiles if not thread.is_alive()]
    stats: pstats.Stats | None = None
    for profile in finished:
        with contextlib.suppress(TypeError):  # a thread that never ran a profiled call
            if stats is None:
                stats = pstats.Stats(profile, stream=io.StringIO())
            else:
                stats.add(profile)
    if stats is not None:
        stats.dump_stats(output)
    return int(status)


# The steps of a request in the daemon, for the profile's inclusive rows: (file, function, what it is).
STEPS: Final = (
    ("net/_node.py", "_run", "I/O thread, all of it"),
    ("net/_node.py", "_receive_all", "  receive, decode, submit"),
    ("net/_wire.py", "decode", "    decode (typed codec)"),
    ("concurrent/futures/thread.py", "submit", "    hand to the pool"),
    ("concurrent/futures/thread.py", "_worker", "worker threads, all of it"),
    ("net/_node.py", "_handle", "  the request"),
    ("actors/_remote.py", "receive", "    Peers.receive (membership)"),
    ("net/_node.py", "reply", "    Request.reply"),
    ("net/_wire.py", "encode", "      encode (typed codec)"),
    ("net/_node.py", "_send", "      queue + inproc wake-up"),
)


def busiest(stats_file: Path, count: int = 12) -> tuple[list[tuple[str, float, float, int]],
                                                      list[tuple[str, float, int]]]:
    """The ``count`` busiest functions by own CPU (name, own s, incl. s, calls), and the STEPS (incl. s)."""
    stats = pstats.Stats(str(stats_file), stream=io.StringIO())
    rows = []
    found: dict[str, tuple[str, float, int]] = {}
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = re.sub(r".*/(site-packages|lib/python3\.\d+)/", "", filename)
        short = re.sub(r".*/(actors|net)/", r"\1/", short)
        rows.append((f"{name} ({short}:{line})" if line else name, own, cumulative, calls))
        for step_file, step_name, label in STEPS:
            # Several functions may share a name in one file (the codec's inner encode/decode):
            # the step is the busiest of them.
            if short == step_file and name == step_name and cumulative > found.get(label, ("", -1.0, 0))[1]:
                found[label] = (label, cumulative, calls)
    rows.sort(key=lambda entry: entry[1], reverse=True)
    ordered = [found[label] for _, _, label in STEPS if label in found]
    return rows[:count], ordered


# ------------------------------------------------------------------------------------- 1 and 2

@dataclass
class PairResults:
    latency: dict[str, tuple[float, float]]
    throughput: dict[str, Rate]
    costs: dict[str, float]
    profile: list[tuple[str, float, float, int]]
    profile_inclusive: list[tuple[str, float, int]]
    profile_throughput: float
    profile_cpu: float
    profile_messages: int


def measure_pair(root: Path, args: argparse.Namespace) -> PairResults:
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    pool = make_pool(root, endpoints)
    user = load_keypair(pool.user_folder)
    keys_a, keys_b = load_keypair(pool.state(0)), load_keypair(pool.state(1))
    echo_curve, echo_curve_endpoint = start_echo_server(root, curve=True)
    echo_plain, echo_plain_endpoint = start_echo_server(root, curve=False)
    echo_pool, echo_pool_endpoint = start_echo_server(root, curve=True, hand_off=True)
    echo_keys = load_keypair(root / "echo-curve")
    daemon_b = start_daemon(pool, 1)
    sockets: list[zmq.Socket[Any]] = []
    try:
        settings = DaemonSettings(bind=endpoints[0], state_dir=pool.state(0), peers=(endpoints[1],), host="bench-a")
        with open_daemon(settings) as daemon_a:
            link = daemon_a.peers.link(endpoints[1])
            incarnation = daemon_a.peers.membership.incarnation
            beat = Heartbeat(sender=MemberInfo(address=endpoints[0], public_key=keys_a.public.decode(),
                                               incarnation=incarnation))

            def daemon_ask(message: object, answer: type) -> Ask:
                def ask(_: int) -> None:
                    reply = link.request(message, timeout=ASK_TIMEOUT)
                    assert isinstance(reply, answer), reply

                return ask

            bare_curve = dealer(echo_curve_endpoint, user, echo_keys.public)
            bare_plain = dealer(echo_plain_endpoint, None, None)
            bare_pool = dealer(echo_pool_endpoint, user, echo_keys.public)
            sockets += [bare_curve, bare_plain, bare_pool]
            variants = {
                "daemon GetHosts": daemon_ask(GetHosts(), HostsReply),
                "daemon Heartbeat": daemon_ask(beat, Done),
                "bare CURVE": bare_ask(bare_curve),
                "bare plain": bare_ask(bare_plain),
                "bare hand-off": bare_ask(bare_pool),
            }
            latency = measure_latency(variants, args.asks, args.warmup)

            registry = make_registry()
            heartbeat_frames = [registry.encode(beat, request_id=index) for index in range(args.messages)]
            bare_frames = [msgpack.packb({"v": 1, "k": "sd.hosts", "i": index, "b": {}})
                           for index in range(args.messages)]

            def typed(data: bytes) -> int:
                return registry.decode(data, max_size=1 << 26).request_id

            def bare(data: bytes) -> int:
                return int(msgpack.unpackb(data, raw=False)["i"])

            pipe_daemon = dealer(endpoints[1], keys_a, keys_b.public)
            sockets.append(pipe_daemon)
            pipelined(pipe_daemon, heartbeat_frames[:args.window], args.window, typed, daemon_b.pid)  # warm-up
            throughput = {
                "daemon Heartbeat": pipelined(pipe_daemon, heartbeat_frames, args.window, typed, daemon_b.pid),
                "bare CURVE": pipelined(bare_curve, bare_frames, args.window, bare, echo_curve.pid),
                "bare plain": pipelined(bare_plain, bare_frames, args.window, bare, echo_plain.pid),
                "bare hand-off": pipelined(bare_pool, bare_frames, args.window, bare, echo_pool.pid),
            }
            member_b = next(member for member in daemon_a.peers.members() if member.address == endpoints[1])
            beat_b = Heartbeat(sender=MemberInfo(address=endpoints[1], public_key=keys_b.public.decode(),
                                                 incarnation=member_b.incarnation))
            key_b = keys_b.public.decode()
            costs = per_request_costs(beat, lambda: daemon_a.peers.receive(beat_b, key_b))
            profile: list[tuple[str, float, float, int]] = []
            inclusive: list[tuple[str, float, int]] = []
            profile_throughput = profile_cpu = 0.0
            profile_messages = min(args.messages, args.profile_messages)
            if profile_messages > 0:
                for sock in sockets:
                    sock.close(0)
                sockets.clear()
                stop(daemon_b)
                stats_file = root / "daemon-b.prof"
                daemon_b = start_daemon(pool, 1, python=[sys.executable, __file__, "--profile-daemon",
                                                         str(stats_file), "--"])
                pipe_daemon = dealer(endpoints[1], keys_a, keys_b.public)
                sockets.append(pipe_daemon)
                pipelined(pipe_daemon, heartbeat_frames[:args.window], args.window, typed, daemon_b.pid)
                profile_throughput = pipelined(pipe_daemon, heartbeat_frames[:profile_messages], args.window, typed,
                                               daemon_b.pid).per_second
                stop(daemon_b)
                if stats_file.exists():
                    profile, inclusive = busiest(stats_file)
                    profile_cpu = pstats.Stats(str(stats_file), stream=io.StringIO()).total_tt  # type: ignore[attr-defined]
    finally:
        for sock in sockets:
            sock.close(0)
        for process in (daemon_b, echo_curve, echo_plain, echo_pool):
            stop(process)
    return PairResults(latency, throughput, costs, profile, inclusive, profile_throughput, profile_cpu,
                       profile_messages)


def start_echo_server(root: Path, *, curve: bool, hand_off: bool = False) -> tuple[subprocess.Popen[str], str]:
    """An echo server subprocess and the endpoint it bound (a port the kernel chose)."""
    folder = root / ("echo-curve" if curve else "echo-plain")
    if curve:
        load_or_create_keypair(folder)
    command = [sys.executable, __file__, "--echo", "tcp://127.0.0.1:0", "--echo-keys", str(folder) if curve else "",
               *(["--echo-hand-off"] if hand_off else [])]
    log = root / f"{folder.name}{'-hand-off' if hand_off else ''}.log"
    with log.open("ab") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL,
                                   text=True)
    line = read_line(process, READY_TIMEOUT)
    match = re.search(r"ready on (\S+)", line)
    if match is None:
        stop(process)
        raise SystemExit(f"bench/net.py: the echo server did not start ({line!r}):\n{log.read_text()[-3000:]}")
    return process, match.group(1)


# ------------------------------------------------------------------------------------- 3

def description(endpoints: list[str], per_daemon: int, *, spread: bool) -> str:
    groups = []
    for index, endpoint in enumerate(endpoints):
        host = f'sfProcessHost "{endpoint}"; ' if spread else ""
        prims = " ".join(f"p{n} extends Prim;" for n in range(per_daemon))
        groups.append(f"    g{index} extends Compound {{ {host}{prims} }}")
    body = "\n".join(groups)
    return f'#include "org/smartfrog/components.sf"\nsfConfig extends Compound {{\n{body}\n}}\n'


@dataclass
class UpResults:
    up: float
    up_reported: float
    down: float
    local_up: float
    local_up_reported: float
    local_down: float
    hosts: float
    placed: dict[str, int]
    down_problems: list[str]
    journal: float


def journal_writes(folder: Path, components: int) -> float:
    """Seconds for what a daemon journals while ``components`` come up: created, deployed, started.

    The same Journal the daemons use (SQLite, WAL, synchronous=FULL: each write reaches the disk
    before it returns), in a folder on the same file system as their state folders.
    """
    from sd_actors.actors._events import State
    from sd_actors.actors._journal import open_journal

    with open_journal(folder) as journal:
        journal.begin_deploy("bench", "sfConfig extends Compound {}", requested_by="bench", host="bench")
        started = time.perf_counter()
        for index in range(components):
            journal.record_component("bench", ("bench", f"c{index}"), component_class="sd_actors.actors.Prim",
                                     host="bench", state=State.CREATED)
        for state in (State.DEPLOYED, State.STARTED):
            for index in range(components):
                journal.record_state("bench", ("bench", f"c{index}"), state, None)
        return time.perf_counter() - started


def reported_seconds(output: str) -> float:
    match = re.search(r"started in ([0-9.]+) s", output)
    return float(match.group(1)) if match else float("nan")


def measure_up(root: Path) -> UpResults:
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(UP_DAEMONS)]
    pool = make_pool(root, endpoints)
    per_daemon = (UP_COMPONENTS - 1 - UP_DAEMONS) // UP_DAEMONS
    assert 1 + UP_DAEMONS + per_daemon * UP_DAEMONS == UP_COMPONENTS
    spread_file, local_file = root / "big.sf", root / "local.sf"
    spread_file.write_text(description(endpoints, per_daemon, spread=True))
    local_file.write_text(description(endpoints, per_daemon, spread=False))
    daemons: list[subprocess.Popen[str]] = []
    try:
        daemons.extend(start_daemon(pool, index) for index in range(UP_DAEMONS))
        wait_for_members(pool)
        hosts, _ = pool.cli("hosts", "--host", endpoints[0])

        up, result = pool.cli("up", str(spread_file), "--host", endpoints[0], "--name", "big", "--settle", "0")
        check(result, "up big")
        up_reported = reported_seconds(result.stdout)
        placed = {endpoint: count_started(pool, endpoint, "big") for endpoint in endpoints}
        down, problems = down_and_check(pool, "big")

        local_up, result = pool.cli("up", str(local_file), "--host", endpoints[0], "--name", "local", "--settle", "0")
        check(result, "up local")
        local_up_reported = reported_seconds(result.stdout)
        local_down, more = down_and_check(pool, "local")
        problems += more
    finally:
        for process in daemons:
            stop(process)
    journal = journal_writes(root / "journal", UP_COMPONENTS)
    return UpResults(up, up_reported, down, local_up, local_up_reported, local_down, hosts, placed, problems,
                     journal)


def down_and_check(pool: Pool, app: str) -> tuple[float, list[str]]:
    """Time ``sd-actors down APP``; then check with status that nothing of it runs on any daemon.

    A non-zero exit is reported rather than fatal when the application is gone all the same, so
    that the figure is printed with the problem next to it.
    """
    elapsed, result = pool.cli("down", app, "--host", pool.endpoints[0])
    problems = []
    if result.returncode != 0:
        message = " ".join(result.stderr.split()) or " ".join(result.stdout.split())
        problems.append(f"sd-actors down {app} exited {result.returncode}: {message}")
    _, status = pool.cli("status", "--json", "--host", pool.endpoints[0])
    check(status, "status")
    states = {entry["name"]: entry["status"] for entry in json.loads(status.stdout)["applications"]}
    left = {endpoint: count_started(pool, endpoint, app) for endpoint in pool.endpoints}
    if states.get(app) != "terminated" or any(left.values()):
        raise SystemExit(f"bench/net.py: after sd-actors down {app}, the journal says {states.get(app)!r} and "
                         f"started components remain: {left}; {problems}")
    if problems:
        problems[-1] += f" (yet {app} is terminated in the journal and no component of it runs)"
    return elapsed, problems


def check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"bench/net.py: sd-actors {what} failed ({result.returncode}):\n"
                         f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def wait_for_members(pool: Pool) -> None:
    """Until the first daemon sees every other as alive (the heartbeat streams are up)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        _, result = pool.cli("hosts", "--json", "--host", pool.endpoints[0])
        if result.returncode == 0:
            states = {host["address"]: host["state"] for host in json.loads(result.stdout)}
            if all(states.get(endpoint) == "alive" for endpoint in pool.endpoints):
                return
        time.sleep(0.2)  # polling another process: nothing to wait on here
    raise SystemExit("bench/net.py: the daemons did not see each other alive in time")


def count_started(pool: Pool, endpoint: str, app: str) -> int:
    """How many of the Prims (app:gN:pM) the daemon at ``endpoint`` runs, started."""
    _, result = pool.cli("status", "--json", "--host", endpoint)
    check(result, f"status on {endpoint}")
    return sum(1 for application in json.loads(result.stdout)["applications"] if application["name"] == app
               for component in application["components"]
               if len(component["path"]) == 3 and component["state"] == "started")


# ------------------------------------------------------------------------------------- report

def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:<56}{value:>15}   {note}".rstrip(), flush=True)


def verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def report(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(f"libzmq {zmq.zmq_version()}, pyzmq {zmq.__version__}, msgpack {'.'.join(map(str, msgpack.version))}; "
          "CURVE on unless said otherwise\n")
    with tempfile.TemporaryDirectory(prefix="sd-actors-bench-") as temporary:
        root = Path(temporary)
        pair = measure_pair(root / "pair", args)

        print(f"== remote ask round trip, daemon A → daemon B, {args.asks:,} asks each after {args.warmup:,} "
              "warm-up (µs)")
        row("", "p50 / p99")
        bare_p50 = pair.latency["bare CURVE"][0]
        for name, label in (("daemon GetHosts", "PeerLink.request(GetHosts()) → HostsReply"),
                            ("daemon Heartbeat", "PeerLink.request(Heartbeat) → Done"),
                            ("bare CURVE", "  baseline: bare DEALER/ROUTER + msgpack, CURVE"),
                            ("bare plain", "  reference: the same without CURVE"),
                            ("bare hand-off", "  reference: bare CURVE + the daemon's thread hand-off")):
            p50, p99 = pair.latency[name]
            note = ""
            if name.startswith("daemon"):
                ratio = p50 / bare_p50
                note = f"p50 {ratio:.2f}× bare; target ≤ {TARGET_ASK_RATIO:g}×: {verdict(ratio <= TARGET_ASK_RATIO)}"
            elif name == "bare plain":
                note = f"CURVE minus plain: {round(bare_p50 - p50):+d} µs (noise when negative)"
            elif name == "bare hand-off":
                note = f"{p50 / bare_p50:.2f}× bare: the structure alone, no codec, no handler"
            row(label, f"{p50:.0f} / {p99:.0f}", note)

        print(f"\n== pipelined throughput, one DEALER, windows of {args.window:,}, {args.messages:,} requests")
        daemon, bare_curve, bare_plain = (pair.throughput[name] for name in ("daemon Heartbeat", "bare CURVE",
                                                                             "bare plain"))
        ok = daemon.per_second >= TARGET_TELLS_PER_SECOND
        row("Heartbeats answered by daemon B", f"{daemon.per_second:,.0f} /s",
            f"target ≥ {TARGET_TELLS_PER_SECOND:,} /s: {verdict(ok)}")
        row("  baseline: bare echo server, CURVE", f"{bare_curve.per_second:,.0f} /s",
            f"the daemon reaches {daemon.per_second / bare_curve.per_second:.0%} of it")
        row("  reference: bare echo server, no CURVE", f"{bare_plain.per_second:,.0f} /s")
        hand_off = pair.throughput["bare hand-off"]
        row("  reference: bare CURVE + the daemon's hand-off", f"{hand_off.per_second:,.0f} /s",
            f"{hand_off.server_cpu * 1e6:.1f} µs server CPU per request")
        row("wall time per request: daemon / bare CURVE", f"{1e6 / daemon.per_second:.1f} / "
            f"{1e6 / bare_curve.per_second:.1f} µs")
        row("server CPU per request: daemon / bare CURVE", f"{daemon.server_cpu * 1e6:.1f} / "
            f"{bare_curve.server_cpu * 1e6:.1f} µs",
            f"daemon B busy {daemon.server_cpu * daemon.per_second:.0%} of one core, echo server "
            f"{bare_curve.server_cpu * bare_curve.per_second:.0%}")

        print("\n== where a daemon's time goes per request: its Python steps, each timed alone in this process")
        for name, cost in pair.costs.items():
            row(name, f"{cost:.1f} µs")
        if pair.profile:
            print(f"\n== daemon B under cProfile (thread CPU time, one profiler per thread) during "
                  f"{pair.profile_messages:,} pipelined Heartbeats ({pair.profile_throughput:,.0f} /s while profiled; "
                  "the profiler's own cost inflates functions called often)")
            total = pair.profile_cpu or 1.0
            print(f"{'step (inclusive CPU)':<60}{'s':>8}{'share':>8}{'calls':>10}")
            for label, cumulative, calls in pair.profile_inclusive:
                print(f"{label:<60}{cumulative:8.3f}{cumulative / total:8.0%}{calls:10,}")
            print(f"{'busiest functions (own CPU)':<84}{'own s':>8}{'incl. s':>9}{'calls':>10}")
            for name, own, cumulative, calls in pair.profile:
                print(f"{name[:83]:<84}{own:8.3f}{cumulative:9.3f}{calls:10,}")
            print(f"{'all profiled threads':<84}{pair.profile_cpu:8.3f}")

        if args.skip_up:
            return
        up = measure_up(root / "up")
        print(f"\n== up of {UP_COMPONENTS:,} components over {UP_DAEMONS} daemons (sd-actors subprocesses, wall time)")
        row(f"sd-actors up, spread over {UP_DAEMONS} daemons", f"{up.up:.2f} s",
            f"target < {TARGET_UP_SECONDS:g} s: {verdict(up.up < TARGET_UP_SECONDS)}")
        row("  of which up's own report (submit → all started)", f"{up.up_reported:.2f} s")
        row("  Prims started on each daemon (status)", " + ".join(str(count) for count in up.placed.values()))
        row("sd-actors down big", f"{up.down:.2f} s")
        row("  baseline: the same 1,000 on one daemon, up", f"{up.local_up:.2f} s",
            f"up's own report {up.local_up_reported:.2f} s; down {up.local_down:.2f} s")
        row("  baseline: sd-actors hosts (CLI start + 1 ask)", f"{up.hosts:.2f} s")
        row(f"  reference: journal writes of {UP_COMPONENTS:,} coming up", f"{up.journal:.2f} s",
            "created + deployed + started, SQLite synchronous=FULL, one process")
        for problem in up.down_problems:
            print(f"PROBLEM: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asks", type=int, default=5_000, help="measured asks per variant (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured asks first (default %(default)s)")
    parser.add_argument("--messages", type=int, default=50_000, help="pipelined requests (default %(default)s)")
    parser.add_argument("--window", type=int, default=MAX_WINDOW,
                        help=f"requests in flight, at most {MAX_WINDOW} (default %(default)s)")
    parser.add_argument("--profile-messages", type=int, default=10_000,
                        help="pipelined requests to daemon B under cProfile; 0: no profile (default %(default)s)")
    parser.add_argument("--skip-up", action="store_true", help="skip the 1,000-component up")
    parser.add_argument("--echo", metavar="BIND", help=argparse.SUPPRESS)
    parser.add_argument("--echo-keys", default="", help=argparse.SUPPRESS)
    parser.add_argument("--echo-hand-off", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-daemon", metavar="STATS", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.echo is not None:
        echo_server(args.echo, args.echo_keys, args.echo_hand_off)
        return
    if args.profile_daemon is not None:
        sys.exit(profile_daemon_child([arg for arg in rest if arg != "--"], args.profile_daemon))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not 1 <= args.window <= MAX_WINDOW:
        parser.error(f"--window must be from 1 to {MAX_WINDOW} (half ZeroMQ's default high-water mark)")
    report(args)


if __name__ == "__main__":
    main()
