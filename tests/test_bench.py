"""
The benchmark command (issue 7): its pure parts, then tiny real runs against
our server (twistd) and the C relay it compiles, on loopback port 0.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DEADLINE
from twisted_tcpchat import bench

GENERATOR_OUTPUT = """\
phase connected ready=4 failed=0 opened=4
phase start receivers=4 senders=1
phase end
sender sid=0 sent=100 expected=300 received=299 lost=1 reordered=2
result clients=4 ready=4 held=4 deliveries_per_s=1500.5 lost=1 reordered=2 lat_p99_us=812.5
"""


def test_parse_report() -> None:
    """The last result line and every sender line become numbers."""
    report = bench.parse_report(GENERATOR_OUTPUT)
    assert report.error is None
    assert report.result["deliveries_per_s"] == 1500.5
    assert report.result["lat_p99_us"] == 812.5
    assert report.senders == [
        {"sid": 0, "sent": 100, "expected": 300, "received": 299, "lost": 1, "reordered": 2}
    ]


def test_parse_report_error() -> None:
    """A generator that stopped with an error, or said nothing, is an error."""
    assert bench.parse_report("result error=time-limit\n").error == "time-limit"
    assert bench.parse_report("phase connected ready=0\n").error == "no result"


def test_proc_parsers() -> None:
    """
    RSS and allowed CPUs from /proc/PID/status; CPU ticks from /proc/PID/stat,
    whose name may hold ') '; busy time from /proc/stat, interrupts left out.
    """
    assert bench.rss_kib("Name:\tpython\nVmRSS:\t   49036 kB\nVmHWM:\t1 kB\n") == 49036
    fields = " ".join(str(n) for n in range(3, 53))
    assert bench.cpu_ticks(f"123 (a) b) {fields}") == 14 + 15
    assert bench.allowed_cpus("Name:\tx\nCpus_allowed_list:\t0-2,5\n") == {0, 1, 2, 5}
    assert bench.busy_ticks("cpu  10 1 5 100 7 4 2 3 0 0\ncpu0 1\n") == 10 + 1 + 5 + 3


def test_medians_and_ratio() -> None:
    """Each figure is the median over the runs; the ratio is ours over the other row's."""
    runs = [bench.Run({"deliveries_per_s": v, "lost": 0}) for v in (100.0, 300.0, 200.0)]
    assert bench.median_figures(runs) == {"deliveries_per_s": 200.0, "lost": 0}
    scenario = bench.Scenario("fanout", "flood", 11, 1)
    rows = [
        bench.Row("ours", {"deliveries_per_s": 200.0}, runs, []),
        bench.Row("ncat", {"deliveries_per_s": 400.0}, runs, ["run 2: ncat exited"]),
    ]
    table = bench.format_table(scenario, rows, 3)
    assert "fan-out 1 -> 10" in table
    ncat_row = next(line for line in table.splitlines() if line.startswith("ncat "))
    assert ncat_row.split()[-1] == "0.50"
    assert "ncat: run 2: ncat exited" in table
    assert bench.ratio(1.0, 0.0) == "-"


def test_runs_take_turns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    Each server's first run, then each one's second...: a machine that
    speeds up or slows down during the benchmark moves every row alike.
    Each row still gets its own runs, in order.
    """
    order: list[str] = []

    def fake_run(scenario: object, spec: bench.ServerSpec, *rest: object) -> bench.Run:
        order.append(spec.name)
        return bench.Run({"deliveries_per_s": float(len(order))})

    monkeypatch.setattr(bench, "run_once", fake_run)
    specs = [bench.ServerSpec("ours"), bench.ServerSpec("ncat"), bench.ServerSpec("relay")]
    scenario = bench.Scenario("fanout", "flood", 11, 1)
    out = io.StringIO()
    rows = bench.bench(
        scenario,
        specs,
        bench.Options(runs=3),
        None,
        tmp_path,
        out,
        (None, None),  # type: ignore[arg-type]
    )
    assert order == ["ours", "ncat", "relay"] * 3
    assert [row.server for row in rows] == ["ours", "ncat", "relay"]
    assert [run.figures["deliveries_per_s"] for run in rows[1].runs] == [2.0, 5.0, 8.0]
    assert rows[2].figures["deliveries_per_s"] == 6.0  # the median of 3, 6, 9


def run_bench(tmp_path: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    """Run the command as a user would; return its output and its JSON figures."""
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "twisted_tcpchat.bench", *args]
    command += ["--runs", "1", "--servers", "ours,relay", "--quiet-wait", "0", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=2 * DEADLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    rows: list[dict[str, Any]] = json.loads(out.read_text())[0]["rows"]
    assert [row["server"] for row in rows] == ["ours", "relay"]
    return result.stdout, rows


@pytest.mark.timeout(2 * DEADLINE)
def test_fanout_end_to_end(tmp_path: Path) -> None:
    """
    Fan-out 1 -> 3 against our server and the C relay: every client is
    served, every line reaches every receiver in order, and the figures are
    sane (deliveries are three times the lines sent, latencies positive).
    """
    stdout, rows = run_bench(tmp_path, "fanout", "--receivers", "3", "--duration", "0.5")
    for row in rows:
        figures = row["figures"]
        assert figures["ready"] == 4, row
        assert figures["sent"] > 0, row
        assert figures["delivered"] == 3 * figures["sent"], row
        assert figures["lost"] == 0, row
        assert figures["reordered"] == 0, row
        assert figures["garbled"] == 0, row
        assert 0 < figures["lat_p50_us"] <= figures["lat_p99_us"] <= figures["lat_max_us"], row
        assert figures["deliveries_per_s"] > 1000, row
        assert figures["rss_base_kib"] > 0, row
        assert not [n for n in row["notes"] if "exited" in n or "generator" in n], row
        assert not [n for n in row["notes"] if "share CPU" in n], row
    assert "fan-out 1 -> 3" in stdout
    ours_row = next(line for line in stdout.splitlines() if line.startswith("ours "))
    assert ours_row.split()[-1] == "1.00"


@pytest.mark.timeout(2 * DEADLINE)
def test_rate_end_to_end(tmp_path: Path) -> None:
    """Four clients all sending 200 lines/s in total: all delivered, in order, on time."""
    _, rows = run_bench(tmp_path, "rate", "--clients", "4", "--rate", "200", "--duration", "0.5")
    for row in rows:
        figures = row["figures"]
        assert figures["senders"] == 4, row
        assert 80 <= figures["sent"] <= 120, row
        assert figures["delivered"] == 3 * figures["sent"], row
        assert figures["lost"] == figures["reordered"] == 0, row
        assert 0 < figures["lat_p99_us"] < 1e6, row
        assert len(row["runs"][0]["senders"]) == 4, row


@pytest.mark.timeout(2 * DEADLINE)
def test_idle_end_to_end(tmp_path: Path) -> None:
    """Idle clients are all held, and the server's memory per connection is reported."""
    _, rows = run_bench(tmp_path, "idle", "--clients", "50", "--duration", "0.3")
    for row in rows:
        figures = row["figures"]
        assert figures["held"] == 50, row
        assert figures["connect_per_s"] > 0, row
        assert "rss_per_conn_kib" in figures, row


@pytest.mark.timeout(2 * DEADLINE)
def test_the_bare_twisted_relay_serves_a_fanout(tmp_path: Path) -> None:
    """The Twisted ceiling (C{--servers twisted}) relays every line, in order."""
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "twisted_tcpchat.bench", "fanout", "--receivers", "3"]
    command += ["--duration", "0.5", "--runs", "1", "--servers", "twisted", "--quiet-wait", "0"]
    result = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=2 * DEADLINE
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(out.read_text())[0]["rows"]
    figures = row["figures"]
    assert row["server"] == "twisted"
    assert figures["ready"] == 4, row
    assert figures["sent"] > 0, row
    assert figures["delivered"] == 3 * figures["sent"], row
    assert figures["lost"] == figures["reordered"] == figures["garbled"] == 0, row
