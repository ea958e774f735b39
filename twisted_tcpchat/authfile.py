"""
C{--auth file:PATH}: logins from a file of C{name:password} lines, read at
the start and again only at a reload (SIGHUP).

Twisted's own C{file:} checker (C{FilePasswordDB}) reads the file at every
login: a file being rewritten, or broken, applies at once, and a line it
cannot read is skipped without a word.  This one keeps what it read last
(a snapshot), and refuses a file with a bad line, naming the line, so that
a reload with a broken file keeps the users as they were.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernameHashedPassword, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from twisted_tcpchat.text.escaping import escape_controls

#: Names and passwords, as the credentials carry them (bytes).
Users = dict[bytes, bytes]


def read_users(path: str) -> Users:
    """
    The users of the file at C{path}: a line is C{name:password} (as
    Twisted's C{FilePasswordDB} reads it: what follows a second colon is
    not part of the password; trailing spaces are dropped); blank lines and
    lines starting with C{#} are skipped; the first line of a name counts.

    @raise ValueError: in one line (without the path), for a file that
        cannot be read, or the first line that has no name or no password.
    """
    try:
        with open(path, "rb") as file:
            lines = file.read().splitlines()
    except OSError as e:
        raise ValueError(f"cannot read it: {e.strerror or e}") from None
    users: Users = {}
    for number, line in enumerate(lines, 1):
        line = line.rstrip()
        if not line or line.startswith(b"#"):
            continue
        parts = line.split(b":")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(f"line {number} is not name:password")
        users.setdefault(parts[0], parts[1])
    return users


def users_change(old: Users, new: Users) -> str | None:
    """
    What replacing the users C{old} by C{new} changes, as counts and names
    (never passwords): C{1 added (carol), 1 removed (bob), 1 password
    changed (alice)}; None when nothing does.
    """
    parts = []
    for count_of, names in (
        ("added", [name for name in new if name not in old]),
        ("removed", [name for name in old if name not in new]),
        ("password changed", [name for name in new if name in old and old[name] != new[name]]),
    ):
        if names:
            shown = ", ".join(escape_controls(name.decode("utf-8", "replace")) for name in names)
            parts.append(f"{len(names)} {count_of} ({shown})")
    return ", ".join(parts) or None


@implementer(ICredentialsChecker)
class AuthFile:
    """
    Checks names and passwords against the users of a file, as read at the
    start or at the last L{reload <twisted_tcpchat.service.ChatService.reload>}.

    @ivar path: the file.
    @ivar users: the names and passwords in force.
    """

    credentialInterfaces = (IUsernamePassword, IUsernameHashedPassword)

    def __init__(self, path: str) -> None:
        """
        @raise ValueError: as L{read_users} does.
        """
        self.path = path
        self.users = read_users(path)

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """ICredentialsChecker API: the name, if its password is right."""
        name = credentials.username
        password = self.users.get(name)
        if password is not None and credentials.checkPassword(password):
            return succeed(name)
        return fail(UnauthorizedLogin())
