"""
systemd's readiness protocol (C{sd_notify}): one datagram to the socket
named by C{NOTIFY_SOCKET}, with no library needed.  A service of
C{Type=notify} is "started" once the server says C{READY=1}, that is once
it listens; C{STOPPING=1} tells systemd it is on its way out; a reload
is C{RELOADING=1} (L{reloading}) and then C{READY=1} again.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from twisted.logger import Logger

log = Logger(namespace="tcpchat")

#: The environment variable systemd sets for a Type=notify service.
NOTIFY_SOCKET = "NOTIFY_SOCKET"


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """
    Tell systemd C{message} (C{READY=1}, C{STOPPING=1}, C{STATUS=...}
    lines), if it asked to be told: whether it was sent.  A socket that
    cannot be reached is one log line, never an error.
    """
    path = environ.get(NOTIFY_SOCKET)
    if not path:
        return False
    if path.startswith("@"):  # (an abstract socket)
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message.encode("utf-8"))
    except OSError as e:
        log.warn(
            "tcpchat: cannot tell systemd {message!r} at {path}: {why}",
            message=message.split("\n")[0],
            path=environ.get(NOTIFY_SOCKET),
            why=e.strerror or str(e),
        )
        return False
    return True


def reloading() -> str:
    """
    The message that starts a reload: C{RELOADING=1} with the time on the
    monotonic clock, in microseconds, which systemd 253 and newer want with
    it (C{MONOTONIC_USEC}; older ones ignore it).  C{READY=1} ends it.
    """
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={now}"
