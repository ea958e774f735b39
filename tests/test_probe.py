"""
Health checks are not chat clients (issue 17): a TCP client that connects
and closes within the probe grace without a word (C{nc -z}, a load
balancer's check) is never announced, sent history or listed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import DEADLINE, Client, need, start_twistd, welcome
from tests.test_cluster import LineSocket
from twisted_tcpchat.core.config import DEFAULT_GREETING, ChatConfig
from twisted_tcpchat.frontends.tcp import ChatFactory


def _peer(n: int) -> IPv4Address:
    return IPv4Address("TCP", "192.0.2.7", 41000 + n)


class ProbeGraceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = ChatFactory(ChatConfig(probe_grace=0.25, history=5), clock=self.clock)
        self.alice = Client(self.factory, _peer(1))
        self.clock.advance(0.25)
        self.alice.send("/nick alice")
        self.alice.send("said before")
        self.alice.new_lines()

    def test_a_probe_is_never_in_the_chat(self) -> None:
        probe = Client(self.factory, _peer(2))
        self.assertEqual(probe.new_lines(), [DEFAULT_GREETING])  # (greeted, not let in)
        probe.lost()
        self.clock.advance(1)
        self.alice.send("/who")
        self.assertEqual(self.alice.new_lines()[0], "* 1 in #lobby:")
        self.assertEqual(self.factory.server.client_count, 1)

    def test_a_quiet_client_is_let_in_after_the_grace(self) -> None:
        bob = Client(self.factory, _peer(2))
        self.assertEqual(bob.new_lines(), [DEFAULT_GREETING])
        self.assertEqual(self.alice.new_lines(), [])
        self.clock.advance(0.25)
        self.assertIn(welcome("guest2"), bob.new_lines())
        self.assertEqual(self.alice.new_lines(), ["* guest2 joined"])

    def test_a_word_lets_it_in_at_once(self) -> None:
        bob = Client(self.factory, _peer(2))
        bob.send("hello")
        lines = bob.new_lines()
        self.assertIn(welcome("guest2"), lines)
        self.assertIn("[history] <alice> said before", lines)
        self.assertEqual(self.alice.new_lines(), ["* guest2 joined", "<guest2> hello"])
        self.clock.advance(1)  # (and not let in twice)
        self.assertEqual(self.alice.new_lines(), [])

    def test_http_probe_is_not_announced(self) -> None:
        """A load balancer's HTTP check: told it is not a chat client, never in the room."""
        check = Client(self.factory, _peer(3))
        check.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        check.lost()
        self.clock.advance(1)
        self.assertEqual(self.alice.new_lines(), [])


def test_nc_z_is_not_announced(tmp_path: Path) -> None:
    """`nc -z` against twistd tcpchat (its default grace): the room hears nothing."""
    nc = need("nc")
    process, port = start_twistd(tmp_path)
    try:
        alice = LineSocket(port)
        alice.expect(welcome("guest1"))
        for _ in range(3):
            subprocess.run([nc, "-z", "127.0.0.1", str(port)], timeout=DEADLINE, check=True)
        process.wait_for_output(r"(?s)(disconnected.*){3}")
        alice.send("/who")
        alice.expect("* 1 in #lobby:")
        assert not [line for line in alice.pump() if "joined" in line or "left" in line]
    finally:
        process.stop()
