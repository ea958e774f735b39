"""
The server as a Twisted service: listeners plus an orderly shutdown.

L{make_service} is what a C{.tac} file or another application embeds; the
twistd plugin (L{twisted_tcpchat.tap}) builds the same thing from options.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, TimeoutError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from twisted_tcpchat import systemd
from twisted_tcpchat.core.commands import Commands
from twisted_tcpchat.core.config import DEFAULT_PORT, ChatConfig
from twisted_tcpchat.core.interfaces import IDirectory
from twisted_tcpchat.core.limits import clients_for_open_files
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.core.session import Peer
from twisted_tcpchat.frontends.console import ClassicConsole, Console, attach_console
from twisted_tcpchat.frontends.tcp import ChatFactory, address_parts
from twisted_tcpchat.frontends.tls import HardenedTLSReactor, ReloadableTLS, load_tls
from twisted_tcpchat.logs import TurnLog

log = TurnLog(namespace="tcpchat")

#: Every IPv4 and IPv6 interface: on Linux one IPv6 socket bound to :: takes
#: IPv4 clients too (as ::ffff:a.b.c.d, shown as a.b.c.d).
DEFAULT_LISTEN = (f"tcp6:{DEFAULT_PORT}:interface=\\:\\:",)

#: Seconds a stopping server waits for clients to take the shutdown notice
#: before it cuts them off.
SHUTDOWN_GRACE = 1.0


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class ListenError(Exception):
    """
    The server cannot listen where it was told to.  Its text is one line
    that names the address and the reason.
    """


def _print_listen_errors_plainly() -> None:
    """
    Make an uncaught L{ListenError} end the process with its one line on
    stderr, not a traceback (twistd lets the error escape: it must, so that a
    daemon's parent process learns of it and exits 1).
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        if isinstance(error, ListenError):
            print(f"tcpchat: {error}", file=sys.__stderr__)
        else:
            previous(kind, error, tb)

    sys.excepthook = hook


def _listen_problem(description: str, failure: Failure) -> str:
    """One short line: what could not be listened on, and why."""
    error = failure.value
    if isinstance(error, CannotListenError) and isinstance(error.socketError, OSError):
        # The port and the reason first: a daemon's parent shows only the
        # first 100 bytes of the error.
        why = error.socketError.strerror or str(error.socketError)
        return f"cannot listen on port {error.port}: {why} ({description})"
    return f"cannot listen on {description}: {failure.getErrorMessage()}"


#: Where to listen: a Twisted endpoint string, or an endpoint.
Listen = str | IStreamServerEndpoint


class ChatService(MultiService):
    """
    Listens on each endpoint for one L{ChatFactory}, and attaches the
    operator console when asked; on stop, tells every client the server is
    shutting down and closes them all, cutting off those that do not read
    within L{SHUTDOWN_GRACE} seconds.

    An embedding application reaches the chat through C{directory} (its
    rooms, notices, observers) and C{commands} (its own slash commands).
    """

    def __init__(
        self,
        factory: ChatFactory,
        listen: Sequence[Listen],
        reactor: IReactorCore,
        console: bool = False,
        web: Sequence[Listen] = (),
        web_origins: Sequence[str] = (),
        metrics: Sequence[Listen] = (),
        metrics_path: str | None = None,
    ) -> None:
        super().__init__()
        self.factory = factory
        self.listen = tuple(listen)
        self.web = tuple(web)
        self.web_origins = tuple(web_origins)
        self.metrics = tuple(metrics)
        self.metrics_path = metrics_path
        self._metrics_page: Resource | None = None
        if self.metrics or metrics_path is not None:
            from twisted_tcpchat.frontends.metrics import MetricsPage, ReactorLag

            lag = ReactorLag(cast(IReactorTime, reactor))
            lag.setServiceParent(self)
            self._metrics_page = MetricsPage(factory.server, lag)
        self.console = console
        self._reactor = reactor
        self.ports: list[IListeningPort] = []
        # The TLS settings of each ssl: listener, with its endpoint string.
        self._tls: list[tuple[str, ReloadableTLS]] = []
        self._listening = False
        self._sized = False

    @property
    def server(self) -> ChatServer:
        """The server: its settings, sessions and admission rules."""
        return self.factory.server

    @property
    def directory(self) -> IDirectory:
        """Names and rooms: where to add observers, send notices, seat bots."""
        return self.factory.server.directory

    @property
    def commands(self) -> Commands:
        """The slash commands; add your own here."""
        return self.factory.server.commands

    def privilegedStartService(self) -> None:
        # Listen here, before twistd sheds privileges (-u/-g), so that a
        # port below 1024 works.
        self._size_for_open_files()
        self._listen_everywhere()
        super().privilegedStartService()

    def _size_for_open_files(self) -> None:
        """
        Raise the open-file limit to its hard limit, and unless the operator
        set --max-clients, take as many clients as it then allows.
        """
        if self._sized:
            return
        self._sized = True
        limit = raise_open_file_limit()
        server = self.factory.server
        if server.config.max_clients is None:
            server.max_clients = clients_for_open_files(limit)
        log.info(
            "tcpchat takes up to {clients} clients (open-file limit {limit})",
            clients=server.max_clients,
            limit=limit,
        )

    def startService(self) -> None:
        # `twist` and plain embedders call only this.
        self._size_for_open_files()
        self._listen_everywhere()
        super().startService()
        server = self.factory.server
        start = getattr(server.directory, "start", None)
        if start is not None:  # a directory with a life of its own (Redis)
            start()
        addresses = ", ".join(str(Peer(*address_parts(port.getHost()), "")) for port in self.ports)
        systemd.notify(f"READY=1\nSTATUS=listening on {addresses}\nMAINPID={os.getpid()}")
        if self.console:
            console = (
                ClassicConsole(server)
                if server.config.classic
                else Console(server, server.config.console_name)
            )
            attach_console(console, self._reactor)  # a line editor on a terminal

    def _listen_everywhere(self) -> None:
        if self._listening:
            return
        self._listening = True
        for description in self.listen:
            self._listen(description, self.factory)
        clock = cast(IReactorTime, self._reactor)
        page = self._metrics_page
        if self.web:
            from twisted_tcpchat.frontends.web import web_site

            on_web = None
            if page is not None and self.metrics_path is not None:
                on_web = (self.metrics_path.strip("/").encode("utf-8"), page)
            site = web_site(self.server, clock, self.web_origins, on_web)
            for description in self.web:
                self._listen(description, site, web=True)
        if self.metrics:
            from twisted_tcpchat.frontends.metrics import MetricsPage, metrics_site

            metrics = metrics_site(self.server, cast(MetricsPage, page), clock)
            for description in self.metrics:
                self._listen(description, metrics, web=True, what="metrics")

    def _listen(
        self, where: Listen, factory: Factory[Any], web: bool = False, what: str = "web page"
    ) -> None:
        hardened = HardenedTLSReactor(self._reactor)
        if isinstance(where, str):
            description = where
            endpoint = serverFromString(hardened, where)
        else:
            description = repr(where)
            endpoint = where
        outcome: list[IListeningPort | Failure] = []
        endpoint.listen(factory).addBoth(outcome.append)
        # Endpoints for TCP, UNIX and TLS answer at once.
        port = outcome[0] if outcome else None
        if port is None or isinstance(port, Failure):
            if port is None:
                message = f"cannot listen on {description}: no answer"
            else:
                message = _listen_problem(description, port)
            log.critical("tcpchat: {message}", message=message)
            for port in self.ports:
                port.stopListening()
            _print_listen_errors_plainly()
            raise ListenError(message)
        self.ports.append(port)
        if description.startswith("ssl:"):  # (its files can be read again: reload)
            self._tls.extend((description, tls) for tls in hardened.tls)
        host, number = address_parts(port.getHost())
        address = str(Peer(host, number, ""))
        if web and what == "metrics":
            scheme = "https" if description.startswith("ssl:") else "http"
            log.info(
                "tcpchat metrics on {scheme}://{address}/metrics and health on /health "
                "({description})",
                scheme=scheme,
                address=address,
                description=description,
            )
        elif web:
            scheme = "https" if description.startswith("ssl:") else "http"
            log.info(
                "tcpchat web page and WebSocket on {scheme}://{address}/ ({description})",
                scheme=scheme,
                address=address,
                description=description,
            )
        else:
            log.info(
                "tcpchat listening on {address} ({description})",
                address=address,
                description=description,
            )

    def stopService(self) -> Deferred[None]:
        systemd.notify("STOPPING=1")
        children = super().stopService()  # (workers, when there are)
        stopped = [port.stopListening() for port in self.ports]
        self.ports = []
        self._tls = []
        self._listening = False
        server = self.factory.server
        server.shut_down()
        # Wait for the clients to go, but no longer than the grace time: the
        # reactor's own shutdown then closes whatever is left.
        drained = server.when_empty()
        drained.addTimeout(SHUTDOWN_GRACE, cast(IReactorTime, self._reactor))
        drained.addErrback(lambda failure: failure.trap(TimeoutError))
        waits = [d for d in [*stopped, children] if d is not None]
        done = gatherResults([*waits, drained])
        stop = getattr(server.directory, "stop", None)
        if stop is not None:  # its goodbyes for the clients, then its own
            done.addCallback(lambda _: stop())
        return done.addCallback(lambda _: None)

    def reload(self, config: ChatConfig | Callable[[], ChatConfig] | None = None) -> bool:
        """
        Take on new settings and files without dropping anyone (what SIGHUP
        does under twistd): C{config}, the settings that can change live
        (see L{ChatServer.reconfigure}), or what reads them (raising
        L{ValueError} in one line); the certificate and key of each C{ssl:}
        listener, read again from the files its endpoint string names; and
        the users of each C{--auth file:} (L{AuthFile
        <twisted_tcpchat.authfile.AuthFile>}).  Connections made after it
        get the new ones; those before keep theirs.

        All or nothing: each problem (a bad setting, a key that does not
        match its certificate, an auth file with a bad line) is one log
        line, and then nothing changes.  Otherwise each thing that changed
        is one log line, and "nothing changed" is one when nothing did.
        Under systemd, C{RELOADING=1} before and C{READY=1} after.

        @return: whether the reload was taken on.
        """
        systemd.notify(systemd.reloading())
        try:
            changes, steps, problems = self._prepare_reload(config)
            for problem in problems:
                log.warn(
                    "tcpchat: reload refused, the old settings stay: {problem}", problem=problem
                )
            if problems:
                return False
            for step in steps:
                step()
            for change in changes or ["nothing changed"]:
                log.info("tcpchat: reloaded: {change}", change=change)
            return True
        finally:
            systemd.notify("READY=1")

    def _prepare_reload(
        self, config: ChatConfig | Callable[[], ChatConfig] | None
    ) -> tuple[list[str], list[Callable[[], None]], list[str]]:
        """
        What a reload would change (lines for the log), the steps that make
        it so, and the problems that refuse it: nothing is changed here.
        """
        changes: list[str] = []
        steps: list[Callable[[], None]] = []
        problems: list[str] = []
        server = self.server
        if config is not None:
            try:
                new = config() if callable(config) else config
                settings = server.changes(new)
            except ValueError as e:
                problems.append(str(e))
            else:
                if settings:
                    changes.append("; ".join(settings))
                steps.append(partial(server.reconfigure, new))
        from twisted_tcpchat.authfile import AuthFile, read_users, users_change

        checkers = server.logins.checkers if server.logins is not None else ()
        for checker in checkers:
            if not isinstance(checker, AuthFile):
                continue
            try:
                users = read_users(checker.path)
            except ValueError as e:
                problems.append(f"auth file {checker.path}: {e}")
                continue
            change = users_change(checker.users, users)
            if change is not None:
                changes.append(f"auth file {checker.path}: {change}")
                steps.append(partial(setattr, checker, "users", users))
        for description, tls in self._tls:
            try:
                creator = load_tls(description)
            except ValueError as e:
                problems.append(f"TLS of {description}: {e}")
                continue
            change = tls.change(creator)
            if change is not None:
                changes.append(f"TLS of {description}: {change}")
                steps.append(partial(tls.replace, creator))
        return changes, steps, problems


def make_service(
    listen: Sequence[Listen] = DEFAULT_LISTEN,
    config: ChatConfig | None = None,
    *,
    reactor: IReactorCore | None = None,
    console: bool = False,
    checkers: Sequence[ICredentialsChecker] = (),
    directory: IDirectory | None = None,
    commands: Commands | None = None,
    web: Sequence[Listen] = (),
    web_origins: Sequence[str] = (),
    metrics: Sequence[Listen] = (),
    metrics_path: str | None = None,
) -> ChatService:
    """
    The chat server as a service to add to an application.

    @param listen: where to listen: Twisted endpoint strings
        (C{"tcp:65432"}, C{"tcp6:65432:interface=\\:\\:"}, C{"unix:/path"})
        or endpoint objects (L{IStreamServerEndpoint}).
    @param config: the settings (defaults: L{ChatConfig}).
    @param reactor: the reactor to listen with (default: the global one).
    @param console: whether this process's stdin and stdout are the operator's
        console in the room.
    @param checkers: twisted.cred checkers of names and passwords; with any,
        clients must C{/login NAME PASSWORD} before they may talk.
    @param directory: names and rooms (default: in this process, as
        C{config} sets them).
    @param commands: the slash commands (default: the built-in ones).
    @param web: where to serve the web page and its WebSocket (the C{[web]}
        extra): endpoint strings or endpoints, like C{listen}.
    @param web_origins: the origins of other pages allowed to open the
        WebSocket (C{https://chat.example.com}; C{*}: any); the page's own
        always may.
    @param metrics: where to serve Prometheus metrics (C{/metrics}) and the
        health check (C{/health}), like C{listen}.
    @param metrics_path: a path on the C{web} site to serve the metrics at
        as well (C{"/metrics"}), or None.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = cast(IReactorCore, default_reactor)
    clock = cast(IReactorTime, reactor)
    server = ChatServer(config, clock, checkers=checkers, directory=directory, commands=commands)
    factory = ChatFactory(server=server, clock=clock)
    return ChatService(factory, listen, reactor, console, web, web_origins, metrics, metrics_path)
