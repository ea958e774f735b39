"""
The server: its settings, its directory, its commands, who may come in, and
the sessions it is serving.
"""

from __future__ import annotations

import resource
from collections.abc import Sequence
from typing import cast

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from twisted_tcpchat.core.classic import ClassicDesk
from twisted_tcpchat.core.commands import Commands, builtin_commands
from twisted_tcpchat.core.config import ChatConfig, config_changes, restart_needed
from twisted_tcpchat.core.interfaces import IConnection, IDirectory
from twisted_tcpchat.core.limits import (
    AccessList,
    Admission,
    clients_for_open_files,
    parse_networks,
)
from twisted_tcpchat.core.login import Logins
from twisted_tcpchat.core.names import RESERVED_NAMES
from twisted_tcpchat.core.session import Peer, Session
from twisted_tcpchat.core.stats import Stats


def directory_for(config: ChatConfig, clock: IReactorTime) -> IDirectory:
    """
    The directory with the rooms and settings of C{config}: in this process,
    or shared through Redis with C{config.redis} (C{clock} is then the
    reactor, which connects to it).
    """
    settings = dict(
        default_room=config.default_room,
        rooms=config.rooms,
        create_rooms=config.create_rooms,
        max_rooms=config.max_rooms,
        history=config.history,
        echo=config.echo,
        quiet_presence=config.quiet_presence,
        reserved={*RESERVED_NAMES, config.console_name},
        room_idle=config.room_idle,
    )
    if config.redis is not None:
        from twisted_tcpchat.rooms.redis import RedisDirectory
        from twisted_tcpchat.rooms.redislink import RedisAddress

        return RedisDirectory(clock, clock, RedisAddress.parse(config.redis), **settings)  # type: ignore[arg-type]
    from twisted_tcpchat.rooms.memory import Directory

    return Directory(clock, ban_file=config.ban_file, **settings)  # type: ignore[arg-type]


def frontend_of(connection: IConnection) -> str:
    """Which front end a connection came through (its C{frontend}), for the metrics."""
    return getattr(connection, "frontend", "other")


class ChatServer:
    """
    The root object every front end feeds: it admits or refuses each
    connection and opens one L{Session} per admitted one.

    @ivar config: the settings.
    @ivar directory: names and rooms (L{IDirectory}).
    @ivar commands: the slash commands, the built-in ones and any added.
    @ivar classic: the messages waiting for the console's answer in
        C{--classic} mode.
    @ivar max_clients: how many sessions at once; more are told the server
        is full.
    @ivar access: the --allow/--deny lists.
    @ivar logins: the login checks, when the server requires logins.
    @ivar stats: what it has done, counted (for the metrics).
    """

    def __init__(
        self,
        config: ChatConfig | None = None,
        clock: IReactorTime | None = None,
        *,
        directory: IDirectory | None = None,
        checkers: Sequence[ICredentialsChecker] = (),
        commands: Commands | None = None,
    ) -> None:
        self.config = config = config if config is not None else ChatConfig()
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock = clock
        self.directory = directory if directory is not None else directory_for(config, clock)
        self.commands = commands if commands is not None else Commands(builtin_commands())
        self.classic = ClassicDesk()
        # Until a service sizes it from the open-file limit (--max-clients
        # unset), the limit of the process as it is.
        self.max_clients = config.max_clients or clients_for_open_files(
            resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        )
        self.admission = Admission(
            config.per_address, config.connect_rate, 60.0, parse_networks(config.exempt)
        )
        self.access = AccessList(parse_networks(config.allow), parse_networks(config.deny))
        if checkers and (config.classic or config.once):
            raise ValueError("checkers: --classic and --once have no logins")
        self.logins = Logins(checkers) if checkers else None
        self.sessions: set[Session] = set()
        self.stats = Stats()
        self._empty_waiters: list[Deferred[None]] = []

    def connected(self, connection: IConnection, peer: Peer, probe: bool = True) -> Session:
        """
        A client connected: refuse it with one line (server full, too many
        from its address), or open its session and greet it (C{probe}: it
        may be a health check, see L{ChatConfig.probe_grace}).
        """
        session = Session(self, connection, peer)
        unwelcome = self.unwelcome(peer.host)
        if unwelcome is not None:
            session.refuse(unwelcome)
            return session
        busy = self._busy(peer)
        if busy is not None:
            session.refuse(busy, later=True)
            return session
        self.sessions.add(session)
        self.stats.opened[frontend_of(connection)] += 1
        session.greet(probe)
        return session

    def unwelcome(self, host: str) -> str | None:
        """
        Why an address may not connect at all (--allow/--deny, bans), or None:
        cheap, so a TLS listener asks it before spending a handshake.
        """
        if not self.access.permits(host):
            self.stats.refused["not_allowed"] += 1
            return "your address is not allowed on this server"
        banned = self.directory.banned(host)
        if banned is not None:
            self.stats.refused["banned"] += 1
        return banned

    def _busy(self, peer: Peer) -> str | None:
        """Why a welcome client may not come in now (full, too many from its address), or None."""
        if len(self.sessions) >= self.max_clients:
            self.stats.refused["full"] += 1
            return f"server full ({self.max_clients} clients); try again later"
        refusal = self.admission.admit(peer.host, self.clock.seconds())
        if refusal is None:
            return None
        reason, text = refusal
        self.stats.refused[reason] += 1
        return text

    def session_ended(self, session: Session) -> None:
        """A session is over; forget it (if it was ever admitted)."""
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self.admission.release(session.peer.host)
        stats = self.stats
        stats.closed[frontend_of(session.connection)] += 1
        stats.ended[session.cause or "lost"] += 1  # (set by Session.ended)
        if not self.sessions:
            waiters, self._empty_waiters = self._empty_waiters, []
            for waiter in waiters:
                if not waiter.called:  # a waiter may have been cancelled
                    waiter.callback(None)

    def when_empty(self) -> Deferred[None]:
        """A Deferred that fires once no client is connected."""
        if not self.sessions:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._empty_waiters.append(waiter)
        return waiter

    @property
    def client_count(self) -> int:
        """How many clients are connected."""
        return len(self.sessions)

    def shut_down(self, notice: str = "server shutting down") -> None:
        """Tell every client the server is going away, and close them all."""
        for session in list(self.sessions):
            session.shut_down(notice)

    def changes(self, config: ChatConfig) -> list[str]:
        """
        What L{reconfigure} with C{config} would change: a phrase per
        setting, for the log (none: nothing would).

        @raise ValueError: naming the settings that differ but cannot change
            while the server runs (see L{LIVE_SETTINGS
            <twisted_tcpchat.core.config.LIVE_SETTINGS>}).
        """
        restart = restart_needed(self.config, config)
        if restart:
            raise ValueError(
                f"{', '.join(restart)}: cannot change while the server runs (a restart can)"
            )
        changes = config_changes(self.config, config)
        access = AccessList(parse_networks(config.allow), parse_networks(config.deny))
        staying = [
            session
            for session in self.sessions
            if self.access.permits(session.peer.host) and not access.permits(session.peer.host)
        ]
        if staying:
            clients = "1 client" if len(staying) == 1 else f"{len(staying)} clients"
            changes.append(
                f"{clients} connected from addresses no longer allowed in stay "
                "(/kick or /ban removes them)"
            )
        return changes

    def reconfigure(self, config: ChatConfig) -> None:
        """
        Take on new settings without dropping anyone (a reload).

        Who may come in (allow, deny, exempt, per-address, connect-rate,
        max-clients) is decided by the new settings from the next connection
        on; nobody already in is sent away, even from a network no longer
        allowed (an operator's /kick or /ban does that, with a reason).
        Every other setting is per connection: a connection keeps the
        settings it started with (its L{Session.config}: greeting, exit
        word, flood control, line and queue limits, idle timeout; a TCP or
        TLS connection's framing, keepalive and handshake timeout too), and
        the connections that start after the reload get the new ones
        (WebSockets too: their message size limit and send-queue cap).

        @raise ValueError: as L{changes} does, before anything changes.
        """
        self.changes(config)  # (refuses what needs a restart)
        old, self.config = self.config, config
        if config.max_clients != old.max_clients:
            self.max_clients = config.max_clients or clients_for_open_files(
                resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            )
        self.admission.reconfigure(
            config.per_address,
            config.connect_rate,
            parse_networks(config.exempt),
            (session.peer.host for session in self.sessions),
        )
        self.access = AccessList(parse_networks(config.allow), parse_networks(config.deny))
