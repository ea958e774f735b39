"""
C{--workers N}: N processes on one machine serving the same listening
sockets, each a node of the same Redis, so one machine's cores serve one
port.

The first process listens as usual, then starts N-1 copies of itself that
adopt its listening sockets (the kernel hands each new connection to one
of the processes waiting on a socket).  A worker that dies is started
again; a worker whose parent is gone stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_tcpchat.systemd import NOTIFY_SOCKET

log = Logger(namespace="tcpchat")

#: The environment variable that tells a worker which descriptors to adopt:
#: C{FD:FAMILY,...}, one per listening socket, in the order of --listen.
INHERITED = "TCPCHAT_WORKER_SOCKETS"
#: Seconds a worker has to stop before it is killed.
STOP_GRACE = 10.0


def without_workers(argv: Sequence[str]) -> list[str]:
    """C{argv} without its C{--workers} option (a worker runs one process)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


class InheritedSocket(AdoptedStreamServerEndpoint):
    """A listening socket a worker was given by the first process."""

    def __repr__(self) -> str:
        return f"the first process's listening socket (fd {self.fileno})"


#: twistd options that are the first process's alone (a worker runs in the
#: foreground of its parent, with no pid file, as the user already chosen).
_PARENT_ONLY_FLAGS = {"-n", "--nodaemon"}
_PARENT_ONLY_VALUES = {"--pidfile", "-u", "--uid", "-g", "--gid"}


def twistd_options(argv: Sequence[str]) -> list[str]:
    """
    The twistd options of the first process (its C{sys.argv}) a worker
    shares: the log file, the reactor, the umask...
    """
    if "tcpchat" not in argv[1:]:
        return []
    out: list[str] = []
    skip = False
    for arg in argv[1 : argv.index("tcpchat", 1)]:
        if skip:
            skip = False
        elif arg in _PARENT_ONLY_VALUES:
            skip = True
        elif arg in _PARENT_ONLY_FLAGS or arg.split("=", 1)[0] in _PARENT_ONLY_VALUES:
            continue
        else:
            out.append(arg)
    return out


def inherited_endpoints(reactor: Any) -> list[AdoptedStreamServerEndpoint] | None:
    """The listening sockets this worker was given, or None when it is not a worker."""
    text = os.environ.get(INHERITED)
    if not text:
        return None
    endpoints: list[AdoptedStreamServerEndpoint] = []
    for item in text.split(","):
        fd, _, family = item.partition(":")
        endpoints.append(InheritedSocket(reactor, int(fd), int(family)))
    return endpoints


class _Worker(ProcessProtocol):
    def __init__(self, pool: WorkerPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Any) -> None:
        """IProcessProtocol API"""
        self.ended.callback(None)
        self.pool.ended(self, reason.value)


class WorkerPool(Service):
    """
    Starts and keeps C{count} - 1 more processes of this server, sharing the
    listening sockets of C{chat} (a L{twisted_tcpchat.service.ChatService}).
    """

    def __init__(self, chat: Any, count: int, argv: Sequence[str], reactor: Any) -> None:
        self.chat = chat
        self.count = count
        self.argv = without_workers(argv)
        self.reactor = reactor
        self.workers: dict[int, tuple[_Worker, Any]] = {}
        self._stopping = False
        self._delays: dict[int, float] = {}

    def startService(self) -> None:
        super().startService()
        for number in range(2, self.count + 1):
            self._spawn(number)

    def _sockets(self) -> tuple[str, dict[int, Any]]:
        items, fds = [], {}
        for port in self.chat.ports:
            fd = port.fileno()
            family = port.socket.family if hasattr(port, "socket") else socket.AF_UNIX
            items.append(f"{fd}:{int(family)}")
            fds[fd] = fd
        return ",".join(items), fds

    def _spawn(self, number: int) -> None:
        sockets, fds = self._sockets()
        env = dict(os.environ)
        env.pop(NOTIFY_SOCKET, None)  # (the first process alone speaks to systemd)
        env[INHERITED] = sockets
        env["TCPCHAT_WORKER"] = str(number)
        env["TCPCHAT_PARENT"] = str(os.getpid())
        args = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            *twistd_options(sys.argv),
            "-n",
            "--pidfile=",
            "tcpchat",
            *self.argv,
        ]
        worker = _Worker(self, number)
        process = self.reactor.spawnProcess(
            worker, sys.executable, args, env=env, childFDs={0: "w", 1: 1, 2: 2, **fds}
        )
        self.workers[number] = (worker, process)
        log.info("tcpchat worker {number} started (pid {pid})", number=number, pid=process.pid)

    def ended(self, worker: _Worker, why: Any) -> None:
        if self.workers.get(worker.number, (None,))[0] is worker:
            del self.workers[worker.number]
        if self._stopping:
            return
        # Started again after a second, or later if it keeps ending (a bad setting).
        delay = self._delays[worker.number] = min(self._delays.get(worker.number, 0.5) * 2, 30.0)
        log.warn(
            "tcpchat worker {number} ended ({why}); starting it again in {delay:g} s",
            number=worker.number,
            why=str(why),
            delay=delay,
        )
        self.reactor.callLater(delay, self._respawn, worker.number)

    def _respawn(self, number: int) -> None:
        if not self._stopping and number not in self.workers:
            self._spawn(number)

    def reload(self) -> None:
        """
        Pass a reload on: each worker gets SIGHUP, and reads the files
        again itself (its terminal, if it shares one, is still there).
        """
        for _, process in list(self.workers.values()):
            try:
                process.signalProcess("HUP")
            except ProcessExitedAlready:
                continue

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopping = True
        waits = []
        for worker, process in list(self.workers.values()):
            try:
                process.signalProcess("TERM")
            except ProcessExitedAlready:
                continue
            kill = self.reactor.callLater(STOP_GRACE, _kill, process)
            worker.ended.addCallback(_cancel, kill)
            waits.append(worker.ended)
        return DeferredList(waits).addCallback(lambda _: None)


def _cancel(_: object, call: Any) -> None:
    if call.active():
        call.cancel()


def _kill(process: Any) -> None:
    with contextlib.suppress(ProcessExitedAlready):
        process.signalProcess("KILL")


class ParentWatch(Service):
    """In a worker: stop when the process that started it is gone."""

    def __init__(self, reactor: Any, parent: int) -> None:
        self.reactor = reactor
        self.parent_pid = parent
        self._loop = LoopingCall(self._check)
        self._loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        self._loop.start(1.0, now=False)
        # Ctrl-C at the terminal reaches every process; the first one stops the others.
        self.reactor.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def _check(self) -> None:
        if os.getppid() != self.parent_pid:
            log.warn("tcpchat: the process that started this worker is gone; stopping")
            self._loop.stop()
            self.reactor.stop()
