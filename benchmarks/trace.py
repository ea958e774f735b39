"""
Where our server's time goes, read by read (C{--servers traced}): twistd
with tcpchat, as the benchmark runs it, with clocks on the reactor's
C{epoll} poll, on each connection's C{dataReceived}, and on the turn's
flush (its sends, then the log) - the hooks are put on from outside, by
this tool, and add a few function calls per read.  At reactor shutdown it
writes the median time of each stage of a reactor turn that read
something, as JSON, to the report file.

    python -m benchmarks.trace REPORT TWISTD-ARGUMENTS...

(from the repository root, or with it on C{PYTHONPATH}: the benchmark
starts it so).  The server's parts it wraps are named in L{HOOKS}; when
tcpchat moves one, the traced server stops at once and says which.

In C{fanout} the window makes a closed loop, so a turn is also the cycle
the deliveries/s come from: poll (waiting for the sender's next lines), the
reactor's dispatch and C{recv}, our reading of them (framing, checks, the
room), the end of the turn, the sends, the log, and back to poll.  Only the
stages up to the last send delay the next lines: what comes after overlaps
the generator's own turn-around, which shows as the wait in poll.
"""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: The stages of a turn, as (name, start stamp, end stamp); C{next_poll} is
#: the start of the following turn's poll.
STAGES = (
    ("wait in poll", "poll", "polled"),
    ("dispatch and recv", "polled", "read"),
    ("reading", "read", "read_done"),
    ("to the flush", "read_done", "flush"),
    ("sends", "flush", "sent"),
    ("log", "sent", "logged"),
    ("back to poll", "logged", "next_poll"),
    ("read to last send", "polled", "sent"),
    ("turn", "poll", "next_poll"),
)

#: Turns from the start that are left out (connecting, warming up).
WARM_UP = 0.2


def breakdown(turns: Sequence[dict[str, float]]) -> dict[str, Any]:
    """
    The median of each stage over C{turns} (each a dict of stamps, in
    seconds), in microseconds; turns that lack a stage's stamps do not
    count for it.  The first fifth of the turns is left out.
    """
    kept = turns[int(len(turns) * WARM_UP) :]
    medians: dict[str, float] = {}
    for name, start, end in STAGES:
        spans = [t[end] - t[start] for t in kept if start in t and end in t]
        if spans:
            medians[name] = round(statistics.median(spans) * 1e6, 1)
    reads = [t["reads"] for t in kept if "reads" in t]
    return {
        "turns": len(kept),
        "reads per turn": statistics.median(reads) if reads else 0,
        "median us": medians,
    }


class Tracer:
    """
    The stamps of the current turn, and the turns that read something.
    (Bounded: past C{limit} turns, no more are kept.)
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter, limit: int = 1 << 20):
        self.clock = clock
        self.limit = limit
        self.turns: list[dict[str, float]] = []
        self._turn: dict[str, float] = {}

    def stamp(self, name: str) -> None:
        self._turn[name] = self.clock()

    def first(self, name: str) -> None:
        """Stamp C{name} unless this turn has it already."""
        if name not in self._turn:
            self._turn[name] = self.clock()

    def read(self) -> None:
        turn = self._turn
        turn["reads"] = turn.get("reads", 0) + 1
        if "read" not in turn:
            turn["read"] = self.clock()

    def poll(self) -> None:
        """The reactor polls again: the turn before it is over."""
        now = self.clock()
        turn = self._turn
        if "read" in turn and len(self.turns) < self.limit:
            turn["next_poll"] = now
            self.turns.append(turn)
        self._turn = {"poll": now}

    def report(self, path: Path) -> None:
        path.write_text(json.dumps(breakdown(self.turns), indent=1))


class _Poller:
    """An epoll object that stamps the start and end of each poll."""

    def __init__(self, real: Any, tracer: Tracer) -> None:
        self._real = real
        self._tracer = tracer

    def poll(self, *args: Any) -> Any:
        self._tracer.poll()
        try:
            return self._real.poll(*args)
        finally:
            self._tracer.stamp("polled")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


#: The server's parts the clocks go on, as (module, attribute path): each
#: connection's reading, the end-of-turn flush (its sends, then the log's
#: release), and the release of the log held during the turn.
HOOKS = {
    "read": ("twisted_tcpchat.frontends.tcp", "ChatProtocol.dataReceived"),
    "flush": ("twisted_tcpchat.frontends.tcp", "TurnFlusher.flush"),
    "release": ("twisted_tcpchat.logs", "release"),
}


def _find(module: str, path: str) -> tuple[Any, str, Any]:
    """The owner of C{module.path}, the attribute's name and its value."""
    try:
        owner: Any = importlib.import_module(module)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        return owner, name, getattr(owner, name)
    except (ImportError, AttributeError) as e:
        raise SystemExit(
            f"benchmarks.trace: cannot hook {module}.{path} ({type(e).__name__}: {e}); "
            "if tcpchat moved it, update HOOKS in benchmarks/trace.py"
        ) from None


def install(tracer: Tracer, report: Path) -> None:
    """
    Put the clocks on tcpchat's reading, flush and log (L{HOOKS}), and on
    the reactor's poller once the reactor starts running, which is also
    when the report is set to be written, before shutdown.
    """
    from twisted.internet.base import ReactorBase

    reader, read_name, received = _find(*HOOKS["read"])
    flusher, flush_name, flush = _find(*HOOKS["flush"])
    logs, release_name, release = _find(*HOOKS["release"])
    start_running = ReactorBase.startRunning

    def dataReceived(self: Any, data: bytes) -> None:
        tracer.read()
        try:
            received(self, data)
        finally:
            tracer.stamp("read_done")

    def traced_flush(self: Any) -> None:
        tracer.first("flush")
        flush(self)

    def traced_release() -> None:
        # (Called by the flush once its sends are done.)
        tracer.first("sent")
        release()
        tracer.stamp("logged")

    def traced_start(self: ReactorBase, *args: Any, **kwargs: Any) -> None:
        poller = getattr(self, "_poller", None)
        if poller is not None and not isinstance(poller, _Poller):
            self._poller = _Poller(poller, tracer)  # type: ignore[attr-defined]
            self.addSystemEventTrigger("before", "shutdown", tracer.report, report)
        start_running(self, *args, **kwargs)

    setattr(reader, read_name, dataReceived)
    setattr(flusher, flush_name, traced_flush)
    setattr(logs, release_name, traced_release)
    ReactorBase.startRunning = traced_start  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        sys.exit("usage: python -m benchmarks.trace REPORT TWISTD-ARGUMENTS...")
    install(Tracer(), Path(args[0]))
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *args[1:]]
    run()


if __name__ == "__main__":
    main()
