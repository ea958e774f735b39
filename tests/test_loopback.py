"""
The server on real loopback sockets, port 0, in this process's reactor.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from tests.helpers import DEADLINE, messages, welcome
from twisted_tcpchat import ChatConfig, ChatService, make_service
from twisted_tcpchat.core.config import DEFAULT_GREETING
from twisted_tcpchat.service import SHUTDOWN_GRACE

reactor = global_reactor


class LineClient(Protocol):
    """A test peer that collects the lines it receives."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[None] = Deferred()
        self.read = True

    @property
    def lines(self) -> list[str]:
        return [line.decode() for line in self.data.split(b"\r\n")[:-1]]

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.closed.callback(None)


async def eventually(predicate: Callable[[], object], what: str) -> None:
    """Wait, without blocking the reactor, until predicate() is true."""
    deadline = reactor.seconds() + DEADLINE
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.01, lambda: None)


async def start(
    listen: str = "tcp:0:interface=127.0.0.1", **config: object
) -> tuple[ChatService, int]:
    service = make_service([listen], ChatConfig(**config), reactor=reactor)  # type: ignore[arg-type]
    service.privilegedStartService()
    service.startService()
    return service, getattr(service.ports[0].getHost(), "port", 0)


async def dial(port: int, host: str = "127.0.0.1") -> LineClient:
    kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
    client = LineClient()
    await connectProtocol(kind(reactor, host, port), client)
    return client


@pytest_twisted.ensureDeferred
async def test_conversation_over_loopback() -> None:
    """Greeting, a message shown in the log, exit: over a real TCP connection."""
    service, port = await start()
    try:
        with capturedLogs() as events:
            client = await dial(port)
            await eventually(lambda: client.lines == [DEFAULT_GREETING, welcome()], "the greeting")
            assert client.transport is not None
            client.transport.write("hello 世界\r\n".encode())
            client.transport.write(b"exit\n")
            await client.closed
        assert client.lines == [DEFAULT_GREETING, welcome(), "Goodbye."]
        log = messages(events)
        assert any(line.endswith("sent 12 bytes: hello 世界") for line in log), log
        assert any(line.endswith("ended the session (exit)") for line in log), log
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_dual_stack_default_takes_ipv4_and_ipv6() -> None:
    """Bound to ::, one socket serves IPv4 clients (shown as 1.2.3.4) and IPv6 ones."""
    service, port = await start("tcp6:0:interface=\\:\\:")
    try:
        with capturedLogs() as events:
            v4 = await dial(port, "127.0.0.1")
            v6 = await dial(port, "::1")
            await eventually(lambda: v4.lines and v6.lines, "both greetings")
        log = messages(events)
        v4_line = r"guest\d \(127\.0\.0\.1:\d+\) connected"
        v6_line = r"guest\d \(\[::1\]:\d+\) connected"
        assert any(re.fullmatch(v4_line, line) for line in log), log
        assert any(re.fullmatch(v6_line, line) for line in log), log
        for client in (v4, v6):
            assert client.transport is not None
            client.transport.loseConnection()
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_unix_socket(tmp_path: Path) -> None:
    """--listen unix:PATH serves too; the peer shows as 'unix'."""
    path = tmp_path / "chat.sock"
    service, _ = await start(f"unix:{path}", greeting="hello {peer}")
    try:
        client = LineClient()
        await connectProtocol(UNIXClientEndpoint(reactor, str(path)), client)
        await eventually(lambda: client.lines == ["hello unix", welcome()], "the greeting")
        assert client.transport is not None
        client.transport.write(b"exit\n")
        await client.closed
        assert client.lines == ["hello unix", welcome(), "Goodbye."]
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_once_serves_others_meanwhile() -> None:
    """--once: a client that has not sent yet does not hold up the next one."""
    service, port = await start(once=True)
    try:
        idle = await dial(port)
        busy = await dial(port)
        await eventually(lambda: idle.lines and busy.lines, "both greetings")
        assert busy.transport is not None
        busy.transport.write(b"hello,this is client")
        busy.transport.write(b"\n")
        await busy.closed
        assert busy.lines == [DEFAULT_GREETING, "Received 20 bytes. Goodbye."]
        assert not idle.closed.called
        assert idle.transport is not None
        idle.transport.write(b"late\n")
        await idle.closed
        assert idle.lines[-1] == "Received 4 bytes. Goodbye."
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_stop_tells_every_client() -> None:
    """Stopping says 'server shutting down' to each client, including one not reading now."""
    service, port = await start()
    reader = await dial(port)
    stuck = await dial(port)
    await eventually(lambda: reader.lines and stuck.lines, "both greetings")
    assert stuck.transport is not None
    stuck.transport.pauseProducing()  # stops reading: its socket buffers fill
    assert reader.transport is not None
    reader.transport.write(b"x" * 100 + b"\n")  # keep the server busy with a real line
    started = reactor.seconds()
    await service.stopService()
    elapsed = reactor.seconds() - started
    await reader.closed
    assert reader.lines[-1] == "server shutting down"
    assert elapsed < SHUTDOWN_GRACE + DEADLINE
    stuck.transport.resumeProducing()
    await stuck.closed
