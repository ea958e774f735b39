"""
The client's side of issue 6: TLS verified against a private CA with
--cafile (and refused without it), and --user logins with the password asked
for without echo.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect

from tests.certs import make_certs, ssl_listen
from tests.helpers import DEADLINE, start_twistd, welcome
from tests.test_client_cli import lines, tcpchat


def test_cafile_trusts_a_private_ca(tmp_path: Path) -> None:
    """Verified by default: refused without --cafile, chats with it, refused with the wrong CA."""
    certs = make_certs(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_certs(tmp_path / "other")
    twistd, port = start_twistd(tmp_path, "--listen", ssl_listen(certs), "--history", "0")
    try:
        target = f"tls:127.0.0.1:{port}"
        trusted = tcpchat("--cafile", str(certs.ca), "-m", "/who", target)
        assert trusted.returncode == 0, trusted
        assert lines(trusted.stdout)[-2:] == ["* 1 in #lobby:", "*   guest1 (idle 0s)"]
        for argv in (["-m", "/who", target], ["--cafile", str(other.ca), "-m", "/who", target]):
            refused = tcpchat(*argv)
            assert refused.returncode == 1, refused
            assert refused.stdout == b""
            error = refused.stderr.decode()
            assert error.startswith(f"tcpchat: cannot connect to 127.0.0.1:{port}: TLS: "), error
            assert error.endswith("certificate verify failed\n"), error
            assert error.count("\n") == 1, error
        twistd.wait_for_output(r"left during the TLS handshake")
    finally:
        twistd.stop()


def test_cafile_needs_tls_and_a_certificate(tmp_path: Path) -> None:
    not_tls = tcpchat("--cafile", "ca.pem", "127.0.0.1", "1")
    assert not_tls.returncode == 2
    assert "tcpchat: --cafile goes with a tls:HOST:PORT server" in not_tls.stderr.decode()
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = tcpchat("--cafile", str(tmp_path / "junk.pem"), "tls:127.0.0.1:1")
    assert junk.returncode == 2
    assert "not a readable PEM certificate" in junk.stderr.decode()


def test_user_logs_in_with_password_from_environment(tmp_path: Path) -> None:
    twistd, port = start_twistd(tmp_path, "--auth", "memory:dave:s3cret")
    try:
        env = {**os.environ, "TCPCHAT_PASSWORD": "s3cret"}
        ok = tcpchat_env(env, "--user", "dave", "-m", "/who", "127.0.0.1", str(port))
        assert ok.returncode == 0, ok
        assert welcome("dave") in lines(ok.stdout)
        assert "*   dave (idle 0s)" in lines(ok.stdout)
        wrong = tcpchat_env(
            {**env, "TCPCHAT_PASSWORD": "nope"},
            "--user",
            "dave",
            "-m",
            "hi",
            "127.0.0.1",
            str(port),
        )
        assert "error: wrong name or password" in lines(wrong.stdout)
        assert "s3cret" not in twistd.output
    finally:
        twistd.stop()


def test_user_without_terminal_or_environment_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TCPCHAT_PASSWORD"}
    result = tcpchat_env(env, "--user", "dave", "-m", "hi", "127.0.0.1", "1")
    assert result.returncode == 2
    assert "--user needs a terminal to ask for the password" in result.stderr.decode()


def test_password_asked_without_echo(tmp_path: Path) -> None:
    """On a terminal the password is asked for and not shown as it is typed."""
    twistd, port = start_twistd(tmp_path, "--auth", "memory:erin:hunter2")
    env = {k: v for k, v in os.environ.items() if k != "TCPCHAT_PASSWORD"}
    env["NO_COLOR"] = "1"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "twisted_tcpchat", "--user", "erin", "127.0.0.1", str(port)],
        env=env,
        timeout=DEADLINE,
        encoding="utf-8",
    )
    try:
        child.expect("password for erin: ")
        child.sendline("hunter2")
        child.expect(r"-- you are erin in #lobby;")  # (typed events: a terminal)
        assert "hunter2" not in (child.before or "")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        twistd.stop()


def tcpchat_env(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    import subprocess

    from tests.test_client_cli import CLIENT

    return subprocess.run(
        [*CLIENT, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=DEADLINE,
        check=False,
    )
