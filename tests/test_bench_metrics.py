"""
The benchmark's C{metrics} scenario (issue 17, C{python -m benchmarks
metrics}): reading Prometheus's text, the scrape-cost figures on given
scrapes, then a tiny real run against our server's C{--metrics}.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import driver, metrics
from tests.test_bench import ROOT

#: Seconds the tiny run may take (about 15 here).
RUN_TIMEOUT = 90.0

SCRAPE = """\
# HELP tcpchat_connections Clients connected now, by front end.
# TYPE tcpchat_connections gauge
tcpchat_connections{frontend="tcp"} 221.0
tcpchat_connections{frontend="tls"} 0.0
tcpchat_send_queue_clients 20.0
tcpchat_send_queue_bytes 2.5e+06
tcpchat_reactor_lag_seconds_bucket{le="0.001"} 3.0
tcpchat_reactor_lag_seconds_bucket{le="0.0025"} 4.0
tcpchat_reactor_lag_seconds_bucket{le="+Inf"} 5.0
tcpchat_reactor_lag_seconds_count 5.0
tcpchat_reactor_lag_seconds_sum 0.0125
tcpchat_scrape_duration_seconds 0.00042
python_info{implementation="CPython",version="3.11.7"} 1.0
"""


def test_reading_a_scrape() -> None:
    """Each sample by its name and labels as written; a histogram's buckets lowest first."""
    samples = metrics.parse_metrics(SCRAPE)
    assert samples[metrics.CONNECTIONS] == 221
    assert samples[metrics.RENDER] == 0.00042
    assert samples[metrics.QUEUED_BYTES] == 2.5e6
    assert samples['python_info{implementation="CPython",version="3.11.7"}'] == 1
    assert not [key for key in samples if key.startswith("#")]
    assert metrics.buckets(samples, metrics.LAG) == [(0.001, 3), (0.0025, 4), (float("inf"), 5)]


def test_the_lag_between_two_scrapes() -> None:
    """The looks between two scrapes, their sum, the count in each bucket; in words."""
    before = metrics.parse_metrics(SCRAPE)
    after = dict(before)
    after[f'{metrics.LAG}_bucket{{le="+Inf"}}'] = 7.0
    after[f"{metrics.LAG}_count"] = 7.0
    after[f"{metrics.LAG}_sum"] = 0.1125
    looks, total, counts = metrics.lag_between(before, after)
    assert (looks, round(total, 6)) == (2, 0.1)
    assert counts == [(0.001, 0), (0.0025, 0), (float("inf"), 2)]
    assert metrics.format_lag(looks, total, counts) == "2 looks, mean 50.00 ms (>2.5 ms: 2)"
    assert metrics.format_lag(*metrics.lag_between({}, before)).startswith("5 looks, mean 2.50")


def test_the_figures_of_given_scrapes() -> None:
    """Medians, p99 and max of the render times and round trips; what the last scrape saw."""
    samples = metrics.parse_metrics(SCRAPE)
    cost = metrics.ScrapeCost(
        renders=[0.001, 0.002, 0.003],
        round_trips=[0.002, 0.004, 0.010],
        sizes=[9000, 9000, 9100],
        first=samples,
        last=samples,
    )
    figures = cost.figures()
    assert figures["scrapes"] == figures["renders"] == 3
    assert figures["render_p50_us"] == pytest.approx(2000)
    assert figures["round_trip_max_us"] == pytest.approx(10000)
    assert figures["round_trip_p99_us"] == pytest.approx(9880)
    assert (figures["connections_seen"], figures["queues_seen"]) == (221, 20)
    assert figures["body_bytes"] == 9000
    table = metrics.format_cost("metrics: test", cost)
    assert re.search(r"^   3 +221 +20 \(2441 KiB\) +8\.8 +2\.00 +2\.98 +3\.00 +4\.00", table, re.M)


def test_the_command_knows_metrics() -> None:
    """
    C{metrics}: 15,000 idle clients, 300 not reading, 50 scrapes at 10 a
    second, then C{rate} with ours and ours scraped, by default; --relay
    picks the relay scenarios (or none).
    """
    args = driver.parse_args(["metrics"])
    assert driver.scrape_plan(args) == metrics.ScrapePlan(15000, 300, 50, 10.0, 0)
    assert [spec.name for spec in driver.server_specs(args)] == ["ours", "scraped"]
    (rate,) = driver.relay_scenarios(args)
    assert (rate.kind, rate.clients, rate.rate) == ("rate", 100, 2000)
    both = driver.parse_args(["metrics", "--relay", "rate,fanout", "--clients", "7"])
    assert [s.kind for s in driver.relay_scenarios(both)] == ["rate", "fanout"]
    assert driver.relay_scenarios(driver.parse_args(["metrics", "--relay", "none"])) == []
    with pytest.raises(driver.BenchError, match="--relay"):
        driver.relay_scenarios(driver.parse_args(["metrics", "--relay", "idle"]))
    with pytest.raises(driver.BenchError, match="open-file limit"):
        driver.scrape_plan(driver.parse_args(["metrics", "--clients", "10000000"]))
    assert [s.name for s in driver.server_specs(driver.parse_args(["rate"]))] == [
        "ours",
        "ncat",
        "relay",
    ]


def test_ratios_by_pairs_of_runs() -> None:
    """Ours' run i over the other's run i; a run without the figure is left out."""
    key = "deliveries_per_s"
    ours = driver.Row("ours", {}, [driver.Run({key: v}) for v in (10.0, 20.0, 30.0)], [])
    runs = [driver.Run({key: 5.0}), driver.Run({}), driver.Run({key: 60.0})]
    other = driver.Row("b", {}, runs, [])
    assert driver.pair_ratios(ours, other, key) == [2.0, 0.5]
    scenario = driver.Scenario("fanout", "flood", 11, 1)
    table = driver.format_table(scenario, [ours, other], 3)
    assert "b: ours/this by pairs of runs" in table
    assert "median 1.25 (0.50-2.00)" in table


def test_scraped_is_ours_with_its_metrics() -> None:
    """The C{scraped} row runs ours with --metrics on a free loopback port; ours does not."""
    options = driver.Options()
    scraped = driver.ServerSpec("scraped")
    assert scraped.runs_ours
    assert scraped.is_scraped
    argv = driver.ours_argv(options, scraped=True)
    assert argv[argv.index("--metrics") + 1] == "tcp:0:interface=127.0.0.1"
    assert "--metrics" not in driver.ours_argv(options)
    log = (
        b"[tcpchat#info] tcpchat metrics on http://127.0.0.1:4321/metrics and health on "
        b"/health (tcp:0:interface=127.0.0.1)"
    )
    match = metrics.SERVING_METRICS.search(log)
    assert match is not None
    assert match.group(1) == b"4321"


def run_metrics(tmp_path: Path, *args: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """
    Run the scenario as a user would (as L{tests.test_bench.run_bench}
    does, with ours and scraped); its output, the scrape part's JSON and the
    relay's rows.
    """
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "benchmarks", "metrics", *args]
    command += ["--runs", "1", "--servers", "ours,scraped", "--quiet-wait", "0"]
    result = subprocess.run(
        [*command, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cost, relay = json.loads(out.read_text())
    assert [row["server"] for row in relay["rows"]] == ["ours", "scraped"]
    return result.stdout, cost, relay["rows"]


@pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None,
    reason="gcc is not installed: the benchmark compiles its load generator",
)
@pytest.mark.timeout(RUN_TIMEOUT)
def test_metrics_end_to_end(tmp_path: Path) -> None:
    """
    200 idle clients, 20 that do not read, 5 scrapes: 5 render times and
    5 round trips; the scrape sees every connection (the one that talks to
    those that do not read included) and a send queue for each of the 20.
    Then a fan-out with ours and ours scraped: every line delivered by
    both, and only the scraped row scraped.
    """
    stdout, cost, rows = run_metrics(
        tmp_path, "--clients", "200", "--not-reading", "20", "--scrapes", "5",
        "--relay", "fanout", "--receivers", "3", "--duration", "1",
    )  # fmt: skip
    figures = cost["figures"]
    assert cost["scenario"]["kind"] == "metrics"
    assert figures["ready"] == 200, cost
    assert figures["scrapes"] == figures["renders"] == 5, cost
    assert len(cost["renders_s"]) == len(cost["round_trips_s"]) == 5, cost
    assert all(0 < r < 1 for r in cost["renders_s"]), cost
    assert figures["connections_seen"] == 200 + 20 + 1, cost
    assert figures["queues_seen"] == 20, cost
    assert figures["body_bytes"] > 1000, cost
    assert figures["lag_connecting_looks"] + figures["lag_scraping_looks"] > 0, cost
    assert not cost["notes"], cost
    assert re.search(r"^   5 +221 +20 \(\d+ KiB\) ", stdout, re.M), stdout
    assert "reactor lag during the timed scrapes: " in stdout
    ours, scraped = rows
    for row in rows:
        assert row["figures"]["delivered"] == 3 * row["figures"]["sent"] > 0, row
        assert row["figures"]["lost"] == 0, row
        assert not row["notes"], row
    assert "scrapes" not in ours["figures"], ours
    assert scraped["figures"]["scrapes"] >= 1, scraped
    assert scraped["figures"]["scrapes_failed"] == 0, scraped
