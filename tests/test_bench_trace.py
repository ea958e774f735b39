"""
The traced server (C{python -m benchmarks --servers traced}): the stage
arithmetic on a fake clock, the server parts it hooks, then a real traced
twistd under a tiny fan-out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import driver
from benchmarks.trace import HOOKS, STAGES, Tracer, _find, breakdown

#: The checkout, where C{python -m benchmarks} runs from.
ROOT = Path(__file__).resolve().parent.parent

#: Seconds a tiny benchmark run may take.
RUN_TIMEOUT = 60.0


class Ticks:
    """A clock that reads whatever the test set last."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def traced_turn(tracer: Tracer, ticks: Ticks, start: float, reads: int = 1) -> float:
    """
    One turn: poll at C{start}, the reading 10 us a read, the other stages a
    few us each; returns when the next poll comes.
    """
    ticks.now = start
    tracer.poll()
    ticks.now += 5e-6
    tracer.stamp("polled")
    for _ in range(reads):
        ticks.now += 1e-6
        tracer.read()
        ticks.now += 10e-6
        tracer.stamp("read_done")
    ticks.now += 1e-6
    tracer.first("flush")
    ticks.now += 3e-6
    tracer.first("sent")
    ticks.now += 2e-6
    tracer.stamp("logged")
    ticks.now += 1e-6
    return ticks.now


def test_a_turn_is_timed_stage_by_stage() -> None:
    """Each stage is the span between its stamps; the turn ends at the next poll."""
    ticks = Ticks()
    tracer = Tracer(clock=ticks)
    start = 0.0
    for _ in range(10):
        start = traced_turn(tracer, ticks, start)
    tracer.poll()
    assert len(tracer.turns) == 10
    medians = breakdown(tracer.turns)["median us"]
    assert medians == {
        "wait in poll": 5.0,
        "dispatch and recv": 1.0,
        "reading": 10.0,
        "to the flush": 1.0,
        "sends": 3.0,
        "log": 2.0,
        "back to poll": 1.0,
        "read to last send": 15.0,
        "turn": 23.0,
    }
    assert list(medians) == [name for name, _, _ in STAGES]


def test_turns_that_read_nothing_are_not_kept() -> None:
    """A poll that only woke for a timer or a write is no turn of the read loop."""
    ticks = Ticks()
    tracer = Tracer(clock=ticks)
    tracer.poll()
    tracer.stamp("polled")
    tracer.poll()
    assert tracer.turns == []
    traced_turn(tracer, ticks, start=1.0, reads=3)
    tracer.poll()
    (turn,) = tracer.turns
    assert turn["reads"] == 3
    # The reading starts at the first read; the flush and the sends are stamped once.
    assert turn["read"] == pytest.approx(1.0 + 6e-6)
    assert turn["read_done"] - turn["read"] == pytest.approx(32e-6)


def test_the_warm_up_is_left_out_and_memory_is_bounded() -> None:
    """The first fifth of the turns does not count, and past the limit none is kept."""
    ticks = Ticks()
    tracer = Tracer(clock=ticks, limit=10)
    for n in range(12):
        traced_turn(tracer, ticks, start=float(n), reads=1 if n >= 2 else 5)
    tracer.poll()
    assert len(tracer.turns) == 10
    report = breakdown(tracer.turns)
    assert report["turns"] == 8
    assert report["reads per turn"] == 1


def test_a_missing_stamp_leaves_only_its_stages_out() -> None:
    """A turn with no flush (it read a partial line) still times its reading."""
    turns = [{"poll": 0.0, "polled": 1e-6, "read": 2e-6, "read_done": 4e-6, "next_poll": 5e-6}]
    medians = breakdown(turns * 5)["median us"]
    assert medians["reading"] == 2.0
    assert "sends" not in medians
    assert "log" not in medians


def test_trace_figures_and_their_table(tmp_path: Path) -> None:
    """The report's stages become figures, printed in the order of a turn."""
    report = tmp_path / "traced.trace.json"
    report.write_text(json.dumps({"turns": 5, "reads per turn": 1, "median us": {"turn": 9.5}}))
    notes: list[str] = []
    figures = driver.trace_figures(report, notes)
    assert figures == {"turn: turn": 9.5, "turn: reads": 1.0}
    assert notes == []
    figures["turn: sends"] = 3.0
    row = driver.Row("traced", figures, [], [])
    assert driver.format_trace([row]) == (
        "   traced: a turn that read (1 reads), median us: sends 3.0, turn 9.5"
    )
    assert driver.trace_figures(tmp_path / "absent.json", notes) == {}
    (note,) = notes
    assert note.startswith("no trace report (FileNotFoundError"), note


def test_the_hooks_are_in_the_server() -> None:
    """
    The parts of tcpchat the tracer wraps are where it looks for them: each
    connection's C{dataReceived}, the turn's flush, and the log's release.
    """
    assert set(HOOKS) == {"read", "flush", "release"}
    for module, path in HOOKS.values():
        owner, name, value = _find(module, path)
        assert getattr(owner, name) is value
        assert callable(value), (module, path)


def test_a_hook_that_moved_is_named() -> None:
    """If tcpchat moves a hooked part, the traced server stops and says which."""
    with pytest.raises(SystemExit, match=r"cannot hook benchmarks\.trace\.Tracer\.gone"):
        _find("benchmarks.trace", "Tracer.gone")
    with pytest.raises(SystemExit, match=r"cannot hook twisted_tcpchat\.nowhere\.x"):
        _find("twisted_tcpchat.nowhere", "x")


@pytest.mark.timeout(RUN_TIMEOUT)
def test_a_traced_server_reports_its_turns(tmp_path: Path) -> None:
    """
    Fan-out 1 -> 3 against the traced twistd: it relays every line as ours
    does, and the stages it reports nest: the read-to-last-send span holds
    the reading and the sends, and a turn holds all of them.
    """
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "benchmarks", "fanout", "--receivers", "3"]
    command += ["--duration", "0.5", "--runs", "1", "--servers", "traced", "--quiet-wait", "0"]
    command += ["--workdir", str(tmp_path / "work"), "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(out.read_text())[0]["rows"]
    figures = row["figures"]
    assert figures["delivered"] == 3 * figures["sent"] > 0, row
    assert figures["lost"] == figures["reordered"] == figures["garbled"] == 0, row
    stage = {k.removeprefix("turn: "): v for k, v in figures.items() if k.startswith("turn: ")}
    assert stage["reads"] >= 1, stage
    for name in ("dispatch and recv", "reading", "sends", "log"):
        assert stage[name] > 0, stage
    # Medians: a span that holds another in every turn has a median at least
    # as large (sums of medians need not add up).
    assert stage["read to last send"] >= max(stage["reading"], stage["sends"]), stage
    assert stage["turn"] >= max(stage["read to last send"], stage["log"]), stage
    assert "traced: a turn that read" in result.stdout
