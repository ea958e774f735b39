"""
Logins through twisted.cred: C{--auth memory:alice:secret}, C{--auth
file:/etc/tcpchat.passwd} or any other checker Twisted offers for names and
passwords.  A logged-in user's chat name is its login name.  Failed logins
are throttled per address; passwords never reach a log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.cred.checkers import ICredentialsChecker, InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from twisted_tcpchat.core.commands import EVENT_FORMATS
from twisted_tcpchat.core.events import Error, Event, Identity, Notice
from twisted_tcpchat.core.limits import network_of
from twisted_tcpchat.core.names import RESERVED_NAMES, name_problem
from twisted_tcpchat.logs import TurnLog
from twisted_tcpchat.text.escaping import escape_controls

if TYPE_CHECKING:
    from twisted_tcpchat.core.server import ChatServer

log = TurnLog(namespace="tcpchat")


class IChatUser(Interface):
    """A logged-in chat user; its avatar is its name."""


@implementer(IRealm)
class ChatRealm:
    """Every authenticated login is a chat user named by its login."""

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, str, Any]:
        """IRealm API: checkers give the login name as bytes."""
        if not isinstance(avatarId, bytes):
            raise UnauthorizedLogin("anonymous logins are not offered")
        return IChatUser, avatarId.decode("utf-8", "replace"), lambda: None


def _bytes_for_memory_checker(checker: ICredentialsChecker) -> None:
    """
    Twisted 26.10's C{--auth memory:NAME:PASSWORD} stores names and passwords
    as str, while credentials carry bytes, so no login could ever match:
    store them as bytes, as the checker's own documentation says they are.
    """
    if isinstance(checker, InMemoryUsernamePasswordDatabaseDontUse):
        checker.users = {
            (k.encode("utf-8") if isinstance(k, str) else k): (
                v.encode("utf-8") if isinstance(v, str) else v
            )
            for k, v in checker.users.items()
        }


class LoginError(Exception):
    """Wrong name or password."""


class Logins:
    """
    The server's logins: a portal over the configured checkers, and the
    throttle on failures - after the Nth failure from an address (IPv6: its
    /64), that address must wait 2**(N-1) seconds (at most
    L{MAX_WAIT}) before it may try again; a success forgets its failures.
    """

    MAX_WAIT = 60.0
    #: Failures older than this are forgotten.
    MEMORY = 600.0

    def __init__(self, checkers: Iterable[ICredentialsChecker]) -> None:
        checkers = list(checkers)
        for checker in checkers:
            _bytes_for_memory_checker(checker)
        #: The checkers, as given (a reload finds its auth files here).
        self.checkers = tuple(checkers)
        self.portal = Portal(ChatRealm(), checkers)
        self._failures: dict[str, tuple[int, float]] = {}

    def wait(self, host: str, now: float) -> float:
        """Seconds before C{host} may try to log in again (0: now)."""
        key = self._key(host)
        count, at = self._failures.get(key, (0, 0.0))
        if not count:
            return 0.0
        if now - at > self.MEMORY:
            del self._failures[key]
            return 0.0
        return max(0.0, at + min(self.MAX_WAIT, 2.0 ** min(count - 1, 16)) - now)

    def attempt(self, host: str, name: str, password: str, now: float) -> Deferred[str]:
        """
        Check a name and password: a Deferred that fires with the user's name,
        or fails with L{LoginError}.
        """
        credentials = UsernamePassword(name.encode("utf-8"), password.encode("utf-8"))
        result: Deferred[Any] = self.portal.login(credentials, None, IChatUser)
        key = self._key(host)

        def succeeded(avatar: tuple[Any, str, Any]) -> str:
            self._failures.pop(key, None)
            return avatar[1]

        def failed(failure: Any) -> str:
            failure.trap(UnauthorizedLogin)
            count, _ = self._failures.get(key, (0, 0.0))
            self._failures[key] = (count + 1, now)
            if len(self._failures) > 1024:  # forget addresses quiet for a while
                for old in [k for k, (_, at) in self._failures.items() if now - at > self.MEMORY]:
                    del self._failures[old]
            raise LoginError()

        return result.addCallbacks(succeeded, failed)

    def _key(self, host: str) -> str:
        network = network_of(host)
        return str(network) if network is not None else host


def login_words(text: str) -> list[str] | None:
    """The words of a /login line (any whitespace between them), or None."""
    words = text.split(None, 2)
    if words and words[0].lower() == "/login":
        return words
    return None


def redact(text: str) -> str:
    """A line as it may be logged: the password of a /login is never shown."""
    words = login_words(text)
    if words is None:
        return text
    return " ".join(["/login", *words[1:2], "********"])


class Gated(Protocol):
    """A session waiting at the login, as its L{LoginGate} sees it."""

    peer: Any
    name: str

    @property
    def is_open(self) -> bool: ...

    def receive(self, event: Event) -> None: ...

    def end(self, reason: str, error: str, what: str) -> None: ...

    def enter(self, name: str, operator: bool) -> None: ...

    def entered(self) -> None: ...

    def quit(self, reason: str, what: str) -> None: ...

    def events_as(self, kind: str) -> bool: ...


class LoginGate:
    """
    A session's way in on a server with logins: C{/login NAME PASSWORD}
    (failures throttled per address), C{/help}, C{/events} and C{/quit}, nothing else,
    until the directory has let it in under its login name.
    """

    __slots__ = ("_logins", "_pending", "_server", "_session")

    def __init__(self, server: ChatServer, logins: Logins, session: Gated) -> None:
        self._server = server
        self._logins = logins
        self._session = session
        self._pending = False

    def line(self, text: str) -> None:
        """A line typed before logging in."""
        session = self._session
        words = login_words(text)
        command = text.split(None, 1)[0].lower() if text.strip() else ""
        if words is not None:
            name, password = [*words, "", ""][1:3]
            if not name or not password:
                session.receive(Error("usage: /login NAME PASSWORD"))
            else:
                self._attempt(name, password)
        elif command == "/quit":
            words = text.split(None, 1)
            session.quit(words[1].strip() if len(words) > 1 else "quit", "quit before logging in")
        elif command == "/events":
            kind = " ".join(text.split()[1:]).lower()
            if kind in EVENT_FORMATS and session.events_as(kind):
                session.receive(Notice(f"events as {kind}"))
            else:
                session.receive(Error(f"usage: /events {'|'.join(EVENT_FORMATS)}"))
        elif command == "/help":
            session.receive(
                Notice("log in first: /login NAME PASSWORD; /quit leaves; /events json|text")
            )
        else:
            session.receive(Error("log in first: /login NAME PASSWORD"))

    def heard(self, event: Event) -> None:
        """The session hears C{event}: its welcome means it is in."""
        if isinstance(event, Identity) and event.change == Identity.WELCOME:
            self._session.entered()

    def _attempt(self, name: str, password: str) -> None:
        session = self._session
        if self._pending:
            session.receive(Error("wait for the answer to your last /login"))
            return
        now = self._server.clock.seconds()
        wait = self._logins.wait(session.peer.host, now)
        if wait > 0:
            session.receive(
                Error(f"too many failed logins from your address; try again in {math.ceil(wait)} s")
            )
            return
        self._pending = True
        self._logins.attempt(session.peer.host, name, password, now).addCallbacks(
            self._succeeded, self._failed, errbackArgs=(name,)
        ).addErrback(self._broke)

    def _succeeded(self, name: str) -> None:
        self._pending = False
        session = self._session
        if not session.is_open:
            return
        problem = name_problem(name)
        if problem is not None:
            session.receive(Error(f"your login cannot be a chat name ({problem})"))
            return
        reserved = {*RESERVED_NAMES, self._server.config.console_name}
        if name.lower() in {r.lower() for r in reserved}:
            session.receive(Error(f"your login cannot be a chat name ({name!r} is reserved)"))
            return
        banned = self._server.directory.banned(session.peer.host)
        if banned is not None:  # banned while this connection waited at the login
            session.end("banned", banned, f"logged in as {name} while banned; disconnected")
            return
        operators = {op.lower() for op in self._server.config.operators}
        session.enter(name, operator=name.lower() in operators)

    def _failed(self, failure: Failure, name: str) -> None:
        failure.trap(LoginError)
        self._pending = False
        session = self._session
        log.info(
            "{peer} failed to log in as {name}",
            peer=str(session.peer),
            name=escape_controls(name),
            address=session.peer.host,
        )
        if session.is_open:
            session.receive(Error("wrong name or password"))

    def _broke(self, failure: Failure) -> None:
        self._pending = False
        session = self._session
        log.failure("login check failed for {peer}", failure, peer=str(session.peer))
        if session.is_open:
            session.receive(Error("internal error checking the login; try again"))
