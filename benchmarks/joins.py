"""
The C{joins} scenario (issue 14): what joining a room and leaving it costs
as the room grows.  In this process, with no sockets and no server: the
in-memory directory (L{twisted_tcpchat.rooms.memory.Directory} on a
L{Clock}, C{--history 0}) and L{RecordingParticipant}s.

For each size N, N participants enter and join the room C{big}; then one
more, the newcomer, joins C{big} and parts (back to the default room), many
rounds, each join+part timed on its own.  The sizes take turns round by
round, so that a machine that speeds up or slows down moves them alike.

With quiet presence (C{--quiet-presence}, as the benchmark's server runs)
a join and a part should cost the same whatever N: the issue's goal, no
per-member scan.  With presence announced, each join and part is one event
to every member, so the cost grows with N by design: that is delivery.

The driver (C{python -m benchmarks joins}) pins this process, waits for a
quiet machine, and prints L{format_joins}.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twisted_tcpchat.rooms.memory import Directory
    from twisted_tcpchat.testing import RecordingParticipant

#: The room sizes measured.
SIZES = (5, 50, 500, 5000)

#: The room joined and left.
ROOM = "big"

#: With presence, the members' recorded events are dropped every so many
#: rounds (outside the clock), so that they do not pile up.
CLEAR_EVERY = 16


@dataclass(frozen=True)
class Plan:
    """
    How much to measure.

    @ivar rounds: timed join+part rounds per size, quiet presence.
    @ivar presence_rounds: the same, presence announced (a round costs up
        to N events each way).
    @ivar warmup: untimed rounds per size first.
    """

    sizes: tuple[int, ...] = SIZES
    rounds: int = 10000
    presence_rounds: int = 500
    warmup: int = 20


def plan(quick: bool) -> Plan:
    """The full plan, or a small one with C{quick}."""
    return Plan(rounds=1000, presence_rounds=50, warmup=5) if quick else Plan()


@dataclass(frozen=True)
class Size:
    """The figures of one room size: microseconds per join+part."""

    members: int
    median_us: float
    p90_us: float


@dataclass
class Series:
    """One table: every size, with presence quiet or announced."""

    quiet_presence: bool
    rounds: int
    sizes: list[Size] = field(default_factory=list)

    def ratio(self) -> float:
        """The largest room's median over the smallest's."""
        return self.sizes[-1].median_us / self.sizes[0].median_us


def _room(
    members: int, quiet_presence: bool
) -> tuple[Directory, list[RecordingParticipant], RecordingParticipant]:
    """A directory whose room C{big} holds C{members}, and a newcomer in the default room."""
    from twisted.internet.task import Clock

    from twisted_tcpchat.rooms.memory import Directory
    from twisted_tcpchat.testing import RecordingParticipant

    directory = Directory(Clock(), history=0, quiet_presence=quiet_presence)
    seated: list[RecordingParticipant] = []
    for i in range(members):
        participant = RecordingParticipant()
        directory.enter(participant)
        directory.join(participant, ROOM)
        seated.append(participant)
        if not quiet_presence and i % 256 == 255:
            _clear(seated)  # (with presence, filling the room announces N*N/2 events)
    _clear(seated)
    newcomer = RecordingParticipant()
    directory.enter(newcomer)
    newcomer.take()
    return directory, seated, newcomer


def _clear(participants: Sequence[RecordingParticipant]) -> None:
    for participant in participants:
        participant.events.clear()


def time_rounds(
    sizes: Sequence[int], rounds: int, quiet_presence: bool, warmup: int = 0
) -> dict[int, list[float]]:
    """
    Microseconds of each timed join+part, per size; the sizes take turns.
    The garbage collector is off while the clock runs (as in C{timeit}).
    """
    rooms = {n: _room(n, quiet_presence) for n in sizes}
    times: dict[int, list[float]] = {n: [] for n in sizes}
    clock = time.perf_counter_ns
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for number in range(warmup + rounds):
            for n, (directory, seated, newcomer) in rooms.items():
                start = clock()
                directory.join(newcomer, ROOM)
                directory.part(newcomer)
                took = clock() - start
                if number >= warmup:
                    times[n].append(took / 1000)
                newcomer.events.clear()
                if not quiet_presence and number % CLEAR_EVERY == CLEAR_EVERY - 1:
                    _clear(seated)
        for n, (_, _, newcomer) in rooms.items():
            if newcomer.room != rooms[n][0].default_room.name:
                raise RuntimeError(f"the newcomer did not get back to the default room (N={n})")
    finally:
        if collecting:
            gc.enable()
    return times


def series(sizes: Sequence[int], rounds: int, quiet_presence: bool, warmup: int = 0) -> Series:
    """Time the rounds of every size; keep each size's median and 90th percentile."""
    times = time_rounds(sizes, rounds, quiet_presence, warmup)
    result = Series(quiet_presence, rounds)
    for n in sizes:
        each = sorted(times[n])
        p90 = each[min(len(each) - 1, int(0.9 * len(each)))]
        result.sizes.append(Size(n, statistics.median(each), p90))
    return result


def measure(chosen: Plan) -> tuple[Series, Series]:
    """
    Quiet presence, then presence announced.  For the benchmark's own
    process: Twisted's log is begun with no observer first, so the
    directory's log events are made and dropped.  Otherwise Twisted's
    start-up buffer keeps the first 65,536 of them, and while it fills, a
    join+part took 29 us instead of 17 (a median that moved with the
    number of rounds).
    """
    from twisted.logger import globalLogBeginner

    globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)
    quiet = series(chosen.sizes, chosen.rounds, True, chosen.warmup)
    loud = series(chosen.sizes, chosen.presence_rounds, False, chosen.warmup)
    return quiet, loud


def format_joins(quiet: Series, loud: Series) -> str:
    """Both tables, with the ratio of the largest room to the smallest."""
    smallest, largest = quiet.sizes[0].members, quiet.sizes[-1].members
    grows = largest / smallest
    lines = [
        f"== joins: a newcomer joins #{ROOM} of N members and parts (back to the default "
        "room), in this process (in-memory directory, --history 0, no sockets); "
        "each join+part timed, the sizes taking turns",
        f"-- quiet presence (as the benchmark's server runs): median of {quiet.rounds} rounds",
        *_table(quiet, per_member=False),
        f"   ratio {largest}/{smallest}: {quiet.ratio():.2f} (goal: the same cost in a room of "
        f"{largest:,} as of {smallest}, no per-member scan; the room is {grows:g} times larger)",
        f"-- presence announced: median of {loud.rounds} rounds",
        *_table(loud, per_member=True),
        f"   ratio {largest}/{smallest}: {loud.ratio():.2f} (grows with N by design: each join "
        "and part is one event delivered to every member)",
    ]
    return "\n".join(lines)


def _table(result: Series, per_member: bool) -> list[str]:
    base = result.sizes[0]
    header = ["members", "join+part us", "p90 us", f"this/N={base.members}"]
    if per_member:
        header.append("us per added member (2 events)")
    body = []
    for size in result.sizes:
        cells = [
            f"{size.members}",
            f"{size.median_us:.2f}",
            f"{size.p90_us:.2f}",
            f"{size.median_us / base.median_us:.2f}",
        ]
        if per_member:
            added = size.members - base.members
            each = (size.median_us - base.median_us) / added if added else None
            cells.append("-" if each is None else f"{each:.3f}")
        body.append(cells)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return [
        "   " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]


def as_json(chosen: Plan, quiet: Series, loud: Series) -> dict[str, object]:
    """The figures, for C{--json}."""

    def figures(result: Series) -> dict[str, object]:
        return {
            "rounds": result.rounds,
            "sizes": {
                str(s.members): {"median_us": s.median_us, "p90_us": s.p90_us} for s in result.sizes
            },
            "ratio": result.ratio(),
        }

    return {
        "scenario": {"kind": "joins", "sizes": list(chosen.sizes), "warmup": chosen.warmup},
        "quiet_presence": figures(quiet),
        "presence": figures(loud),
    }
