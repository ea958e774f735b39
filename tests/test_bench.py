"""
The benchmark command (issue 7, C{python -m benchmarks} from the checkout):
its pure parts, then tiny real runs against our server (twistd), the C
relay it compiles and a small rooms relay, on loopback.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import driver

#: The checkout, where C{python -m benchmarks} runs from.
ROOT = Path(__file__).resolve().parent.parent

#: Seconds a tiny benchmark run may take.  (Not from tests.helpers, which
#: imports the server: the benchmark's own parts are tested without it.)
RUN_TIMEOUT = 60.0

GENERATOR_OUTPUT = """\
phase connected ready=4 failed=0 opened=4
phase start receivers=4 senders=1
phase end
sender sid=0 sent=100 expected=300 received=299 lost=1 reordered=2
result clients=4 ready=4 held=4 deliveries_per_s=1500.5 lost=1 reordered=2 lat_p99_us=812.5
"""


def test_parse_report() -> None:
    """The last result line and every sender line become numbers."""
    report = driver.parse_report(GENERATOR_OUTPUT)
    assert report.error is None
    assert report.result["deliveries_per_s"] == 1500.5
    assert report.result["lat_p99_us"] == 812.5
    assert report.senders == [
        {"sid": 0, "sent": 100, "expected": 300, "received": 299, "lost": 1, "reordered": 2}
    ]


def test_parse_report_error() -> None:
    """A generator that stopped with an error, or said nothing, is an error."""
    assert driver.parse_report("result error=time-limit\n").error == "time-limit"
    assert driver.parse_report("phase connected ready=0\n").error == "no result"


def test_proc_parsers() -> None:
    """
    RSS and allowed CPUs from /proc/PID/status; CPU ticks from /proc/PID/stat,
    whose name may hold ') '; busy time from /proc/stat, interrupts left out.
    """
    assert driver.rss_kib("Name:\tpython\nVmRSS:\t   49036 kB\nVmHWM:\t1 kB\n") == 49036
    fields = " ".join(str(n) for n in range(3, 53))
    assert driver.cpu_ticks(f"123 (a) b) {fields}") == 14 + 15
    assert driver.allowed_cpus("Name:\tx\nCpus_allowed_list:\t0-2,5\n") == {0, 1, 2, 5}
    assert driver.busy_ticks("cpu  10 1 5 100 7 4 2 3 0 0\ncpu0 1\n") == 10 + 1 + 5 + 3


def test_medians_and_ratio() -> None:
    """Each figure is the median over the runs; the ratio is ours over the other row's."""
    runs = [driver.Run({"deliveries_per_s": v, "lost": 0}) for v in (100.0, 300.0, 200.0)]
    assert driver.median_figures(runs) == {"deliveries_per_s": 200.0, "lost": 0}
    scenario = driver.Scenario("fanout", "flood", 11, 1)
    rows = [
        driver.Row("ours", {"deliveries_per_s": 200.0}, runs, []),
        driver.Row("ncat", {"deliveries_per_s": 400.0}, runs, ["run 2: ncat exited"]),
    ]
    table = driver.format_table(scenario, rows, 3)
    assert "fan-out 1 -> 10" in table
    ncat_row = next(line for line in table.splitlines() if line.startswith("ncat "))
    assert ncat_row.split()[-1] == "0.50"
    assert "ncat: run 2: ncat exited" in table
    assert driver.ratio(1.0, 0.0) == "-"


def test_runs_take_turns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    Each server's first run, then each one's second...: a machine that
    speeds up or slows down during the benchmark moves every row alike.
    Each row still gets its own runs, in order.
    """
    order: list[str] = []

    def fake_run(scenario: object, spec: driver.ServerSpec, *rest: object) -> driver.Run:
        order.append(spec.name)
        return driver.Run({"deliveries_per_s": float(len(order))})

    monkeypatch.setattr(driver, "run_once", fake_run)
    specs = [driver.ServerSpec("ours"), driver.ServerSpec("ncat"), driver.ServerSpec("relay")]
    scenario = driver.Scenario("fanout", "flood", 11, 1)
    out = io.StringIO()
    rows = driver.bench(
        scenario,
        specs,
        driver.Options(runs=3),
        None,
        tmp_path,
        out,
        (None, None),  # type: ignore[arg-type]
    )
    assert order == ["ours", "ncat", "relay"] * 3
    assert [row.server for row in rows] == ["ours", "ncat", "relay"]
    assert [run.figures["deliveries_per_s"] for run in rows[1].runs] == [2.0, 5.0, 8.0]
    assert rows[2].figures["deliveries_per_s"] == 6.0  # the median of 3, 6, 9


def run_bench(
    tmp_path: Path, *args: str, rows: tuple[str, ...] = ("ours", "relay")
) -> tuple[str, list[dict[str, Any]]]:
    """
    Run the command as a user would (ours and the relay asked for); check
    that C{rows} came out; return its output and its JSON figures.
    """
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "benchmarks", *args]
    command += ["--runs", "1", "--servers", "ours,relay", "--quiet-wait", "0", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    figures: list[dict[str, Any]] = json.loads(out.read_text())[0]["rows"]
    assert [row["server"] for row in figures] == list(rows)
    return result.stdout, figures


@pytest.mark.timeout(RUN_TIMEOUT)
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


@pytest.mark.timeout(RUN_TIMEOUT)
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


@pytest.mark.timeout(RUN_TIMEOUT)
def test_idle_end_to_end(tmp_path: Path) -> None:
    """Idle clients are all held, and the server's memory per connection is reported."""
    _, rows = run_bench(tmp_path, "idle", "--clients", "50", "--duration", "0.3")
    for row in rows:
        figures = row["figures"]
        assert figures["held"] == 50, row
        assert figures["connect_per_s"] > 0, row
        assert "rss_per_conn_kib" in figures, row


@pytest.mark.timeout(RUN_TIMEOUT)
def test_the_bare_twisted_relay_serves_a_fanout(tmp_path: Path) -> None:
    """The Twisted ceiling (C{--servers twisted}) relays every line, in order."""
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "benchmarks", "fanout", "--receivers", "3"]
    command += ["--duration", "0.5", "--runs", "1", "--servers", "twisted", "--quiet-wait", "0"]
    result = subprocess.run(
        [*command, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(out.read_text())[0]["rows"]
    figures = row["figures"]
    assert row["server"] == "twisted"
    assert figures["ready"] == 4, row
    assert figures["sent"] > 0, row
    assert figures["delivered"] == 3 * figures["sent"], row
    assert figures["lost"] == figures["reordered"] == figures["garbled"] == 0, row


def test_the_rooms_scenario() -> None:
    """
    C{rooms}: 1000 clients in 100 rooms, all sending 2000 lines/s in total
    by default; the generator is told the rooms; the suite has it too.
    """
    scenario = driver.scenario_from(driver.parse_args(["rooms"]))
    assert (scenario.kind, scenario.mode) == ("rooms", "rate")
    assert (scenario.clients, scenario.senders, scenario.rooms) == (1000, 1000, 100)
    assert scenario.rate == 2000
    assert "--rooms=100" in scenario.loadgen_args(port=1, limit=60)
    assert "1000 clients in 100 rooms (10 each)" in scenario.title
    small = driver.scenario_from(driver.parse_args(["rooms", "--clients", "12", "--rooms", "3"]))
    assert (small.clients, small.rooms) == (12, 3)
    with pytest.raises(driver.BenchError, match="--rooms 13"):
        driver.scenario_from(driver.parse_args(["rooms", "--clients", "12", "--rooms", "13"]))
    # Without rooms the generator is run as before.
    rate = driver.scenario_from(driver.parse_args(["rate"]))
    assert rate.rooms == 0
    assert not [a for a in rate.loadgen_args(port=1, limit=60) if a.startswith("--rooms")]
    kinds = [s.kind for s in driver.suite(True, driver.parse_args(["suite", "--quick"]))]
    assert kinds.count("rooms") == 1


def test_only_servers_with_rooms_run_the_rooms_scenario() -> None:
    """
    ncat, the C relay and the bare Twisted relay have no rooms: the rooms
    scenario leaves them out; ours, traced and --server rows run it.  With
    none left it is a usage error.
    """
    args = driver.parse_args(
        ["rooms", "--servers", "ours,relay,twisted,traced,other", "--server", "other=x {port}"]
    )
    specs = driver.server_specs(args)
    rooms = driver.scenario_from(args)
    assert [s.name for s in driver.servers_for(rooms, specs)] == ["ours", "traced", "other"]
    fanout = driver.scenario_from(driver.parse_args(["fanout"]))
    assert driver.servers_for(fanout, specs) == specs
    assert driver.main(["rooms", "--servers", "relay,twisted"], out=io.StringIO()) == 2


#: A small chat server with rooms, for the generator's room accounting
#: without ours: C{/join NAME} moves a client into room NAME (from the
#: lobby); a line goes to the others of its room.  With C{--ignore-join}
#: everyone stays in the lobby.
ROOMS_RELAY = """
import asyncio, sys

rooms = {}
ignore_join = "--ignore-join" in sys.argv


async def serve(reader, writer):
    room = "lobby"
    rooms.setdefault(room, set()).add(writer)
    writer.write(b"welcome\\n")
    try:
        while line := await reader.readline():
            if line.startswith(b"/join ") and not ignore_join:
                rooms[room].discard(writer)
                room = line[6:].strip().decode()
                rooms.setdefault(room, set()).add(writer)
                writer.write(b"joined " + room.encode() + b"\\n")
            elif not line.startswith(b"/"):
                for other in rooms[room]:
                    if other is not writer:
                        other.write(line)
    finally:
        rooms[room].discard(writer)
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""


@pytest.mark.timeout(RUN_TIMEOUT)
def test_rooms_are_counted_per_room(tmp_path: Path) -> None:
    """
    12 clients in 3 rooms against a relay with rooms: each line reaches the
    3 others of its room, in order, and no one else.  Against one that
    ignores C{/join}, the 8 clients of the other rooms get it too: counted
    as misrouted, not delivered.
    """
    relay = tmp_path / "rooms_relay.py"
    relay.write_text(ROOMS_RELAY)
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "benchmarks", "rooms", "--clients", "12", "--rooms", "3"]
    command += ["--rate", "200", "--duration", "0.5", "--runs", "1", "--quiet-wait", "0"]
    command += ["--servers", "rooms,one-room,relay", "--json", str(out)]
    command += ["--server", f"rooms={sys.executable} {relay} {{port}}"]
    command += ["--server", f"one-room={sys.executable} {relay} {{port}} --ignore-join"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# rooms: relay left out: no rooms" in result.stdout
    rows = {row["server"]: row for row in json.loads(out.read_text())[0]["rows"]}
    assert list(rows) == ["rooms", "one-room"]
    for name, misrouted in (("rooms", 0), ("one-room", 8)):
        figures = rows[name]["figures"]
        assert figures["ready"] == figures["senders"] == 12, rows[name]
        assert figures["rooms"] == 3, rows[name]
        assert figures["sent"] > 0, rows[name]
        assert figures["expected"] == figures["delivered"] == 3 * figures["sent"], rows[name]
        assert figures["lost"] == figures["reordered"] == figures["garbled"] == 0, rows[name]
        assert figures["misrouted"] == misrouted * figures["sent"], rows[name]
    assert "x-room" in result.stdout


@pytest.mark.timeout(RUN_TIMEOUT)
def test_rooms_end_to_end(tmp_path: Path) -> None:
    """
    Our server with 20 clients in 4 rooms: each joins its room with
    C{/join rK}, and each line reaches the 4 others of its room only, in order.
    """
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "benchmarks", "rooms", "--clients", "20", "--rooms", "4"]
    command += ["--rate", "200", "--duration", "0.5", "--runs", "1", "--quiet-wait", "0"]
    command += ["--servers", "ours,relay", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(out.read_text())[0]["rows"]
    figures = row["figures"]
    assert row["server"] == "ours"
    assert figures["ready"] == figures["senders"] == 20, row
    assert figures["sent"] > 0, row
    assert figures["delivered"] == 4 * figures["sent"], row
    assert figures["lost"] == figures["reordered"] == figures["misrouted"] == 0, row
    assert 0 < figures["lat_p50_us"] <= figures["lat_p99_us"] <= figures["lat_max_us"], row
