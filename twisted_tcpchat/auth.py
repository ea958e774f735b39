"""
Logins through twisted.cred: C{--auth memory:alice:secret}, C{--auth
file:/etc/tcpchat.passwd} or any other checker Twisted offers for names and
passwords.  A logged-in user's chat name is its login name.  Failed logins
are throttled per address; passwords never reach a log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.cred.checkers import ICredentialsChecker, InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from zope.interface import Interface, implementer

from twisted_tcpchat.limits import network_of


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
