"""
The benchmark's WebSocket scenarios (issue 16, C{python -m benchmarks
ws-idle|ws-rate}): their settings, the generator's WebSocket client against
a small relay written here that frames its messages every way RFC 6455
allows, then tiny real runs against our server's C{--web}.
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
from tests.test_bench import run_bench

#: The checkout, where C{python -m benchmarks} runs from.
ROOT = Path(__file__).resolve().parent.parent

#: Seconds a tiny benchmark run may take.
RUN_TIMEOUT = 60.0


def test_the_websocket_scenarios() -> None:
    """
    C{ws-idle}: 1000 WebSocket clients by default; C{ws-rate}: 100
    WebSocket receivers and 10 TCP senders that only send, 2000 lines/s in
    total.  The generator is told the WebSocket port, that the senders stay
    on TCP, and that they are not receivers.
    """
    idle = driver.scenario_from(driver.parse_args(["ws-idle"]))
    assert (idle.kind, idle.mode, idle.clients, idle.senders) == ("ws-idle", "idle", 1000, 0)
    assert idle.web
    assert "--ws-port=9" in idle.loadgen_args(port=1, limit=60, web_port=9)
    rate = driver.scenario_from(driver.parse_args(["ws-rate"]))
    assert (rate.kind, rate.mode, rate.clients, rate.senders) == ("ws-rate", "rate", 110, 10)
    assert rate.rate == 2000
    assert rate.web
    assert rate.send_only
    args = rate.loadgen_args(port=1, limit=60, web_port=9)
    assert {"--ws-port=9", "--tcp-clients=10", "--send-only"} <= set(args)
    assert "100 WebSocket receivers, 10 TCP senders" in rate.title
    # The comparison row: the same scenario, no WebSocket port.
    assert not [a for a in rate.loadgen_args(port=1, limit=60) if a.startswith("--ws")]
    small = driver.scenario_from(
        driver.parse_args(["ws-rate", "--receivers", "5", "--senders", "2", "--batch", "3"])
    )
    assert (small.clients, small.senders, small.batch) == (7, 2, 3)
    with pytest.raises(driver.BenchError, match="--batch"):
        driver.scenario_from(driver.parse_args(["ws-idle", "--batch", "2"]))


def test_the_suite_has_them_where_autobahn_is() -> None:
    """The suite runs both WebSocket scenarios, small with --quick, when autobahn is installed."""
    pytest.importorskip("autobahn")
    quick = {s.kind: s for s in driver.suite(True, driver.parse_args(["suite", "--quick"]))}
    full = {s.kind: s for s in driver.suite(False, driver.parse_args(["suite"]))}
    assert quick["ws-idle"].clients == 100
    assert full["ws-idle"].clients == 1000
    assert (full["ws-rate"].clients - full["ws-rate"].senders, full["ws-rate"].rate) == (100, 2000)
    assert quick["ws-rate"].clients < full["ws-rate"].clients


def test_only_ours_runs_them_each_with_a_tcp_row() -> None:
    """
    The WebSocket scenarios run ours and traced only, each followed by its
    C{-tcp} row (the same scenario, every client on TCP); ncat, the relays
    and --server rows are left out.  With none left it is a usage error.
    """
    args = driver.parse_args(
        ["ws-rate", "--servers", "ours,ncat,relay,traced,other", "--server", "other=x {port}"]
    )
    specs = driver.server_specs(args)
    chosen = driver.servers_for(driver.scenario_from(args), specs)
    assert [s.row for s in chosen] == ["ours", "ours-tcp", "traced", "traced-tcp"]
    assert [s.tcp_receivers for s in chosen] == [False, True, False, True]
    assert all(s.runs_ours for s in chosen)
    assert driver.main(["ws-idle", "--servers", "relay"], out=io.StringIO()) == 2


def test_ours_is_started_with_its_websocket_for_them() -> None:
    """Ours gets --web on a free loopback port for a WebSocket scenario, and only then."""
    options = driver.Options()
    argv = driver.ours_argv(options, web=True)
    assert argv[argv.index("--web") + 1] == "tcp:0:interface=127.0.0.1"
    assert "--web" not in driver.ours_argv(options)
    log = b"[tcpchat#info] tcpchat web page and WebSocket on http://127.0.0.1:4321/ (tcp:0)"
    match = driver._SERVING_WEB.search(log)
    assert match is not None
    assert match.group(1) == b"4321"


#: A WebSocket chat relay of its own (standard library only) for the
#: generator: it answers the upgrade, greets, pings, closes some
#: connections at once, and relays each text frame to the others as a JSON
#: event whose frame uses each of the three length encodings in turn, its
#: header, the start of its payload and the rest (from the middle of the
#: stamp on) in three writes; it checks that every client frame is masked,
#: and says what it saw on stdout at the end.
WS_RELAY = r"""
import asyncio, base64, hashlib, json, re, signal, struct, sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
members, seen = set(), {"pongs": 0, "close_replies": 0, "unmasked": 0, "lines": 0}
accepted = 0


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head, payload


async def send(writer, opcode, payload, split=0):
    head, body = frame(opcode, payload)
    writer.write(head)
    await writer.drain()
    if split:  # (in a later read, most likely)
        writer.write(body[:split])
        await writer.drain()
        await asyncio.sleep(0.001)
        body = body[split:]
    writer.write(body)


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if not b1 & 0x80:
        seen["unmasked"] += 1
        mask = b"\0\0\0\0"
    else:
        mask = await reader.readexactly(4)
    data = await reader.readexactly(n)
    return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(data))


async def serve(reader, writer):
    global accepted
    head = await reader.readuntil(b"\r\n\r\n")
    key = re.search(rb"Sec-WebSocket-Key: (\S+)", head).group(1)
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    accepted += 1
    await send(writer, 1, json.dumps({"type": "text", "text": "welcome | hello"}).encode())
    await send(writer, 9, b"are you there")
    if accepted % 4 == 0:
        await send(writer, 8, struct.pack("!H", 1001) + b"going away")
    else:
        members.add(writer)
    count = 0
    try:
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 10:
                seen["pongs"] += payload == b"are you there"
            elif opcode == 8:
                seen["close_replies"] += payload[:2] == struct.pack("!H", 1001)
                break
            elif opcode == 1:
                seen["lines"] += 1
                count += 1
                pad = "p" * 300_000 if count % 10 == 0 else "p" * 200 if count % 2 else ""
                event = {"type": "message", "lines": [payload.decode()], "pad": pad}
                data = json.dumps(event).encode()
                for other in list(members):
                    if other is not writer:
                        await send(other, 1, data, split=data.index(b"|") + 10)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        members.discard(writer)
        writer.close()


async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, done.set_result, None)
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await done
    print(json.dumps(seen), flush=True)


asyncio.run(main())
"""


def _run_generator(tools: driver.Tools, *args: str) -> dict[str, float]:
    result = subprocess.run(
        [str(tools.loadgen), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = driver.parse_report(result.stdout)
    assert report.error is None, result.stdout
    return report.result


@pytest.mark.timeout(RUN_TIMEOUT)
def test_the_generator_speaks_websocket(tmp_path: Path) -> None:
    """
    Against a relay that frames its events with 7-, 16- and 64-bit
    lengths (up to 300,000 bytes: longer than a read), written in pieces
    that cut stamps in two, pings and closes: every line a WebSocket sender sends
    (masked) reaches every other client still there, in order, its stamp
    found inside the JSON; the generator answers each ping with a pong and
    each close with a close.
    """
    tools = driver.compile_tools(tmp_path)
    script = tmp_path / "ws_relay.py"
    script.write_text(WS_RELAY)
    relay = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert relay.stdout is not None
        port = relay.stdout.readline().strip()
        assert port.isdigit(), relay.stderr.read() if relay.stderr else ""
        figures = _run_generator(
            tools,
            "--port=1",  # (no TCP client: --tcp-clients 0)
            f"--ws-port={port}",
            "--clients=8",
            "--senders=2",
            "--mode=rate",
            "--rate=100",
            "--duration=0.5",
            "--connect-rate=0",
        )
    finally:
        relay.terminate()
        out, _ = relay.communicate(timeout=10)
    seen = json.loads(out.splitlines()[-1])
    # Every fourth connection is closed at once: 2 of 8, both answered.
    assert figures["ws_clients"] == figures["ready"] == 8, figures
    assert figures["ws_closed"] == seen["close_replies"] == 2, (figures, seen)
    assert figures["held"] == figures["receivers"] == 6, figures
    assert figures["ws_pings"] == seen["pongs"] == 8, (figures, seen)
    assert seen["unmasked"] == 0, seen
    assert figures["ws_refused"] == figures["ws_bad"] == 0, figures
    assert figures["sent"] == seen["lines"] > 0, (figures, seen)
    assert figures["expected"] == figures["delivered"] == 5 * figures["sent"], figures
    assert figures["lost"] == figures["reordered"] == figures["garbled"] == 0, figures
    assert figures["overlong"] == 0, figures  # (the 300,000-byte frames too)
    assert 0 < figures["lat_p50_us"] <= figures["lat_max_us"], figures


@pytest.mark.timeout(RUN_TIMEOUT)
def test_a_refused_upgrade_fails_the_client(tmp_path: Path) -> None:
    """A server that does not answer 101 (here: HTTP 404) leaves the client failed, not ready."""
    tools = driver.compile_tools(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        port = line.split(" port ")[1].split()[0]
        figures = _run_generator(
            tools, "--port=1", f"--ws-port={port}", "--clients=3", "--mode=idle",
            "--duration=0.1", "--connect-timeout=2",
        )  # fmt: skip
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert figures["ready"] == figures["held"] == 0, figures
    assert figures["failed"] == figures["ws_refused"] == 3, figures


# --- against our server --------------------------------------------------------------


def run_ours(tmp_path: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    """Run a WebSocket scenario against ours as a user would; its output and its rows."""
    pytest.importorskip("autobahn")
    output, rows = run_bench(tmp_path, *args, rows=("ours", "ours-tcp"))
    assert "relay left out: no WebSocket" in output
    for row in rows:
        assert not row["notes"], row  # (no generator error, no warning in ours' log)
    return output, rows


@pytest.mark.timeout(RUN_TIMEOUT)
def test_ws_idle_end_to_end(tmp_path: Path) -> None:
    """
    Our server holds 50 WebSocket clients (each upgraded and greeted), and
    the same 50 on TCP in its comparison row; the memory per connection is
    reported for both.
    """
    _, (ws, tcp) = run_ours(tmp_path, "ws-idle", "--clients", "50", "--duration", "0.3")
    for row in (ws, tcp):
        figures = row["figures"]
        assert figures["held"] == figures["ready"] == 50, row
        assert figures["failed"] == 0, row
        assert "rss_per_conn_kib" in figures, row
    assert ws["figures"]["ws_clients"] == 50, ws
    assert ws["figures"]["ws_refused"] == ws["figures"]["ws_bad"] == 0, ws
    assert "ws_clients" not in tcp["figures"], tcp


@pytest.mark.timeout(RUN_TIMEOUT)
def test_ws_rate_end_to_end(tmp_path: Path) -> None:
    """
    Two TCP senders, 5 WebSocket receivers, three lines per write (one
    message of three lines: three stamps in one frame): every line reaches
    every receiver, in order, over WebSocket as over TCP.
    """
    stdout, rows = run_ours(
        tmp_path, "ws-rate", "--receivers", "5", "--senders", "2", "--rate", "300",
        "--batch", "3", "--duration", "0.5",
    )  # fmt: skip
    for row in rows:
        figures = row["figures"]
        assert figures["ready"] == 7, row
        assert figures["senders"] == 2, row
        assert figures["receivers"] == 5, row
        assert figures["sent"] > 0, row
        assert figures["expected"] == figures["delivered"] == 5 * figures["sent"], row
        assert figures["lost"] == figures["reordered"] == figures["garbled"] == 0, row
        assert 0 < figures["lat_p50_us"] <= figures["lat_p99_us"] <= figures["lat_max_us"], row
    assert rows[0]["figures"]["ws_clients"] == 5, rows[0]
    assert "5 WebSocket receivers, 2 TCP senders" in stdout
