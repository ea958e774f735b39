"""
The directory shared through Redis: every node started with the same Redis
holds one chat - names, rooms, topics, history, presence, private
messages, kicks and bans.

How it is built (docs/scaling.md says why):

 - Each room has an ordered record, a Redis stream.  Every change to a room
   (a message, a join, a topic) is one script that appends to it; each node
   reads the records of the rooms its members are in, from where it last
   read, and hands the entries to its members.  History and live lines come
   from the same record, so every member on every node sees one order, and
   a node that was away (Redis restarting, the node paused) goes on from
   where it was, missing nothing the record still holds.
 - Requests go out on one connection, in order, through an L{_Outbox} that
   keeps them while Redis is away (up to L{OUTBOX_LIMIT} lines) and sends
   them again when it is back; a request sent twice is applied once.
 - Names live in one hash; each node holds a lease it renews every
   L{HEARTBEAT} seconds.  A node whose lease runs out (killed, its machine
   gone) is reaped by another: its members' names are freed and their rooms
   told they left (node lost).
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from twisted_tcpchat.core.config import CREATE_ROOMS, ROOM_IDLE, may_create_rooms, no_room
from twisted_tcpchat.core.events import (
    Action,
    Error,
    Event,
    History,
    Identity,
    MemberInfo,
    Members,
    Message,
    Notice,
    Presence,
    Private,
    RoomInfo,
    Rooms,
    Said,
    Topic,
    Whois,
)
from twisted_tcpchat.core.interfaces import ChatObserver, Ending, IDirectory, IParticipant, Origin
from twisted_tcpchat.core.limits import Bans, Network, network_of, parse_network, within
from twisted_tcpchat.core.names import (
    RESERVED_NAMES,
    format_idle,
    name_problem,
    room_name,
    room_problem,
)
from twisted_tcpchat.core.stats import SHORT_TIMES, Timings
from twisted_tcpchat.logs import TurnLog
from twisted_tcpchat.rooms import scripts
from twisted_tcpchat.rooms.redislink import RedisAddress, RedisLink
from twisted_tcpchat.rooms.scripts import Script
from twisted_tcpchat.text.escaping import escape_controls

log = TurnLog(namespace="tcpchat")

#: Entries each room's record keeps (about: Redis trims in whole blocks).
#: A node further behind than this gets a notice of how many lines it missed.
ROOM_RECORD = 10_000
#: Lines (and other requests) a node holds while Redis is away; past it,
#: senders are told their lines were not delivered.
OUTBOX_LIMIT = 10_000
#: Seconds a node's lease lasts, and how often it is renewed: longer than
#: an outage a node rides out (10 s) plus a renewal, shorter than 20 s less
#: a renewal, so that a dead node is noticed within 20 s.
LEASE = 15.0
HEARTBEAT = 2.0
#: Entries one read of the records takes at most.
READ_BATCH = 1000
#: Seconds a blocking read waits before it is made again.
READ_BLOCK = 5.0
#: Requests of one member held behind one of its own still on its way.
WAITING_LIMIT = 1000
#: Entries of a room a node remembers for members who arrive just after them.
RECENT = 128

#: The room changes observers hear of.
_OBSERVED = frozenset("maijlortn")

NOT_DELIVERED = (
    "not delivered: this server cannot reach the others just now and holds all it can; "
    "say it again in a moment"
)


def stream_id(text: str) -> tuple[int, int]:
    """A stream entry's id (C{"1700000000000-3"}) as numbers, for ordering."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def lower_of(room: str) -> str:
    return room.lower()


def _fields(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=False))


def entry_event(room: str, f: dict[str, str]) -> Event | None:
    """The event a room's record entry stands for (None for an unknown kind)."""
    kind, sender, text, other = f.get("k"), f.get("s", ""), f.get("x", ""), f.get("o", "")
    if kind == "m":
        return Message(room, sender, tuple(text.split("\n")), int(f["q"]), float(f["at"]))
    if kind == "a":
        return Action(room, sender, text, int(f["q"]), float(f["at"]))
    if kind == "j":
        return Presence(room, sender, Presence.JOINED)
    if kind == "i":
        return Presence(room, sender, Presence.MOVED_IN, other=other)
    if kind == "l":
        return Presence(room, sender, Presence.LEFT, reason=other)
    if kind == "o":
        return Presence(room, sender, Presence.MOVED_OUT, other=other)
    if kind == "r":
        return Presence(room, sender, Presence.RENAMED, other=other)
    if kind == "t":
        return Topic(room, text, by=sender or None)
    if kind == "n":
        return Notice(text, room=room, sender=sender or None)
    return None


@dataclass(eq=False)
class _Request:
    """One command for Redis, kept until answered."""

    args: tuple[Any, ...]
    answer: Callable[[Any], None] | None
    weight: int
    #: Told why, when Redis refuses the request for good (out of memory).
    failed: Callable[[str], None] | None = None
    #: When it was last sent (for the round-trip times).
    sent_at: float = 0.0


#: Redis errors that pass: the request is sent again on a new connection.
_PASSING = ("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "NOSCRIPT", "READONLY")


class _Outbox:
    """
    Requests for Redis, sent in order on one connection and kept until
    answered: when the connection is lost, those unanswered are sent again
    (in order) on the next.  At most C{limit} lines wait.
    """

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        #: How long Redis took to answer each request (see L{Stats}).
        self.round_trips = Timings(SHORT_TIMES)
        self.link: RedisLink | None = None
        self._ready = False  # (connected, and the connection prepared)
        self._queue: deque[_Request] = deque()
        self._sent = 0  # how many at the head went out on this connection
        self._generation = 0
        self._weight = 0
        self._drained: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        return self._weight >= self.limit

    def add(
        self,
        args: tuple[Any, ...],
        answer: Callable[[Any], None] | None,
        weight: int,
        failed: Callable[[str], None] | None = None,
    ) -> bool:
        """Queue a request (False, and nothing queued, when too much waits)."""
        if weight and self._weight + weight > self.limit:
            return False
        self._queue.append(_Request(args, answer, weight, failed))
        self._weight += weight
        self.pump()
        return True

    def add_first(self, args: tuple[Any, ...], answer: Callable[[Any], None] | None) -> None:
        """
        Queue a request before every one not sent yet, after those put first
        already (what a Redis that lost its data must be told before the rest).
        """
        self._queue.insert(self._sent + self._first, _Request(args, answer, 0))
        self._first += 1
        self.pump()

    def connected(self, link: RedisLink) -> None:
        self.link = link
        self._ready = True
        self._generation += 1
        self._sent = 0
        self._first = 0
        self.pump()

    def lost(self) -> None:
        self._ready = False
        self._generation += 1
        self._sent = 0
        self._first = 0

    _first = 0  # requests put first since the connection was lost

    def pump(self) -> None:
        link = self.link
        if link is None or not self._ready or not link.connected:
            return
        generation = self._generation
        queue = self._queue
        while self._sent < len(queue):
            request = queue[self._sent]
            self._sent += 1
            request.sent_at = self._clock()
            try:
                reply = link.execute(*request.args)
            except Exception as e:  # txredisapi refuses text it cannot encode
                reply = _refused(e)
            reply.addCallbacks(
                self._answered,
                self._failed,
                callbackArgs=(request, generation),
                errbackArgs=(request, generation),
            )
            if generation != self._generation:  # (lost while sending)
                return

    def when_drained(self) -> Deferred[None]:
        if not self._queue:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drained.append(waiter)
        return waiter

    def _answered(self, value: Any, request: _Request, generation: int) -> None:
        if generation != self._generation or not self._queue or self._queue[0] is not request:
            return  # (an answer from a lost connection: the request goes again)
        self._queue.popleft()
        self._sent -= 1
        self._weight -= request.weight
        self.round_trips.observe(self._clock() - request.sent_at)
        if request.answer is not None:
            try:
                request.answer(value)
            except Exception:
                log.failure(
                    "redis: handling the answer to {command} failed", command=str(request.args[:2])
                )
        if not self._queue:
            waiters, self._drained = self._drained, []
            for waiter in waiters:
                waiter.callback(None)

    def _failed(self, failure: Any, request: _Request, generation: int) -> None:
        import txredisapi

        if failure.check(txredisapi.ConnectionError) or generation != self._generation:
            return  # (sent again on the next connection)
        error = str(failure.value)
        if error.split(" ", 1)[0] in _PASSING and self.link is not None:
            log.warn("redis: {error}; sending again", error=error)
            self.link.abort()  # (a new connection sends it again, scripts loaded anew)
            return
        log.error(
            "redis: {command} refused: {error}",
            command=" ".join(str(a) for a in request.args[:2]),
            error=error,
        )
        if request.failed is not None:
            request.failed(error)
            request.answer = None
        self._answered(None, request, generation)


def _refused(error: Exception) -> Deferred[Any]:
    from twisted.internet.defer import fail

    return fail(error)


@dataclass(eq=False)
class _Local:
    """A participant of this node, as the directory knows it."""

    participant: IParticipant
    pid: str
    token: str
    name: str = ""
    room: str = ""
    operator: bool = False
    #: Requests made while an earlier one is still on its way (entering,
    #: moving, renaming); run once it is answered.
    waiting: list[Callable[[], None]] | None = field(default_factory=list)
    #: The record entry from which this member hears its room.
    since: tuple[int, int] = (0, 0)
    #: The room whose record has (or will have) this member's arrival.
    arrived_in: str | None = None
    leaving: bool = False
    gone: bool = False


@dataclass(eq=False)
class _LocalRoom:
    """A room some of this node's participants are in."""

    name: str
    lower: str
    members: dict[IParticipant, _Local] = field(default_factory=dict)
    cursor: str = "0-0"
    last_seq: int = 0
    last_lines: int | None = 0  # (None: not known yet)
    recent: deque[tuple[tuple[int, int], dict[str, str]]] = field(
        default_factory=lambda: deque(maxlen=RECENT)
    )


@implementer(IDirectory)
class RedisDirectory:
    """
    An L{IDirectory} shared by every node on one Redis.

    @param clock: for the times of lines and idle times.
    @param reactor: to connect and for the node's own timers.
    @param address: where Redis is.
    The other settings are L{twisted_tcpchat.rooms.memory.Directory}'s.
    """

    def __init__(
        self,
        clock: IReactorTime,
        reactor: Any,
        address: RedisAddress,
        *,
        default_room: str = "lobby",
        rooms: Iterable[str] = (),
        create_rooms: str = "anyone",
        max_rooms: int = 1000,
        history: int = 20,
        echo: bool = False,
        quiet_presence: bool = False,
        reserved: Iterable[str] = RESERVED_NAMES,
        room_idle: float = ROOM_IDLE,
        outbox_limit: int = OUTBOX_LIMIT,
        node: str | None = None,
        lease: float = LEASE,
    ) -> None:
        if create_rooms not in CREATE_ROOMS:
            raise ValueError(f"create-rooms: {create_rooms!r} is not one of {CREATE_ROOMS}")
        self._clock = clock
        self._reactor = reactor
        self.address = address
        self.node = node or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._create_rooms = create_rooms
        self._max_rooms = max_rooms
        self._lease = lease
        self._history = history
        self._echo = echo
        self._quiet = quiet_presence
        self._room_idle_ms = int(room_idle * 1000)
        self._reserved = {name.lower() for name in reserved}
        self._permanent: dict[str, str] = {}
        for text in (default_room, *rooms):
            name = room_name(text)
            if name is None:
                raise ValueError(room_problem(text))
            self._permanent.setdefault(name.lower(), name)
        self.default_room = room_name(default_room) or default_room
        self._locals: dict[IParticipant, _Local] = {}
        self._by_token: dict[str, _Local] = {}
        self._rooms: dict[str, _LocalRoom] = {}
        self._pids = itertools.count(1)
        self._requests = itertools.count(1)
        self._bans = Bans()
        self._observers: list[ChatObserver] = []
        self._active: dict[str, float] = {}
        self._active_call: IDelayedCall | None = None
        # (Round trips are measured, not scheduled: the monotonic clock.)
        self._outbox = _Outbox(outbox_limit, time.monotonic)
        self._inbox = scripts.inbox_key(self.node)
        self._cursors = {self._inbox: "0-0", scripts.CONTROL: "0-0"}
        self._epoch: str | None = None
        self._first_done = False  # (bans loaded, permanent rooms listed, heartbeat on)
        self._started = False
        self._stopping = False
        self._closed = False
        self._stopped: list[Deferred[None]] | None = None  # (waiting for the stop)
        self._reader_id: int | None = None
        self._reading = False
        self._read_watchdog: IDelayedCall | None = None
        self._lost_at: float | None = None
        self._connected_at = 0.0
        self._first_heartbeat = True
        self._in_chat = False  # (connected, and Redis told who is here)
        self._beats = 0
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        self._writer = RedisLink(
            reactor, address, f"tcpchat-{self.node}", self._writer_ready, self._writer_lost
        )
        self._reader = RedisLink(
            reactor,
            address,
            f"tcpchat-{self.node}-reader",
            self._reader_ready,
            self._reader_lost,
            reply_timeout=None,
            report=False,
        )
        self._ready_waiters: list[Deferred[None]] = []
        self._reads = 0  # reads of the records started
        self._woken = 0  # the read last ended early
        self._read_waiters: list[tuple[int, Deferred[None]]] = []

    # the node's life

    def start(self) -> None:
        """Connect to Redis (and keep connecting)."""
        if self._started:
            return
        self._started = True
        self._writer.start()
        self._reader.start()

    def when_ready(self) -> Deferred[None]:
        """A Deferred that fires once this node has reached Redis."""
        if self._first_done and self._reader_id is not None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def health(self) -> dict[str, Any]:
        """
        For a health check: whether this node can serve (C{ready}: in the
        chat through Redis), and Redis's state: C{connected}, C{connecting}
        (not yet), or C{lost} (for C{lost_for} seconds; lines are held).
        """
        if self._lost_at is not None:
            lost_for = round(self._reactor.seconds() - self._lost_at, 1)
            return {"ready": False, "redis": "lost", "lost_for": lost_for}
        if not (self._first_done and self._reader_id is not None):
            return {"ready": False, "redis": "connecting"}
        return {"ready": True, "redis": "connected"}

    def recent_history(
        self, participant: IParticipant, give: Callable[[str, tuple[Said, ...]], None]
    ) -> None:
        """
        The last --history lines of the participant's room, read from the
        room's record and given to C{give(room, lines)} once answered (see
        L{twisted_tcpchat.rooms.memory.Directory.recent_history}).
        """
        local = self._locals.get(participant)
        if local is None or local.gone or not local.room or not self._history:
            return
        room = local.room
        log_key, _meta = scripts.room_keys(room.lower())

        def answered(reply: Any) -> None:
            chosen, lines = [], 0
            for eid, flat in reply or ():  # (newest first)
                event = entry_event(room, _fields(flat))
                if isinstance(event, (Message, Action)):
                    chosen.append((eid, flat))
                    lines += len(event.lines) if isinstance(event, Message) else 1
                    if lines >= self._history:
                        break
            give(room, self._history_of(room, chosen))

        self._read_command(("XREVRANGE", log_key, "+", "-", "COUNT", 500), answered, 1)

    def redis_figures(self) -> tuple[Timings, int]:
        """
        For the metrics: the round-trip times of this node's requests, and
        how many wait for an answer (or for Redis to come back).
        """
        return self._outbox.round_trips, len(self._outbox)

    def local_rooms(self) -> list[tuple[str, int]]:
        """For the metrics: the rooms this node's members are in, with how many of them."""
        return [(lroom.name, len(lroom.members)) for lroom in self._rooms.values()]

    def when_settled(self) -> Deferred[None]:
        """
        A Deferred that fires once every request made so far is answered and
        the records are read up to then (for tests, and embedders that wait
        for quiet).
        """
        waiter: Deferred[None] = Deferred()
        self._flush_active()
        drained = self._outbox.when_drained()

        def read_round(_: object) -> Deferred[None]:
            self._read_waiters.append((self._reads, waiter))
            self._wake_reader()
            return waiter

        def again(_: object) -> Deferred[None] | None:
            busy = len(self._outbox) or any(
                local.waiting is not None for local in self._locals.values()
            )
            return self.when_settled() if busy else None

        return drained.addCallback(read_round).addCallback(again)

    def stop(self, grace: float = 3.0) -> Deferred[None]:
        """
        Stop: what is still waiting for Redis goes out (for C{grace} seconds
        at most), the node says goodbye, and the connections close.
        """
        if self._stopped is not None:  # (stopping already, or stopped)
            if self._closed and not self._stopped:
                return succeed(None)
            waiter: Deferred[None] = Deferred()
            self._stopped.append(waiter)
            return waiter
        self._stopped = []
        self._stopping = True
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._active_call is not None and self._active_call.active():
            self._active_call.cancel()
            self._flush_active()

        def goodbye(_: object) -> Deferred[None]:
            # Whoever this node still holds (a leave that did not get out) leaves now.
            def answered(reply: Any) -> None:
                for name, room, pid in zip(*[iter(reply or ())] * 3, strict=False):
                    self._room_change(
                        room.lower(),
                        room,
                        "l",
                        None,
                        other="server shutting down",
                        sender=name,
                        token=f"{self.node}:{pid}",
                    )

            keys = (
                scripts.NODES,
                scripts.node_key(self.node),
                self._inbox,
                scripts.APPLIED,
                scripts.MEMBERS,
                scripts.ACTIVE,
            )
            reply = self._ask(scripts.BYE, keys, (self.node,), weight=0).addCallback(answered)
            return reply.addCallback(lambda _: self._outbox.when_drained())

        # What members asked before they left (their leaves too) goes out
        # first, the records still read: then the goodbye.
        done = self.when_settled().addCallback(goodbye)
        done.addTimeout(grace, self._reactor)
        done.addErrback(lambda _: None)

        def close(_: object) -> Deferred[None]:
            self._closed = True
            if self._read_watchdog is not None and self._read_watchdog.active():
                self._read_watchdog.cancel()
            stops = [self._writer.stop(), self._reader.stop()]
            return DeferredList(stops).addCallback(closed)

        def closed(_: object) -> None:
            waiters, self._stopped = self._stopped or [], []
            for waiter in waiters:
                waiter.callback(None)

        return done.addCallback(close)

    # connections

    def _writer_ready(self, protocol: Any) -> Deferred[None]:
        loads = [protocol.execute_command("SCRIPT", "LOAD", s.text) for s in scripts.ALL]
        claimed = protocol.execute_command("SET", scripts.EPOCH, secrets.token_hex(8), "NX")
        current = protocol.execute_command("GET", scripts.EPOCH)
        done = DeferredList([*loads, claimed, current], fireOnOneErrback=True, consumeErrors=True)
        prepared: Deferred[None] = done.addCallback(
            lambda results: self._writer_prepared(protocol, results[-1][1])
        )
        return prepared

    def _writer_prepared(self, protocol: Any, epoch: str) -> Deferred[None] | None:
        first = not self._first_done
        lost_data = not first and epoch != self._epoch
        self._epoch = epoch
        self._connected_at = self._reactor.seconds()
        if first:
            return self._first_contact(protocol)
        if self._lost_at is not None:
            log.info(
                "redis: {address} is back after {seconds:.1f} s; sending the {count} requests held",
                address=str(self.address),
                seconds=self._reactor.seconds() - self._lost_at,
                count=len(self._outbox),
            )
            self._lost_at = None
        self._in_chat = True
        if lost_data:
            log.warn(
                "redis: {address} lost the chat's data; telling it who is here again",
                address=str(self.address),
            )
            self._restore()
        self._outbox.connected(self._writer)
        self._beat()
        if self._read_waiters:  # (answers that came while away wait for a read)
            self._wake_reader()
        return None

    def _first_contact(self, protocol: Any) -> Deferred[None]:
        """Bans in force and where their stream stands, then the permanent rooms."""
        last = protocol.execute_command("XREVRANGE", scripts.CONTROL, "+", "-", "COUNT", 1)
        bans = protocol.execute_command("HGETALL", scripts.BANS)
        rooms = []
        for lower, name in self._permanent.items():
            rooms.append(protocol.execute_command("HSETNX", scripts.ROOMS, lower, name))
            _log, meta = scripts.room_keys(lower)
            rooms.append(protocol.execute_command("HSET", meta, "permanent", "1", "name", name))

        def loaded(results: list[tuple[bool, Any]]) -> None:
            entries, ban_fields = results[0][1], results[1][1]
            if entries:
                self._cursors[scripts.CONTROL] = entries[0][0]
            now = self._clock.seconds()
            for network_text, until_text in _fields(ban_fields or []).items():
                self._apply_ban(network_text, until_text, now)
            self._first_done = True
            log.info(
                "tcpchat node {node} joined the chat at {address}",
                node=self.node,
                address=str(self.address),
            )
            self._in_chat = True
            self._outbox.connected(self._writer)
            if not self._heartbeat.running:
                self._heartbeat.start(self._lease / (LEASE / HEARTBEAT), now=True)
            self._maybe_ready()
            self._read()

        done = DeferredList([last, bans, *rooms], fireOnOneErrback=True, consumeErrors=True)
        return done.addCallback(loaded)

    def _writer_lost(self) -> None:
        self._in_chat = False
        self._woken = -1  # (a wake sent on this connection may not have got through)
        self._outbox.lost()
        if self._stopping or self._lost_at is not None:
            return
        self._lost_at = self._reactor.seconds()
        log.warn(
            "redis: lost {address}; holding up to {limit} lines until it is back",
            address=str(self.address),
            limit=self._outbox.limit,
        )

    def _reader_ready(self, protocol: Any) -> Deferred[None]:
        def got_id(client_id: Any) -> None:
            self._reader_id = int(client_id)
            self._reading = False
            self._maybe_ready()
            self._read()

        asked: Deferred[None] = protocol.execute_command("CLIENT", "ID").addCallback(got_id)
        return asked

    def _reader_lost(self) -> None:
        self._reader_id = None
        self._reading = False
        if self._read_watchdog is not None and self._read_watchdog.active():
            self._read_watchdog.cancel()

    def _maybe_ready(self) -> None:
        if not self._first_done or self._reader_id is None:
            return
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # sending

    def _send(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Any],
        answer: Callable[[Any], None] | None = None,
        weight: int = 0,
        failed: Callable[[str], None] | None = None,
        first: bool = False,
    ) -> bool:
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        if first:
            self._outbox.add_first(command, self._in_order(answer))
            return True
        return self._outbox.add(command, self._in_order(answer), weight, failed)

    def _read_command(
        self,
        args: tuple[Any, ...],
        answer: Callable[[Any], None] | None,
        weight: int = 1,
        first: bool = False,
    ) -> bool:
        if first:
            self._outbox.add_first(args, self._in_order(answer))
            return True
        return self._outbox.add(args, self._in_order(answer), weight)

    def _in_order(self, answer: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
        """
        C{answer}, called once the records are read up to the moment the
        answer came: a member then hears what was said before its request
        was answered before the answer (a line, then the error or the
        listing that came after it), as in one process.
        """
        if answer is None:
            return None

        def after_reading(value: Any) -> None:
            waiter: Deferred[None] = Deferred()
            waiter.addCallback(lambda _: answer(value))
            waiter.addErrback(lambda f: log.failure("redis: handling an answer failed", failure=f))
            self._read_waiters.append((self._reads, waiter))
            self._wake_reader()

        return after_reading

    def _room_change(
        self,
        lower: str,
        name: str,
        kind: str,
        local: _Local | None,
        *,
        text: str = "",
        other: str = "",
        lines: int = 0,
        flag: str = "",
        answer: Callable[[Any], None] | None = None,
        weight: int = 0,
        sender: str | None = None,
        token: str | None = None,
        failed: Callable[[str], None] | None = None,
        first: bool = False,
    ) -> bool:
        """
        Append a change of kind C{kind} to the room's record (see
        L{scripts.ROOM}), made by C{local} (or, for a member of another
        node, by C{sender} with C{token}; or by the server).
        """
        keys = (*scripts.room_keys(lower), scripts.writers_key(lower))
        said_by = local.name if sender is None and local is not None else (sender or "")
        at = repr(self._clock.seconds())
        if self._observers and kind in _OBSERVED:
            answer = self._observing(
                answer, name, local, {"k": kind, "s": said_by, "x": text, "o": other, "at": at}
            )
        args = (
            self.node,
            next(self._requests),
            kind,
            said_by,
            token if token is not None else (local.token if local is not None else ""),
            text,
            other,
            at,
            lines,
            ROOM_RECORD,
            self._history,
            name,
            flag,
            self._room_idle_ms,
        )
        return self._send(scripts.ROOM, keys, args, answer, weight, failed, first)

    def _observing(
        self,
        answer: Callable[[Any], None] | None,
        room: str,
        local: _Local | None,
        entry: dict[str, str],
    ) -> Callable[[Any], None]:
        """C{answer}, after telling the observers of the change once it is made."""

        def observed(reply: Any) -> None:
            if reply and reply[0] == "ok":
                event = entry_event(room, {**entry, "q": str(reply[2])})
                if event is not None:
                    self._observe(event, local, entry["s"])
            if answer is not None:
                answer(reply)

        return observed

    # members

    def enter(
        self, participant: IParticipant, name: str | None = None, operator: bool = False
    ) -> None:
        if participant in self._locals:
            return
        if name is not None:
            problem = name_problem(name)
            if problem is not None:
                participant.receive(Error(problem))
                return
        pid = str(next(self._pids))
        local = _Local(participant, pid, f"{self.node}:{pid}", operator=operator)
        self._locals[participant] = local
        self._by_token[local.token] = local
        now = self._clock.seconds()
        room = self._permanent.get(self.default_room.lower(), self.default_room)

        def answered(reply: Any) -> None:
            if not reply or reply[0] != "ok":
                self._forget(local)
                if not local.gone:
                    participant.receive(Error(f"the name {name!r} is taken"))
                return
            local.name = participant.name = reply[1]
            local.room = participant.room = room
            self._mark_active(local, now)
            participant.receive(Identity(local.name, room, Identity.WELCOME, operator))
            if local.gone:
                self._done(local)
                return
            self._arrive(local, room, None)

        keys = (scripts.MEMBERS, scripts.node_key(self.node), scripts.GUESTS, scripts.ACTIVE)
        args = (
            self.node,
            pid,
            name or "",
            (name or "").lower(),
            room,
            "1" if operator else "0",
            participant.address,
            repr(now),
            "0",
        )
        if not self._send(scripts.ENTER, keys, args, answered, 1):
            self._forget(local)
            participant.receive(Error(NOT_DELIVERED))

    def _arrive(self, local: _Local, room: str, came_from: str | None) -> None:
        """Append C{local}'s arrival to C{room}'s record, and seat it when answered."""
        lower = room.lower()

        def answered(reply: Any) -> None:
            if not reply or reply[0] != "ok":
                self._done(local)
                return
            self._seat(local, room, reply)
            self._done(local)

        kind = "j" if came_from is None else "i"
        flag = "1" if lower in self._permanent else ""
        local.arrived_in = room
        self._room_change(
            lower, room, kind, local, other=came_from or "", flag=flag, answer=answered
        )

    def _seat(self, local: _Local, room: str, reply: list[Any]) -> None:
        """C{local} is in C{room} from the entry in C{reply}: topic, history, then live."""
        if local.gone:
            return
        participant = local.participant
        entry_id, topic, members, history = reply[1], reply[3], reply[4], reply[5:]
        if members == 1:  # (the first here: the room may have closed a moment ago)
            self._read_command(("HSETNX", scripts.ROOMS, lower_of(room), room), None, 0)
        since = stream_id(entry_id)
        if topic:
            participant.receive(Topic(room, topic))
        said = self._history_of(room, history)
        if said:
            participant.receive(History(room, said))
        if local.gone:
            return
        lower = room.lower()
        lroom = self._rooms.get(lower)
        local.since = since
        if lroom is None:
            lroom = self._rooms[lower] = _LocalRoom(room, lower, cursor=entry_id)
            lroom.last_seq, lroom.last_lines = int(reply[2]), None
            lroom.members[participant] = local
            self._wake_reader()
            return
        lroom.members[participant] = local
        if stream_id(lroom.cursor) > since:
            # The reader is past this member's arrival: what it missed is here.
            missed = [(eid, f) for eid, f in lroom.recent if eid > since]
            if lroom.recent and lroom.recent[0][0] > since and len(lroom.recent) == RECENT:
                participant.receive(Notice(f"some lines of #{room} may be missing here"))
            for eid, f in missed:
                self._deliver_one(lroom, local, eid, f)

    def _history_of(self, room: str, entries: Sequence[Any]) -> tuple[Said, ...]:
        said: list[Said] = []
        for _eid, flat in reversed(entries):
            event = entry_event(room, _fields(flat))
            if isinstance(event, (Message, Action)):
                said.append(event)
        excess = sum(len(e.lines) if isinstance(e, Message) else 1 for e in said) - self._history
        if said and excess > 0 and isinstance(said[0], Message):
            first = said[0]
            said[0] = Message(first.room, first.sender, first.lines[excess:], first.seq, first.at)
        return tuple(said)

    def leave(self, participant: IParticipant, reason: str) -> None:
        local = self._locals.get(participant)
        if local is None or local.gone or local.leaving:
            return
        local.leaving = True
        # What it asked before it left is done first (a /nick, a /join), as in one process.
        self._run(local, lambda _local: self._depart(local, reason))

    def _depart(self, local: _Local, reason: str) -> None:
        """C{local} leaves its room (which hears C{reason}) and frees its name."""
        local.gone = True
        self._locals.pop(local.participant, None)
        self._by_token.pop(local.token, None)
        self._active.pop(local.name.lower(), None)
        self._unseat(local)
        if local.arrived_in is not None:
            room, local.arrived_in = local.arrived_in, None
            self._room_change(
                room.lower(), room, "l", local, other=reason, answer=self._unlist_if_closed(room)
            )
        self._send(
            scripts.LEAVE,
            (scripts.MEMBERS, scripts.node_key(self.node), scripts.ACTIVE),
            (self.node, local.pid),
        )

    def _unlist_if_closed(self, room: str) -> Callable[[Any], None]:
        """An answer that takes C{room} off the list of rooms if the leave closed it."""

        def unlist(reply: Any) -> None:
            if reply and reply[0] == "ok" and reply[3] == "closed":
                self._read_command(("HDEL", scripts.ROOMS, room.lower()), None, 0)
                log.info("#{room} closed (empty)", room=room)

        return unlist

    def _forget(self, local: _Local) -> None:
        self._locals.pop(local.participant, None)
        self._by_token.pop(local.token, None)
        local.waiting = None

    def _done(self, local: _Local) -> None:
        """What C{local} was waiting for is answered: run what it asked meanwhile."""
        waiting, local.waiting = list(local.waiting or ()), None
        while waiting:
            if local.waiting is not None:  # (one of them waits in turn: the rest behind it)
                local.waiting.extend(waiting)
                return
            waiting.pop(0)()

    def _when_free(
        self, participant: IParticipant, request: Callable[[_Local], Deferred[Any] | None]
    ) -> None:
        """
        Run C{request} for C{participant} once what it asked before is
        answered, so that answers come in the order of the questions; a
        request that returns a Deferred holds the next ones until it fires.
        """
        local = self._locals.get(participant)
        if local is None:
            participant.receive(Error("you are not in the chat"))
            return
        self._run(local, request)

    def _run(self, local: _Local, request: Callable[[_Local], Deferred[Any] | None]) -> None:
        if local.gone:
            return
        if local.waiting is not None:
            if len(local.waiting) >= WAITING_LIMIT:
                local.participant.receive(Error(NOT_DELIVERED))
                return
            local.waiting.append(lambda: self._run(local, request))
            return
        outcome = request(local)
        if isinstance(outcome, Deferred) and not outcome.called:
            if local.waiting is None:
                local.waiting = []
            outcome.addBoth(lambda _: self._done(local))

    def _ask(
        self, script: Script, keys: Sequence[str], args: Sequence[Any], weight: int = 1
    ) -> Deferred[Any]:
        """Send a request; the Deferred fires with its answer (None when not sent)."""
        reply: Deferred[Any] = Deferred()
        if not self._send(script, keys, args, reply.callback, weight):
            reply.callback(None)
        return reply

    def _unseat(self, local: _Local) -> None:
        lroom = self._rooms.get(local.room.lower())
        if lroom is not None:
            lroom.members.pop(local.participant, None)
            if not lroom.members:
                del self._rooms[lroom.lower]

    def rename(self, participant: IParticipant, name: str) -> None:
        def rename(local: _Local) -> None:
            problem = name_problem(name)
            key = name.lower()
            if problem is not None:
                participant.receive(Error(problem))
            elif key in self._reserved:
                participant.receive(Error(f"the name {name!r} is reserved"))
            elif name == local.name:
                participant.receive(Identity(name, local.room, Identity.SAME, local.operator))
            else:
                local.waiting = []
                now = self._clock.seconds()

                def answered(reply: Any) -> None:
                    if reply and reply[0] == "ok" and not local.gone:
                        old = local.name
                        local.name = participant.name = name
                        self._active.pop(old.lower(), None)
                        log.info("{old} is now known as {new}", old=old, new=name, room=local.room)
                        participant.receive(
                            Identity(name, local.room, Identity.RENAMED, local.operator)
                        )
                        self._room_change(
                            local.room.lower(), local.room, "r", local, other=name, sender=old
                        )
                    elif reply and reply[0] == "taken":
                        participant.receive(Error(f"the name {name!r} is taken"))
                    self._done(local)

                keys = (scripts.MEMBERS, scripts.node_key(self.node), scripts.ACTIVE)
                if not self._send(
                    scripts.RENAME, keys, (self.node, local.pid, name, key, repr(now)), answered, 1
                ):
                    local.waiting = None
                    participant.receive(Error(NOT_DELIVERED))

        self._when_free(participant, rename)

    # conversation

    def say(self, participant: IParticipant, lines: Sequence[str]) -> None:
        def say(local: _Local) -> None:
            self._mark_active(local)
            if not self._room_change(
                local.room.lower(),
                local.room,
                "m",
                local,
                text="\n".join(lines),
                lines=len(lines),
                weight=len(lines),
                failed=self._refused_for(participant),
            ):
                participant.receive(Error(NOT_DELIVERED))

        self._when_free(participant, say)

    @staticmethod
    def _refused_for(participant: IParticipant) -> Callable[[str], None]:
        """What tells C{participant} that Redis refused its line for good."""

        def refused(error: str) -> None:
            participant.receive(Error(f"not delivered: the chat's store refused it ({error})"))

        return refused

    def act(self, participant: IParticipant, text: str) -> None:
        def act(local: _Local) -> None:
            self._mark_active(local)
            if not self._room_change(
                local.room.lower(),
                local.room,
                "a",
                local,
                text=text,
                lines=1,
                weight=1,
                failed=self._refused_for(participant),
            ):
                participant.receive(Error(NOT_DELIVERED))

        self._when_free(participant, act)

    def whisper(self, participant: IParticipant, target: str, text: str) -> None:
        def whisper(local: _Local) -> Deferred[Any] | None:
            now = self._clock.seconds()
            self._mark_active(local, now)

            def answered(reply: Any) -> None:
                if not reply or reply[0] == "dup":
                    return
                if reply[0] == "none":
                    participant.receive(Error(f"no one here is named {target!r}"))
                    return
                self._observe(Private(local.name, reply[1], text, now), local)
                if reply[1].lower() != local.name.lower():
                    participant.receive(Private(local.name, reply[1], text, now, echo=True))

            args = (self.node, next(self._requests), target.lower(), local.name, text, repr(now))
            if self._outbox.full:
                participant.receive(Error(NOT_DELIVERED))
                return None
            return self._ask(scripts.WHISPER, (scripts.MEMBERS, scripts.APPLIED), args).addCallback(
                answered
            )

        self._when_free(participant, whisper)

    def notice(self, room: str, text: str, sender: str | None = None) -> None:
        name = room_name(room)
        if name is None:
            raise KeyError(f"no room {room!r}")
        lroom = self._rooms.get(name.lower())
        display = lroom.name if lroom is not None else self._permanent.get(name.lower(), name)

        def answered(reply: Any) -> None:
            if reply and reply[0] == "noroom":
                log.warn("a notice to #{room} went nowhere: there is no such room", room=name)

        self._room_change(
            name.lower(), display, "n", None, text=text, sender=sender or "", answer=answered
        )

    # rooms

    def join(self, participant: IParticipant, room: str) -> None:
        def join(local: _Local) -> None:
            name = room_name(room)
            if name is None:
                participant.receive(Error(room_problem(room)))
                return
            if name.lower() == local.room.lower():
                participant.receive(Error(f"you are in #{local.room} already"))
                return
            self._move(local, name)

        self._when_free(participant, join)

    def part(self, participant: IParticipant) -> None:
        def part(local: _Local) -> None:
            default = self._permanent.get(self.default_room.lower(), self.default_room)
            if local.room.lower() == default.lower():
                participant.receive(Error(f"you are in #{default}, the default room, already"))
                return
            self._move(local, default)

        self._when_free(participant, part)

    def _move(self, local: _Local, name: str, pruned: bool = False) -> None:
        participant = local.participant
        may_create = may_create_rooms(self._create_rooms, local.operator)
        if local.waiting is None:  # (a second try keeps what waits behind the first)
            local.waiting = []

        def answered(reply: Any) -> None:
            if local.gone or not reply or reply[0] == "gone":
                self._done(local)
                return
            if reply[0] == "nocreate":
                participant.receive(Error(no_room(name, self._create_rooms)))
            elif reply[0] == "full" and not pruned:
                # Rooms closed by expiry may still be listed: take them off, then try again.
                self._room_list().addBoth(lambda _: self._move(local, name, pruned=True))
                return
            elif reply[0] == "full":
                participant.receive(Error(no_room(name, self._create_rooms, self._max_rooms)))
            else:
                target, created = reply[1], reply[2] == "1"
                if created:
                    log.info("{name} created #{room}", name=local.name, room=target)
                old = local.room
                self._unseat(local)
                self._room_change(
                    old.lower(), old, "o", local, other=target, answer=self._unlist_if_closed(old)
                )
                local.arrived_in = None
                local.room = participant.room = target
                self._mark_active(local)
                log.info("{name} moved from #{old} to #{new}", name=local.name, old=old, new=target)
                participant.receive(Identity(local.name, target, Identity.MOVED, local.operator))
                if not local.gone:
                    if local.waiting is None:
                        local.waiting = []
                    self._arrive(local, target, old)
                    return
            self._done(local)

        keys = (scripts.MEMBERS, scripts.node_key(self.node), scripts.ROOMS)
        args = (
            self.node,
            local.pid,
            name.lower(),
            name,
            "1" if may_create else "0",
            self._max_rooms,
        )
        if not self._send(scripts.MOVE, keys, args, answered, 1):
            participant.receive(Error(NOT_DELIVERED))
            self._done(local)

    def topic(self, participant: IParticipant, text: str | None = None) -> None:
        def topic(local: _Local) -> Deferred[Any] | None:
            room = local.room
            _log, meta = scripts.room_keys(room.lower())
            if text is None:
                shown = self._read_deferred(("HGET", meta, "topic"))
                return shown.addCallback(lambda t: participant.receive(Topic(room, t or "")))
            self._mark_active(local)

            def answered(reply: Any) -> None:
                if reply and reply[0] == "locked":
                    participant.receive(Error(f"only operators may set the topic of #{room}"))
                elif reply and reply[0] == "ok":
                    log.info(
                        "{name} set the topic of #{room}: {topic}",
                        name=local.name,
                        room=room,
                        topic=escape_controls(text),
                    )

            reply: Deferred[Any] = Deferred()
            if not self._room_change(
                room.lower(),
                room,
                "t",
                local,
                text=text,
                flag="1" if local.operator else "",
                answer=reply.callback,
                weight=1,
            ):
                participant.receive(Error(NOT_DELIVERED))
                return None
            return reply.addCallback(answered)

        self._when_free(participant, topic)

    def lock_topic(self, participant: IParticipant, locked: bool) -> None:
        def lock(local: _Local) -> Deferred[Any] | None:
            if not self._is_operator(local):
                return None
            room = local.room
            who = "operators only" if locked else "anyone"

            def answered(_reply: Any) -> None:
                participant.receive(Notice(f"the topic of #{room} may now be set by {who}"))

            reply: Deferred[Any] = Deferred()
            self._room_change(
                room.lower(), room, "k", local, flag="1" if locked else "0", answer=reply.callback
            )
            return reply.addCallback(answered)

        self._when_free(participant, lock)

    def list_rooms(self, participant: IParticipant) -> None:
        def rooms(local: _Local) -> Deferred[Any]:
            return self._room_list().addCallback(
                lambda infos: participant.receive(Rooms(tuple(infos)))
            )

        self._when_free(participant, rooms)

    def _room_list(self) -> Deferred[list[RoomInfo]]:
        """
        The rooms, with member counts and topics; a room whose record has
        expired (empty, idle) is taken off the list on the way.
        """

        def got(replies: list[tuple[bool, Any]]) -> Deferred[list[RoomInfo]]:
            registry = _fields(replies[0][1] or [])
            counts: dict[str, int] = {}
            for blob in _fields(replies[1][1] or []).values():
                room = json.loads(blob)["room"]
                counts[room.lower()] = counts.get(room.lower(), 0) + 1
                registry.setdefault(room.lower(), room)
            lowers = sorted(registry)
            metas = [
                self._read_deferred(("HMGET", scripts.room_keys(lower)[1], "topic", "name", "seq"))
                for lower in lowers
            ]

            def listed(results: list[tuple[bool, Any]]) -> list[RoomInfo]:
                infos: list[RoomInfo] = []
                for lower, (_ok, value) in zip(lowers, results, strict=True):
                    topic, name, seq = value or [None, None, None]
                    if name is None and not counts.get(lower) and lower not in self._permanent:
                        self._read_command(("HDEL", scripts.ROOMS, lower), None, 0)
                        continue  # (closed)
                    infos.append(
                        RoomInfo(registry[lower], counts.get(lower, 0), topic or "", int(seq or 0))
                    )
                return infos

            return DeferredList(metas).addCallback(listed)

        both = [
            self._read_deferred(("HGETALL", scripts.ROOMS)),
            self._read_deferred(("HGETALL", scripts.MEMBERS)),
        ]
        return DeferredList(both).addCallback(got)

    def _read_deferred(self, args: tuple[Any, ...]) -> Deferred[Any]:
        result: Deferred[Any] = Deferred()
        if not self._read_command(args, result.callback, 0):
            result.callback(None)
        return result

    def _members_then(self, then: Callable[[list[MemberInfo]], None]) -> Deferred[Any]:
        def got(replies: list[tuple[bool, Any]]) -> None:
            now = self._clock.seconds()
            active = _fields(replies[1][1] or [])
            infos = []
            for lower, blob in _fields(replies[0][1] or []).items():
                d = json.loads(blob)
                since = float(active.get(lower) or d.get("since") or now)
                infos.append(MemberInfo(d["name"], d["room"], now - since, d.get("op") == "1"))
            then(sorted(infos, key=lambda m: m.name.lower()))

        self._flush_active()
        return DeferredList(
            [
                self._read_deferred(("HGETALL", scripts.MEMBERS)),
                self._read_deferred(("HGETALL", scripts.ACTIVE)),
            ]
        ).addCallback(got)

    def who(self, participant: IParticipant, everywhere: bool = False) -> None:
        def who(local: _Local) -> Deferred[Any]:
            room = local.room

            def listed(infos: list[MemberInfo]) -> None:
                if not everywhere:
                    infos = [m for m in infos if m.room.lower() == room.lower()]
                participant.receive(Members(None if everywhere else room, tuple(infos)))

            return self._members_then(listed)

        self._when_free(participant, who)

    def whois(self, participant: IParticipant, name: str) -> None:
        def whois(local: _Local) -> Deferred[Any]:
            def listed(infos: list[MemberInfo]) -> None:
                for info in infos:
                    if info.name.lower() == name.lower():
                        participant.receive(Whois(info))
                        return
                participant.receive(Error(f"no one here is named {name!r}"))

            return self._members_then(listed)

        self._when_free(participant, whois)

    # operators

    def _is_operator(self, local: _Local) -> bool:
        if not local.operator:
            local.participant.receive(Error("only operators may do that"))
        return local.operator

    def kick(self, participant: IParticipant, target: str, reason: str) -> None:
        def kick(local: _Local) -> Deferred[Any] | None:
            if not self._is_operator(local):
                return None
            why = f"kicked by {local.name}" + (f": {reason}" if reason else "")

            def answered(reply: Any) -> None:
                if not reply:
                    participant.receive(Error(NOT_DELIVERED))
                elif reply[0] == "none":
                    participant.receive(Error(f"no one here is named {target!r}"))

            args = (self.node, next(self._requests), target.lower(), why, f"you were {why}")
            return self._ask(scripts.KICK, (scripts.MEMBERS, scripts.APPLIED), args).addCallback(
                answered
            )

        self._when_free(participant, kick)

    def ban(self, participant: IParticipant, target: str, duration: float | None) -> None:
        def ban(local: _Local) -> Deferred[Any] | None:
            if not self._is_operator(local):
                return None
            network = parse_network(target)
            if network is not None:
                return self._ban(local, network, duration)

            def found(blob: Any) -> Deferred[Any] | None:
                if blob is None:
                    participant.receive(Error(f"no one here is named {target!r}"))
                    return None
                d = json.loads(blob)
                net = network_of(d.get("addr", ""))
                if net is None:
                    participant.receive(Error(f"{d['name']} has no address to ban"))
                    return None
                return self._ban(local, net, duration)

            return self._read_deferred(("HGET", scripts.MEMBERS, target.lower())).addCallback(found)

        self._when_free(participant, ban)

    def _ban(self, local: _Local, network: Network, duration: float | None) -> Deferred[Any]:
        until = "" if duration is None else repr(self._clock.seconds() + duration)
        how_long = "until lifted" if duration is None else f"for {format_idle(duration)}"

        def answered(reply: Any) -> None:
            if not reply:
                local.participant.receive(Error(NOT_DELIVERED))
                return
            log.info(
                "{op} banned {network} {how_long}",
                op=local.name,
                network=str(network),
                how_long=how_long,
            )
            local.participant.receive(Notice(f"banned {network} {how_long}"))

        args = (self.node, next(self._requests), str(network), until, local.token, local.name)
        keys = (scripts.BANS, scripts.CONTROL, scripts.APPLIED)
        return self._ask(scripts.BAN, keys, args).addCallback(answered)

    def unban(self, participant: IParticipant, target: str) -> None:
        def unban(local: _Local) -> Deferred[Any] | None:
            if not self._is_operator(local):
                return None
            network = parse_network(target)
            if network is None:
                participant.receive(Error(f"{target!r} is not banned (/bans lists the bans)"))
                return None

            def answered(reply: Any) -> None:
                if not reply:
                    participant.receive(Error(NOT_DELIVERED))
                    return
                if reply[0] == "none":
                    participant.receive(Error(f"{target!r} is not banned (/bans lists the bans)"))
                    return
                log.info("{op} lifted the ban on {network}", op=local.name, network=str(network))
                participant.receive(Notice(f"lifted the ban on {network}"))

            args = (self.node, next(self._requests), str(network), "", "", "")
            keys = (scripts.BANS, scripts.CONTROL, scripts.APPLIED)
            return self._ask(scripts.BAN, keys, args).addCallback(answered)

        self._when_free(participant, unban)

    def list_bans(self, participant: IParticipant) -> None:
        def bans(local: _Local) -> None:
            if self._is_operator(local):
                for line in self._bans.report(self._clock.seconds(), "until lifted"):
                    participant.receive(Notice(line))

        self._when_free(participant, bans)

    def banned(self, address: str) -> str | None:
        return self._bans.refusal(address, self._clock.seconds(), "")

    def _apply_ban(self, network_text: str, until_text: str, now: float) -> Network | None:
        network = parse_network(network_text)
        if network is None:
            return None
        until = float(until_text) if until_text else None
        if until is None or until > now:
            self._bans.add(network, until)
        return network

    # observers

    def add_observer(self, observer: ChatObserver) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: ChatObserver) -> None:
        self._observers.remove(observer)

    def _observe(self, event: Event, local: _Local | None, name: str = "") -> None:
        """
        Tell the observers of C{event}, caused by C{local} (or by C{name}, or
        the server): each node's observers hear what is caused there.
        """
        if not self._observers:
            return
        if local is not None:
            origin = Origin(local.name, local.participant.address)
        else:
            origin = Origin(name, "")
        for observer in list(self._observers):
            try:
                observer(event, origin)
            except Exception:
                log.failure("an observer failed on {event!r}", event=event)

    # idle times

    def _mark_active(self, local: _Local, now: float | None = None) -> None:
        if local.name:
            self._active[local.name.lower()] = self._clock.seconds() if now is None else now
        if self._active_call is None or not self._active_call.active():
            self._active_call = self._reactor.callLater(1.0, self._flush_active)

    def _flush_active(self) -> None:
        if not self._active:
            return
        flat = [item for pair in self._active.items() for item in (pair[0], repr(pair[1]))]
        self._active = {}
        self._send(scripts.TOUCH, (scripts.MEMBERS, scripts.ACTIVE), flat)

    # reading the records

    def _wake_reader(self) -> None:
        """
        End the blocking read, so that the next one includes a room just
        added, or reads at once for someone waiting.
        """
        if self._woken == self._reads or not self._reading:
            return  # (woken already, or about to read anyway)
        if self._reader_id is not None and self._writer.connected:
            # An entry in this node's own inbox ends the read, even one that
            # reaches Redis after this does (CLIENT UNBLOCK would miss it).
            self._woken = self._reads
            self._writer.execute(
                "XADD", self._inbox, "MAXLEN", "~", 1000, "*", "k", "wake"
            ).addErrback(lambda _: None)

    def _read(self) -> None:
        if self._reading or self._reader_id is None or not self._reader.connected:
            return
        if not self._first_done or self._closed:
            return
        # The rooms first: of what one read brings, a member's room line
        # comes before its private message sent after it.
        keys = [scripts.room_keys(lroom.lower)[0] for lroom in self._rooms.values()]
        ids = [lroom.cursor for lroom in self._rooms.values()]
        keys += [self._inbox, scripts.CONTROL]
        ids += [self._cursors[self._inbox], self._cursors[scripts.CONTROL]]
        self._reading = True
        self._reads += 1
        number = self._reads
        # Someone waits for a read that starts now: this one does not block.
        block = () if self._read_waiters else ("BLOCK", int(READ_BLOCK * 1000))
        reply = self._reader.execute("XREAD", "COUNT", READ_BATCH, *block, "STREAMS", *keys, *ids)
        self._read_watchdog = self._reactor.callLater(READ_BLOCK + 10, self._reader.abort)
        reply.addCallbacks(self._got, self._read_failed, callbackArgs=(number,))

    def _read_failed(self, failure: Any) -> None:
        import txredisapi

        if self._read_watchdog is not None and self._read_watchdog.active():
            self._read_watchdog.cancel()
        self._reading = False
        if not failure.check(txredisapi.ConnectionError):
            log.error("redis: reading the records failed: {error}", error=str(failure.value))
            self._reactor.callLater(1.0, self._read)

    def _got(self, reply: Any, number: int) -> None:
        if self._read_watchdog is not None and self._read_watchdog.active():
            self._read_watchdog.cancel()
        self._reading = False
        try:
            for key, entries in reply or ():
                self._got_entries(key, entries)
        except Exception:
            log.failure("redis: handling what was read failed")
        if self._read_waiters:
            waiting = self._read_waiters
            self._read_waiters = [(after, w) for after, w in waiting if after >= number]
            for after, waiter in waiting:
                if after < number:
                    waiter.callback(None)
        self._read()

    def _got_entries(self, key: str, entries: list[Any]) -> None:
        if key == self._inbox:
            for eid, flat in entries:
                self._cursors[key] = eid
                self._from_inbox(_fields(flat))
            return
        if key == scripts.CONTROL:
            for eid, flat in entries:
                self._cursors[key] = eid
                self._from_control(_fields(flat))
            return
        lower = key[key.index("{") + 1 : key.rindex("}")]
        lroom = self._rooms.get(lower)
        if lroom is None:
            return
        for eid, flat in entries:
            lroom.cursor = eid
            f = _fields(flat)
            sid = stream_id(eid)
            lroom.recent.append((sid, f))
            self._check_gap(lroom, f)
            event = entry_event(lroom.name, f)
            if event is None:
                continue
            for local in list(lroom.members.values()):
                self._deliver_one(lroom, local, sid, f, event)

    def _check_gap(self, lroom: _LocalRoom, f: dict[str, str]) -> None:
        seq, total, lines = int(f.get("q", 0)), int(f.get("l", 0)), int(f.get("n", 0))
        missed = None if lroom.last_lines is None else total - lines - lroom.last_lines
        if lroom.last_seq and seq > lroom.last_seq + 1 and missed != 0:
            how_many = "some" if missed is None else str(missed)
            text = (
                f"this server fell behind: you missed {how_many} "
                f"{'line' if missed == 1 else 'lines'} of #{lroom.name}"
            )
            log.warn(
                "redis: #{room}: {missed} lines missed, past the room's record",
                room=lroom.name,
                missed=how_many,
            )
            for local in list(lroom.members.values()):
                local.participant.receive(Notice(text))
        lroom.last_seq, lroom.last_lines = seq, total

    def _deliver_one(
        self,
        lroom: _LocalRoom,
        local: _Local,
        sid: tuple[int, int],
        f: dict[str, str],
        event: Event | None = None,
    ) -> None:
        if sid <= local.since or local.gone or lroom.members.get(local.participant) is not local:
            return
        kind = f.get("k", "")
        own = f.get("p") == local.token
        said, presence = kind in ("m", "a"), kind in ("j", "i", "l", "o", "r")
        if (said and own and not self._echo) or (presence and (own or self._quiet)):
            return
        if event is None:
            event = entry_event(lroom.name, f)
            if event is None:
                return
        local.participant.receive(event)

    def _from_inbox(self, f: dict[str, str]) -> None:
        kind = f.get("k")
        if kind == "w":
            target = f.get("t", "").lower()
            for local in list(self._locals.values()):
                if local.name.lower() == target and not local.gone:
                    event = Private(
                        f.get("s", ""), local.name, f.get("x", ""), float(f.get("at", 0))
                    )
                    local.participant.receive(event)
                    return
        elif kind == "k":
            kicked = self._by_token.get(f"{self.node}:{f.get('t')}")
            if kicked is not None:
                self._remove(kicked, f.get("o", ""), f.get("x", ""))

    def _from_control(self, f: dict[str, str]) -> None:
        kind, network_text = f.get("k"), f.get("x", "")
        now = self._clock.seconds()
        if kind == "b":
            network = self._apply_ban(network_text, f.get("o", ""), now)
            if network is None:
                return
            why = f"banned by {f['s']}" if f.get("s") else "banned"
            until = f.get("o", "")
            how_long = "" if not until else f" for {format_idle(float(until) - now)}"
            for local in list(self._locals.values()):
                if local.token != f.get("p") and within(local.participant.address, network):
                    self._remove(local, why, f"you were {why}{how_long}")
        elif kind == "u":
            network = parse_network(network_text)
            if network is not None:
                self._bans.remove(network)

    def _remove(self, local: _Local, why: str, notice: str) -> None:
        """Remove C{local} for an operator: told, its room hears why, disconnected."""
        if local.gone or self._locals.get(local.participant) is not local:
            return
        participant = local.participant
        participant.receive(Notice(notice))
        self.leave(participant, why)
        participant.disconnect(why)

    # the node's lease

    def _beat(self) -> None:
        if self._stopping:
            return
        # Heartbeats are not held through an outage: the next one goes.
        if not self._in_chat:
            return
        first = "1" if self._first_heartbeat else "0"
        self._first_heartbeat = False

        def answered(reply: Any) -> None:
            if reply == "reaped":
                self._reaped()
            elif reply == "stale":
                self._check_epoch()

        keys = (scripts.NODES, scripts.node_key(self.node), self._inbox, scripts.EPOCH)
        args = (self.node, int(self._lease * 1000), int(self._lease * 10_000), first, self._epoch)
        self._send(scripts.HEARTBEAT, keys, args, answered)
        self._reap()
        self._beats += 1
        if self._beats % 30 == 1:
            self._prune_bans()

    def _prune_bans(self) -> None:
        """Take bans that have run out off Redis's list (so it stays bounded)."""

        def got(fields: Any) -> None:
            now = self._clock.seconds()
            ended = [
                net for net, until in _fields(fields or []).items() if until and float(until) <= now
            ]
            if ended:
                self._read_command(("HDEL", scripts.BANS, *ended), None, 0)

        self._read_command(("HGETALL", scripts.BANS), got, 0)

    def _reap(self) -> None:
        """Free the names of a node whose lease ran out, and tell their rooms."""
        if self._reactor.seconds() - self._connected_at < self._lease:
            return  # (just back: the others have not had time to renew theirs)

        def answered(reply: Any) -> None:
            if not reply:
                return
            dead, members = reply[0], reply[1:]
            log.warn(
                "redis: node {node} was lost; {count} members left with it",
                node=dead,
                count=len(members) // 3,
            )
            for name, room, pid in zip(*[iter(members)] * 3, strict=False):
                self._room_change(
                    room.lower(),
                    room,
                    "l",
                    None,
                    other="node lost",
                    sender=name,
                    token=f"{dead}:{pid}",
                )
            self._reap()

        self._send(
            scripts.REAP,
            (scripts.NODES, scripts.MEMBERS, scripts.ACTIVE, scripts.APPLIED),
            (self.node,),
            answered,
        )

    def _reaped(self) -> None:
        """Others took this node for dead and freed its names: its clients must come again."""
        log.error(
            "redis: this node was taken for lost (paused longer than its {lease} s "
            "lease?); disconnecting its clients",
            lease=self._lease,
        )
        self._first_heartbeat = True
        for local in list(self._locals.values()):
            participant = local.participant
            self._forget(local)
            local.gone = True
            self._unseat(local)
            participant.receive(Error("this server lost its place in the chat; please reconnect"))
            participant.disconnect("node lost", Ending.LOST)

    def _check_epoch(self) -> None:
        """Redis answered for another epoch: it lost its data, our connection staying up."""

        def got(results: list[tuple[bool, Any]]) -> None:
            epoch = results[1][1]
            if epoch is None or epoch == self._epoch:
                return
            self._epoch = epoch
            log.warn(
                "redis: {address} lost the chat's data; telling it who is here again",
                address=str(self.address),
            )
            self._restore()
            self._beat()

        claim = self._read_deferred(("SET", scripts.EPOCH, secrets.token_hex(8), "NX"))
        DeferredList([claim, self._read_deferred(("GET", scripts.EPOCH))]).addCallback(got)

    def _restore(self) -> None:
        """
        Redis lost its data: tell it again who is here, before anything else
        waiting to go out (a newcomer could otherwise take a name in use).
        """
        self._first_heartbeat = True
        for lower, name in self._permanent.items():
            self._read_command(("HSETNX", scripts.ROOMS, lower, name), None, 0, first=True)
        for local in list(self._locals.values()):
            if not local.name or local.gone:
                continue
            keys = (scripts.MEMBERS, scripts.node_key(self.node), scripts.GUESTS, scripts.ACTIVE)
            args = (
                self.node,
                local.pid,
                local.name,
                local.name.lower(),
                local.room,
                "1" if local.operator else "0",
                local.participant.address,
                repr(self._clock.seconds()),
                "1",
            )
            self._send(scripts.ENTER, keys, args, self._restored(local), first=True)
            self._read_command(
                ("HSETNX", scripts.ROOMS, local.room.lower(), local.room), None, 0, first=True
            )
            self._room_change(local.room.lower(), local.room, "R", local, first=True)

    def _restored(self, local: _Local) -> Callable[[Any], None]:
        def answered(reply: Any) -> None:
            if reply and reply[0] == "taken" and not local.gone:
                # (another node told Redis first of a member with this name)
                participant = local.participant
                participant.receive(
                    Error("this server lost track of your name, and someone has it now; reconnect")
                )
                self.leave(participant, "name lost")
                participant.disconnect("name lost", Ending.LOST)

        return answered
