"""
The benchmark's Twisted ceiling (C{--servers twisted}): a bare relay on
Twisted's epoll reactor that sends each read, as it is, to every other
client - one C{send()} each, straight to the socket, and what the kernel
does not take to Twisted's buffer.  No lines, no checks, no log: what a
chat server on Twisted could reach here at best, as the C relay is for any
server.

    python -m benchmarks.twisted_relay PORT

(from the repository root, or with it on C{PYTHONPATH}: the benchmark
starts it so.)
"""

from __future__ import annotations

import sys

from twisted.internet import epollreactor
from twisted.internet.protocol import Protocol, ServerFactory


class BareRelay(Protocol):
    """Each read to every other client, unchanged."""

    clients: list[BareRelay]

    def connectionMade(self) -> None:
        self.clients.append(self)
        self.socket = self.transport.getHandle()  # type: ignore[union-attr]
        self.transport.write(b"bare Twisted relay\n")  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        self.clients.remove(self)

    def dataReceived(self, data: bytes) -> None:
        for client in self.clients:
            if client is not self:
                client.send(data)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if not (transport.dataBuffer or transport._tempDataLen):  # type: ignore[union-attr]
            try:
                sent = self.socket.send(data)
            except OSError:
                sent = 0
            data = data[sent:]
        if data:
            transport.write(data)  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    epollreactor.install()
    from twisted.internet import reactor

    BareRelay.clients = []
    factory = ServerFactory.forProtocol(BareRelay)
    listening = reactor.listenTCP(
        int(args[0]),
        factory,  # type: ignore[arg-type]  # (Twisted's stubs want a typed .factory)
        backlog=1024,
        interface="127.0.0.1",
    )
    print(f"listening on {listening.getHost()}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
