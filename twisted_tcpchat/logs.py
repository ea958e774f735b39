"""
tcpchat's logger: Twisted's, except that its events can be held back for
the rest of a reactor turn and written, in order, once that turn's lines
have gone out to the clients.

Writing the log is the largest single cost of relaying a read (formatting a
line per chat line, then the file write); done before the sends, it sat
between every message and its delivery.  The L{TurnFlusher} holds the log
from the first read or write of a turn until its sends are done, so a line
reaches the room first and the log a few microseconds later.  Nothing is
dropped or reordered: every tcpchat event of the turn waits in the same
queue (Twisted's own events, such as an unhandled error's traceback, are
not held).  Each event carries the time it was written.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel


class _Held:
    """The events waiting for the end of the turn, and how many holds are on."""

    __slots__ = ("events", "holds")

    def __init__(self) -> None:
        self.holds = 0
        self.events: list[tuple[Logger, LogLevel, str | None, dict[str, Any]]] = []


_held = _Held()


class LazyText:
    """
    A field whose text is made only when its event is written: after the
    turn's sends when the log is held, at once otherwise.  Every observer
    then gets that text as a plain C{str} (a JSON log keeps it too).
    """

    __slots__ = ()


def _made(fields: dict[str, Any]) -> dict[str, Any]:
    """
    C{fields}, with each L{LazyText} made into its text - or, should making
    it fail, a note saying so: one bad field must not cost the turn's other
    events, which are written after it.
    """
    for key, value in fields.items():
        if isinstance(value, LazyText):
            try:
                fields[key] = str(value)
            except Exception as e:
                fields[key] = f"(log text lost: {type(e).__name__}: {e})"
    return fields


class TurnLog(Logger):
    """A L{Logger} whose events wait while L{hold} is on (see the module)."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: Any) -> None:
        if _held.holds:
            _held.events.append((self, level, format, kwargs))
        else:
            super().emit(level, format, **_made(kwargs))


def hold() -> None:
    """Hold tcpchat's log events until the matching L{release}."""
    _held.holds += 1


def release() -> None:
    """End one L{hold}; when none is left, write what waited, in order."""
    _held.holds = max(0, _held.holds - 1)
    if _held.holds or not _held.events:
        return
    events, _held.events = _held.events, []
    for logger, level, format, kwargs in events:
        Logger.emit(logger, level, format, **_made(kwargs))


def json_stdout() -> Any:
    """
    A log observer that writes each event as one JSON record on standard
    output, its data as separate fields, for C{twistd --logger
    twisted_tcpchat.logs.json_stdout} (under systemd, the journal gets
    them; C{twist --log-format json} does the same without this).
    """
    import sys

    from twisted.logger import jsonFileLogObserver

    return jsonFileLogObserver(sys.stdout)
