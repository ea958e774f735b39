"""
The directory shared through Redis, against a redis-server of the tests'
own: the same contract as the in-memory directory (L{DirectoryContract}),
then what only a shared directory does - two nodes on one Redis, the
outbox through an outage, a node's lease.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import DEADLINE, tcpchat_log
from tests.redis_server import RedisServer, free_port
from tests.test_directory import DirectoryContract
from twisted_tcpchat.core.events import History, Message
from twisted_tcpchat.core.interfaces import IDirectory
from twisted_tcpchat.testing import RecordingParticipant

try:
    import pytest_twisted
    from pytest_twisted import blockon
except ImportError:  # pragma: no cover
    pytest_twisted = None

pytestmark = pytest.mark.timeout(120)


def _reactor_greenlet_running() -> bool:
    """blockon needs pytest-twisted's reactor greenlet (trial has none)."""
    instances = getattr(pytest_twisted, "_instances", None)
    return instances is not None and getattr(instances, "gr_twisted", None) is not None


def skip_reason() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    if not _reactor_greenlet_running():
        return "needs pytest-twisted's reactor (run under pytest)"
    return None


def wait(d: Deferred[Any]) -> Any:
    return blockon(d)


class RedisCase(SynchronousTestCase):
    """A redis-server for the class, and directories on it, one database each."""

    server: RedisServer
    _tmp: str
    skip_reason: str | None = None
    _databases = itertools.count(0)

    @classmethod
    def setUpClass(cls) -> None:
        cls.skip_reason = skip_reason()
        if cls.skip_reason is None:
            cls._tmp = tempfile.mkdtemp(prefix="tcpchat-redis-")
            cls.server = RedisServer(Path(cls._tmp)).start()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.skip_reason is None:
            cls.server.stop()
            shutil.rmtree(cls._tmp, ignore_errors=True)

    def require(self) -> None:
        """Skip (under trial, or without redis-server) with the reason."""
        reason = getattr(type(self), "skip_reason", None) or skip_reason()
        if reason is not None:
            raise SkipTest(reason)

    def redis_directory(self, db: int | None = None, **settings: Any) -> Any:
        from twisted_tcpchat.rooms.redis import RedisDirectory
        from twisted_tcpchat.rooms.redislink import RedisAddress

        if db is None:
            db = next(self._databases) % 16
            self.server.command("-n", str(db), "FLUSHDB")
        directory = RedisDirectory(
            self.clock, reactor, RedisAddress.parse(f"{self.server.url[:-2]}/{db}"), **settings
        )
        directory.start()
        wait(directory.when_ready())
        self.addCleanup(lambda: wait(directory.stop()))
        self._directories.append(directory)
        return directory

    def settle(self) -> None:
        for directory in self._directories:
            wait(directory.when_settled())
        # (what one directory's reading sent may be for another)
        for directory in self._directories:
            wait(directory.when_settled())


class RedisDirectoryTests(DirectoryContract, RedisCase):
    """Every case of the directory's contract, on one node of a Redis-backed chat."""

    def setUp(self) -> None:
        self.require()
        self._directories: list[Any] = []
        super().setUp()

    def make_directory(self, **settings: Any) -> IDirectory:
        return self.redis_directory(**settings)  # type: ignore[no-any-return]

    settle = RedisCase.settle
    banned_for_good = "your address is banned"

    def test_an_empty_room_goes_once_its_history_is_idle(self) -> None:
        """(In Redis's own time: a room's record expires there, --room-idle after its last line.)"""
        directory = self.make_directory(room_idle=1.0)
        a, b = self.entered("a", "b", directory=directory)
        directory.join(a, "quiet")
        directory.part(a)  # nothing was said: it goes at once
        directory.join(b, "chatty")
        directory.say(b, ["hello"])
        directory.part(b)
        directory.list_rooms(a)
        self.assertEqual(self.lines(a)[-3:], ["* 2 rooms:", "*   #chatty (0)", "*   #lobby (2)"])
        deadline = reactor.seconds() + 30
        while reactor.seconds() < deadline:
            directory.list_rooms(a)
            if self.lines(a)[-2:] == ["* 1 room:", "*   #lobby (2)"]:
                break
            wait(deferLater(reactor, 0.1, lambda: None))
        else:
            self.fail("#chatty did not close")


class SharedChatTests(RedisCase):
    """Two nodes on one Redis: one chat."""

    def setUp(self) -> None:
        self.require()
        self._directories = []
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.db = next(self._databases) % 16
        self.server.command("-n", str(self.db), "FLUSHDB")
        self.one = self.redis_directory(self.db)
        self.two = self.redis_directory(self.db)

    def enter(self, directory: Any, name: str, **kwargs: Any) -> RecordingParticipant:
        person = RecordingParticipant(name, address=kwargs.pop("address", "192.0.2.50"))
        directory.enter(person, name=name, **kwargs)
        self.settle()
        person.take()
        return person

    def test_every_member_on_every_node_sees_one_order(self) -> None:
        """Lines said at once on two nodes reach everyone in one order, a sender's in its own."""
        a = self.enter(self.one, "a")
        b = self.enter(self.two, "b")
        c = self.enter(self.one, "c")
        d = self.enter(self.two, "d")
        for person in (a, b, c, d):
            person.take()
        for i in range(30):
            self.one.say(a, [f"a{i}"])
            self.two.say(b, [f"b{i}", f"b{i}+"])
        self.settle()
        seen = {p.label: [line for line in p.lines()] for p in (a, b, c, d)}
        self.assertEqual(seen["c"], seen["d"])
        self.assertEqual(len(seen["c"]), 90)
        self.assertEqual(
            [x for x in seen["c"] if x.startswith("<a>")], [f"<a> a{i}" for i in range(30)]
        )
        b_lines = [x for x in seen["c"] if x.startswith("<b>")]
        self.assertEqual(b_lines, [f"<b> b{i}{plus}" for i in range(30) for plus in ("", "+")])
        self.assertEqual(seen["a"], [x for x in seen["c"] if not x.startswith("<a>")])

    def test_two_clients_on_two_nodes_race_for_a_name(self) -> None:
        """Exactly one of two clients entering under one name at once gets it."""
        for round_ in range(5):
            x, y = RecordingParticipant(), RecordingParticipant()
            self.one.enter(x, name=f"alice{round_}")
            self.two.enter(y, name=f"ALICE{round_}")
            self.settle()
            names = sorted(p.name for p in (x, y))
            self.assertEqual(names[0], "")
            self.assertEqual(names[1].lower(), f"alice{round_}")
            loser, asked = (x, f"alice{round_}") if x.name == "" else (y, f"ALICE{round_}")
            self.assertEqual(loser.lines(), [f"error: the name '{asked}' is taken"])

    def test_private_who_and_whois_across_nodes(self) -> None:
        a = self.enter(self.one, "alice")
        b = self.enter(self.two, "bob")
        a.take()
        self.two.whisper(b, "ALICE", "psst")
        self.settle()
        self.assertEqual(a.lines(), ["[private from bob] psst"])
        self.assertEqual(b.lines(), ["[private to alice] psst"])
        self.clock.advance(120)
        self.one.say(a, ["hi"])
        self.two.who(b)
        self.settle()
        self.assertEqual(
            b.lines(), ["<alice> hi", "* 2 in #lobby:", "*   alice (idle 0s)", "*   bob (idle 2m)"]
        )
        self.one.whois(a, "bob")
        self.settle()
        self.assertEqual(a.lines(), ["* bob is in #lobby (idle 2m)"])

    def test_kick_and_ban_across_nodes(self) -> None:
        op = self.enter(self.one, "op", operator=True)
        b = self.enter(self.two, "b", address="198.51.100.7")
        c = self.enter(self.two, "c", address="198.51.100.8")
        self.one.kick(op, "b", "spam")
        self.settle()
        self.assertEqual(b.gone, "kicked by op: spam")
        self.assertIn("* b left (kicked by op: spam)", c.lines())
        self.one.ban(op, "c", 600)
        self.settle()
        self.assertEqual(c.gone, "banned by op")
        self.assertEqual(op.lines()[-1], "* banned 198.51.100.8/32 for 10m")
        for node in (self.one, self.two):
            self.assertEqual(node.banned("198.51.100.8"), "your address is banned for another 10m")
            self.assertIsNone(node.banned("198.51.100.7"))
        newcomer = self.redis_directory(self.db)
        self.assertIsNotNone(newcomer.banned("198.51.100.8"))

    def test_history_then_live_from_one_record(self) -> None:
        """A newcomer arriving during a flood hears every line once: history, then live."""
        a = self.enter(self.one, "a")
        newcomer = RecordingParticipant()
        for i in range(200):
            self.one.say(a, [f"{i}"])
            if i == 100:
                self.two.enter(newcomer, name="n")
        self.settle()
        heard: list[str] = []
        for event in newcomer.take():
            if isinstance(event, History):
                heard += [line for e in event.entries for line in e.lines]  # type: ignore[union-attr]
            elif isinstance(event, Message):
                heard += list(event.lines)
        first = int(heard[0])
        self.assertEqual(heard, [str(i) for i in range(first, 200)])
        self.assertLessEqual(first, 200 - 20)

    def test_a_node_whose_lease_ends_is_reaped(self) -> None:
        """A node gone silent (killed) is noticed: its members leave (node lost), names freed."""
        lost = self.redis_directory(self.db, lease=1.0)
        self.two._lease = 1.0
        b = self.enter(self.two, "b")
        a = self.enter(lost, "a")
        self.settle()
        b.take()
        # Dies without a word: no goodbye, no more heartbeats.
        lost._stopping = True
        lost._heartbeat.stop()
        wait(lost._writer.stop())
        wait(lost._reader.stop())
        self._directories.remove(lost)
        deadline = reactor.seconds() + 30
        while "* a left (node lost)" not in b.lines():
            self.assertLess(reactor.seconds(), deadline, "a was not announced as lost")
            wait(deferLater(reactor, 0.2, lambda: None))
            self.two._beat()
            self.settle()
        again = self.enter(self.two, "a")
        self.assertEqual(again.name, "a")
        del a

    def test_a_graceful_stop_says_goodbye_at_once(self) -> None:
        leaving = self.redis_directory(self.db)
        b = self.enter(self.two, "b")
        a = self.enter(leaving, "a")
        b.take()
        leaving.leave(a, "server shutting down")
        self._directories.remove(leaving)
        wait(leaving.stop())
        self.settle()
        self.assertEqual(b.lines(), ["* a left (server shutting down)"])
        self.assertEqual(
            self.server.command("-n", str(self.db), "ZCARD", "{tcpchat}:nodes"), "(integer) 2"
        )


class OutageTests(RedisCase):
    """Redis stopped and started again under the nodes: nothing lost, nothing twice."""

    def setUp(self) -> None:
        self.require()
        self._directories = []
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.tmp = Path(tempfile.mkdtemp(prefix="tcpchat-outage-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.own = RedisServer(self.tmp, persistent=True).start()
        self._port = self.own.port
        self.addCleanup(lambda: self.own.stop())
        self.logged = tcpchat_log(self)

    def node(self, **settings: Any) -> Any:
        from twisted_tcpchat.rooms.redis import RedisDirectory
        from twisted_tcpchat.rooms.redislink import RedisAddress

        directory = RedisDirectory(
            self.clock, reactor, RedisAddress.parse(self.own.url), **settings
        )
        directory.start()
        wait(directory.when_ready())
        self.addCleanup(lambda: wait(directory.stop(grace=0.5)))
        self._directories.append(directory)
        return directory

    def test_lines_said_during_an_outage_arrive_once_in_order(self) -> None:
        one, two = self.node(), self.node()
        a, b = RecordingParticipant(), RecordingParticipant()
        one.enter(a, name="a")
        two.enter(b, name="b")
        self.settle()
        a.take()
        b.take()
        for i in range(5):
            one.say(a, [f"before {i}"])
        self.own.stop(kill=True)
        for i in range(5):
            one.say(a, [f"during {i}"])
        self.own.start()
        for i in range(5):
            one.say(a, [f"after {i}"])
        self.settle()
        expected = [f"<a> {when} {i}" for when in ("before", "during", "after") for i in range(5)]
        heard = [line for line in b.lines() if line.startswith("<a>")]
        self.assertEqual(heard, expected)
        self.assertEqual(a.lines(), [])
        lost = [line for line in self.logged if "lost" in line and "redis" in line]
        back = [line for line in self.logged if "is back after" in line]
        self.assertEqual((len(lost), len(back)), (2, 2), self.logged)  # (one of each per node)
        redis_lines = [line for line in self.logged if line.startswith("redis:")]
        self.assertEqual(len(redis_lines), 4, redis_lines)

    def test_past_the_limit_senders_are_told(self) -> None:
        one = self.node(outbox_limit=3)
        a = RecordingParticipant()
        one.enter(a, name="a")
        self.settle()
        a.take()
        self.own.stop(kill=True)
        for i in range(5):
            one.say(a, [f"line {i}"])
        lines = a.lines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(all(line.startswith("error: not delivered") for line in lines), lines)
        self.own.start()
        self.settle()

    def test_health_says_when_redis_is_lost_and_back(self) -> None:
        """What /health reports: ready and connected, lost (not ready) during an outage, back."""
        one = self.node()
        self.assertEqual(one.health(), {"ready": True, "redis": "connected"})
        self.own.stop(kill=True)
        self._until(lambda: one.health()["redis"] == "lost", "Redis noticed lost")
        self.assertFalse(one.health()["ready"])
        self.own.start()
        self._until(lambda: one.health()["ready"], "Redis back")
        self.assertEqual(one.health(), {"ready": True, "redis": "connected"})

    def test_metrics_of_redis(self) -> None:
        """Round trips counted; up, waiting requests and the outage as the metrics show them."""
        from tests.test_metrics import scrape, value
        from twisted_tcpchat.core.server import ChatServer
        from twisted_tcpchat.frontends.metrics import MetricsPage

        one = self.node()
        page = MetricsPage(ChatServer(clock=self.clock, directory=one))
        a = RecordingParticipant()
        one.enter(a, name="a")
        self.settle()
        before = value(scrape(page), "tcpchat_redis_round_trip_seconds_count")
        for i in range(5):
            one.say(a, [f"line {i}"])
        self.settle()
        figures = scrape(page)
        # (five lines, and what settling asks: the members' last activity)
        self.assertGreaterEqual(
            value(figures, "tcpchat_redis_round_trip_seconds_count") - before, 5
        )
        self.assertEqual(value(figures, "tcpchat_redis_up"), 1)
        self.assertEqual(value(figures, "tcpchat_redis_requests_waiting"), 0)
        self.assertEqual(value(figures, "tcpchat_room_members", room="lobby"), 1)
        self.own.stop(kill=True)
        self._until(lambda: one.health()["redis"] == "lost", "Redis noticed lost")
        for i in range(3):
            one.say(a, [f"during {i}"])
        figures = scrape(page)
        self.assertEqual(value(figures, "tcpchat_redis_up"), 0)
        self.assertGreaterEqual(value(figures, "tcpchat_redis_requests_waiting"), 3)
        self.own.start()
        self._until(lambda: one.health()["ready"], "Redis back")
        self.settle()
        figures = scrape(page)
        self.assertEqual(value(figures, "tcpchat_redis_up"), 1)
        self.assertEqual(value(figures, "tcpchat_redis_requests_waiting"), 0)

    def _until(self, condition: Any, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"waited {DEADLINE} s for {what}")
            wait(deferLater(reactor, 0.05, lambda: None))

    def test_a_redis_that_lost_everything_is_told_who_is_here(self) -> None:
        """Redis restarted empty (no persistence): nodes tell it who is here; names stay unique."""
        self.own.stop()
        self.own = RedisServer(self.tmp, persistent=False)
        self.own.port = self._port
        self.own.start()
        one, two = self.node(), self.node()
        a, b = RecordingParticipant(), RecordingParticipant()
        one.enter(a, name="a")
        two.enter(b, name="b")
        self.settle()
        self.own.stop(kill=True)
        self.own.start()
        one.say(a, ["still here"])
        self.settle()
        deadline = reactor.seconds() + 30
        while reactor.seconds() < deadline:
            two.who(b)
            self.settle()
            if b.lines()[-3:] == ["* 2 in #lobby:", "*   a (idle 0s)", "*   b (idle 0s)"]:
                break
            wait(deferLater(reactor, 0.1, lambda: None))
        else:
            self.fail("the members were not told to Redis again")
        taker = RecordingParticipant()
        two.enter(taker, name="A")
        self.settle()
        self.assertEqual(taker.lines(), ["error: the name 'A' is taken"])
        self.assertIsNone(a.gone)


class AddressTests(SynchronousTestCase):
    """rediss:// (the certificate checked) and unix:// reach Redis as redis:// does."""

    def setUp(self) -> None:
        reason = skip_reason()
        if reason is not None:
            raise SkipTest(reason)
        self.tmp = Path(tempfile.mkdtemp(prefix="tcpchat-redis-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.logged = tcpchat_log(self)

    def node(self, url: str, ready: bool = True) -> Any:
        from twisted_tcpchat.rooms.redis import RedisDirectory
        from twisted_tcpchat.rooms.redislink import RedisAddress

        directory = RedisDirectory(Clock(), reactor, RedisAddress.parse(url))
        directory.start()
        self.addCleanup(lambda: wait(directory.stop(grace=0.5)))
        if ready:
            wait(directory.when_ready())
        return directory

    def two_nodes_talk(self, url: str) -> None:
        one, two = self.node(url), self.node(url)
        a, b = RecordingParticipant(), RecordingParticipant()
        one.enter(a, name="a")
        two.enter(b, name="b")
        for node in (one, two, one):
            wait(node.when_settled())
        one.say(a, ["over TLS or a socket"])
        for node in (one, two):
            wait(node.when_settled())
        self.assertIn("<a> over TLS or a socket", b.lines())

    def test_rediss_checks_the_certificate(self) -> None:
        from tests.certs import make_certs

        certs = make_certs(self.tmp)
        tls_port = str(free_port())
        server = RedisServer(
            self.tmp,
            extra=(
                "--tls-port", tls_port, "--tls-cert-file", str(certs.cert),
                "--tls-key-file", str(certs.key), "--tls-ca-cert-file", str(certs.ca),
                "--tls-auth-clients", "no",
            ),
        ).start()  # fmt: skip
        self.addCleanup(server.stop)
        self.two_nodes_talk(f"rediss://localhost:{tls_port}/0?ca={certs.ca}")
        (self.tmp / "other").mkdir()
        stranger = make_certs(self.tmp / "other")
        self.node(f"rediss://localhost:{tls_port}/0?ca={stranger.ca}", ready=False)
        deadline = reactor.seconds() + 30
        while not any("cannot connect to rediss://" in line for line in self.logged):
            self.assertLess(reactor.seconds(), deadline, self.logged)
            wait(deferLater(reactor, 0.05, lambda: None))

    def test_unix_socket(self) -> None:
        path = self.tmp / "redis.sock"
        server = RedisServer(self.tmp, extra=("--unixsocket", str(path))).start()
        self.addCleanup(server.stop)
        self.two_nodes_talk(f"unix://{path}?db=2")


class ReadingTests(SynchronousTestCase):
    """How a node hands its members what it reads from a room's record (no Redis needed)."""

    def setUp(self) -> None:
        from twisted_tcpchat.rooms.redis import RedisDirectory, _Local, _LocalRoom
        from twisted_tcpchat.rooms.redislink import RedisAddress

        self.directory = RedisDirectory(
            Clock(), reactor, RedisAddress.parse("redis://127.0.0.1:1/0"), node="n1"
        )
        self.member = RecordingParticipant()
        local = _Local(self.member, "1", "n1:1", name="m", room="dev", waiting=None)
        self.room = _LocalRoom("dev", "dev", cursor="1-0")
        self.room.members[self.member] = local
        self.directory._rooms["dev"] = self.room

    def entry(self, ms: int, seq: int, total: int, text: str, sender: str = "x") -> list[Any]:
        lines = text.split("\n")
        fields = {"k": "m", "s": sender, "p": "n2:7", "x": text, "o": "", "at": "1.0",
                  "q": str(seq), "l": str(total), "n": str(len(lines))}  # fmt: skip
        return [f"{ms}-0", [item for pair in fields.items() for item in pair]]

    def test_a_member_past_the_record_hears_how_many_lines_it_missed(self) -> None:
        key = "tcpchat:room:{dev}:log"
        self.directory._got_entries(key, [self.entry(2, 1, 1, "one"), self.entry(3, 2, 3, "a\nb")])
        self.assertEqual(self.member.lines(), ["<x> one", "<x> a", "<x> b"])
        # Entries 3 to 41 (lines 4 to 60) were trimmed away before this node read on.
        self.directory._got_entries(key, [self.entry(9, 42, 64, "x\ny\nz\nw")])
        self.assertEqual(
            self.member.lines(),
            [
                "* this server fell behind: you missed 57 lines of #dev",
                "<x> x",
                "<x> y",
                "<x> z",
                "<x> w",
            ],
        )

    def test_own_lines_and_what_came_before_arrival_are_not_heard(self) -> None:
        key = "tcpchat:room:{dev}:log"
        self.room.members[self.member].since = (5, 0)
        own = self.entry(6, 1, 1, "mine")
        own[1][5] = "n1:1"
        self.directory._got_entries(key, [self.entry(4, 1, 1, "before"), own])
        self.assertEqual(self.member.lines(), [])


def lose_next_answer(directory: Any, matching: str) -> list[str]:
    """
    The next answer from Redis to a request holding C{matching} is lost on
    its way back, the connection with it (the request was applied): the
    node must send it again, and Redis must not apply it twice.
    """
    outbox = directory._outbox
    original = outbox._answered
    lost: list[str] = []

    def answered(value: Any, request: Any, generation: int) -> None:
        if not lost and matching in request.args:
            lost.append(matching)
            directory._writer.abort()
            return
        original(value, request, generation)

    outbox._answered = answered
    return lost


class LostAnswerTests(RedisCase):
    """Requests applied by Redis whose answers never came back are sent again, applied once."""

    setUp = SharedChatTests.setUp
    enter = SharedChatTests.enter

    def test_an_arrival_whose_answer_was_lost_is_seated(self) -> None:
        a = self.enter(self.one, "a")
        b = self.enter(self.two, "b")
        a.take()
        lost = lose_next_answer(self.one, "i")
        self.one.join(a, "dev")
        self.settle()
        self.assertEqual(lost, ["i"])
        self.assertEqual(a.lines(), ["* you are now in #dev"])
        self.two.join(b, "dev")
        self.settle()
        self.two.say(b, ["can you hear me?"])
        self.settle()
        self.assertEqual(a.lines(), ["* b came from #lobby", "<b> can you hear me?"])

    def test_a_line_whose_answer_was_lost_is_heard_once(self) -> None:
        a = self.enter(self.one, "a")
        b = self.enter(self.two, "b")
        a.take()
        lost = lose_next_answer(self.one, "m")
        self.one.say(a, ["once"])
        self.one.say(a, ["twice?"])
        self.settle()
        self.assertEqual(lost, ["m"])
        self.assertEqual(b.lines(), ["<a> once", "<a> twice?"])

    def test_what_waits_behind_a_join_to_a_full_server_still_happens(self) -> None:
        one = self.redis_directory(self.db, max_rooms=2)
        a = self.enter(one, "a")
        b = self.enter(self.two, "b")
        b.take()
        self.one.join(self.enter(self.one, "c"), "other")  # (lobby and other: full)
        self.settle()
        b.take()
        one.join(a, "third")
        one.say(a, ["said after the join"])
        one.leave(a, "bye")
        self.settle()
        self.assertEqual(b.lines(), ["<a> said after the join", "* a left (bye)"])

    def test_a_graceful_stop_lets_requests_still_waiting_go_out(self) -> None:
        leaving = self.redis_directory(self.db)
        a = self.enter(leaving, "a")
        b = self.enter(self.two, "b")
        b.take()
        leaving.who(a)
        leaving.leave(a, "server shutting down")
        self._directories.remove(leaving)
        wait(leaving.stop())
        self.settle()
        self.assertEqual(b.lines(), ["* a left (server shutting down)"])
        again = self.enter(self.two, "a")
        self.assertEqual(again.name, "a")

    def test_redis_emptied_under_a_running_node_is_told_again(self) -> None:
        """FLUSHALL (or a failover to an empty replica) with the connection up: repaired."""
        a = self.enter(self.one, "a")
        self.server.command("-n", str(self.db), "FLUSHDB")
        deadline = reactor.seconds() + 30
        while self.server.command("-n", str(self.db), "HEXISTS", "{tcpchat}:members", "a") != (
            "(integer) 1"
        ):
            self.assertLess(reactor.seconds(), deadline, "a was not told to Redis again")
            wait(deferLater(reactor, 0.2, lambda: None))
        taker = RecordingParticipant()
        self.two.enter(taker, name="a")
        self.settle()
        self.assertEqual(taker.lines(), ["error: the name 'a' is taken"])
        self.assertIsNone(a.gone)

    def test_members_gone_leave_no_idle_time_behind(self) -> None:
        for i in range(3):
            person = self.enter(self.one, f"quick{i}")
            self.one.say(person, ["hello and goodbye"])
            self.one.leave(person, "bye")
        renamer = self.enter(self.one, "renamer")
        self.one.say(renamer, ["hi"])
        self.one.rename(renamer, "renamed")
        self.settle()
        wait(deferLater(reactor, 1.2, lambda: None))  # (idle times go out once a second)
        self.settle()
        fields = self.server.raw("-n", str(self.db), "HKEYS", "{tcpchat}:active").split()
        self.assertEqual(sorted(fields), ["renamed"])
