"""
Prometheus metrics and the health check, for operators and their tools:
C{--metrics ENDPOINT} serves C{/metrics} and C{/health} on a port of their
own; C{--metrics /PATH} serves the metrics beside the C{--web} page.

The server counts as it goes in plain integers (L{Stats}); this module
turns them into metrics only when Prometheus asks (a custom collector),
so nothing is spent on metrics between scrapes.
"""

from __future__ import annotations

import heapq
import os
import resource
import time
from collections.abc import Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

import twisted_tcpchat
from twisted_tcpchat.core.stats import CUT_OFF, SHORT_TIMES, Timings
from twisted_tcpchat.frontends.health import HealthPage

if TYPE_CHECKING:
    from twisted_tcpchat.core.server import ChatServer

#: Rooms shown one by one in C{tcpchat_room_members}, the largest first;
#: the others are summed as the room C{(other)}, so the series stay few.
ROOMS_SHOWN = 50

#: Every value of the labelled counters, shown from the start (at 0), so
#: that a rate over them works before the first event.
FRONTENDS = ("tcp", "tls", "unix", "websocket")
REFUSALS = ("not_allowed", "banned", "full", "per_address", "connect_rate", "origin", "body")
ENDINGS = (
    "quit",
    "closed",
    "lost",
    "probe",
    "not_text",
    "shutdown",
    "removed",
    "redis_lost",
    "not_reading",
    *CUT_OFF.values(),
    "other",
)
LIMITS = ("max_line", "not_text", "bad_request")

#: Seconds between two looks at the reactor's lag.
LAG_INTERVAL = 0.5


class ReactorLag(Service):
    """
    How late the reactor runs a call that is due: every L{LAG_INTERVAL}
    seconds, the time between when a call was due and when it ran.  A
    server whose turns are long (a huge paste, a slow disk for the log)
    shows it here before its users notice.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.timings = Timings(SHORT_TIMES)
        self.last = 0.0
        self._call: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        self._next()

    def stopService(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        super().stopService()

    def _next(self) -> None:
        due = self.clock.seconds() + LAG_INTERVAL
        self._call = self.clock.callLater(LAG_INTERVAL, self._ran, due)

    def _ran(self, due: float) -> None:
        self.last = max(0.0, self.clock.seconds() - due)
        self.timings.observe(self.last)
        self._next()


def _histogram(name: str, documentation: str, timings: Timings) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=timings.cumulative(), sum_value=timings.total
    )


def _labelled(
    name: str, documentation: str, label: str, counts: dict[str, int], known: tuple[str, ...]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value in dict.fromkeys((*known, *counts)):
        family.add_metric([value], counts.get(value, 0))
    return family


class ChatCollector:
    """
    The chat's metrics, made from the server's counters when scraped
    (a prometheus_client custom collector).

    @ivar scrape_seconds: how long the last scrape took (shown by the next).
    """

    def __init__(self, server: ChatServer, lag: ReactorLag | None = None) -> None:
        self.server = server
        self.lag = lag
        self.scrape_seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        """prometheus_client Collector API."""
        server = self.server
        stats = server.stats
        info = InfoMetricFamily("tcpchat", "This server's version.")
        info.add_metric([], {"version": twisted_tcpchat.__version__})
        yield info

        now = GaugeMetricFamily(
            "tcpchat_connections", "Clients connected now, by front end.", labels=["frontend"]
        )
        for frontend in dict.fromkeys((*FRONTENDS, *stats.opened)):
            now.add_metric([frontend], stats.opened[frontend] - stats.closed[frontend])
        yield now
        yield GaugeMetricFamily(
            "tcpchat_connections_max",
            "Clients at once past which the server says it is full (--max-clients).",
            value=server.max_clients,
        )
        yield _labelled(
            "tcpchat_connections_opened",
            "Clients let in, by front end.",
            "frontend",
            stats.opened,
            FRONTENDS,
        )
        yield _labelled(
            "tcpchat_connections_refused",
            "Connections refused, by reason.",
            "reason",
            stats.refused,
            REFUSALS,
        )
        yield _labelled(
            "tcpchat_sessions_ended",
            "Sessions over, by how: quit, closed (by the client), lost, shutdown, removed "
            "(kicked, banned), redis_lost, or cut off by a limit (flood, idle, not_reading, ...).",
            "reason",
            stats.ended,
            ENDINGS,
        )
        yield CounterMetricFamily(
            "tcpchat_lines_received", "Lines received from clients.", value=stats.lines_in
        )
        yield CounterMetricFamily(
            "tcpchat_received_bytes",
            "Bytes received from clients (WebSocket: message payloads).",
            value=stats.bytes_in,
        )
        yield CounterMetricFamily(
            "tcpchat_messages",
            "Chat messages said (the lines of one read are one message).",
            value=stats.messages,
        )
        yield CounterMetricFamily(
            "tcpchat_deliveries",
            "Events sent to clients: messages, presence, notices, errors.",
            value=stats.deliveries,
        )
        yield CounterMetricFamily(
            "tcpchat_sent_bytes", "Bytes sent to clients.", value=stats.bytes_out
        )
        yield _labelled(
            "tcpchat_lines_dropped",
            "Lines a limit dropped, by limit: max_line, not_text, bad_request (a WebSocket's).",
            "limit",
            stats.dropped,
            LIMITS,
        )
        yield CounterMetricFamily(
            "tcpchat_lines_delayed",
            "Lines flood control held back (they are handled later, in order).",
            value=stats.delayed,
        )
        yield from self._rooms()
        yield from self._send_queues()
        if self.lag is not None:
            yield _histogram(
                "tcpchat_reactor_lag_seconds",
                "How late the reactor ran a call that was due.",
                self.lag.timings,
            )
        yield from self._redis()
        yield GaugeMetricFamily(
            "tcpchat_scrape_duration_seconds",
            "How long the previous scrape of these metrics took to make.",
            value=self.scrape_seconds,
        )

    def _rooms(self) -> Iterator[Metric]:
        rooms_of = getattr(self.server.directory, "local_rooms", None)
        if rooms_of is None:
            return
        rooms = rooms_of()
        yield GaugeMetricFamily(
            "tcpchat_rooms", "Rooms (with --redis: those this node's clients are in).", len(rooms)
        )
        members = GaugeMetricFamily(
            "tcpchat_room_members",
            f"Members of the {ROOMS_SHOWN} largest rooms (of this node); the rest as (other).",
            labels=["room"],
        )
        size = itemgetter(1)
        shown = heapq.nlargest(ROOMS_SHOWN, rooms, key=size)
        for name, count in shown:
            members.add_metric([name], count)
        if len(rooms) > len(shown):
            rest = sum(map(size, rooms)) - sum(map(size, shown))
            members.add_metric(["(other)"], rest)
        yield members

    def _send_queues(self) -> Iterator[Metric]:
        sizes = self.server.stats.queue_sizes()
        yield GaugeMetricFamily(
            "tcpchat_send_queue_clients",
            "Clients with bytes waiting to be sent to them (not reading fast enough).",
            value=len(sizes),
        )
        yield GaugeMetricFamily(
            "tcpchat_send_queue_bytes",
            "Bytes waiting to be sent to those clients, in all.",
            value=sum(sizes),
        )
        yield GaugeMetricFamily(
            "tcpchat_send_queue_largest_bytes",
            "The most bytes waiting for one client (--send-queue cuts it off past its cap).",
            value=max(sizes, default=0),
        )

    def _redis(self) -> Iterator[Metric]:
        directory = self.server.directory
        figures = getattr(directory, "redis_figures", None)
        if figures is None:
            return
        round_trips, waiting = figures()
        yield _histogram(
            "tcpchat_redis_round_trip_seconds",
            "How long Redis took to answer this node's requests.",
            round_trips,
        )
        yield GaugeMetricFamily(
            "tcpchat_redis_requests_waiting",
            "Requests waiting for Redis's answer (or for Redis to come back).",
            value=waiting,
        )
        health = directory.health()  # type: ignore[attr-defined]
        yield GaugeMetricFamily(
            "tcpchat_redis_up", "1 when this node is connected to Redis.", int(health["ready"])
        )
        yield GaugeMetricFamily(
            "tcpchat_redis_lost_seconds",
            "How long Redis has been lost for (0: it is not).",
            value=health.get("lost_for", 0.0),
        )


def _boot_time() -> float:
    """When the machine started, in seconds since the epoch (0 where unknown)."""
    try:
        with open("/proc/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


class ProcessFigures:
    """
    The process's figures as prometheus_client's ProcessCollector names
    them (CPU, memory, start time, the open-file limit) but for
    C{process_open_fds}: counting the open files lists C{/proc/self/fd},
    7 ms of the reactor at 15,000 connections (tcpchat_connections counts
    those anyway).  Linux only; nothing elsewhere.
    """

    def __init__(self) -> None:
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = resource.getpagesize()
        self._booted = _boot_time()

    def collect(self) -> list[Metric]:
        """prometheus_client Collector API."""
        try:
            with open("/proc/self/stat", "rb") as stat:
                # (after the command's name in parentheses, which may hold spaces)
                fields = stat.read().rsplit(b")", 1)[-1].split()
        except OSError:
            return []
        utime, stime, started = int(fields[11]), int(fields[12]), int(fields[19])
        return [
            GaugeMetricFamily(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                value=int(fields[20]),
            ),
            GaugeMetricFamily(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                value=int(fields[21]) * self._page,
            ),
            GaugeMetricFamily(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                value=self._booted + started / self._ticks,
            ),
            CounterMetricFamily(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                value=(utime + stime) / self._ticks,
            ),
            GaugeMetricFamily(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                value=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            ),
        ]


class MetricsPage(Resource):
    """
    C{/metrics}: the chat's metrics and the process's (CPU, memory, the
    open-file limit, Python's GC) in Prometheus's text format, made in the reactor's
    thread (prometheus_client's own Twisted resource runs in a thread,
    where the server's sets and dicts may change under it).
    """

    isLeaf = True

    def __init__(self, server: ChatServer, lag: ReactorLag | None = None) -> None:
        super().__init__()
        self.collector = ChatCollector(server, lag)
        self.registry = registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        registry.register(ProcessFigures())
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

    def render_GET(self, request: Request) -> bytes:
        started = time.perf_counter()
        body = generate_latest(self.registry)
        self.collector.scrape_seconds = time.perf_counter() - started
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return body


class _Index(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"tcpchat: /metrics (Prometheus), /health\n"


class MetricsSite(Site):
    """The metrics port: C{/metrics} and C{/health}; no access log (a scrape is no news)."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


def metrics_site(server: ChatServer, page: MetricsPage, clock: IReactorTime) -> Site:
    """C{--metrics ENDPOINT}: a site with C{/metrics} (C{page}) and C{/health}."""
    root = Resource()
    root.putChild(b"", _Index())
    root.putChild(b"metrics", page)
    root.putChild(b"health", HealthPage(server))
    return MetricsSite(root, timeout=30, reactor=clock)
