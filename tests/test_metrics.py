"""
Prometheus metrics (issue 17): the counters move by exactly what happened,
limits and endings are counted by reason, label sets stay bounded, and
C{--metrics} serves them (and C{/health}) to a real HTTP client while
traffic flows.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import (
    DEADLINE,
    Client,
    Process,
    refused_in_one_line,
    start_twistd,
    welcome,
)
from tests.test_cluster import LineSocket
from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.core.stats import Timings
from twisted_tcpchat.frontends import metrics
from twisted_tcpchat.frontends.metrics import MetricsPage, ReactorLag
from twisted_tcpchat.frontends.tcp import ChatFactory

Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Figures:
    """Prometheus's text format as {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(page: MetricsPage) -> Figures:
    return parse(generate_latest(page.registry).decode("utf-8"))


def value(figures: Figures, name: str, **labels: str) -> float:
    return figures[(name, tuple(sorted(labels.items())))]


def _peer(n: int, host: str = "192.0.2.7") -> IPv4Address:
    return IPv4Address("TCP", host, 41000 + n)


class MetricsCase(SynchronousTestCase):
    def chat(self, **settings: object) -> None:
        self.clock = Clock()
        self.factory = ChatFactory(ChatConfig(**settings), clock=self.clock)  # type: ignore[arg-type]
        self.server = self.factory.server
        self.lag = ReactorLag(self.clock)
        self.page = MetricsPage(self.server, self.lag)

    def moved(self, before: Figures, after: Figures) -> dict[str, float]:
        """The samples that changed, by name (with labels as name{k=v})."""
        changes = {}
        for key, now in after.items():
            name, labels = key
            if name.startswith(("process_", "python_", "tcpchat_scrape", "tcpchat_reactor")):
                continue
            if now != before.get(key, 0.0):
                shown = name + (
                    "{" + ",".join(f"{k}={v}" for k, v in labels) + "}" if labels else ""
                )
                changes[shown] = now - before.get(key, 0.0)
        return changes


class CounterTests(MetricsCase):
    def setUp(self) -> None:
        self.chat()
        self.alice = Client(self.factory, _peer(1))
        self.bob = Client(self.factory, _peer(2))
        self.alice.new_lines()
        self.bob.new_lines()

    def test_a_line_moves_the_counters_by_exactly_what_was_sent(self) -> None:
        """One line from bob: one line and its bytes in, one message, one delivery to alice."""
        before = scrape(self.page)
        sent_before = len(self.alice.raw())
        self.bob.send("hello")
        after = scrape(self.page)
        got = len(self.alice.raw()) - sent_before
        self.assertEqual(self.alice.new_lines(), ["<guest2> hello"])
        self.assertEqual(
            self.moved(before, after),
            {
                "tcpchat_lines_received_total": 1,
                "tcpchat_received_bytes_total": len(b"hello\n"),
                "tcpchat_messages_total": 1,
                "tcpchat_deliveries_total": 1,
                "tcpchat_sent_bytes_total": got,
            },
        )

    def test_the_lines_of_one_read_are_one_message(self) -> None:
        before = scrape(self.page)
        self.bob.send(b"one\ntwo\nthree\n")
        after = scrape(self.page)
        moved = self.moved(before, after)
        self.assertEqual(moved["tcpchat_lines_received_total"], 3)
        self.assertEqual(moved["tcpchat_messages_total"], 1)
        self.assertEqual(moved["tcpchat_deliveries_total"], 1)  # (one event of three lines)

    def test_connections_by_front_end_and_how_they_ended(self) -> None:
        figures = scrape(self.page)
        self.assertEqual(value(figures, "tcpchat_connections", frontend="tcp"), 2)
        self.assertEqual(value(figures, "tcpchat_connections_opened_total", frontend="tcp"), 2)
        self.assertEqual(value(figures, "tcpchat_connections", frontend="websocket"), 0)
        self.alice.send("/quit")
        self.alice.lost()
        self.bob.protocol.readConnectionLost()  # (its FIN: closed by the client)
        self.bob.lost()
        carol = Client(self.factory, _peer(3))
        carol.protocol.connectionLost(Failure(ConnectionLost()))  # (the network lost it)
        dave = Client(self.factory, _peer(4))
        dave.protocol.connectionLost(Failure(ConnectionDone()))  # (closed whole: TLS, say)
        figures = scrape(self.page)
        self.assertEqual(value(figures, "tcpchat_connections", frontend="tcp"), 0)
        self.assertEqual(value(figures, "tcpchat_connections_opened_total", frontend="tcp"), 4)
        ended = {
            reason: value(figures, "tcpchat_sessions_ended_total", reason=reason)
            for reason in ("quit", "closed", "lost")
        }
        self.assertEqual(ended, {"quit": 1, "closed": 2, "lost": 1})

    def test_every_label_is_there_from_the_start(self) -> None:
        """A rate over a reason works before the first event of it: each is shown at 0."""
        figures = scrape(self.page)
        for reason in metrics.REFUSALS:
            self.assertEqual(value(figures, "tcpchat_connections_refused_total", reason=reason), 0)
        for limit in metrics.LIMITS:
            self.assertEqual(value(figures, "tcpchat_lines_dropped_total", limit=limit), 0)
        for reason in metrics.ENDINGS:
            self.assertIn(("tcpchat_sessions_ended_total", (("reason", reason),)), figures)

    def test_process_figures_are_there(self) -> None:
        figures = scrape(self.page)
        self.assertGreater(value(figures, "process_resident_memory_bytes"), 0)
        self.assertGreater(value(figures, "process_cpu_seconds_total"), 0)
        self.assertGreater(value(figures, "process_max_fds"), 0)
        self.assertNotIn(("process_open_fds", ()), figures)  # (too dear to count)


class ProbeTests(MetricsCase):
    def test_a_probe_ends_as_a_probe(self) -> None:
        """A health check (nc -z) is not a lost connection: its own reason."""
        self.chat(probe_grace=0.25)
        Client(self.factory, _peer(1)).lost()
        figures = scrape(self.page)
        self.assertEqual(value(figures, "tcpchat_sessions_ended_total", reason="probe"), 1)
        self.assertEqual(value(figures, "tcpchat_sessions_ended_total", reason="lost"), 0)


class LimitTests(MetricsCase):
    def test_refusals_by_reason(self) -> None:
        self.chat(deny=("198.51.100.0/24",), per_address=1, connect_rate=2, max_clients=3)
        Client(self.factory, _peer(1, "198.51.100.9"))  # denied
        Client(self.factory, _peer(2))
        Client(self.factory, _peer(3))  # a second from 192.0.2.7: per address
        Client(self.factory, _peer(4, "192.0.2.8"))
        Client(self.factory, _peer(5, "192.0.2.9"))
        Client(self.factory, _peer(6, "192.0.2.10"))  # a fourth client: full
        figures = scrape(self.page)
        refused = {
            reason: value(figures, "tcpchat_connections_refused_total", reason=reason)
            for reason in ("not_allowed", "per_address", "full", "connect_rate", "banned")
        }
        self.assertEqual(
            refused,
            {"not_allowed": 1, "per_address": 1, "full": 1, "connect_rate": 0, "banned": 0},
        )
        self.assertEqual(value(figures, "tcpchat_connections", frontend="tcp"), 3)

    def test_connect_rate(self) -> None:
        self.chat(connect_rate=2)
        for n in range(3):
            Client(self.factory, _peer(n)).lost()
        figures = scrape(self.page)
        self.assertEqual(
            value(figures, "tcpchat_connections_refused_total", reason="connect_rate"), 1
        )

    def test_dropped_and_delayed_lines_by_limit(self) -> None:
        self.chat(max_line=10, flood_burst=2, flood_rate=1.0)
        bob = Client(self.factory, _peer(1))
        bob.send("x" * 20)
        self.assertIn("line too long", bob.new_lines()[-1])
        self.clock.advance(5)  # (tokens back)
        bob.send(b"1\n2\n3\n4\n5\n")  # two at once, three delayed
        figures = scrape(self.page)
        self.assertEqual(value(figures, "tcpchat_lines_dropped_total", limit="max_line"), 1)
        self.assertEqual(value(figures, "tcpchat_lines_delayed_total"), 3)

    def test_cut_off_by_reason(self) -> None:
        self.chat(flood_burst=1, flood_rate=0.1, flood_queue=2, idle_timeout=60)
        flooder = Client(self.factory, _peer(1))
        flooder.send(b"a\nb\nc\nd\ne\n")
        self.assertIn("excess flood", flooder.new_lines()[-1])
        flooder.lost()
        sleeper = Client(self.factory, _peer(2, "192.0.2.8"))
        self.clock.advance(61)
        self.assertIn("idle for 60 s", sleeper.new_lines()[-1])
        sleeper.lost()
        figures = scrape(self.page)
        self.assertEqual(value(figures, "tcpchat_sessions_ended_total", reason="flood"), 1)
        self.assertEqual(value(figures, "tcpchat_sessions_ended_total", reason="idle"), 1)

    def test_send_queues_of_clients_that_do_not_read(self) -> None:
        """Clients with bytes waiting, by how many; forgotten once drained."""
        self.chat()
        slow = Client(self.factory, _peer(1))
        talker = Client(self.factory, _peer(2, "192.0.2.8"))
        slow.protocol.pauseProducing()  # (its transport: the client stopped reading)
        for i in range(3):
            talker.send(f"line {i} " + "x" * 500)
        figures = scrape(self.page)
        waiting = value(figures, "tcpchat_send_queue_bytes")
        self.assertGreater(waiting, 1500)
        self.assertEqual(value(figures, "tcpchat_send_queue_clients"), 1)
        self.assertEqual(value(figures, "tcpchat_send_queue_largest_bytes"), waiting)
        slow.protocol.resumeProducing()
        figures = scrape(self.page)
        self.assertEqual(value(figures, "tcpchat_send_queue_clients"), 0)
        self.assertEqual(value(figures, "tcpchat_send_queue_bytes"), 0)
        self.assertEqual(self.server.stats.backlogged, set())


class RoomTests(MetricsCase):
    def test_members_per_room_with_a_bounded_label_set(self) -> None:
        self.patch(metrics, "ROOMS_SHOWN", 3)
        self.chat(per_address=100, connect_rate=100)
        clients = []
        for n, (room, size) in enumerate(
            [("big", 4), ("mid", 3), ("small", 2), ("tiny", 1), ("wee", 1)]
        ):
            for i in range(size):
                client = Client(self.factory, _peer(10 * n + i))
                client.send(f"/join #{room}")
                clients.append(client)
        Client(self.factory, _peer(99))  # (one stays in the lobby)
        figures = scrape(self.page)
        members = {
            dict(labels)["room"]: count
            for (name, labels), count in figures.items()
            if name == "tcpchat_room_members"
        }
        self.assertEqual(members, {"big": 4, "mid": 3, "small": 2, "(other)": 3})
        self.assertEqual(value(figures, "tcpchat_rooms"), 6)


class ReactorLagTests(SynchronousTestCase):
    def test_lag_is_how_late_a_due_call_ran(self) -> None:
        clock = Clock()
        lag = ReactorLag(clock)
        lag.startService()
        clock.advance(0.5)  # on time
        clock.advance(0.7)  # due at 1.0, ran at 1.2
        lag.stopService()
        self.assertEqual(lag.timings.count, 2)
        self.assertAlmostEqual(lag.timings.total, 0.2)
        self.assertAlmostEqual(lag.last, 0.2)
        self.assertEqual(clock.getDelayedCalls(), [])


class TimingsTests(SynchronousTestCase):
    def test_buckets_are_cumulative_with_inf_last(self) -> None:
        timings = Timings((0.1, 1.0))
        for seconds in (0.05, 0.1, 0.5, 2.0):
            timings.observe(seconds)
        self.assertEqual(timings.cumulative(), [("0.1", 2), ("1.0", 3), ("+Inf", 4)])
        self.assertEqual(timings.count, 4)
        self.assertAlmostEqual(timings.total, 2.65)


# Real sockets: twistd with --metrics, scraped by a real HTTP client.


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=DEADLINE) as answer:  # noqa: S310
            return answer.status, answer.headers["content-type"], answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"], e.read().decode()


@contextmanager
def _server(tmp_path: Path, *args: str) -> Iterator[tuple[Process, int, int, int]]:
    """twistd with --metrics on a port and on the web port: it, and the chat, metrics, web ports."""
    process, port = start_twistd(
        tmp_path,
        "--metrics",
        "tcp:0:interface=127.0.0.1",
        "--web",
        "tcp:0:interface=127.0.0.1",
        "--metrics",
        "/metrics",
        "--probe-grace",
        "0",
        *args,
    )
    try:
        found = process.wait_for_output(r"tcpchat metrics on http://127\.0\.0\.1:(\d+)/metrics")
        web = process.wait_for_output(r"WebSocket on http://127\.0\.0\.1:(\d+)/")
        yield process, port, int(found.group(1)), int(web.group(1))
    finally:
        process.stop()


def test_scraped_while_traffic_flows(tmp_path: Path) -> None:
    """Over real sockets: every line sent moves the counters by exactly its share."""
    with _server(tmp_path) as (process, port, metrics_port, web_port):
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        alice, bob = LineSocket(port), LineSocket(port)
        alice.expect(welcome("guest1"))
        bob.expect(welcome("guest2"))
        alice.expect("* guest2 joined")
        status, kind, text = _get(url)
        assert status == 200
        assert kind.startswith("text/plain; version=")
        before = parse(text)
        sent = [f"line {i} from bob" for i in range(20)]
        for i, line in enumerate(sent):
            bob.send(line)
            alice.expect(f"<guest2> {line}")  # (one read each: one message each)
            if i % 5 == 0:
                assert _get(url)[0] == 200  # (scraped in the middle of it)
        after = parse(_get(url)[2])

        def moved(name: str, after: Figures = after, before: Figures = before) -> float:
            return value(after, name) - value(before, name)

        assert moved("tcpchat_lines_received_total") == 20
        assert moved("tcpchat_received_bytes_total") == sum(len(s) + 1 for s in sent)
        assert moved("tcpchat_messages_total") == 20
        assert moved("tcpchat_deliveries_total") == 20
        assert moved("tcpchat_sent_bytes_total") == sum(len(f"<guest2> {s}\r\n") for s in sent)
        assert value(after, "tcpchat_connections", frontend="tcp") == 2
        assert value(after, "tcpchat_room_members", room="lobby") == 2
        # the same metrics on the web port, and /health on both
        on_web = parse(_get(f"http://127.0.0.1:{web_port}/metrics")[2])
        assert value(on_web, "tcpchat_connections", frontend="tcp") == 2
        for health_port in (metrics_port, web_port):
            status, kind, text = _get(f"http://127.0.0.1:{health_port}/health")
            assert (status, kind) == (200, "application/json")
            assert json.loads(text) == {"live": True, "ready": True, "clients": 2}
        assert _get(f"http://127.0.0.1:{metrics_port}/nothing")[0] == 404
        alice.close()
        bob.close()
        assert "Traceback" not in process.output


def test_metrics_options_refused_in_one_line(tmp_path: Path) -> None:
    cases = {
        ("--metrics", "/metrics"): "there is no --web port",
        ("--web", "tcp:0", "--metrics", "/ws"): "must be one free path",
        ("--web", "tcp:0", "--metrics", "/a/b"): "must be one free path",
        ("--metrics", "tcp:notaport"): "--metrics: bad endpoint",
        ("--metrics", "tcp:0", "--workers", "2", "--redis", "redis://127.0.0.1:1"): "--workers",
    }
    for args, expected in cases.items():
        line = refused_in_one_line(["-n", "tcpchat", "--port", "0", *args], tmp_path)
        assert expected in line, (args, line)
