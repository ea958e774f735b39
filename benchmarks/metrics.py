"""
The C{metrics} scenario (issue 17): what a scrape of our C{--metrics}
port costs the server, and what its counters cost relaying.

Its parts that need no server: a small reader of Prometheus's text format,
an HTTP client that scrapes C{/metrics} and times it, a thread that scrapes
once a second while a relay scenario runs (the C{scraped} row), clients
that never read (so that the send-queue metric has connections to look at),
and the scrape-cost table.  The driver (C{python -m benchmarks metrics})
starts the server and the idle clients, and runs the relay scenario with
C{scraped} next to ours.

The server times each scrape's rendering itself and shows it in the next
scrape (C{tcpchat_scrape_duration_seconds}), so K timed scrapes take one
more, read only for the last one's time.
"""

from __future__ import annotations

import http.client
import math
import re
import socket
import statistics
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

#: What the server's log says once its metrics port listens.
SERVING_METRICS = re.compile(rb"tcpchat metrics on http://127\.0\.0\.1:(\d+)/metrics")

#: Where the benchmark's server serves its metrics.
METRICS_LISTEN = "tcp:0:interface=127.0.0.1"

#: Seconds between two scrapes of the C{scraped} row during a relay run.
SCRAPE_EVERY = 1.0

#: The samples the figures are read from.
RENDER = "tcpchat_scrape_duration_seconds"
CONNECTIONS = 'tcpchat_connections{frontend="tcp"}'
UNIX_CONNECTIONS = 'tcpchat_connections{frontend="unix"}'
LAG = "tcpchat_reactor_lag_seconds"
QUEUED_CLIENTS = "tcpchat_send_queue_clients"
QUEUED_BYTES = "tcpchat_send_queue_bytes"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?)\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """
    The samples of a scrape in Prometheus's text format, by their name and
    labels as written (C{'tcpchat_connections{frontend="tcp"}'}).
    """
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            try:
                samples[match.group(1)] = float(match.group(2))
            except ValueError:
                continue
    return samples


def buckets(samples: dict[str, float], name: str) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets (upper bound, count), lowest first."""
    prefix = f'{name}_bucket{{le="'
    found = [
        (float(key[len(prefix) : -2]), value)
        for key, value in samples.items()
        if key.startswith(prefix) and key.endswith('"}')
    ]
    return sorted(found)


def bucket_counts(cumulative: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Cumulative buckets as counts per bucket: (upper bound, count in it)."""
    out, below = [], 0.0
    for bound, count in cumulative:
        out.append((bound, count - below))
        below = count
    return out


def lag_between(
    before: dict[str, float], after: dict[str, float]
) -> tuple[float, float, list[tuple[float, float]]]:
    """
    The reactor-lag histogram between two scrapes (C{before} empty: since
    the start): its looks, their sum in seconds, the count in each bucket.
    """
    old = dict(buckets(before, LAG))
    counts = bucket_counts(
        [(bound, count - old.get(bound, 0.0)) for bound, count in buckets(after, LAG)]
    )
    looks = after.get(f"{LAG}_count", 0.0) - before.get(f"{LAG}_count", 0.0)
    total = after.get(f"{LAG}_sum", 0.0) - before.get(f"{LAG}_sum", 0.0)
    return looks, total, counts


def format_lag(looks: float, total: float, counts: Sequence[tuple[float, float]]) -> str:
    """A lag histogram in words: looks, mean, and the buckets that have any."""
    if not looks:
        return "no looks"
    shown = ", ".join(
        f"{'>' + _ms_bound(counts[-2][0]) if math.isinf(bound) else '<=' + _ms_bound(bound)}: "
        f"{count:.0f}"
        for bound, count in counts
        if count
    )
    return f"{looks:.0f} looks, mean {total / looks * 1000:.2f} ms ({shown})"


def _ms_bound(seconds: float) -> str:
    return f"{seconds * 1000:g} ms"


def quantile(values: Sequence[float], q: float) -> float:
    """The C{q} quantile of C{values}, interpolated between the two nearest (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- scraping ------------------------------------------------------------------------


@dataclass
class Scrape:
    """One scrape: its round trip (seconds, request sent to body read), body and samples."""

    round_trip: float
    size: int
    samples: dict[str, float]


class Scraper:
    """
    C{GET /metrics} on loopback C{port}, over one kept-alive HTTP/1.1
    connection (as Prometheus scrapes), opened again if the server closes it.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def scrape(self) -> Scrape:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
                self._connection.connect()
            started = time.perf_counter()
            try:
                self._connection.request("GET", "/metrics")
                response = self._connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            took = time.perf_counter() - started
            if response.status != 200:
                raise http.client.HTTPException(f"/metrics answered {response.status}")
            if response.will_close:
                self.close()
            return Scrape(took, len(body), parse_metrics(body.decode("utf-8", "replace")))
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@dataclass
class Scraping:
    """
    A thread that scrapes every C{every} seconds until stopped (the
    C{scraped} row of a relay run): how many scrapes, how many failed, and
    the render times the server reported.
    """

    port: int
    every: float = SCRAPE_EVERY
    done: int = 0
    failed: int = 0
    renders: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraping", daemon=True)

    def start(self) -> Scraping:
        self._thread.start()
        return self

    def _run(self) -> None:
        scraper = Scraper(self.port)
        next_at = time.monotonic()
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                next_at += self.every
                try:
                    scrape = scraper.scrape()
                except (OSError, http.client.HTTPException) as e:
                    self.failed += 1
                    if len(self.errors) < 3:
                        self.errors.append(f"{type(e).__name__}: {e}")
                    continue
                self.done += 1
                if self.done > 1:  # (the first shows no scrape before it)
                    self.renders.append(scrape.samples.get(RENDER, math.nan))
        finally:
            scraper.close()

    def stop(self) -> dict[str, float]:
        """Stop; the figures: scrapes made, failed, and the largest render time (us)."""
        self._stop.set()
        self._thread.join(30)
        figures = {"scrapes": float(self.done), "scrapes_failed": float(self.failed)}
        if self.renders:
            figures["scrape_render_max_us"] = max(self.renders) * 1e6
        return figures


# --- clients that never read ------------------------------------------------------------


class NotReading:
    """
    C{count} clients that join room C{room} and never read, and one more
    that says lines there: the server queues what their sockets do not
    take, and the send-queue metric has that many connections to look at.

    They connect to the server's UNIX socket at C{path}: there the kernel
    holds about 200 KiB for a client that does not read (the sender's
    C{wmem_default}), where on loopback TCP the server's send buffer grows
    to about 2.7 MiB first.  The talker connects to the TCP C{port}.
    """

    def __init__(self, port: int, path: str, count: int, room: str = "stalled") -> None:
        self.port = port
        self.path = path
        self.count = count
        self.room = room
        self.clients: list[socket.socket] = []
        self.talker: socket.socket | None = None
        self.said = 0

    def _join(self, client: socket.socket) -> socket.socket:
        client.sendall(f"/join {self.room}\n".encode())
        return client

    def open(self) -> None:
        for _ in range(self.count):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.clients.append(client)
            client.connect(self.path)
            self._join(client)
        self.talker = self._join(socket.create_connection(("127.0.0.1", self.port)))
        self.talker.setblocking(False)

    def say(self, size: int, line: int = 512) -> None:
        """Say about C{size} bytes in lines of C{line} bytes (the talker reads what it gets)."""
        if self.talker is None:
            raise RuntimeError("not open")
        text = b"x" * (line - 1) + b"\n"
        for _ in range(max(1, size // line)):
            self.talker.setblocking(True)
            self.talker.sendall(text)
            self.talker.setblocking(False)
            self.said += len(text)
            self._drain()

    def _drain(self) -> None:
        try:
            while self.talker is not None and self.talker.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        """Close them all at once (a reset: nothing left waiting in TIME_WAIT)."""
        for client in self.clients:
            client.close()
        if self.talker is not None:
            self.talker.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.talker.close()
        self.clients, self.talker = [], None


# --- the scrape cost ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapePlan:
    """
    The scrape-cost part of the scenario.

    @ivar clients: idle clients (the generator's, as in C{idle}).
    @ivar not_reading: clients that never read, in a room of their own.
    @ivar scrapes: timed scrapes; C{rate}: how many a second.
    @ivar rooms: the idle clients spread over that many rooms (0: the one).
    """

    clients: int = 15000
    not_reading: int = 300
    scrapes: int = 50
    rate: float = 10.0
    rooms: int = 0

    @property
    def title(self) -> str:
        rooms = f"{self.rooms} rooms" if self.rooms else "one room"
        return (
            f"metrics: {self.clients} idle clients in {rooms}, {self.not_reading} not "
            f"reading in a room of their own; {self.scrapes} scrapes at {self.rate:g}/s "
            "over one kept-alive connection"
        )

    @property
    def hold(self) -> float:
        """Seconds the idle clients are asked to stay (they are let go once scraped)."""
        return self.scrapes / self.rate + 120.0


def time_scrapes(
    scraper: Scraper, count: int, rate: float, connect: dict[str, float]
) -> ScrapeCost:
    """
    One scrape, then none for as long as the timed ones will take (the
    reactor's lag without scrapes), then C{count} scrapes, one every
    C{1/rate} seconds, then one more that shows how long the last took to
    make.
    """
    quiet = scraper.scrape().samples
    time.sleep(count / rate)
    scrapes = []
    start = time.monotonic()
    for number in range(count + 1):
        delay = start + number / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        scrapes.append(scraper.scrape())
    timed, after = scrapes[:-1], scrapes[1:]
    return ScrapeCost(
        renders=[scrape.samples.get(RENDER, math.nan) for scrape in after],
        round_trips=[scrape.round_trip for scrape in timed],
        sizes=[scrape.size for scrape in timed],
        first=timed[0].samples,
        last=scrapes[-1].samples,
        connect=connect,
        quiet=quiet,
    )


# --- the scrape-cost table ---------------------------------------------------------------


@dataclass
class ScrapeCost:
    """
    What the timed scrapes saw.

    @ivar renders: the server's time to make each timed scrape (seconds,
        each read from the scrape after it).
    @ivar round_trips: each timed scrape's round trip at the client (seconds).
    @ivar sizes: each timed scrape's body (bytes).
    @ivar first: the samples of the first timed scrape; C{last}: of the one after the last.
    @ivar connect: the samples of the scrape before any client connected;
        C{quiet}: of the one before a pause as long as the timed scrapes.
    """

    renders: list[float]
    round_trips: list[float]
    sizes: list[int]
    first: dict[str, float]
    last: dict[str, float]
    connect: dict[str, float] = field(default_factory=dict)
    quiet: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, float]:
        out = {
            "scrapes": float(len(self.round_trips)),
            "renders": float(len(self.renders)),
            "body_bytes": float(statistics.median(self.sizes)) if self.sizes else math.nan,
            "connections_seen": self.last.get(CONNECTIONS, math.nan)
            + self.last.get(UNIX_CONNECTIONS, 0.0),
            "unix_connections_seen": self.last.get(UNIX_CONNECTIONS, 0.0),
            "queues_seen": self.last.get(QUEUED_CLIENTS, math.nan),
            "queued_bytes_seen": self.last.get(QUEUED_BYTES, math.nan),
        }
        for name, values in (("render", self.renders), ("round_trip", self.round_trips)):
            for label, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
                out[f"{name}_{label}_us"] = quantile(values, q) * 1e6
        for name, (before, after) in (
            ("lag_connecting", (self.connect, self.quiet or self.first)),
            ("lag_quiet", (self.quiet, self.first)),
            ("lag_scraping", (self.first, self.last)),
        ):
            looks, total, counts = lag_between(before, after)
            out[f"{name}_looks"] = looks
            out[f"{name}_sum_us"] = total * 1e6
            out[f"{name}_over_1ms"] = sum(c for bound, c in counts if bound > 0.001)
        return out


def format_cost(title: str, cost: ScrapeCost) -> str:
    """The scrape-cost table: one row of figures, then the reactor lag in words."""
    figures = cost.figures()

    def ms(key: str) -> str:
        return f"{figures[key] / 1000:.2f}"

    header = [
        "scrapes",
        "conns seen",
        "queues seen",
        "body KiB",
        "render p50 ms",
        "p99",
        "max",
        "round trip p50 ms",
        "p99",
        "max",
    ]
    row = [
        f"{figures['scrapes']:.0f}",
        f"{figures['connections_seen']:.0f}",
        f"{figures['queues_seen']:.0f} ({figures['queued_bytes_seen'] / 1024:.0f} KiB)",
        f"{figures['body_bytes'] / 1024:.1f}",
        ms("render_p50_us"),
        ms("render_p99_us"),
        ms("render_max_us"),
        ms("round_trip_p50_us"),
        ms("round_trip_p99_us"),
        ms("round_trip_max_us"),
    ]
    widths = [max(len(h), len(c)) for h, c in zip(header, row, strict=True)]
    lines = [
        f"== {title}",
        "   render: the server's time to make a scrape (tcpchat_scrape_duration_seconds, read "
        "from the next); round trip: request sent to body read, at the client",
        "   " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "   " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)),
        "   reactor lag (a look every 0.5 s): while the clients connected and queues filled: "
        + format_lag(*lag_between(cost.connect, cost.quiet or cost.first)),
        "   reactor lag without scrapes, just before: "
        + (format_lag(*lag_between(cost.quiet, cost.first)) if cost.quiet else "-"),
        "   reactor lag during the timed scrapes: "
        + format_lag(*lag_between(cost.first, cost.last)),
        "   render ms, each: " + " ".join(f"{r * 1000:.2f}" for r in cost.renders),
    ]
    return "\n".join(lines)
