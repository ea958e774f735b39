"""
tcpchat's log can be held for the rest of a reactor turn (see
L{twisted_tcpchat.logs}): nothing is lost or reordered, and a real server
writes a read's log only after its lines went out.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import cast

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs, eventAsJSON, formatEvent

from tests.helpers import DEADLINE, Client, Process, installed_script, messages
from tests.test_loopback import dial, eventually, start
from twisted_tcpchat import logs
from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.frontends.tcp import ChatFactory, TurnFlusher
from twisted_tcpchat.logs import TurnLog


def test_held_events_come_out_in_order_at_the_last_release() -> None:
    log = TurnLog(namespace="tcpchat")
    other = TurnLog(namespace="tcpchat")
    with capturedLogs() as events:
        log.info("before")
        logs.hold()
        log.info("one {n}", n=1)
        logs.hold()  # a second flusher in the same turn
        other.warn("two")
        logs.release()
        assert [formatEvent(e) for e in events] == ["before"]
        log.error("three")
        logs.release()
        log.info("after")
    assert [formatEvent(e) for e in events] == ["before", "one 1", "two", "three", "after"]


def test_failures_keep_their_failure() -> None:
    log = TurnLog(namespace="tcpchat")
    with capturedLogs() as events:
        logs.hold()
        try:
            int("x")
        except ValueError:
            log.failure("oops")
        logs.release()
    assert events[-1]["log_failure"].check(ValueError)


def test_release_without_hold_is_harmless() -> None:
    log = TurnLog(namespace="tcpchat")
    with capturedLogs() as events:
        logs.release()
        log.info("straight out")
    assert [formatEvent(e) for e in events] == ["straight out"]


def test_other_loggers_are_never_held() -> None:
    with capturedLogs() as events:
        logs.hold()
        Logger(namespace="twisted").info("not ours")
        assert [formatEvent(e) for e in events] == ["not ours"]
        logs.release()


def test_a_flusher_on_a_test_clock_does_not_hold() -> None:
    from twisted.internet.task import Clock

    flusher = TurnFlusher(Clock())
    log = TurnLog(namespace="tcpchat")
    with capturedLogs() as events:
        flusher.begin()  # never flushed: the clock is not advanced
        log.info("not held")
    assert [formatEvent(e) for e in events] == ["not held"]


@pytest_twisted.ensureDeferred
async def test_on_a_reactor_the_log_is_written_after_the_lines_went_out() -> None:
    service, port = await start(history=0)
    try:
        reader = await dial(port)
        sender = await dial(port)
        await eventually(lambda: len(sender.lines) >= 2, "the greeting")
        seen_at_send: list[list[str]] = []
        with capturedLogs() as events:
            assert sender.transport is not None
            sender.transport.write(b"first\nsecond\n")
            # When the reader has the lines, the log has them too, in order.
            await eventually(lambda: "<guest2> second" in reader.lines, "the lines")
            seen_at_send.append(messages(events))
            sender.transport.write(b"/who\nthird\n")
            await eventually(lambda: "<guest2> third" in reader.lines, "the third line")
        log = [line for line in messages(events) if "guest2" in line and "sent" in line]
        assert [line.split(": ", 1)[1] for line in log] == ["first", "second", "/who", "third"]
        assert any(line.endswith("sent 5 bytes: first") for line in seen_at_send[0])
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_held_log_is_written_at_the_end_of_the_turn() -> None:
    """Holding never delays the log beyond the turn: a read's log is out within it."""
    clock = cast(IReactorTime, reactor)
    flusher = TurnFlusher(clock, hold_log=True)
    log = TurnLog(namespace="tcpchat")
    with capturedLogs() as events:
        flusher.begin()
        log.info("waits for the turn")
        assert events == []
        deadline = clock.seconds() + DEADLINE
        await eventually(lambda: events or clock.seconds() > deadline, "the turn's end")
    assert [formatEvent(e) for e in events] == ["waits for the turn"]


def test_a_reads_log_text_is_plain_text_by_the_time_observers_see_it() -> None:
    """
    The chat lines' log text is made when the event is written (on a server:
    after the sends), once: every observer gets the same plain text, escapes
    and sizes included - JSON logs too - whichever path took the read
    (one clean text, escaped lines, or line by line); the fields of a chat
    message are there apart, for a JSON log.
    """
    factory = ChatFactory(ChatConfig(history=0, quiet_presence=True), clock=Clock())
    alice, bob = Client(factory), Client(factory)
    bob.new_lines()
    with capturedLogs() as events:
        alice.send(b"hi\r\nthere\n")  # whole read, nothing to escape (Joined)
        alice.send(b"see \x1b[2J\nthis\n")  # whole read, escaped
        alice.send(b"/me waves\nplain again\n")  # a command: line by line
    sent = [e for e in events if "said" in e]
    assert all(type(e["said"]) is str for e in sent)
    who = "guest1 (192.0.2.7:40001)"
    assert [formatEvent(e) for e in sent] == [
        f"{who} sent 2 bytes: hi\n{who} sent 5 bytes: there",
        f"{who} sent 8 bytes: see \\x1b[2J\n{who} sent 4 bytes: this",
        f"{who} sent 11 bytes: plain again",
    ]
    records = [json.loads(eventAsJSON(e)) for e in sent]
    assert [r["said"] for r in records] == [e["said"] for e in sent]
    assert [
        (r["room"], r["name"], r["address"], r["port"], r["size"], r["text"]) for r in records
    ] == [
        ("lobby", "guest1", "192.0.2.7", 40001, 7, "hi\nthere"),
        ("lobby", "guest1", "192.0.2.7", 40001, 12, "see \x1b[2J\nthis"),
        ("lobby", "guest1", "192.0.2.7", 40001, 11, "plain again"),
    ]
    assert bob.new_lines() == [
        "<guest1> hi",
        "<guest1> there",
        "<guest1> see \\x1b[2J",
        "<guest1> this",
        "* guest1 waves",
        "<guest1> plain again",
    ]


def test_held_lazy_text_is_made_at_release() -> None:
    class Counted(logs.LazyText):
        made = 0

        def __str__(self) -> str:
            Counted.made += 1
            return "made"

    log = TurnLog(namespace="tcpchat")
    with capturedLogs() as events:
        logs.hold()
        log.info("{text}", text=Counted())
        assert Counted.made == 0
        logs.release()
    assert Counted.made == 1
    assert events[-1]["text"] == "made"
    assert formatEvent(events[-1]) == "made"


def test_lazy_text_that_fails_costs_only_its_own_text() -> None:
    """
    Making a held event's text raises: that event says so, and the events
    held after it are still written, in order.
    """

    class Broken(logs.LazyText):
        def __str__(self) -> str:
            raise ValueError("no text")

    log = TurnLog(namespace="tcpchat")
    with capturedLogs() as events:
        logs.hold()
        log.info("{text}", text=Broken())
        log.info("next")
        logs.release()
    assert [formatEvent(e) for e in events] == [
        "(log text lost: ValueError: no text)",
        "next",
    ]


def test_a_read_is_logged_under_the_name_it_was_sent_with() -> None:
    """
    Under TLS, Twisted hands a connection one record at a time, several in
    one turn: a read logged while the log is held keeps the sender's name of
    that moment, though a later record of the same turn renames it.
    """
    from tests.test_flush import FakeReactor, connect

    clock = FakeReactor()
    factory = ChatFactory(ChatConfig(history=0, quiet_presence=True), clock=clock)
    factory.flusher._hold_log = True  # (as on a reactor)
    alice, _ = connect(factory, 40001)
    connect(factory, 40002)
    clock.advance(1)
    with capturedLogs() as events:
        alice.dataReceived(b"hi\n")
        alice.dataReceived(b"/nick bob\n")
        clock.advance(0)
    said = [formatEvent(e) for e in events if "said" in e]
    assert said[0] == "guest1 (127.0.0.1:40001) sent 2 bytes: hi", said
    assert any("is now known as bob" in formatEvent(e) for e in events)


def _records(process: Process) -> list[dict[str, object]]:
    """The JSON log records a process has written on its output so far."""
    records = []
    for line in process.lines:
        line = line.lstrip("\x1e")  # (each record starts with RS: RFC 7464)
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def test_json_records_of_a_chat_line_and_a_refusal(tmp_path: Path) -> None:
    """
    twistd --logger twisted_tcpchat.logs.json_stdout: a chat line is one
    record with room, name, address, port, size and text as fields; a
    refusal has the address and the reason.
    """
    process = Process(
        [
            installed_script("twistd"),
            "-n",
            "--pidfile=",
            "--logger",
            "twisted_tcpchat.logs.json_stdout",
            "tcpchat",
            "--port",
            "0",
            "--interface",
            "127.0.0.1",
            "--max-clients",
            "1",
        ],
        tmp_path,
    )
    try:
        process.wait_for_output(r'"log_format": "tcpchat listening on')
        listening = next(r for r in _records(process) if "listening on" in str(r["log_format"]))
        port = int(str(listening["address"]).rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.recv(100)
            client.sendall("hello, 世界\n".encode())
            process.wait_for_output(r'"text": "hello, ')
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as second:
                second.recv(100)
                process.wait_for_output(r'"reason": "server full')
            said = next(r for r in _records(process) if r.get("text") == "hello, 世界")
            assert (said["room"], said["name"], said["address"]) == ("lobby", "guest1", "127.0.0.1")
            assert said["size"] == len("hello, 世界".encode())
            assert isinstance(said["port"], int)
            refused = next(r for r in _records(process) if "reason" in r)
            assert refused["address"] == "127.0.0.1"
            assert str(refused["reason"]).startswith("server full (1 clients)")
    finally:
        process.stop()
