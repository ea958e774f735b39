"""
The benchmark (issue 7): C{python -m benchmarks SCENARIO}, run from the
repository root of a checkout (it is not part of the installed package).

It compiles a C epoll load generator and a trivial C broadcast relay
(C{loadgen.c}, C{relay.c}, next to this file) with gcc, then for each
server under test - ours (C{twistd -n tcpchat}, the one next to this
Python; C{traced}: ours with clocks on each stage of a reactor turn,
L{benchmarks.trace}), C{ncat --chat}, the C relay, a bare Twisted relay
(L{benchmarks.twisted_relay}), or any command given with C{--server
NAME=CMD} - and each run:
starts the server pinned to one core, starts the generator pinned to another,
lets it connect the clients and send timestamped lines, reads the server's
RSS and CPU time from C{/proc}, stops the server.  It prints one row per
server (medians over the runs) and the ratio of ours to each.

Scenarios::

    fanout  one sender, --receivers others, as fast as a window of in-flight
            lines allows: deliveries/s, loss, order, latency
    rate    --clients clients all sending, --rate lines/s in total: latency
    idle    --clients clients connect and wait: how many are held, connect
            rate, RSS per connection
    soak    rate, for minutes (--duration): RSS growth
    rooms   rate, with the clients spread over --rooms rooms, each joining
            its own with C{/join rK}: latency; ours and --server rows only
            (ncat and the relays have no rooms)
    joins   no server: in this process, what one join+part costs in a room
            of 5, 50, 500 and 5,000 members, presence quiet and announced
            (L{benchmarks.joins})
    ws-idle (issue 16) --clients WebSocket clients (1000) connect to our
            C{--web} port and wait: how many are held, RSS per connection
    ws-rate (issue 16) --receivers WebSocket receivers (100), --senders
            plain TCP senders (10, send only: nc-style) at --rate lines/s in
            total (2000): latency from the TCP sender to the WebSocket
            receivers, loss, order
    metrics (issue 17) --clients idle clients (15000) and --not-reading
            clients that never read (300) on ours with --metrics; --scrapes
            scrapes (50) at --scrape-rate a second (10): the server's time to
            make each (its tcpchat_scrape_duration_seconds), the round trip,
            the body, the reactor lag; then --relay (rate) with ours, ours
            scraped once a second (C{scraped}) and any --server rows, side by
            side (L{benchmarks.metrics})
    suite   all of the issue's scenarios, full size (--quick: small), then joins
            (ws-idle and ws-rate only where autobahn is installed)

The two WebSocket scenarios run ours (and C{traced}) only, started with
C{--web tcp:0:interface=127.0.0.1}; each such row comes with a C{-tcp} row
(C{ours-tcp}): the same server and scenario with every client on the TCP
port, in the same run, so that the ratio column says what the WebSocket
costs.  The generator does the upgrade (no Origin header) and finds the
stamps inside the JSON events (L{benchmarks.loadgen} C{--ws-port}).

With C{--nodes N}, each scenario also runs against N of our nodes of one
chat on one redis-server (C{--redis}), a row of its own next to ours (the
single in-memory node) in the same run: the benchmark starts Debian's
redis-server for each run in the work directory on a free port (nothing
written to disk), the nodes on it, and connects client I to node I mod N.
That row also shows what Redis did: its CPU (C{INFO cpu}) per line sent, its
script calls (C{INFO commandstats}) per line sent, and its memory
(C{INFO memory}) sampled through the run.  The nodes and Redis share the
server's core, unless C{--node-cores} spreads them.  C{--batch K} (rate
mode) sends K lines of one sender in each write.

The generator is format-agnostic: a client is ready once the server sends it
any byte, and a relayed line counts when it ends with the stamp
C{|SSSS:QQQQQQQQ:TTTTTTTTTTTTTTTT} (sender, sequence number, send time in
nanoseconds; fixed-width hex).  Our server runs with C{--history 0
--quiet-presence} (loopback is exempt from the flood and
per-address limits by default) and is otherwise as shipped, logging included
(to a file).
"""

# Starting the programs under test (gcc, twistd, ncat, the C tools) is the point:
# ruff: noqa: S603

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import math
import os
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import BinaryIO, TextIO

from benchmarks import joins, metrics
from benchmarks.trace import STAGES

#: This folder, and the checkout it is in (what C{-m benchmarks.*} children need
#: on their path).
HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent

#: The generator's and relay's C sources, in this folder.
SOURCES = {"loadgen": "loadgen.c", "relay": "relay.c"}

#: What our server is run with: abuse limits out of the way through
#: documented options (loopback is exempt from the flood and per-address
#: limits by default), and every client in the room from its first byte
#: (the generator counts a client ready then; twistd would otherwise wait
#: --probe-grace for a word, see the README); everything else as shipped.
OURS_OPTIONS = ("--history", "0", "--quiet-presence", "--probe-grace", "0")

#: Built-in servers: a name and an argv template ({port}, {relay}).
BUILTIN_SERVERS = {
    "ours": "",  # built by ours_argv()
    "ncat": "ncat -l 127.0.0.1 {port} --chat --max-conns 65000",
    "relay": "{relay} --port {port} --limit {limit}",
    # Twisted's ceiling: a bare relay, each read sent as is (not run by default).
    "twisted": "{python} -m benchmarks.twisted_relay {port}",
    # Ours with clocks on each stage of a reactor turn (trace.py).
    "traced": "",  # built by ours_argv()
    # Ours with --metrics, scraped once a second during the run (metrics.py).
    "scraped": "",  # built by ours_argv()
}

#: Scenarios only servers with rooms can run: ours (traced or not) and
#: --server rows; ncat and the two relays put everyone in one room.
NEEDS_ROOMS = frozenset({"rooms"})

#: The WebSocket scenarios (issue 16): ours and traced only, each with its
#: TCP comparison row.
WEB_SCENARIOS = ("ws-idle", "ws-rate")

#: Where our server serves its page and WebSocket in those scenarios.
WEB_LISTEN = "tcp:0:interface=127.0.0.1"

#: Seconds to wait for a server to listen.
START_DEADLINE = 30.0

#: The most nodes --nodes starts (the generator takes up to 64 ports).
MAX_NODES = 64

_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
_SERVING_WEB = re.compile(rb"web page and WebSocket on http://127\.0\.0\.1:(\d+)/")


class BenchError(Exception):
    """The benchmark cannot go on; the text says why."""


# --- scenarios ---------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """
    One measurement: what the generator does against each server.

    @ivar kind: fanout, rate, idle or soak (sets the table's columns).
    @ivar mode: the generator's mode: flood, rate or idle.
    @ivar clients: connections, senders included.
    @ivar senders: how many of them send.
    @ivar rate: lines per second in total (rate mode).
    @ivar duration: seconds of sending (or of holding, idle).
    @ivar size: bytes per line sent, line end included.
    @ivar window: flood mode: lines per sender not yet at every receiver.
    @ivar connect_rate: new connections per second (0: as fast as the
        server takes them, at most C{connect_window} pending).
    @ivar rooms: how many rooms the clients are spread over, client I
        joining room C{rI mod rooms} (0: no joining, the one room).
    @ivar batch: rate mode: lines each send puts in one write (the total
        rate in lines is the same).
    @ivar web: the clients past the senders connect by WebSocket to our
        C{--web} port (the senders stay on TCP).
    @ivar send_only: the senders are not counted as receivers.
    """

    kind: str
    mode: str
    clients: int
    senders: int
    rate: float = 1000.0
    duration: float = 2.0
    size: int = 64
    window: int = 128
    connect_rate: float = 1000.0
    connect_window: int = 256
    rooms: int = 0
    batch: int = 1
    web: bool = False
    send_only: bool = False

    @property
    def title(self) -> str:
        """A one-line description for the table's header."""
        if self.kind == "ws-idle":
            what = f"ws-idle: {self.clients} WebSocket clients held {self.duration:g} s"
        elif self.kind == "ws-rate":
            what = f"ws-rate: {self.clients - self.senders} WebSocket receivers, "
            what += f"{self.senders} TCP senders (send only) {self.rate:g} lines/s in total"
        elif self.kind == "fanout":
            what = f"fan-out 1 -> {self.clients - 1}, window {self.window}"
        elif self.kind == "idle":
            what = f"idle: {self.clients} clients held {self.duration:g} s"
        elif self.rooms:
            what = f"{self.kind}: {self.clients} clients in {self.rooms} rooms"
            what += f" ({self.clients / self.rooms:g} each), {self.senders} sending"
            what += f" {self.rate:g} lines/s in total"
        else:
            what = f"{self.kind}: {self.clients} clients, {self.senders} sending"
            what += f" {self.rate:g} lines/s in total"
        if self.mode != "idle":
            what += f", {self.size}-byte lines, {self.duration:g} s"
        if self.batch > 1 and self.mode == "rate":
            what += f", {self.batch} lines per write"
        pace = f"{self.connect_rate:g}/s" if self.connect_rate else "unpaced"
        return f"{what}; connects {pace}"

    def loadgen_args(
        self, port: int | Sequence[int], limit: float, web_port: int | None = None
    ) -> list[str]:
        """
        The generator's command-line arguments: against one port, or
        several (client I connecting to the I mod Nth); with C{web_port}
        (a L{web} scenario), the clients past the senders by WebSocket there.
        """
        ports = [port] if isinstance(port, int) else list(port)
        web = [f"--ws-port={web_port}", f"--tcp-clients={self.senders}"] if web_port else []
        return [
            f"--port={ports[0]}" if len(ports) == 1 else f"--ports={','.join(map(str, ports))}",
            f"--clients={self.clients}",
            f"--senders={self.senders}",
            f"--mode={self.mode}",
            f"--rate={self.rate:g}",
            f"--window={self.window}",
            f"--size={self.size}",
            f"--duration={self.duration:g}",
            f"--connect-rate={self.connect_rate:g}",
            f"--connect-window={self.connect_window}",
            f"--limit={limit:.0f}",
            "--per-sender",
            *([f"--rooms={self.rooms}"] if self.rooms else []),
            *([f"--batch={self.batch}"] if self.batch > 1 and self.mode == "rate" else []),
            *web,
            *(["--send-only"] if self.send_only else []),
        ]

    def time_limit(self) -> float:
        """Seconds the generator may take at most, all phases together."""
        connect = self.clients / self.connect_rate if self.connect_rate else self.clients / 500
        return 60.0 + connect + self.duration * 1.5


# --- what the generator and /proc say -------------------------------------------


def parse_words(line: str) -> dict[str, float]:
    """C{key=value} words of a generator record, as numbers (others dropped)."""
    values: dict[str, float] = {}
    for word in line.split()[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            continue
        try:
            values[key] = float(value)
        except ValueError:
            continue
    return values


@dataclass
class Report:
    """What one generator run printed: its result and its per-sender records."""

    result: dict[str, float]
    senders: list[dict[str, float]]
    error: str | None = None


def parse_report(text: str) -> Report:
    """
    Read the generator's output: the last C{result} line and the C{sender}
    lines.  A C{result error=...} line becomes L{Report.error}.
    """
    result: dict[str, float] = {}
    senders: list[dict[str, float]] = []
    error = None
    for line in text.splitlines():
        if line.startswith("result "):
            match = re.search(r"\berror=(\S+)", line)
            error = match.group(1) if match else None
            result = parse_words(line)
        elif line.startswith("sender "):
            senders.append(parse_words(line))
    if not result and error is None:
        error = "no result"
    return Report(result, senders, error)


def rss_kib(status: str) -> int:
    """VmRSS in KiB from the text of C{/proc/PID/status}."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    if match is None:
        raise ValueError("no VmRSS")
    return int(match.group(1))


def allowed_cpus(status: str) -> set[int]:
    """The CPUs a process may run on, from the text of C{/proc/PID/status}."""
    match = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)
    cpus: set[int] = set()
    for part in match.group(1).split(",") if match else ():
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def cpu_ticks(stat: str) -> int:
    """utime + stime, in clock ticks, from the text of C{/proc/PID/stat}."""
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def busy_ticks(stat: str) -> int:
    """
    Ticks all CPUs spent running programs (user, nice, system) or stolen by
    the hypervisor, from the C{cpu} line of C{/proc/stat}.  Interrupt time
    is left out: loopback TCP is processed there, on behalf of the server
    and the generator, yet charged to neither.
    """
    numbers = [int(n) for n in stat.splitlines()[0].split()[1:]]
    user, nice, system = numbers[0:3]
    steal = numbers[7] if len(numbers) > 7 else 0
    return user + nice + system + steal


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def process_rss(pid: int) -> int | None:
    """The RSS of a process in KiB, or None once it is gone."""
    status = _read(f"/proc/{pid}/status")
    try:
        return None if status is None else rss_kib(status)
    except ValueError:
        return None  # a zombie has no VmRSS


def process_cpu(pid: int) -> float | None:
    """CPU seconds a process has used, or None once it is gone."""
    stat = _read(f"/proc/{pid}/stat")
    return None if stat is None else cpu_ticks(stat) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all CPUs have spent busy since boot."""
    stat = _read("/proc/stat")
    return 0.0 if stat is None else busy_ticks(stat) / os.sysconf("SC_CLK_TCK")


# --- tools and processes ------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """The compiled C programs."""

    loadgen: Path
    relay: Path


def compile_tools(workdir: Path, sources: Path = HERE) -> Tools:
    """Compile the C sources (in C{sources}) into C{workdir} with gcc -O2."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise BenchError("gcc is not installed (apt-get install gcc libc6-dev)")
    built: dict[str, Path] = {}
    jobs = []
    for name, source in SOURCES.items():
        path = sources / source
        if not path.is_file():
            raise BenchError(f"{source} is missing from {sources}")
        built[name] = workdir / name
        argv = [gcc, "-O2", "-Wall", "-o", str(built[name]), str(path)]
        jobs.append((source, subprocess.Popen(argv, stderr=subprocess.PIPE)))
    for source, job in jobs:
        _, errors = job.communicate(timeout=120)
        if job.returncode:
            raise BenchError(f"gcc failed on {source}:\n{errors.decode(errors='replace')}")
    return Tools(built["loadgen"], built["relay"])


def _child_setup(core: int | set[int] | None, nice: int = 0) -> Callable[[], None]:
    """
    What a child runs before exec: its own core (or cores), its niceness, the open-file
    soft limit raised to the hard one, and death with this process
    (PR_SET_PDEATHSIG), so that nothing outlives an interrupted benchmark.
    """

    def setup() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core} if isinstance(core, int) else core)
        if nice:
            with suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, nice)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        with suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


def stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """End a process we started, by its PID: SIGTERM, then SIGKILL after C{grace}."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)
    return process.returncode


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_serving(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    """
    Wait until a client can connect and is sent something (each server
    under test greets or announces).  The probe closes politely: ncat quits
    when a connection is reset before it accepts it.
    """
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as probe:
                probe.settimeout(1.0)
                if probe.recv(1):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"nothing served on port {port} within {START_DEADLINE:g} s")


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class ServerSpec:
    """
    A server under test: C{ours}, or a command with C{{port}} in it, or
    (C{nodes} > 0) that many of ours on one Redis.
    """

    name: str
    command: str = ""
    nodes: int = 0
    #: A WebSocket scenario's comparison row: every client on the TCP port.
    tcp_receivers: bool = False

    @property
    def row(self) -> str:
        """The name of its row in a table."""
        return f"{self.name}-tcp" if self.tcp_receivers else self.name

    @property
    def is_ours(self) -> bool:
        return self.name == "ours" and not self.command

    @property
    def is_traced(self) -> bool:
        """Ours under L{benchmarks.trace}."""
        return self.name == "traced" and not self.command

    @property
    def is_scraped(self) -> bool:
        """Ours with C{--metrics}, scraped once a second while it runs."""
        return self.name == "scraped" and not self.command

    @property
    def is_cluster(self) -> bool:
        """Nodes of ours on one Redis of the run's own."""
        return self.nodes > 0 and not self.command

    @property
    def runs_ours(self) -> bool:
        """Our twistd, traced or not: it finds its own port and says it in its log."""
        return self.is_ours or self.is_traced or self.is_scraped or self.is_cluster

    @property
    def has_rooms(self) -> bool:
        """
        Whether it can run a scenario with rooms: ours does; ncat and the
        relays do not; a C{--server} command is taken at its word.
        """
        return self.runs_ours or bool(self.command)

    @property
    def from_checkout(self) -> bool:
        """Run as C{python -m benchmarks.*}: needs the checkout on its path."""
        if self.command:
            return "-m benchmarks." in self.command  # (a variant of ours)
        return self.is_traced or self.name == "twisted"

    def trace_report(self, workdir: Path) -> Path:
        return workdir / f"{self.name}.trace.json"


@dataclass
class Options:
    """Settings that are not part of a scenario."""

    runs: int = 3
    reactor: str = "epoll"
    ours_args: tuple[str, ...] = ()
    pin: bool = True
    nice: int = 0
    quiet_wait: float = 30.0
    sample: float = 5.0
    verbose: bool = False
    #: --nodes: node K on node_cores[K mod len], Redis on any of them
    #: (empty: all on the server's core).
    node_cores: tuple[int, ...] = ()


def twistd_path() -> str:
    """The twistd next to this Python (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).with_name("twistd")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("twistd")
    if found is None:
        raise BenchError("twistd is not installed")
    return found


def ours_argv(options: Options, web: bool = False, scraped: bool = False) -> list[str]:
    """
    Our server: twistd in the foreground, on any free port, logging to its
    standard output (as the README's command does), which the benchmark
    sends to a file.  Not C{--logfile}: twistd's log file rotates every
    1 MB by renaming every older file, so at benchmark volume (tens of MB/s)
    that renaming - not tcpchat - took a fifth of the server's time, more
    the longer the run.  With C{web}, it also serves its page and WebSocket
    on another free port (L{WEB_LISTEN}); with C{scraped}, its metrics
    (L{metrics.METRICS_LISTEN}).
    """
    return [
        twistd_path(),
        "-n",
        "--pidfile=",
        "-r",
        options.reactor,
        "tcpchat",
        "--port",
        "0",
        "--interface",
        "127.0.0.1",
        *OURS_OPTIONS,
        *(["--web", WEB_LISTEN] if web else []),
        *(["--metrics", metrics.METRICS_LISTEN] if scraped else []),
        *options.ours_args,
    ]


@contextmanager
def running_server(
    spec: ServerSpec,
    tools: Tools,
    workdir: Path,
    core: int | None,
    options: Options,
    life: float,
    web: bool = False,
) -> Iterator[tuple[subprocess.Popen[bytes], int, int, int]]:
    """
    Start a server, wait until it serves, yield it, its port, (C{web}:
    ours with C{--web}) its WebSocket's port and (C{scraped}) its metrics
    port, stop it.
    """
    log = workdir / f"{spec.name}.out"
    web_port = metrics_port = 0
    if spec.runs_ours:
        argv = ours_argv(options, web, spec.is_scraped)
        if spec.is_traced:
            report = spec.trace_report(workdir)
            report.unlink(missing_ok=True)
            argv[:1] = [sys.executable, "-m", "benchmarks.trace", str(report)]
        port = 0
    else:
        port = free_port()
        template = spec.command or BUILTIN_SERVERS[spec.name]
        words = shlex.split(template)
        if words and "/" not in words[0] and "{" not in words[0]:
            words[0] = shutil.which(words[0]) or words[0]
        argv = [
            w.format(port=port, relay=tools.relay, limit=f"{life:.0f}", python=sys.executable)
            for w in words
        ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup(core, options.nice),
            cwd=workdir,
            env=checkout_env() if spec.from_checkout else None,
        )
    try:
        deadline = time.monotonic() + START_DEADLINE
        if spec.runs_ours:
            port = _port_from_log(log, process, deadline)
            if web:
                web_port = _port_from_log(log, process, deadline, _SERVING_WEB)
            if spec.is_scraped:
                metrics_port = _port_from_log(log, process, deadline, metrics.SERVING_METRICS)
        wait_until_serving(port, process, deadline)
        yield process, port, web_port, metrics_port
    except BenchError as e:
        tail = _log_tail(log)
        raise BenchError(f"{spec.name}: {e}\n{tail}".rstrip()) from None
    finally:
        stop(process)


def checkout_env() -> dict[str, str]:
    """
    This environment with the checkout first on C{PYTHONPATH}, for the
    C{-m benchmarks.*} servers (they run in the work directory).  Only for
    them: another server's Python (an older checkout's twistd) must not
    import this checkout's tcpchat.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
    return env


def _port_from_log(
    log: Path,
    process: subprocess.Popen[bytes],
    deadline: float,
    pattern: re.Pattern[bytes] = _LISTENING,
) -> int:
    while time.monotonic() < deadline:
        try:
            match = pattern.search(log.read_bytes())
        except OSError:
            match = None
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            raise BenchError(f"twistd exited with status {process.returncode}")
        time.sleep(0.05)
    ports = {_SERVING_WEB: "its web port", metrics.SERVING_METRICS: "its metrics port"}
    raise BenchError(f"twistd did not log {ports.get(pattern, 'its port')} in time")


# --- a cluster: nodes of ours on one Redis -----------------------------------------

#: How the benchmark's redis-server runs, besides its port and directory:
#: in the foreground, nothing written to disk.
REDIS_OPTIONS = ("--save", "", "--appendonly", "no", "--daemonize", "no")

#: What a node logs once it is part of the chat.
_JOINED = re.compile(rb"joined the chat at redis://")

#: Lines of a server's log that tell of trouble (a node fallen behind warns).
_TROUBLE = re.compile(rb"#(?:warn|error|critical)\]|Traceback|Unhandled")


def cluster_name(nodes: int) -> str:
    """The row of C{--nodes N}."""
    return f"{nodes}-node{'s' * (nodes != 1)}"


def _encode_command(args: Sequence[str | int]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(stream: BinaryIO) -> object:
    """One RESP2 reply from C{stream} (errors raise L{BenchError})."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise BenchError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise BenchError(f"redis: {rest.decode(errors='replace')}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise BenchError(f"redis: unexpected reply {line[:40]!r}")


def redis_command(port: int, *args: str | int, timeout: float = 5.0) -> object:
    """One command to the Redis on loopback C{port}; its reply (a small RESP client)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(_encode_command(args))
        with connection.makefile("rb") as stream:
            return _read_reply(stream)


def parse_info(text: str) -> dict[str, str]:
    """The C{key:value} lines of Redis's C{INFO}."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            info[key.strip()] = value.strip()
    return info


def redis_stats(info: dict[str, str]) -> dict[str, float]:
    """
    From C{INFO cpu memory commandstats}: C{cpu} (used_cpu_sys +
    used_cpu_user, seconds), C{memory} (used_memory, bytes) and
    C{calls:NAME} and C{usec:NAME}, the calls of each command so far and
    the microseconds they took.
    """
    stats: dict[str, float] = {}
    if "used_cpu_sys" in info and "used_cpu_user" in info:
        stats["cpu"] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    if "used_memory" in info:
        stats["memory"] = float(info["used_memory"])
    for key, value in info.items():
        match = re.match(r"calls=(\d+),usec=(\d+)", value)
        if key.startswith("cmdstat_") and match:
            name = key[len("cmdstat_") :]
            stats[f"calls:{name}"] = float(match.group(1))
            stats[f"usec:{name}"] = float(match.group(2))
    return stats


def redis_info(port: int) -> dict[str, float]:
    """L{redis_stats} of the Redis on C{port} now."""
    reply = redis_command(port, "INFO", "cpu", "memory", "commandstats")
    return redis_stats(parse_info(reply if isinstance(reply, str) else ""))


def room_records(port: int, limit: int = 100_000) -> list[int]:
    """The length of each room's record (stream) in the Redis on C{port}."""
    keys: list[str] = []
    cursor = "0"
    for _ in range(limit // 1000 + 1):  # (bounded, whatever SCAN answers)
        reply = redis_command(port, "SCAN", cursor, "MATCH", "tcpchat:room:*:log", "COUNT", 1000)
        if not isinstance(reply, list) or len(reply) != 2:
            break
        cursor, found = str(reply[0]), reply[1]
        keys.extend(str(key) for key in found or ())
        if cursor == "0" or len(keys) >= limit:
            break
    lengths = [redis_command(port, "XLEN", key) for key in keys]
    return [n for n in lengths if isinstance(n, int)]


def wait_for_redis(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Wait until the Redis on C{port} answers C{PING}."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"redis-server exited with status {process.returncode}")
        with suppress(OSError, BenchError):
            if redis_command(port, "PING", timeout=1.0) == "PONG":
                return
        time.sleep(0.05)
    raise BenchError(f"redis-server did not answer on port {port} within {START_DEADLINE:g} s")


def _wait_for_log(
    log: Path, pattern: re.Pattern[bytes], process: subprocess.Popen[bytes], deadline: float
) -> None:
    while time.monotonic() < deadline:
        with suppress(OSError):
            if pattern.search(log.read_bytes()):
                return
        if process.poll() is not None:
            raise BenchError(f"twistd exited with status {process.returncode}")
        time.sleep(0.05)
    raise BenchError(f"twistd did not log {pattern.pattern.decode()!r} in time")


def stop_all(processes: Sequence[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """End processes we started, together: SIGTERM to each, then SIGKILL after C{grace}."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


@dataclass
class Started:
    """
    What a run is against: the server's processes (one, or a cluster's
    nodes), the port of each, their logs, and a cluster's Redis.
    """

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    redis_port: int = 0
    #: Ours with C{--web}: the port of its page and WebSocket.
    web_port: int = 0
    #: C{scraped}: the port of its metrics.
    metrics_port: int = 0


@contextmanager
def running(
    spec: ServerSpec,
    tools: Tools,
    workdir: Path,
    core: int | None,
    options: Options,
    life: float,
    web: bool = False,
) -> Iterator[Started]:
    """
    Start a server or a cluster (C{web}: ours with its WebSocket too), wait
    until it serves, yield it, stop it.
    """
    if spec.is_cluster:
        with running_cluster(spec, workdir, core, options) as started:
            yield started
        return
    with running_server(spec, tools, workdir, core, options, life, web) as (
        process,
        port,
        web_port,
        metrics_port,
    ):
        logs = [workdir / f"{spec.name}.out"] if spec.runs_ours else []
        yield Started([process], [port], logs, web_port=web_port, metrics_port=metrics_port)


@contextmanager
def running_cluster(
    spec: ServerSpec, workdir: Path, core: int | None, options: Options
) -> Iterator[Started]:
    """
    A redis-server of this run's own (a free port, its directory in the
    work directory, nothing saved), then C{spec.nodes} of ours on it, all
    on C{core} (or node K on C{options.node_cores[K mod len]}, Redis on any
    of them); yield them once every node serves; stop the nodes, then Redis.
    """
    spread = options.node_cores if core is not None else ()
    executable = shutil.which("redis-server")
    if executable is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    home = workdir / f"{spec.name}.redis"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    started = Started(redis_port=free_port())
    argv = [executable, "--port", str(started.redis_port), "--bind", "127.0.0.1"]
    argv += ["--dir", str(home), "--logfile", str(home / "redis.log"), *REDIS_OPTIONS]
    started.redis = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        preexec_fn=_child_setup(set(spread) if spread else core, options.nice),
        cwd=home,
    )
    try:
        deadline = time.monotonic() + START_DEADLINE
        wait_for_redis(started.redis_port, started.redis, deadline)
        url = f"redis://127.0.0.1:{started.redis_port}/0"
        for number in range(1, spec.nodes + 1):
            log = workdir / f"{spec.name}.node{number}.out"
            with open(log, "wb") as out:
                started.processes.append(
                    subprocess.Popen(
                        [*ours_argv(options), "--redis", url],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_child_setup(
                            spread[(number - 1) % len(spread)] if spread else core, options.nice
                        ),
                        cwd=workdir,
                    )
                )
            started.logs.append(log)
        for process, log in zip(started.processes, started.logs, strict=True):
            port = _port_from_log(log, process, deadline)
            _wait_for_log(log, _JOINED, process, deadline)
            wait_until_serving(port, process, deadline)
            started.ports.append(port)
        yield started
    except BenchError as e:
        tails = [f"{log.name}:\n{_log_tail(log)}" for log in started.logs]
        tails.append(f"redis.log:\n{_log_tail(home / 'redis.log')}")
        raise BenchError("\n".join([f"{spec.name}: {e}", *tails]).rstrip()) from None
    finally:
        stop_all(started.processes)
        stop(started.redis)


def log_trouble(log: Path, chunk: int = 1 << 22) -> tuple[int, str]:
    """
    How many lines of a server's log tell of trouble (warnings, errors, tracebacks),
    and the first of them; read a piece at a time (a long run logs a lot).
    """
    count, first, rest = 0, "", b""
    try:
        with open(log, "rb") as f:
            while block := f.read(chunk):
                *lines, rest = (rest + block).split(b"\n")
                for line in lines:
                    if _TROUBLE.search(line):
                        count += 1
                        first = first or line.decode(errors="replace")[:300]
    except OSError:
        return 0, ""
    if rest and _TROUBLE.search(rest):
        count += 1
        first = first or rest.decode(errors="replace")[:300]
    return count, first


# --- one run -------------------------------------------------------------------------


@dataclass
class Run:
    """The figures of one run against one server."""

    figures: dict[str, float]
    senders: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: A cluster's Redis: (seconds since the run started, used_memory bytes).
    redis_memory: list[tuple[float, float]] = field(default_factory=list)
    #: The server's RSS (a cluster's nodes summed) while it ran: (seconds, KiB).
    rss: list[tuple[float, float]] = field(default_factory=list)


def _total(values: Sequence[float | None]) -> float | None:
    """The sum of what is known (None when nothing is: every process gone)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


class _Watch:
    """
    Snapshots of the server (its processes summed: a cluster's nodes), the
    generator, the machine and a cluster's Redis at each phase.
    """

    def __init__(
        self, server: int | Sequence[int], generator: int, redis: tuple[int, int] | None = None
    ) -> None:
        self.servers = [server] if isinstance(server, int) else list(server)
        self.generator = generator
        self.redis = redis  # (pid, port)
        self.rss: dict[str, float] = {}
        self.samples: list[tuple[float, float]] = []
        self.marks: dict[str, tuple[float, float, float, float, float]] = {}
        self.redis_marks: dict[str, tuple[float, dict[str, float]]] = {}
        self.redis_memory: list[tuple[float, float]] = []
        self.redis_errors: list[str] = []

    def _rss(self) -> float | None:
        return _total([process_rss(pid) for pid in self.servers])

    def _redis(self) -> dict[str, float]:
        if self.redis is None:
            return {}
        try:
            return redis_info(self.redis[1])
        except (OSError, BenchError, ValueError) as e:
            if len(self.redis_errors) < 5:
                self.redis_errors.append(f"{type(e).__name__}: {e}")
            return {}

    def mark(self, phase: str) -> None:
        self.marks[phase] = (
            time.monotonic(),
            _total([process_cpu(pid) for pid in self.servers]) or 0.0,
            process_cpu(self.generator) or 0.0,
            machine_busy(),
            (process_cpu(self.redis[0]) or 0.0) if self.redis else 0.0,
        )
        rss = self._rss()
        if rss is not None:
            self.rss[phase] = rss
        if self.redis is not None:
            self.mark_redis(phase)

    def mark_redis(self, phase: str) -> None:
        """What a cluster's Redis says now (C{INFO}): its CPU, memory, calls."""
        stats = self._redis()
        if stats:
            self.redis_marks[phase] = (time.monotonic(), stats)
            if "memory" in stats:
                self.redis_memory.append((time.monotonic(), stats["memory"]))

    def sample(self) -> None:
        rss = self._rss()
        if rss is not None:
            self.samples.append((time.monotonic(), rss))
        if self.redis is not None:
            memory = self._redis().get("memory")
            if memory is not None:
                self.redis_memory.append((time.monotonic(), memory))

    def rss_series(self) -> list[tuple[float, float]]:
        """The server's RSS samples (KiB), in seconds since the run started."""
        if "start" not in self.marks:
            return []
        t0 = self.marks["start"][0]
        return [(round(t - t0, 3), rss) for t, rss in self.samples]

    def memory_series(self) -> list[tuple[float, float]]:
        """Redis's used_memory samples, in seconds since the run started."""
        if "start" not in self.marks:
            return []
        t0 = self.marks["start"][0]
        return [(round(t - t0, 3), memory) for t, memory in sorted(self.redis_memory)]

    def redis_figures(self, sent: float) -> dict[str, float]:
        """
        What Redis did: its CPU over the run (a share of a core), and from
        the run's start until the generator was done (drain included) its
        CPU and the calls of each script (EVALSHA) and read (XREAD) per
        line sent; its memory at the start, at its peak and at the end.
        """
        out: dict[str, float] = {}
        start, end, done = (self.redis_marks.get(p) for p in ("start", "end", "done"))
        if start and end and "cpu" in start[1] and "cpu" in end[1]:
            out["redis_cpu"] = (end[1]["cpu"] - start[1]["cpu"]) / max(end[0] - start[0], 1e-6)
        if start and done and sent > 0:
            if "cpu" in start[1] and "cpu" in done[1]:
                out["redis_us_per_msg"] = (done[1]["cpu"] - start[1]["cpu"]) / sent * 1e6
            for command in ("evalsha", "xread"):
                key = f"calls:{command}"
                calls = done[1].get(key, 0.0) - start[1].get(key, 0.0)
                out[f"{command}_per_msg"] = calls / sent
                usec = done[1].get(f"usec:{command}", 0.0) - start[1].get(f"usec:{command}", 0.0)
                if calls > 0:
                    out[f"{command}_us_per_call"] = usec / calls
        memory = [m for _, m in self.memory_series()]
        if memory:
            out["redis_mem_start_kib"] = memory[0] / 1024
            out["redis_mem_peak_kib"] = max(memory) / 1024
        if done and "memory" in done[1]:
            out["redis_mem_end_kib"] = done[1]["memory"] / 1024
        return out

    def figures(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for phase, rss in self.rss.items():
            out[f"rss_{phase}_kib"] = rss
        if "start" in self.marks and "end" in self.marks:
            t0, s0, g0, b0, r0 = self.marks["start"]
            t1, s1, g1, b1, r1 = self.marks["end"]
            span = max(t1 - t0, 1e-6)
            out["srv_cpu"] = (s1 - s0) / span
            out["gen_cpu_proc"] = (g1 - g0) / span
            out["bg_cpu"] = max(0.0, (b1 - b0) - (s1 - s0) - (g1 - g0) - (r1 - r0)) / span
        if len(self.samples) >= 2:
            (t0, first), (t1, last) = self.samples[0], self.samples[-1]
            out["rss_growth_kib"] = last - first
            out["rss_growth_kib_per_min"] = (last - first) / max(t1 - t0, 1e-6) * 60
            out["rss_max_kib"] = max(rss for _, rss in self.samples)
        return out


#: CPU (in cores) used by other programs above which the figures are flagged.
BUSY_MACHINE = 0.25


def wait_for_quiet(max_wait: float, threshold: float = BUSY_MACHINE) -> float:
    """
    Wait, at most C{max_wait} seconds, until the machine has been nearly idle
    for half a second (other programs using under C{threshold} cores): on a
    shared machine other people's builds and tests disturb the figures.
    Return the load last seen, in cores.
    """
    deadline = time.monotonic() + max_wait
    while True:
        t0, b0 = time.monotonic(), machine_busy()
        time.sleep(0.5)
        load = (machine_busy() - b0) / max(time.monotonic() - t0, 1e-6)
        if load < threshold or time.monotonic() >= deadline:
            return load


def run_once(
    scenario: Scenario,
    spec: ServerSpec,
    tools: Tools,
    workdir: Path,
    cores: tuple[int | None, int | None],
    options: Options,
) -> Run:
    """Start the server, run the generator against it once, stop the server."""
    limit = scenario.time_limit()
    notes = []
    records: list[int] = []
    if options.quiet_wait > 0:
        wait_for_quiet(options.quiet_wait)
    with running(spec, tools, workdir, cores[0], options, limit + 60, scenario.web) as started:
        time.sleep(0.2)  # let a freshly started server settle its memory
        pids = [process.pid for process in started.processes]
        base = _total([process_rss(pid) for pid in pids])
        web_port = None if spec.tcp_receivers else started.web_port
        argv = [str(tools.loadgen), *scenario.loadgen_args(started.ports, limit, web_port)]
        generator = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            preexec_fn=_child_setup(cores[1], options.nice),
        )
        redis = (started.redis.pid, started.redis_port) if started.redis else None
        watch = _Watch(pids, generator.pid, redis)
        shared = _shared_cpus(pids[0], generator.pid)
        if shared and cores[0] is not None and cores[0] != cores[1]:
            notes.append(f"the server and the generator may share CPU {sorted(shared)}")
        # (scraped: from this process, on the generator's core)
        scraping = metrics.Scraping(started.metrics_port) if started.metrics_port else None
        try:
            if scraping is not None:
                scraping.start()
            text = _follow(generator, watch, time.monotonic() + limit + 15, options.sample)
        finally:
            stop(generator, grace=2.0)
            scraped = scraping.stop() if scraping is not None else {}
        if scraping is not None and scraping.errors:
            notes.append(f"{scraping.failed:.0f} scrapes failed: {'; '.join(scraping.errors)}")
        if redis is not None:
            if "done" not in watch.redis_marks:  # (the generator says when it is done)
                watch.mark_redis("done")
            with suppress(OSError, BenchError):
                records = room_records(redis[1])
        exited = [(number, process.poll()) for number, process in enumerate(started.processes, 1)]
        redis_exited = started.redis.poll() if started.redis else None
    report = parse_report(text)
    for number, status in exited:
        if status is not None:
            who = f"node {number}" if spec.is_cluster else spec.name
            notes.append(f"{who} exited during the run (status {status})")
    if redis_exited is not None:
        notes.append(f"redis-server exited during the run (status {redis_exited})")
    if report.error:
        notes.append(f"generator: {report.error}")
    for number, log in enumerate(started.logs, 1):
        count, first = log_trouble(log)
        if count:
            who = f"node {number}" if spec.is_cluster else spec.name
            notes.append(f"{who}'s log: {count} warnings or errors, the first: {first}")
    notes += [f"redis INFO failed: {error}" for error in watch.redis_errors]
    figures = dict(report.result)
    figures.update(watch.figures())
    figures.update(scraped)
    if redis is not None:
        figures.update(watch.redis_figures(figures.get("sent", 0.0)))
        if records:
            figures["redis_records"] = len(records)
            figures["redis_record_max"] = max(records)
            figures["redis_record_median"] = statistics.median(records)
    if spec.is_traced:
        figures.update(trace_figures(spec.trace_report(workdir), notes))
    if base is not None:
        figures["rss_base_kib"] = base
        held = figures.get("held", 0.0)
        after = watch.rss.get("end", watch.rss.get("connected"))
        if held and after is not None:
            figures["rss_per_conn_kib"] = (after - base) / held
    return Run(figures, report.senders, notes, watch.memory_series(), watch.rss_series())


#: How the stages of a traced turn are named among a run's figures.
TRACE_PREFIX = "turn: "


def trace_figures(report: Path, notes: list[str]) -> dict[str, float]:
    """The median of each stage of a traced server's turns, as figures."""
    try:
        data = json.loads(report.read_text())
        medians = data["median us"]
        figures = {f"{TRACE_PREFIX}{name}": float(us) for name, us in medians.items()}
        figures[f"{TRACE_PREFIX}reads"] = float(data["reads per turn"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        notes.append(f"no trace report ({type(e).__name__}: {e})")
        return {}
    return figures


def format_trace(rows: Sequence[Row]) -> str:
    """
    For each traced row: the median microseconds of each stage of a turn
    that read something (see L{benchmarks.trace}).
    """
    lines = []
    for row in rows:
        stages = {
            key[len(TRACE_PREFIX) :]: value
            for key, value in row.figures.items()
            if key.startswith(TRACE_PREFIX)
        }
        if not stages:
            continue
        reads = stages.get("reads", 0.0)
        shown = ", ".join(f"{name} {stages[name]:.1f}" for name, _, _ in STAGES if name in stages)
        lines.append(f"   {row.server}: a turn that read ({reads:g} reads), median us: {shown}")
    return "\n".join(lines)


def _shared_cpus(server: int, generator: int) -> set[int]:
    """The CPUs both processes may run on (a check that pinning took)."""
    mine, theirs = _read(f"/proc/{server}/status"), _read(f"/proc/{generator}/status")
    if mine is None or theirs is None:
        return set()
    return allowed_cpus(mine) & allowed_cpus(theirs)


def _follow(
    generator: subprocess.Popen[bytes], watch: _Watch, deadline: float, sample_every: float
) -> str:
    """
    Read the generator's output until it ends, taking the server's
    snapshots at each phase line and an RSS sample every C{sample_every}
    seconds while it sends.
    """
    if generator.stdout is None:
        raise BenchError("the load generator has no output pipe")
    fd = generator.stdout.fileno()
    data = b""
    pending = b""
    sampling = False
    next_sample = 0.0
    while True:
        now = time.monotonic()
        if now > deadline:
            raise BenchError("the load generator overran its time limit")
        wait = min(deadline - now, max(0.0, next_sample - now) if sampling else 1.0)
        readable, _, _ = select.select([fd], [], [], wait)
        if sampling and time.monotonic() >= next_sample:
            watch.sample()
            next_sample = time.monotonic() + sample_every
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            words = line.split()
            if len(words) >= 2 and words[0] == b"phase":
                phase = words[1].decode()
                watch.mark(phase)
                if phase == "start":
                    sampling = True
                    watch.sample()
                    next_sample = time.monotonic() + sample_every
                elif phase == "end":
                    sampling = False
                    watch.sample()
    generator.wait(10)
    return data.decode(errors="replace")


# --- many runs, one table ---------------------------------------------------------------


@dataclass
class Row:
    """One server's medians over its runs."""

    server: str
    figures: dict[str, float]
    runs: list[Run]
    notes: list[str]


def median_figures(runs: Sequence[Run]) -> dict[str, float]:
    """The median of each figure over the runs that have it."""
    keys = sorted({key for run in runs for key in run.figures})
    return {
        key: statistics.median(run.figures[key] for run in runs if key in run.figures)
        for key in keys
    }


#: Per kind: the figure the ratio is taken on, and whether more is better.
KEY_FIGURE = {
    "fanout": ("deliveries_per_s", True),
    "rate": ("lat_p99_us", False),
    "soak": ("lat_p99_us", False),
    "rooms": ("lat_p99_us", False),
    "idle": ("held", True),
    "ws-idle": ("rss_per_conn_kib", False),
    "ws-rate": ("lat_p99_us", False),
}


def _count(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def _ms(value: float) -> str:
    return "-" if value < 0 else f"{value / 1000:.2f}"


def _cpu(value: float) -> str:
    return f"{value * 100:.0f}%"


def _kib(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def _mib(value: float) -> str:
    return f"{value / 1024:.1f}"


Column = tuple[str, str, Callable[[float], str]]

_COMMON: list[Column] = [
    ("srv cpu", "srv_cpu", _cpu),
    ("gen cpu", "gen_cpu_proc", _cpu),
    ("bg cpu", "bg_cpu", _cpu),
]
#: A cluster's Redis (--nodes): shown only when a row has them.
_REDIS: list[Column] = [
    ("redis cpu", "redis_cpu", _cpu),
    ("redis us/msg", "redis_us_per_msg", lambda v: f"{v:.1f}"),
    ("evalsha/msg", "evalsha_per_msg", lambda v: f"{v:.3f}"),
]
#: The scraped row: scrapes made during the run (shown only when a row has them).
_SCRAPES: list[Column] = [
    ("scrapes", "scrapes", _count),
    ("render max ms", "scrape_render_max_us", _ms),
]
_REDIS_MEMORY: list[Column] = [
    ("redis MiB", "redis_mem_start_kib", _mib),
    ("peak", "redis_mem_peak_kib", _mib),
    ("end", "redis_mem_end_kib", _mib),
]
_IDLE: list[Column] = [
    ("asked", "clients", _count),
    ("ready", "ready", _count),
    ("held", "held", _count),
    ("failed", "failed", _count),
    ("conn/s", "connect_per_s", _count),
    ("base MiB", "rss_base_kib", lambda v: f"{v / 1024:.1f}"),
    ("RSS MiB", "rss_end_kib", lambda v: f"{v / 1024:.1f}"),
    ("KiB/conn", "rss_per_conn_kib", _kib),
]
COLUMNS: dict[str, list[Column]] = {
    "fanout": [
        ("ready", "ready", _count),
        ("deliv/s", "deliveries_per_s", _count),
        ("sent/s", "sent_per_s", _count),
        ("lost", "lost", _count),
        ("reord", "reordered", _count),
        ("garbled", "garbled", _count),
        ("p50 ms", "lat_p50_us", _ms),
        ("p99 ms", "lat_p99_us", _ms),
        ("max ms", "lat_max_us", _ms),
        *_COMMON,
        *_REDIS,
        *_SCRAPES,
    ],
    "rate": [
        ("ready", "ready", _count),
        ("sent/s", "sent_per_s", _count),
        ("deliv/s", "deliveries_per_s", _count),
        ("lost", "lost", _count),
        ("reord", "reordered", _count),
        ("p50 ms", "lat_p50_us", _ms),
        ("p90 ms", "lat_p90_us", _ms),
        ("p99 ms", "lat_p99_us", _ms),
        ("max ms", "lat_max_us", _ms),
        *_COMMON,
        *_REDIS,
        *_SCRAPES,
    ],
    "rooms": [
        ("ready", "ready", _count),
        ("sent/s", "sent_per_s", _count),
        ("deliv/s", "deliveries_per_s", _count),
        ("lost", "lost", _count),
        ("reord", "reordered", _count),
        ("x-room", "misrouted", _count),
        ("p50 ms", "lat_p50_us", _ms),
        ("p90 ms", "lat_p90_us", _ms),
        ("p99 ms", "lat_p99_us", _ms),
        ("max ms", "lat_max_us", _ms),
        *_COMMON,
        *_REDIS,
        *_REDIS_MEMORY,
    ],
    "idle": _IDLE,
    "ws-idle": _IDLE,
    "soak": [
        ("ready", "ready", _count),
        ("sent/s", "sent_per_s", _count),
        ("lost", "lost", _count),
        ("reord", "reordered", _count),
        ("p50 ms", "lat_p50_us", _ms),
        ("p99 ms", "lat_p99_us", _ms),
        ("max ms", "lat_max_us", _ms),
        ("RSS MiB", "rss_start_kib", lambda v: f"{v / 1024:.1f}"),
        ("growth KiB", "rss_growth_kib", _kib),
        ("KiB/min", "rss_growth_kib_per_min", _kib),
        *_COMMON,
        *_REDIS,
        *_REDIS_MEMORY,
    ],
    "ws-rate": [
        ("ready", "ready", _count),
        ("sent/s", "sent_per_s", _count),
        ("deliv/s", "deliveries_per_s", _count),
        ("lost", "lost", _count),
        ("reord", "reordered", _count),
        ("garbled", "garbled", _count),
        ("p50 ms", "lat_p50_us", _ms),
        ("p90 ms", "lat_p90_us", _ms),
        ("p99 ms", "lat_p99_us", _ms),
        ("max ms", "lat_max_us", _ms),
        *_COMMON,
    ],
}
#: Figures whose columns are left out when no row has them.
REDIS_FIGURES = frozenset(figure for _, figure, _ in [*_REDIS, *_REDIS_MEMORY])
OPTIONAL_FIGURES = REDIS_FIGURES | {figure for _, figure, _ in _SCRAPES}


def ratio(ours: float | None, other: float | None) -> str:
    """C{ours/other} of the key figure, as text (C{-} when undefined)."""
    if ours is None or other is None or other <= 0 or ours < 0:
        return "-"
    value = ours / other
    return f"{value:.2f}" if math.isfinite(value) else "-"


def pair_ratios(ours: Row, other: Row, key: str) -> list[float]:
    """
    Ours' run i over the other's run i, for each i both have: the two ran
    one after the other, so the machine's drift cancels out.
    """
    pairs = zip(ours.runs, other.runs, strict=False)
    values = [(a.figures.get(key), b.figures.get(key)) for a, b in pairs]
    return [a / b for a, b in values if a is not None and b is not None and a >= 0 and b > 0]


def format_table(scenario: Scenario, rows: Sequence[Row], runs: int) -> str:
    """The table of one scenario: a header, one row per server, notes."""
    key, better = KEY_FIGURE[scenario.kind]
    columns = [
        column
        for column in COLUMNS[scenario.kind]
        if column[1] not in OPTIONAL_FIGURES or any(column[1] in row.figures for row in rows)
    ]
    ours = next((row for row in rows if row.server == "ours"), rows[0] if rows else None)
    ours_name = ours.server if ours else "ours"
    header = ["server", *[c[0] for c in columns], f"{ours_name}/this"]
    body = []
    for row in rows:
        cells = [row.server]
        for _, figure, show in columns:
            value = row.figures.get(figure)
            cells.append("-" if value is None else show(value))
        cells.append(ratio(ours.figures.get(key) if ours else None, row.figures.get(key)))
        body.append(cells)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        f"== {scenario.title}; median of {runs} run{'s' * (runs != 1)}",
        f"   ratio on {key} ({'higher' if better else 'lower'} is better)",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    busiest = 0.0
    for row in rows:
        each = [run.figures.get(key) for run in row.runs]
        shown = ", ".join("-" if v is None else f"{v:g}" for v in each)
        loads = [run.figures.get("bg_cpu", 0.0) for run in row.runs]
        busiest = max([busiest, *loads])
        load = ", ".join(f"{v:.1f}" for v in loads)
        lines.append(f"   {row.server}: {key} per run: {shown}; other programs' CPU: {load}")
        paired = pair_ratios(ours, row, key) if ours is not None and row is not ours else []
        if len(paired) > 1:
            lines.append(
                f"   {row.server}: {ours_name}/this by pairs of runs (run i with run i, one "
                f"after the other): median {statistics.median(paired):.2f} "
                f"({min(paired):.2f}-{max(paired):.2f})"
            )
        if ours is not None and row is not ours and any(f in row.figures for f in REDIS_FIGURES):
            lines.append(
                f"   {row.server}: {key} this/{ours.server}: "
                f"{ratio(row.figures.get(key), ours.figures.get(key))}; "
                + _redis_summary(row.figures)
            )
        lines += [f"   {row.server}: {note}" for note in row.notes]
    if busiest >= BUSY_MACHINE:
        lines.append(
            f"   note: other programs used up to {busiest:.1f} cores during these runs: "
            "figures may be disturbed (see --quiet-wait, --nice)"
        )
    return "\n".join(lines)


def _redis_summary(figures: dict[str, float]) -> str:
    """What a cluster's Redis did, in words."""
    parts = []
    if "redis_us_per_msg" in figures:
        parts.append(f"redis CPU {figures['redis_us_per_msg']:.1f} us per line sent")
    for command in ("evalsha", "xread"):
        if f"{command}_per_msg" in figures:
            parts.append(f"{figures[f'{command}_per_msg']:.3f} {command} per line sent")
        if f"{command}_us_per_call" in figures:
            parts[-1] += f" ({figures[f'{command}_us_per_call']:.1f} us each)"
    if "redis_mem_peak_kib" in figures:
        memory = [figures.get(f"redis_mem_{p}_kib") for p in ("start", "peak", "end")]
        shown = "/".join("-" if m is None else f"{m / 1024:.1f}" for m in memory)
        parts.append(f"used_memory start/peak/end {shown} MiB")
    if "redis_record_max" in figures:
        parts.append(
            f"{figures.get('redis_records', 0):.0f} room records, "
            f"{figures.get('redis_record_median', 0):.0f} entries (median), "
            f"{figures['redis_record_max']:.0f} the longest"
        )
    return "; ".join(parts)


def bench(
    scenario: Scenario,
    specs: Sequence[ServerSpec],
    options: Options,
    tools: Tools,
    workdir: Path,
    out: TextIO,
    cores: tuple[int | None, int | None],
) -> list[Row]:
    """
    Run a scenario against each server C{options.runs} times, the server on
    C{cores[0]} and the generator on C{cores[1]}; print its table.

    The runs take turns - each server's first run, then each one's second,
    and so on - so that a machine that gets slower or faster during the
    benchmark (a shared one does) moves every row alike, not only the
    rows run last.
    """
    runs_of: list[list[Run]] = [[] for _ in specs]
    for number in range(options.runs):
        for spec, runs in zip(specs, runs_of, strict=True):
            try:
                run = run_once(scenario, spec, tools, workdir, cores, options)
            except BenchError as e:
                run = Run({}, notes=[str(e)])
            run.notes = [f"run {number + 1}: {note}" for note in run.notes]
            runs.append(run)
            if options.verbose:
                print(f"   {spec.row} run {number + 1}: {run.figures} {run.notes}", file=out)
    rows = []
    for spec, runs in zip(specs, runs_of, strict=True):
        notes = [note for run in runs for note in run.notes]
        lossy = [s for run in runs for s in run.senders if s.get("lost") or s.get("reordered")]
        if lossy:
            notes.append(f"{len(lossy)} sender records with loss or reordering (all runs)")
        rows.append(Row(spec.row, median_figures([r for r in runs if r.figures]), runs, notes))
    print(format_table(scenario, rows, options.runs), file=out, flush=True)
    traced = format_trace(rows)
    if traced:
        print(traced, file=out, flush=True)
    return rows


def pick_cores(pin: bool, chosen: str | None = None) -> tuple[int | None, int | None]:
    """
    The server's core and the generator's (C{chosen}: C{"0,1"}), or no
    pinning on one core.  Ask before this process pins itself: its children
    inherit its affinity.
    """
    cores = sorted(os.sched_getaffinity(0))
    if chosen and pin:
        try:
            server, generator = (int(n) for n in chosen.split(","))
        except ValueError:
            raise BenchError(f"--cores {chosen!r}: use SERVER,GENERATOR, e.g. 0,1") from None
        if not {server, generator} <= set(cores):
            raise BenchError(f"--cores {chosen!r}: this process may use cores {cores}")
        return server, generator
    if not pin or len(cores) < 2:
        return None, None
    return cores[0], cores[1]


# --- metrics: what a scrape costs ----------------------------------------------------


def run_scrape_cost(
    plan: metrics.ScrapePlan,
    tools: Tools,
    workdir: Path,
    options: Options,
    cores: tuple[int | None, int | None],
    out: TextIO,
) -> dict[str, object]:
    """
    The scrape-cost part of C{metrics}: ours with C{--metrics} (on the
    server's core), the generator's idle clients (on its own), the clients
    that do not read and the scrapes (this process, on the generator's
    core); prints its table.
    """
    idle = Scenario(
        "idle", "idle", plan.clients, 0, duration=plan.hold, connect_rate=0, rooms=plan.rooms
    )
    limit = idle.time_limit()
    notes: list[str] = []
    # (the clients that do not read come by a UNIX socket: see NotReading)
    path = workdir / "not-reading.sock"
    if len(str(path)) > 100:
        raise BenchError(f"metrics: the work directory's path is too long for a socket: {path}")
    path.unlink(missing_ok=True)
    more = ["--listen", f"unix:{path}"] if plan.not_reading else []
    if plan.rooms:  # (the lobby, the idle clients' rooms, the room of those that do not read)
        more += ["--max-rooms", f"{plan.rooms + 2}"]
    options = replace(options, ours_args=(*options.ours_args, *more))
    if options.quiet_wait > 0:
        wait_for_quiet(options.quiet_wait)
    spec = ServerSpec("scraped")
    with running_server(spec, tools, workdir, cores[0], options, limit + 60) as (
        process,
        port,
        _,
        metrics_port,
    ):
        scraper = metrics.Scraper(metrics_port)
        stalled = metrics.NotReading(port, str(path), plan.not_reading)
        generator = None
        try:
            connect = scraper.scrape().samples
            generator = subprocess.Popen(
                [str(tools.loadgen), *idle.loadgen_args(port, limit)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                preexec_fn=_child_setup(cores[1], options.nice),
            )
            text = _read_until_phase(generator, "start", time.monotonic() + limit)
            if plan.not_reading:
                notes += _stall(stalled, scraper)
            t0, busy0 = time.monotonic(), machine_busy()
            cpu0 = process_cpu(process.pid) or 0.0
            cost = metrics.time_scrapes(scraper, plan.scrapes, plan.rate, connect)
            span = max(time.monotonic() - t0, 1e-6)
            srv = ((process_cpu(process.pid) or 0.0) - cpu0) / span
            others = max(0.0, (machine_busy() - busy0) / span - srv)
        except (OSError, http.client.HTTPException) as e:
            raise BenchError(f"metrics: {type(e).__name__}: {e}") from None
        finally:
            stalled.close()
            scraper.close()
            if generator is not None:
                stop(generator, grace=2.0)
        exited = process.poll()
    connected = next(
        (parse_words(line) for line in text.splitlines() if line.startswith("phase connected")),
        {},
    )
    if exited is not None:
        notes.append(f"ours exited during the run (status {exited})")
    count, first = log_trouble(workdir / f"{spec.name}.out")
    if count:
        notes.append(f"ours' log: {count} warnings or errors, the first: {first}")
    figures = cost.figures()
    figures.update(
        {
            "clients": float(plan.clients),
            "ready": connected.get("ready", 0.0),
            "failed": connected.get("failed", 0.0),
            "srv_cpu": srv,
            "others_cpu": others,
        }
    )
    print(metrics.format_cost(plan.title, cost), file=out)
    print(
        f"   the generator's clients ready: {figures['ready']:.0f} of {plan.clients} "
        f"(failed {figures['failed']:.0f}); during the timed scrapes ours used {_cpu(srv)} of "
        f"its core, everything else {others:.2f} cores (the generator, this process)",
        file=out,
    )
    for note in notes:
        print(f"   note: {note}", file=out)
    print(file=out, flush=True)
    return {
        "scenario": {"kind": "metrics", **plan.__dict__},
        "figures": figures,
        "renders_s": cost.renders,
        "round_trips_s": cost.round_trips,
        "notes": notes,
    }


def _read_until_phase(generator: subprocess.Popen[bytes], phase: str, deadline: float) -> str:
    """The generator's output up to its C{phase NAME} line (it goes on running)."""
    if generator.stdout is None:
        raise BenchError("the load generator has no output pipe")
    fd, data = generator.stdout.fileno(), b""
    while f"phase {phase}".encode() not in data:
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise BenchError(f"the load generator did not reach its {phase} phase in time")
        readable, _, _ = select.select([fd], [], [], min(wait, 1.0))
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BenchError(f"the load generator ended before its {phase} phase")
            data += chunk
    return data.decode(errors="replace")


def _stall(stalled: metrics.NotReading, scraper: metrics.Scraper) -> list[str]:
    """
    Open the clients that do not read, wait until they are in their room,
    then say lines there, 32 KiB at a time, until the server queues bytes
    for each (the kernel takes about 200 KiB first); what went wrong, if
    anything.  Each step adds 32 KiB at most to a queue, far under the
    256 KiB that would cut a client off (--send-queue).
    """
    stalled.open()
    members = f'tcpchat_room_members{{room="{stalled.room}"}}'
    deadline = time.monotonic() + 30
    while scraper.scrape().samples.get(members, 0) < stalled.count + 1:
        if time.monotonic() > deadline:
            return [f"the {stalled.count} clients that do not read did not all join in 30 s"]
        time.sleep(0.1)
    queues = 0.0
    for _ in range(32):
        stalled.say(32 * 1024)
        time.sleep(0.1)
        samples = scraper.scrape().samples
        queues = samples.get(metrics.QUEUED_CLIENTS, 0)
        if queues >= stalled.count:
            break
    if samples.get('tcpchat_sessions_ended_total{reason="not_reading"}'):
        return ["some clients that do not read were cut off (--send-queue)"]
    if queues < stalled.count:
        return [f"only {queues:.0f} of {stalled.count} clients that do not read had bytes queued"]
    return []


# --- joins: in this process, no server ---------------------------------------------


def run_joins(quick: bool, options: Options, core: int | None, out: TextIO) -> dict[str, object]:
    """
    The C{joins} scenario (L{benchmarks.joins}): this process pinned to
    C{core} (the server's), after a wait for a quiet machine; prints its
    tables and what other programs used of the CPUs meanwhile.
    """
    chosen = joins.plan(quick)
    original_affinity = os.sched_getaffinity(0)
    try:
        if core is not None:
            os.sched_setaffinity(0, {core})
        if options.quiet_wait > 0:
            wait_for_quiet(options.quiet_wait)
        t0, busy0, own0 = time.monotonic(), machine_busy(), process_cpu(os.getpid()) or 0.0
        quiet, loud = joins.measure(chosen)
        t1, busy1, own1 = time.monotonic(), machine_busy(), process_cpu(os.getpid()) or 0.0
    finally:
        os.sched_setaffinity(0, original_affinity)
    span = max(t1 - t0, 1e-6)
    own, others = (own1 - own0) / span, max(0.0, (busy1 - busy0) - (own1 - own0)) / span
    where = "not pinned" if core is None else f"on core {core}"
    print(joins.format_joins(quiet, loud), file=out)
    print(
        f"   this process ({where}): {_cpu(own)} of a core for {span:.1f} s; "
        f"other programs' CPU: {others:.2f} cores",
        file=out,
    )
    if others >= BUSY_MACHINE:
        print(
            f"   note: other programs used {others:.1f} cores during this run: "
            "figures may be disturbed (see --quiet-wait)",
            file=out,
        )
    print(file=out, flush=True)
    result = joins.as_json(chosen, quiet, loud)
    result.update({"srv_cpu": own, "bg_cpu": others})
    return result


# --- command line ----------------------------------------------------------------


def open_file_limit() -> int:
    """The hard open-file limit, which children raise their soft limit to."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def suite(quick: bool, args: argparse.Namespace) -> list[Scenario]:
    """The issue's scenarios (small ones with C{quick})."""
    fd_room = max(100, open_file_limit() - 200)
    duration = args.duration or (1.0 if quick else 3.0)
    size = args.size
    scenarios = [
        Scenario("fanout", "flood", n + 1, 1, duration=duration, size=size, window=args.window)
        for n in ((10, 100) if quick else (10, 100, 1000))
    ]
    scenarios += [
        Scenario("rate", "rate", 100, 100, rate=rate, duration=duration, size=size)
        for rate in ((1000,) if quick else (1000, 2000, 5000))
    ]
    scenarios.append(
        Scenario(
            "idle",
            "idle",
            min(500 if quick else 15000, fd_room),
            0,
            duration=2.0,
            connect_rate=0,
        )
    )
    scenarios.append(
        Scenario("soak", "rate", 300, 300, rate=20, duration=10 if quick else 60, size=size)
    )
    rooms, clients, rate = (10, 100, 1000) if quick else (100, 1000, 2000)
    scenarios.append(
        Scenario(
            "rooms", "rate", clients, clients, rate=rate, duration=duration, size=size, rooms=rooms
        )
    )
    if find_spec("autobahn") is not None:  # (our --web needs it)
        scenarios.append(ws_idle(min(100 if quick else 1000, fd_room)))
        receivers, senders, rate = (20, 2, 500) if quick else (100, 10, 2000)
        scenarios.append(ws_rate(receivers, senders, rate, duration=duration, size=size))
    return scenarios


def ws_idle(clients: int, duration: float = 2.0, connect_rate: float = 0) -> Scenario:
    """C{ws-idle}: C{clients} WebSocket clients held (issue 16: RSS per connection)."""
    return Scenario(
        "ws-idle", "idle", clients, 0, duration=duration, connect_rate=connect_rate, web=True
    )


def ws_rate(
    receivers: int,
    senders: int,
    rate: float,
    duration: float = 2.0,
    size: int = 64,
    connect_rate: float = 1000,
    batch: int = 1,
) -> Scenario:
    """
    C{ws-rate}: C{receivers} WebSocket clients, C{senders} nc-style TCP
    clients that only send, C{rate} lines/s in total (issue 16: latency
    from the TCP sender to the WebSocket receivers); C{batch} lines per
    write (the server makes them one message: one frame, several stamps).
    """
    return Scenario(
        "ws-rate",
        "rate",
        receivers + senders,
        senders,
        rate=rate,
        duration=duration,
        size=size,
        connect_rate=connect_rate,
        batch=batch,
        web=True,
        send_only=True,
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark tcpchat against ncat --chat and a C relay (issue 7). "
        "Run from the repository root of a checkout.",
        epilog="Full size: fanout --receivers 1000; rate --rate 5000; idle --clients 15000; "
        "soak --duration 300; rooms (100 rooms of 10, 2000 lines/s); ws-idle (1000 WebSocket "
        "clients); ws-rate (100 WebSocket receivers, 10 TCP senders, 2000 lines/s); suite (all "
        "of them). "
        "The rooms scenario runs ours, traced and --server rows only: ncat and the relays "
        "have no rooms. joins starts no server: it measures this checkout's directory in "
        "this process (--servers, --runs and the load options do not apply). metrics: "
        "15000 idle clients, 50 scrapes; then --relay with --servers ours,scraped.",
    )
    parser.add_argument(
        "scenario",
        choices=[
            "fanout",
            "rate",
            "idle",
            "soak",
            "rooms",
            "joins",
            *WEB_SCENARIOS,
            "metrics",
            "suite",
        ],
        help="fanout: one sender, --receivers others; rate: --clients all sending --rate "
        "lines/s in total; idle: --clients held; soak: rate, for --duration; rooms: rate, the "
        "clients spread over --rooms rooms (client I sends /join rK, K = I mod ROOMS), run by "
        "ours, traced and --server rows only (ncat and the relays have no rooms); joins: no "
        "server, one join+part in rooms of 5 to 5,000 members, in this process; ws-idle: "
        "--clients WebSocket clients held by ours (--web); ws-rate: --receivers WebSocket "
        "receivers, --senders TCP senders (send only), --rate lines/s in total; the ws "
        "scenarios run ours and traced only, each with a -tcp row (every client on TCP); "
        "metrics: what a scrape of ours' --metrics costs with --clients idle clients, then "
        "--relay side by side with ours scraped once a second (scraped); suite: all",
    )
    parser.add_argument(
        "--receivers", type=int, help="fanout: receivers (10); ws-rate: WebSocket receivers (100)"
    )
    parser.add_argument(
        "--clients",
        type=int,
        help="rate: 100, soak: 300, idle: 1000, rooms: 1000 (senders included); ws-idle: 1000; "
        "metrics: 15000 idle",
    )
    parser.add_argument(
        "--senders", type=int, help="rate, soak, rooms: how many send (all); ws-rate: 10 (TCP)"
    )
    parser.add_argument("--rate", type=float, help="lines/s in total (rate, rooms: 2000, soak: 20)")
    parser.add_argument(
        "--rooms",
        type=int,
        help="rooms: how many rooms the clients are spread over, client I in room rI mod "
        "ROOMS (100); metrics: the idle clients (0: all in the one room)",
    )
    parser.add_argument("--duration", type=float, help="seconds (2; soak 60; idle: hold 2)")
    parser.add_argument("--size", type=int, default=64, help="bytes per line sent (64)")
    parser.add_argument("--window", type=int, default=128, help="fanout: lines in flight (128)")
    parser.add_argument(
        "--connect-rate",
        type=float,
        help="connections/s (1000; idle: 0, as fast as the server takes them)",
    )
    parser.add_argument("--runs", type=int, help="runs per server; the median is shown (3)")
    parser.add_argument(
        "--servers",
        help="comma-separated: ours, ncat, relay, twisted (a bare Twisted relay), "
        "traced (ours, with the median time of each stage of a reactor turn), "
        "scraped (ours with --metrics, scraped once a second during the run), "
        "or a NAME given with --server (default ours,ncat,relay; metrics: ours,scraped)",
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=CMD",
        help="another server: a command with {port} (e.g. 'socat=...'); then list NAME in "
        "--servers",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=0,
        metavar="N",
        help="also run ours as N nodes of one chat on one redis-server (--redis), a row "
        "'N-nodes' next to ours: redis-server started for each run on a free port in the work "
        "directory, nothing saved; client I connects to node I mod N; the nodes and Redis on "
        "the server's core (see --node-cores)",
    )
    parser.add_argument(
        "--node-cores",
        metavar="CORES",
        help="--nodes: comma-separated cores, node K pinned to the K mod Nth, Redis free to "
        "run on any of them (default: all on the server's core, the single node's budget)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="K",
        help="rate, soak, rooms, ws-rate: lines each send puts in one write (1); the rate is "
        "in lines",
    )
    parser.add_argument(
        "--scrapes", type=int, default=50, help="metrics: timed scrapes of /metrics (50)"
    )
    parser.add_argument(
        "--scrape-rate", type=float, default=10.0, help="metrics: scrapes a second (10)"
    )
    parser.add_argument(
        "--not-reading",
        type=int,
        default=300,
        metavar="N",
        help="metrics: clients that never read, with bytes queued for each (300)",
    )
    parser.add_argument(
        "--relay",
        default="rate",
        help="metrics: the relay scenarios run after the scrapes, with --servers side by side: "
        "rate, fanout, both (rate,fanout) or none (rate)",
    )
    parser.add_argument("--reactor", default="epoll", help="our twistd's reactor (epoll)")
    parser.add_argument(
        "--ours-args", default="", help="more options for our server, e.g. '--echo'"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to separate cores")
    parser.add_argument(
        "--cores",
        metavar="SERVER,GENERATOR",
        help="the cores to pin to (default: the first two this process may use)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the server and generator (e.g. -10 on a shared machine; needs root)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds to wait, before each run, for other programs to leave the CPUs (30)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one run, short (suite: small; joins: fewer rounds)"
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--workdir", type=Path, help="keep logs and binaries here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each run")
    return parser.parse_args(argv)


def scenario_from(args: argparse.Namespace) -> Scenario:
    """The one scenario the command line asks for."""
    kind = args.scenario
    quick_duration = 1.0 if args.quick else None
    if not 1 <= args.batch <= 1000:
        raise BenchError(f"--batch {args.batch}: from 1 to 1000")
    if args.batch > 1 and kind in ("fanout", "idle", "ws-idle"):
        raise BenchError(
            "--batch: for rate, soak, rooms and ws-rate (fanout sends its window at once)"
        )
    if kind == "fanout":
        return Scenario(
            "fanout",
            "flood",
            (args.receivers or 10) + 1,
            1,
            duration=args.duration or quick_duration or 2.0,
            size=args.size,
            window=args.window,
            connect_rate=1000 if args.connect_rate is None else args.connect_rate,
        )
    if kind == "ws-idle":
        return ws_idle(args.clients or 1000, args.duration or 2.0, args.connect_rate or 0)
    if kind == "ws-rate":
        return ws_rate(
            args.receivers or 100,
            args.senders or 10,
            args.rate or 2000,
            duration=args.duration or quick_duration or 2.0,
            size=args.size,
            connect_rate=1000 if args.connect_rate is None else args.connect_rate,
            batch=args.batch,
        )
    if kind == "idle":
        return Scenario(
            "idle",
            "idle",
            args.clients or 1000,
            0,
            duration=args.duration or 2.0,
            connect_rate=args.connect_rate or 0,
        )
    soak = kind == "soak"
    clients = args.clients or (300 if soak else 1000 if kind == "rooms" else 100)
    rooms = 0
    if kind == "rooms":
        rooms = args.rooms or 100
        if not 1 <= rooms <= clients:
            raise BenchError(f"--rooms {rooms}: from 1 to the number of clients ({clients})")
    return Scenario(
        kind,
        "rate",
        clients,
        min(args.senders or clients, clients),
        rate=args.rate or (20 if soak else 2000),
        duration=args.duration or quick_duration or (60.0 if soak else 2.0),
        size=args.size,
        connect_rate=1000 if args.connect_rate is None else args.connect_rate,
        rooms=rooms,
        batch=args.batch,
    )


def scrape_plan(args: argparse.Namespace) -> metrics.ScrapePlan:
    """The scrape-cost part of C{metrics}, checked."""
    plan = metrics.ScrapePlan(
        clients=15000 if args.clients is None else args.clients,
        not_reading=args.not_reading,
        scrapes=args.scrapes,
        rate=args.scrape_rate,
        rooms=args.rooms or 0,
    )
    if plan.clients < 1 or plan.scrapes < 1 or plan.rate <= 0 or plan.not_reading < 0:
        raise BenchError("metrics: --clients and --scrapes from 1, --scrape-rate above 0")
    if not 0 <= plan.rooms <= plan.clients:
        raise BenchError(f"--rooms {plan.rooms}: from 0 to the number of clients")
    room = open_file_limit() - 100
    if plan.clients + plan.not_reading > room:
        raise BenchError(
            f"metrics: {plan.clients} + {plan.not_reading} clients do not fit under the "
            f"open-file limit ({open_file_limit()}, less 100 for the server's own)"
        )
    return plan


def relay_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """C{metrics}: the relay scenarios (--relay), as C{rate} and C{fanout} make them."""
    kinds = [kind.strip() for kind in args.relay.split(",") if kind.strip()]
    if kinds == ["none"]:
        return []
    if not kinds or not set(kinds) <= {"rate", "fanout"}:
        raise BenchError(f"--relay {args.relay!r}: rate, fanout, rate,fanout or none")
    # (--clients and --rooms are the scrape part's; each relay its own defaults)
    return [
        scenario_from(argparse.Namespace(**{**vars(args), "scenario": kind, "clients": None}))
        for kind in kinds
    ]


def server_specs(args: argparse.Namespace) -> list[ServerSpec]:
    """The servers to measure, in the order asked."""
    custom = {}
    for item in args.server:
        name, sep, command = item.partition("=")
        if not sep or not name or "{port}" not in command:
            raise BenchError(f"--server {item!r}: use NAME=COMMAND with {{port}} in it")
        custom[name] = command
    specs = []
    servers = args.servers or ("ours,scraped" if args.scenario == "metrics" else "ours,ncat,relay")
    for name in filter(None, (n.strip() for n in servers.split(","))):
        if name in custom:
            specs.append(ServerSpec(name, custom[name]))
        elif name in BUILTIN_SERVERS:
            if name == "ncat" and shutil.which("ncat") is None:
                raise BenchError("ncat is not installed (apt-get install ncat)")
            specs.append(ServerSpec(name))
        else:
            raise BenchError(
                f"unknown server {name!r}: use ours, ncat, relay, twisted, traced, scraped or "
                "--server"
            )
    if not specs:
        raise BenchError("no servers to measure")
    if args.nodes:
        if not 1 <= args.nodes <= MAX_NODES:
            raise BenchError(f"--nodes {args.nodes}: from 1 to {MAX_NODES}")
        if shutil.which("redis-server") is None:
            raise BenchError(
                "--nodes: redis-server is not installed (apt-get install redis-server)"
            )
        names = [spec.name for spec in specs]
        after = names.index("ours") + 1 if "ours" in names else len(specs)
        specs.insert(after, ServerSpec(cluster_name(args.nodes), nodes=args.nodes))
    return specs


def servers_for(scenario: Scenario, specs: Sequence[ServerSpec]) -> list[ServerSpec]:
    """
    The servers that can run C{scenario}: all, or those with rooms, or
    (a WebSocket scenario) ours and traced, each followed by its TCP
    comparison row.
    """
    if scenario.web:
        ours = [s for s in specs if (s.is_ours or s.is_traced) and not s.tcp_receivers]
        return [row for s in ours for row in (s, replace(s, tcp_receivers=True))]
    if scenario.kind not in NEEDS_ROOMS:
        return list(specs)
    return [spec for spec in specs if spec.has_rooms]


def left_out_because(scenario: Scenario) -> str:
    """Why some servers do not run C{scenario}."""
    return "no WebSocket (ours and traced only)" if scenario.web else "no rooms"


def describe_source() -> str | None:
    """
    The git commit our server's code comes from (C{+changes} when edited),
    if known: the tcpchat this Python imports, as our twistd next to it does.
    """
    git = shutil.which("git")
    spec = find_spec("twisted_tcpchat")
    if git is None or spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).resolve().parent
    try:
        commit = subprocess.run(
            [git, "-C", str(package), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            [git, "-C", str(package), "status", "--porcelain", "--untracked-files=no", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}{' +changes' if changes else ''} ({package})"


def describe_machine() -> str:
    """One line on where the figures come from."""
    cores = len(os.sched_getaffinity(0))
    return (
        f"# {os.uname().sysname} {os.uname().release}, {cores} cores, "
        f"open-file limit {open_file_limit()}, Python {sys.version.split()[0]}"
    )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """The command: run the scenario(s), print the tables; 0 on success."""
    out = out if out is not None else sys.stdout
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with_joins = args.scenario in ("joins", "suite")
    plan = None
    try:
        if args.scenario == "joins":
            specs, scenarios = [], []
        elif args.scenario == "metrics":
            plan = scrape_plan(args)
            specs, scenarios = server_specs(args), relay_scenarios(args)
        elif args.scenario == "suite":
            specs, scenarios = server_specs(args), suite(args.quick, args)
        else:
            specs, scenarios = server_specs(args), [scenario_from(args)]
        if scenarios and not any(servers_for(s, specs) for s in scenarios):
            if scenarios[0].web:
                raise BenchError(
                    f"{scenarios[0].kind} runs ours and traced only (our --web): "
                    "list one in --servers"
                )
            raise BenchError(
                "no server to measure has rooms: the rooms scenario runs ours, traced "
                "and --server rows only"
            )
    except BenchError as e:
        print(f"benchmarks: {e}", file=sys.stderr)
        return 2
    runs = args.runs or (1 if args.quick else 3)
    options = Options(
        runs=max(1, runs),
        reactor=args.reactor,
        ours_args=tuple(shlex.split(args.ours_args)),
        pin=not args.no_pin,
        nice=args.nice,
        quiet_wait=args.quiet_wait,
        sample=1.0 if args.scenario in ("soak", "suite") else 5.0,
        verbose=args.verbose,
    )
    try:
        cores = pick_cores(options.pin, args.cores)
    except BenchError as e:
        print(f"benchmarks: {e}", file=sys.stderr)
        return 2
    try:
        node_cores = tuple(int(n) for n in (args.node_cores or "").split(",") if n.strip())
    except ValueError:
        print(f"benchmarks: --node-cores {args.node_cores!r}: use e.g. 0,1", file=sys.stderr)
        return 2
    if not set(node_cores) <= os.sched_getaffinity(0):
        print(f"benchmarks: --node-cores {args.node_cores!r}: not all usable", file=sys.stderr)
        return 2
    options = replace(options, node_cores=node_cores if cores[0] is not None else ())
    print(describe_machine(), file=out)
    if any(spec.runs_ours for spec in specs):
        shown = ours_argv(options)
        shown[0] = "twistd"
        print(f"# ours: {shlex.join(shown)}", file=out)
        if plan is not None or any(spec.is_scraped for spec in specs):
            print(
                f"# scraped: ours with --metrics {metrics.METRICS_LISTEN}; in a relay run, its "
                f"/metrics fetched every {metrics.SCRAPE_EVERY:g} s by this process (on the "
                "generator's core)",
                file=out,
            )
        webs = [s.kind for s in scenarios if s.web]
        if webs:
            print(
                f"# {', '.join(webs)}: ours with --web {WEB_LISTEN} too; the -tcp row: the "
                "same server and scenario, every client on its TCP port",
                file=out,
            )
    for spec in specs:
        if spec.is_cluster:
            print(
                f"# {spec.name}: {spec.nodes} of ours, each with --redis "
                "redis://127.0.0.1:PORT/0, on one redis-server "
                f"{shlex.join(REDIS_OPTIONS)} started for each run; client I on node "
                f"I mod {spec.nodes}; "
                + (
                    f"node K on core {list(options.node_cores)}[K mod "
                    f"{len(options.node_cores)}], Redis on any of them"
                    if options.node_cores
                    else "the nodes and Redis on the server's core"
                    if cores[0] is not None
                    else "no pinning"
                ),
                file=out,
            )
    if with_joins or plan is not None or any(spec.runs_ours for spec in specs):
        source = describe_source()
        if source:
            print(f"# ours from commit {source}", file=out)
    if scenarios or plan is not None:
        where = (
            f"server on core {cores[0]}, generator on core {cores[1]}"
            if cores[0] is not None
            else "no pinning"
        )
        print(f"# {where}" + (f", both at nice {options.nice}" if options.nice else ""), file=out)
    original_affinity = os.sched_getaffinity(0)
    results: list[dict[str, object]] = []
    failed = False
    # SIGTERM unwinds like Ctrl-C: servers stopped, the work directory removed.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        if cores[1] is not None:
            os.sched_setaffinity(0, {cores[1]})  # keep this process off the server's core
        with _workdir(args.workdir) as workdir:
            tools = compile_tools(workdir) if scenarios or plan else Tools(Path(), Path())
            if plan is not None:
                results.append(run_scrape_cost(plan, tools, workdir, options, cores, out))
            for scenario in scenarios:
                run_options = options
                if scenario.kind == "soak" and args.scenario == "suite":
                    run_options = replace(options, runs=1)
                these = servers_for(scenario, specs)
                left_out = [spec.name for spec in specs if spec not in these]
                if left_out:
                    print(
                        f"# {scenario.kind}: {', '.join(left_out)} left out: "
                        f"{left_out_because(scenario)}",
                        file=out,
                    )
                if not these:
                    print(file=out)
                    continue
                rows = bench(scenario, these, run_options, tools, workdir, out, cores)
                failed = failed or any(not row.figures for row in rows)
                results.append(
                    {"scenario": scenario.__dict__, "rows": [_row_json(r) for r in rows]}
                )
                print(file=out)
        if with_joins:
            results.append(run_joins(args.quick, options, cores[0], out))
    except BenchError as e:
        print(f"benchmarks: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.sched_setaffinity(0, original_affinity)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _row_json(row: Row) -> dict[str, object]:
    return {
        "server": row.server,
        "figures": row.figures,
        "notes": row.notes,
        "runs": [
            {
                "figures": r.figures,
                "senders": r.senders,
                "notes": r.notes,
                **({"redis_memory": r.redis_memory} if r.redis_memory else {}),
                **({"rss_kib": r.rss} if r.rss else {}),
            }
            for r in row.runs
        ],
    }


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="tcpchat-bench-") as name:
        yield Path(name)


if __name__ == "__main__":
    raise SystemExit(main())
