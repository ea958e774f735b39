"""
A Redis of the tests' own: Debian's redis-server on a free port in a
temporary directory (never a Redis the machine may already run), so that a
test can stop, kill and restart it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import DEADLINE


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """
    One redis-server process, started in C{directory}.

    @param persistent: with an append-only file synced at every write, so a
        restart (even after kill -9) keeps everything acknowledged.
    @param extra: more redis-server options (TLS, a UNIX socket).
    """

    def __init__(
        self, directory: Path, *, persistent: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.persistent = persistent
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        args = [
            executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log),
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen([*args, *self.extra], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server ended: {self.log.read_text()[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer")

    def ping(self) -> bool:
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False

    def command(self, *args: str) -> str:
        """Run one command with redis-cli; its answer as text."""
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "--no-raw", *args],
            capture_output=True,
            timeout=DEADLINE,
            check=False,
        )
        if result.returncode:
            raise OSError(result.stderr.decode())
        return result.stdout.decode().strip().strip('"')

    def raw(self, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "--raw", *args],
            capture_output=True,
            timeout=DEADLINE,
            check=True,
        )
        return result.stdout.decode()

    def stop(self, kill: bool = False) -> None:
        """Stop it (SIGTERM, or SIGKILL with C{kill}) and wait until it is gone."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(DEADLINE)
