"""
Several installed `twistd -n tcpchat --redis` nodes on one redis-server of
the test's own, with real clients (nc, socat, plain sockets) spread over
them: one chat, through a node killed, Redis killed and restarted, a node
paused; and --workers.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import DEADLINE, Process, start_twistd, wait_for
from tests.redis_server import RedisServer
from tests.test_peers import Peer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    yield server
    server.stop()


class Cluster:
    """Nodes of one chat, started and stopped by the test."""

    def __init__(self, tmp_path: Path, redis: RedisServer) -> None:
        self.tmp_path = tmp_path
        self.redis = redis
        self.nodes: list[tuple[Process, int]] = []
        self.started = 0

    def start(self, *args: str) -> tuple[Process, int]:
        self.started += 1
        directory = self.tmp_path / f"node{self.started}"
        directory.mkdir()
        node = start_twistd(directory, "--redis", self.redis.url, *args)
        node[0].wait_for_output(r"joined the chat at redis://")
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for process, _port in self.nodes:
            process.stop()


@pytest.fixture
def cluster(tmp_path: Path, redis: RedisServer) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path, redis)
    yield nodes
    nodes.stop()


class LineSocket:
    """A plain client socket that collects the lines it receives."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=DEADLINE, source_address=(source, 0)
        )
        self.sock.settimeout(0.05)
        self.buffer = b""
        self.received: list[str] = []

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def pump(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                break
            if not data:
                break
            self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        self.received += [line.rstrip(b"\r").decode() for line in complete]
        return self.received

    def expect(self, line: str, timeout: float = DEADLINE) -> None:
        wait_for(lambda: line in self.pump(), f"{line!r} from the server", timeout)

    def close(self) -> None:
        self.sock.close()


def named(port: int, name: str) -> LineSocket:
    client = LineSocket(port)
    client.send(f"/nick {name}")
    client.expect(f"* you are now {name}")
    return client


def test_clients_of_two_nodes_share_one_chat(cluster: Cluster, tmp_path: Path) -> None:
    """nc on one node and socat on the other: lines, presence, /msg, /who, /rooms, one order."""
    _, port1 = cluster.start()
    _, port2 = cluster.start()
    alice = Peer("nc", port1, tmp_path)
    alice.say("/nick alice")
    alice.expect("* you are now alice")
    bob = Peer("socat", port2, tmp_path)
    bob.say("/nick bob")
    bob.expect("* you are now bob")
    alice.expect("* guest2 is now known as bob")
    alice.say("hello from node one")
    bob.expect("<alice> hello from node one")
    bob.say("/msg alice psst")
    alice.expect("[private from bob] psst")
    bob.say("/who")
    bob.expect("* 2 in #lobby:")
    bob.expect("*   alice (idle 0s)")
    bob.say("/join dev")
    alice.expect("* bob left for #dev")
    alice.say("/rooms")
    alice.expect("*   #dev (1)")
    alice.say("/join dev")
    bob.expect("* alice came from #lobby")
    # Both say lines at once; a third member on each node sees one order.
    carol, dave = named(port1, "carol"), named(port2, "dave")
    carol.send("/join dev")
    dave.send("/join dev")
    carol.expect("* you are now in #dev")
    dave.expect("* you are now in #dev")
    for i in range(40):
        alice.say(f"a{i}")
        bob.say(f"b{i}")
    dave.expect("<bob> b39")
    dave.expect("<alice> a39")
    carol.expect("<bob> b39")
    carol.expect("<alice> a39")

    def said(client: LineSocket) -> list[str]:
        return [line for line in client.pump() if re.match(r"<(alice|bob)> [ab]\d+$", line)]

    assert said(carol) == said(dave)
    assert [x for x in said(carol) if x.startswith("<a")] == [f"<alice> a{i}" for i in range(40)]
    assert [x for x in said(carol) if x.startswith("<b")] == [f"<bob> b{i}" for i in range(40)]


def test_two_clients_race_for_one_name_on_two_nodes(cluster: Cluster) -> None:
    """Exactly one of two clients on two nodes asking for one name at once gets it."""
    _, port1 = cluster.start()
    _, port2 = cluster.start()
    for round_ in range(3):
        one, two = LineSocket(port1), LineSocket(port2)
        one.expect("Connect succeed. Please send a message to me")
        two.expect("Connect succeed. Please send a message to me")
        one.send(f"/nick racer{round_}")
        two.send(f"/nick Racer{round_}")
        outcomes = []
        for client, asked in ((one, f"racer{round_}"), (two, f"Racer{round_}")):
            won, lost = f"* you are now {asked}", f"error: the name '{asked}' is taken"
            wait_for(lambda c=client, w=won, lo=lost: {w, lo} & set(c.pump()), "an answer")
            outcomes.append(won in client.received)
        assert sorted(outcomes) == [False, True]
        one.close()
        two.close()


def test_operators_kick_and_ban_across_nodes(cluster: Cluster) -> None:
    auth = ["--auth", "memory:op:secret:eve:pw:mallory:pw", "--op", "op"]
    _, port1 = cluster.start(*auth)
    _, port2 = cluster.start(*auth)
    op = LineSocket(port1)
    op.send("/login op secret")
    op.expect("* you are op; /nick NAME changes it, /help lists the commands")
    eve = LineSocket(port2)
    eve.send("/login eve pw")
    eve.expect("* you are eve; /nick NAME changes it, /help lists the commands")
    op.expect("* eve joined")
    op.send("/kick eve enough")
    eve.expect("* you were kicked by op: enough")
    op.expect("* eve left (kicked by op: enough)")
    mallory = LineSocket(port2, source="127.0.0.2")
    mallory.send("/login mallory pw")
    op.expect("* mallory joined")
    op.send("/ban mallory 10m")
    op.expect("* banned 127.0.0.2/32 for 10m")
    op.expect("* mallory left (banned by op)")
    wait_for(
        lambda: any(
            re.fullmatch(r"\* you were banned by op for (9|10)m", line) for line in mallory.pump()
        ),
        "mallory told",
    )
    # The other node refuses the banned address at once.
    refused = socket.create_connection(("127.0.0.1", port2), source_address=("127.0.0.2", 0))
    refused.settimeout(DEADLINE)
    data = b""
    while b"banned" not in data:
        chunk = refused.recv(4096)
        if not chunk:
            break
        data += chunk
    assert re.fullmatch(rb"error: your address is banned for another (9|10)m\r\n", data), data
    refused.close()


def test_a_killed_node_is_noticed_and_its_names_freed(cluster: Cluster) -> None:
    """kill -9 of a node: the others announce its members as left (node lost) within 20 s."""
    node1, port1 = cluster.start()
    _, port2 = cluster.start()
    alice = named(port1, "alice")
    bob = named(port2, "bob")
    bob.pump()
    killed_at = time.monotonic()
    node1.popen.send_signal(signal.SIGKILL)
    node1.wait()
    bob.expect("* alice left (node lost)", timeout=25)
    assert time.monotonic() - killed_at < 20
    again = named(port2, "alice")
    bob.expect("* guest3 is now known as alice")
    alice.close()
    again.close()


def test_a_stopped_node_says_goodbye_for_its_members_at_once(cluster: Cluster) -> None:
    node1, port1 = cluster.start()
    _, port2 = cluster.start()
    alice = named(port1, "alice")
    bob = named(port2, "bob")
    stopped_at = time.monotonic()
    node1.stop()
    bob.expect("* alice left (server shutting down)")
    assert time.monotonic() - stopped_at < 5
    alice.close()


def steady_traffic(
    senders: dict[str, LineSocket], count: int, interval: float, during: object = None
) -> None:
    """Each sender says C{count} numbered lines, one every C{interval} s, in turns."""
    for i in range(count):
        for name, client in senders.items():
            client.send(f"{name} {i}")
            client.pump()
        if callable(during):
            during(i)
        time.sleep(interval)


def test_redis_killed_and_restarted_under_steady_traffic(
    cluster: Cluster, redis: RedisServer
) -> None:
    """Lines accepted while Redis is killed and restarted arrive once, in order, on every node."""
    _, port1 = cluster.start()
    _, port2 = cluster.start()
    alice, bob = named(port1, "alice"), named(port2, "bob")
    watch1, watch2 = named(port1, "watch1"), named(port2, "watch2")
    count = 120

    def outage(i: int) -> None:
        if i == 30:
            redis.stop(kill=True)
        elif i == 60:  # about 1.5 s later
            redis.start()

    steady_traffic({"alice": alice, "bob": bob}, count, 0.025, outage)
    for watcher in (watch1, watch2):
        watcher.expect(f"<alice> alice {count - 1}", timeout=60)
        watcher.expect(f"<bob> bob {count - 1}", timeout=60)
    for watcher in (watch1, watch2):
        lines = watcher.pump()
        for name in ("alice", "bob"):
            said = [line for line in lines if line.startswith(f"<{name}> ")]
            assert said == [f"<{name}> {name} {i}" for i in range(count)], name
    for sender, other in ((alice, "bob"), (bob, "alice")):
        said = [line for line in sender.pump() if line.startswith(f"<{other}> ")]
        assert said == [f"<{other}> {other} {i}" for i in range(count)]
        assert not [line for line in sender.received if line.startswith("error")]
    log = cluster.nodes[0][0].output
    assert len(re.findall(r"redis: lost redis://", log)) == 1, log
    assert len(re.findall(r"redis: redis://\S+ is back after", log)) == 1, log


def test_a_paused_node_catches_up(cluster: Cluster) -> None:
    """A node stopped (SIGSTOP) for 5 s and resumed delivers every line said meanwhile, in order."""
    _, port1 = cluster.start()
    node2, port2 = cluster.start()
    alice, bob = named(port1, "alice"), named(port2, "bob")
    alice.pump()
    os.kill(node2.popen.pid, signal.SIGSTOP)
    try:
        paused_at = time.monotonic()
        i = 0
        while time.monotonic() - paused_at < 5:
            alice.send(f"while paused {i}")
            i += 1
            time.sleep(0.05)
    finally:
        os.kill(node2.popen.pid, signal.SIGCONT)
    bob.expect(f"<alice> while paused {i - 1}")
    said = [line for line in bob.pump() if line.startswith("<alice>")]
    assert said == [f"<alice> while paused {n}" for n in range(i)]
    assert "* alice left" not in " ".join(bob.received)
    bob.send("/who")
    bob.expect("* 2 in #lobby:")


def test_workers_share_one_port(tmp_path: Path, redis: RedisServer) -> None:
    """--workers 2: two processes serve one port, as one chat; stopping the first stops both."""
    node, port = start_twistd(tmp_path, "--redis", redis.url, "--workers", "2")
    try:
        match = node.wait_for_output(r"tcpchat worker 2 started \(pid (\d+)\)")
        worker = int(match.group(1))
        wait_for(
            lambda: len(re.findall(r"joined the chat at redis://", node.output)) == 2,
            "both processes in the chat",
        )
        clients = [named(port, f"user{i}") for i in range(8)]
        clients[0].send("hello, all")
        for client in clients[1:]:
            client.expect("<user0> hello, all")
        assert redis.command("ZCARD", "{tcpchat}:nodes") == "(integer) 2"
    finally:
        node.stop()
    wait_for(lambda: not _alive(worker), "the worker to stop with its parent")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_history_and_topics_survive_a_restart_of_everything(
    cluster: Cluster, redis: RedisServer
) -> None:
    """With Redis persistence on, nodes and Redis all restarted: topics and history are there."""
    _, port = cluster.start()
    alice = named(port, "alice")
    alice.send("/join dev")
    alice.expect("* you are now in #dev")
    alice.send("/topic release on Friday")
    alice.expect("* alice set the topic of #dev: release on Friday")
    alice.send("the build is green")
    alice.send("/who")
    alice.expect("* 1 in #dev:")
    cluster.stop()
    cluster.nodes.clear()
    redis.stop()
    redis.start()
    _, port = cluster.start()
    bob = named(port, "bob")
    bob.send("/join dev")
    bob.expect("* the topic of #dev: release on Friday")
    bob.expect("[history] <alice> the build is green")
    alice.close()


def test_a_browser_on_one_node_and_nc_on_another(cluster: Cluster) -> None:
    """A WebSocket client of one node and a TCP client of another share a room."""
    pytest.importorskip("autobahn")
    from tests.test_web_sockets import WebSocket

    web_node, _ = cluster.start("--web", "tcp:0:interface=127.0.0.1")
    match = web_node.wait_for_output(r"web page and WebSocket on http://127\.0\.0\.1:(\d+)/")
    web = int(match.group(1))
    _, port = cluster.start()
    browser = WebSocket(socket.create_connection(("127.0.0.1", web)), f"127.0.0.1:{web}")
    # (A client waits for the handshake's answer before it sends: RFC 6455, 4.1.)
    assert browser.event("you")["change"] == "welcome"
    browser.say("/nick webby")
    assert browser.event("you")["name"] == "webby"
    bob = named(port, "bob")
    assert browser.event("presence")["name"] in ("guest2", "bob")
    bob.send("hello across nodes")
    message = browser.event("message")
    assert (message["sender"], message["lines"]) == ("bob", ["hello across nodes"])
    browser.say("hi bob")
    bob.expect("<webby> hi bob")
    browser.sock.close()
    bob.expect("* webby left (disconnected)")
