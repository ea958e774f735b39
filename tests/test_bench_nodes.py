"""
The benchmark's C{--nodes N} (issue 15): N of our nodes on one redis-server
of the run's own, a row next to the single in-memory node, client I on node
I mod N; and what it reads from Redis (C{INFO}).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import driver

ROOT = Path(__file__).resolve().parent.parent

#: Seconds a tiny benchmark run may take (two rows, Redis and two nodes started).
RUN_TIMEOUT = 90.0

INFO = """\
# CPU\r
used_cpu_sys:1.250000\r
used_cpu_user:0.750000\r
used_cpu_sys_children:0.000000\r
\r
# Memory\r
used_memory:1048576\r
used_memory_human:1.00M\r
\r
# Commandstats\r
cmdstat_evalsha:calls=120,usec=2400,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r
cmdstat_client|unblock:calls=7,usec=14,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r
"""


def test_redis_info() -> None:
    """CPU (sys + user), used memory and each command's calls and time, from INFO."""
    stats = driver.redis_stats(driver.parse_info(INFO))
    assert stats["cpu"] == 2.0
    assert stats["memory"] == 1048576
    assert stats["calls:evalsha"] == 120
    assert stats["usec:evalsha"] == 2400
    assert stats["calls:client|unblock"] == 7


def test_redis_figures_per_line() -> None:
    """Redis's CPU and script calls per line sent, start to done; its memory start, peak, end."""
    watch = driver._Watch([1, 2], 3)
    watch.marks["start"] = (100.0, 0, 0, 0, 0)
    watch.redis_marks = {
        "start": (100.0, {"cpu": 1.0, "memory": 2048, "calls:evalsha": 10, "usec:evalsha": 100}),
        "end": (102.0, {"cpu": 1.2, "memory": 8192, "calls:evalsha": 90}),
        "done": (103.0, {"cpu": 1.3, "memory": 6144, "calls:evalsha": 110, "usec:evalsha": 2100}),
    }
    watch.redis_memory = [(100.0, 2048), (101.0, 9216), (102.0, 8192), (103.0, 6144)]
    figures = watch.redis_figures(sent=1000)
    assert figures["redis_cpu"] == pytest.approx(0.1)
    assert figures["redis_us_per_msg"] == pytest.approx(300)
    assert figures["evalsha_per_msg"] == pytest.approx(0.1)
    assert figures["evalsha_us_per_call"] == pytest.approx(20)
    assert (figures["redis_mem_start_kib"], figures["redis_mem_peak_kib"]) == (2, 9)
    assert figures["redis_mem_end_kib"] == 6
    assert watch.memory_series()[1] == (1.0, 9216)


def test_the_generator_is_given_every_node() -> None:
    """One port as before; several as --ports (client I on the I mod Nth); --batch for rate."""
    rate = driver.scenario_from(driver.parse_args(["rate", "--batch", "10"]))
    assert rate.batch == 10
    assert "10 lines per write" in rate.title
    args = rate.loadgen_args([4001, 4002], limit=60)
    assert "--ports=4001,4002" in args
    assert not [a for a in args if a.startswith("--port=")]
    assert "--batch=10" in args
    one = driver.scenario_from(driver.parse_args(["rate"])).loadgen_args(4001, limit=60)
    assert "--port=4001" in one
    assert not [a for a in one if a.startswith(("--ports", "--batch"))]
    with pytest.raises(driver.BenchError, match="--batch"):
        driver.scenario_from(driver.parse_args(["fanout", "--batch", "2"]))


def test_the_nodes_row_comes_after_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """--nodes N adds a row 'N-nodes' right after ours (or last), 1 to MAX_NODES."""
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    specs = driver.server_specs(
        driver.parse_args(["fanout", "--servers", "ours,relay", "--nodes", "2"])
    )
    assert [s.name for s in specs] == ["ours", "2-nodes", "relay"]
    assert specs[1].is_cluster
    assert specs[1].runs_ours
    assert specs[1].has_rooms
    assert specs[1].nodes == 2
    alone = driver.server_specs(driver.parse_args(["rooms", "--servers", "relay", "--nodes", "1"]))
    assert [s.name for s in alone] == ["relay", "1-node"]
    with pytest.raises(driver.BenchError, match="--nodes 65"):
        driver.server_specs(driver.parse_args(["fanout", "--servers", "ours", "--nodes", "65"]))


def test_redis_columns_only_with_a_cluster() -> None:
    """The Redis columns show when a row has them; the cluster's row says this/ours."""
    scenario = driver.Scenario("fanout", "flood", 11, 1)
    ours = driver.Row("ours", {"deliveries_per_s": 200.0}, [], [])
    plain = driver.format_table(scenario, [ours], 1)
    assert "redis" not in plain
    cluster = driver.Row(
        "2-nodes",
        {"deliveries_per_s": 100.0, "redis_us_per_msg": 12.5, "evalsha_per_msg": 0.01},
        [],
        [],
    )
    table = driver.format_table(scenario, [ours, cluster], 1)
    assert "redis us/msg" in table
    assert "evalsha/msg" in table
    assert "2-nodes: deliveries_per_s this/ours: 0.50" in table
    assert "redis CPU 12.5 us per line sent" in table


@pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (apt-get install redis-server): --nodes starts one",
)
@pytest.mark.timeout(RUN_TIMEOUT)
def test_nodes_end_to_end(tmp_path: Path) -> None:
    """
    Four clients sending 400 lines/s in total, 4 lines per write, against
    ours and against 2 nodes on one Redis: each line reaches the 3 others,
    in order; the clients are spread over both nodes; Redis is asked about
    once per write, not per line.
    """
    out, work = tmp_path / "figures.json", tmp_path / "work"
    command = [sys.executable, "-m", "benchmarks", "rate", "--clients", "4", "--rate", "400"]
    command += ["--batch", "4", "--duration", "0.5", "--runs", "1", "--servers", "ours"]
    command += ["--nodes", "2", "--quiet-wait", "0", "--json", str(out), "--workdir", str(work)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {row["server"]: row for row in json.loads(out.read_text())[0]["rows"]}
    assert list(rows) == ["ours", "2-nodes"]
    for row in rows.values():
        figures = row["figures"]
        assert figures["ready"] == figures["senders"] == 4, row
        assert figures["sent"] > 0, row
        assert figures["delivered"] == 3 * figures["sent"], row
        assert figures["lost"] == figures["reordered"] == figures["garbled"] == 0, row
        assert not row["notes"], row
    figures = rows["2-nodes"]["figures"]
    assert figures["redis_us_per_msg"] > 0, figures
    assert 0.2 <= figures["evalsha_per_msg"] < 0.5, figures  # (a script per write of 4)
    assert figures["redis_mem_peak_kib"] > 0, figures
    assert rows["2-nodes"]["runs"][0]["redis_memory"], rows["2-nodes"]
    assert "2-nodes: lat_p99_us this/ours:" in result.stdout
    # Each node was sent two of the clients (and the benchmark's probe).
    for number in (1, 2):
        log = (work / f"2-nodes.node{number}.out").read_text()
        assert log.count(" connected\n") >= 3, log[-2000:]
    assert not (work / "2-nodes.redis" / "dump.rdb").exists()


def test_no_redis_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-server, --nodes says what to install."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert driver.main(["fanout", "--servers", "relay", "--nodes", "2"], out=io.StringIO()) == 2
    assert "redis-server is not installed" in stderr.getvalue()


def test_trouble_in_a_server_log(tmp_path: Path) -> None:
    """Warnings, errors and tracebacks in a node's log are counted, the first kept."""
    log = tmp_path / "node.out"
    log.write_text(
        "2026-12-05T00:00:00+0000 [tcpchat#info] guest1 (127.0.0.1:1) sent 6 bytes: hello\n"
        "2026-12-05T00:00:01+0000 [tcpchat#warn] redis: #r1: 3 lines missed\n"
        "2026-12-05T00:00:02+0000 [tcpchat#info] all well\n"
        "Traceback (most recent call last):\n"
    )
    assert driver.log_trouble(log, chunk=16) == (
        2,
        "2026-12-05T00:00:01+0000 [tcpchat#warn] redis: #r1: 3 lines missed",
    )
    assert driver.log_trouble(tmp_path / "absent.out") == (0, "")
