"""
What the server has done, counted where it happens, for the metrics.

Plain integers, bumped in the paths every line takes (an addition each),
and read only when someone asks (L{twisted_tcpchat.frontends.metrics}
turns them into Prometheus metrics at scrape time): nothing here knows of
Prometheus, and nothing costs more than the addition when nobody asks.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

#: How a session ended, by the reason its ending gave (L{Session.end}):
#: a short, fixed set, so that a metric labelled by it stays small.
CUT_OFF = {
    "excess flood": "flood",
    "line too long": "unterminated",
    "not a chat client": "not_chat",
    "timed out": "idle",
    "sent a binary frame": "binary",
    "banned": "banned",
}


class Backlogged(Protocol):
    """A connection that may hold bytes its client has not read yet."""

    def queued_bytes(self) -> int:
        """The bytes waiting to be sent to the client (0: none, or gone)."""


class Timings:
    """
    A histogram of durations in seconds with fixed bucket bounds: a count
    per bucket, the total count and sum (what a Prometheus histogram
    holds), kept in plain numbers.
    """

    __slots__ = ("bounds", "buckets", "count", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.buckets = [0] * (len(self.bounds) + 1)  # (the last: above every bound)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """The buckets as Prometheus has them: (upper bound, count at or below it), +Inf last."""
        rows: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.buckets, strict=True):
            running += count
            rows.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return rows


#: Bounds for times that should be short: a reactor turn, a Redis round trip.
SHORT_TIMES = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Stats:
    """
    The server's counters (one set per L{ChatServer}).

    @ivar opened: sessions admitted, by front end (C{tcp}, C{tls},
        C{unix}, C{websocket}).
    @ivar closed: sessions over, by front end (open = opened - closed).
    @ivar refused: connections refused, by reason (C{not_allowed},
        C{banned}, C{full}, C{per_address}, C{connect_rate}, and at the
        web port C{origin}, C{body}).
    @ivar ended: sessions over, by how: C{quit}, C{closed} (by the client),
        C{lost} (the connection), C{shutdown}, C{removed} (kicked or
        banned), C{redis_lost}, C{not_reading}, and those L{CUT_OFF} names.
    @ivar dropped: lines a limit dropped, by limit: C{max_line},
        C{not_text}, C{bad_request} (a WebSocket's).
    @ivar delayed: lines flood control held back (delivered later).
    @ivar lines_in: lines received from clients; C{bytes_in} their bytes.
    @ivar messages: chat messages said (the lines of one read are one).
    @ivar deliveries: events sent to clients (a message of several lines is
        one); C{bytes_out} their bytes.  (The lines in them are not counted:
        searching every client's bytes for line ends slowed relaying by a
        tenth, docs/performance.md.)
    @ivar backlogged: connections that had bytes left unsent (checked and
        forgotten at scrape time once drained).
    """

    __slots__ = (
        "backlogged",
        "bytes_in",
        "bytes_out",
        "closed",
        "delayed",
        "deliveries",
        "dropped",
        "ended",
        "lines_in",
        "messages",
        "opened",
        "refused",
    )

    def __init__(self) -> None:
        self.opened: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.delayed = 0
        self.lines_in = 0
        self.bytes_in = 0
        self.messages = 0
        self.deliveries = 0
        self.bytes_out = 0
        self.backlogged: set[Backlogged] = set()

    def sent(self, data: bytes, events: int) -> None:
        """C{events} went out to a client as C{data}."""
        self.deliveries += events
        self.bytes_out += len(data)

    def queue_sizes(self) -> list[int]:
        """
        The bytes waiting for each connection that has any (those drained or
        gone are forgotten here).
        """
        sizes = []
        for connection in list(self.backlogged):
            size = connection.queued_bytes()
            if size:
                sizes.append(size)
            else:
                self.backlogged.discard(connection)
        return sizes
