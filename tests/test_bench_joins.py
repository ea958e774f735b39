"""
The C{joins} scenario (issue 14, L{benchmarks.joins}): joining a room of N
members and leaving it, in process.  Its arithmetic on given times, then the
command in quick mode, which starts no server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import driver, joins

#: The checkout, where C{python -m benchmarks} runs from.
ROOT = Path(__file__).resolve().parent.parent

#: Seconds the quick scenario may take (about 2 here).
RUN_TIMEOUT = 60.0


def test_a_few_rounds_of_each_size() -> None:
    """Each size gets its rounds, timed; the newcomer ends in the default room."""
    times = joins.time_rounds((2, 7), rounds=3, quiet_presence=False, warmup=1)
    assert sorted(times) == [2, 7]
    assert [len(t) for t in times.values()] == [3, 3]
    assert all(t > 0 for each in times.values() for t in each)


def test_the_tables() -> None:
    """Medians per size, this/N=5, the ratio of the largest room to the smallest."""
    quiet = joins.Series(True, 100, [joins.Size(5, 10.0, 11.0), joins.Size(5000, 12.0, 13.0)])
    loud = joins.Series(False, 10, [joins.Size(5, 20.0, 21.0), joins.Size(5000, 1019.0, 1100.0)])
    text = joins.format_joins(quiet, loud)
    assert "ratio 5000/5: 1.20 (goal: the same cost" in text
    assert "ratio 5000/5: 50.95 (grows with N by design" in text
    assert re.search(r"^   5000 +1019\.00 +1100\.00 +50\.95 +0\.200$", text, re.M), text


def test_the_command_knows_joins() -> None:
    """C{joins} is a scenario of the command; it needs no server (nor ncat)."""
    args = driver.parse_args(["joins", "--quick"])
    assert args.scenario == "joins"
    assert joins.plan(True).rounds < joins.plan(False).rounds


@pytest.mark.timeout(RUN_TIMEOUT)
def test_joins_quick(tmp_path: Path) -> None:
    """
    C{python -m benchmarks joins --quick}: a figure for each size with
    presence quiet and announced, and a ratio 5000/5 for each; the same in
    its JSON.
    """
    out = tmp_path / "joins.json"
    command = [sys.executable, "-m", "benchmarks", "joins", "--quick", "--quiet-wait", "0"]
    result = subprocess.run(
        [*command, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stdout = result.stdout
    for size in joins.SIZES:
        rows = re.findall(rf"^   {size} +(\d+\.\d\d) +\d+\.\d\d +\d+\.\d\d", stdout, re.M)
        assert len(rows) == 2, stdout
        assert all(float(us) > 0 for us in rows), stdout
    ratios = re.findall(r"^   ratio 5000/5: (\d+\.\d\d)", stdout, re.M)
    assert len(ratios) == 2, stdout
    assert "grows with N by design" in stdout
    (figures,) = json.loads(out.read_text())
    assert figures["scenario"]["kind"] == "joins"
    for series in ("quiet_presence", "presence"):
        sizes = figures[series]["sizes"]
        assert sorted(map(int, sizes)) == list(joins.SIZES)
        assert all(s["median_us"] > 0 for s in sizes.values())
        assert figures[series]["ratio"] > 0
