"""
Flood control by delay: a client that is not exempt may send a burst of
lines at once, then a steady rate.  The excess waits its turn - and while
it waits the connection stops reading, so TCP pushes back on the client -
but is never dropped; how many may wait is the session's call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from twisted_tcpchat.core.limits import TokenBucket

if TYPE_CHECKING:
    from twisted_tcpchat.core.session import Line


class Paced(Protocol):
    """A session whose lines are paced, as its L{FloodPacer} sees it."""

    def lines_due(self, lines: Sequence[Line], sizes: Sequence[int]) -> None:
        """Handle lines whose turn has come."""

    def pause_reading(self) -> None:
        """Stop reading from the client."""

    def resume_reading(self) -> None:
        """Read from the client again."""

    def drained(self) -> None:
        """Nothing waits any more."""


class FloodPacer:
    """One client's lines, paced by a L{TokenBucket}."""

    __slots__ = ("_bucket", "_call", "_clock", "_paced", "_pending")

    def __init__(self, clock: IReactorTime, bucket: TokenBucket, paced: Paced) -> None:
        self._clock = clock
        self._bucket = bucket
        self._paced = paced
        self._call: IDelayedCall | None = None
        # (Made when first needed: most clients are never paced.)
        self._pending: deque[tuple[Line, int]] | None = None

    @property
    def waiting(self) -> int:
        """How many lines wait for their turn."""
        return len(self._pending) if self._pending else 0

    def add(self, lines: Sequence[Line], sizes: Sequence[int]) -> None:
        """Lines of one read: handled as far as the bucket allows, the rest later."""
        if self._pending is None:
            self._pending = deque()
        self._pending.extend(zip(lines, sizes, strict=True))
        self._drain()

    def stop(self) -> None:
        """The session is over: forget what waits."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._pending = None

    def _drain(self) -> None:
        if self._call is not None and self._call.active():
            return  # already waiting for the next token
        self._call = None
        lines: list[Line] = []
        sizes: list[int] = []
        pending = self._pending
        while pending:
            wait = self._bucket.delay(self._clock.seconds())
            if wait > 0:
                self._give(lines, sizes)
                if self._pending is not None:  # (the session may have ended)
                    self._call = self._clock.callLater(wait, self._drain)
                    self._paced.pause_reading()
                return
            line, size = pending.popleft()
            lines.append(line)
            sizes.append(size)
        self._give(lines, sizes)
        if self._pending is not None:
            self._paced.resume_reading()
            self._paced.drained()

    def _give(self, lines: list[Line], sizes: list[int]) -> None:
        if lines:
            self._paced.lines_due(lines, sizes)
