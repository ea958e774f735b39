"""
C{/events json} (issue 18): a TCP connection may ask for the typed events
the WebSocket front end sends, one JSON object a line, and go back with
C{/events text}; nobody else's lines change, and an nc user never sees
JSON unless asking for it.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import Client, welcome
from twisted_tcpchat.core.config import DEFAULT_GREETING, ChatConfig
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.frontends.tcp import ChatFactory


def _peer(n: int) -> IPv4Address:
    return IPv4Address("TCP", "192.0.2.7", 41000 + n)


def events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


class EventsModeTests(SynchronousTestCase):
    """
    Switched in a room, a client is told again who and where it is, and
    gets the room's recent lines again, with their times.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.factory = ChatFactory(ChatConfig(history=5), clock=self.clock)
        self.alice = Client(self.factory, _peer(1))
        self.alice.send("/nick alice")
        self.alice.send("said before")
        self.alice.new_lines()

    def test_json_events_one_a_line_and_back_to_text(self) -> None:
        bob = Client(self.factory, _peer(2))
        bob.new_lines()
        bob.send("/events json")
        self.assertEqual(
            events(bob.new_lines()),
            [
                {
                    "type": "you",
                    "name": "guest2",
                    "room": "lobby",
                    "change": "same",
                    "operator": False,
                },
                {
                    "type": "history",
                    "room": "lobby",
                    "entries": [
                        {
                            "type": "message",
                            "room": "lobby",
                            "sender": "alice",
                            "lines": ["said before"],
                            "seq": 1,
                            "at": 1_000,
                        }
                    ],
                },
                {"type": "notice", "text": "events as json", "room": None, "sender": None},
            ],
        )
        self.alice.send("hello\nworld")
        (message,) = events(bob.new_lines())
        self.assertEqual(message["type"], "message")
        self.assertEqual(
            (message["sender"], message["lines"], message["room"]),
            ("alice", ["hello", "world"], "lobby"),
        )
        self.assertEqual(message["at"], 1_000)
        self.assertEqual(self.alice.new_lines(), ["* guest2 joined"])  # (alice: still text)
        bob.send("/events text")
        self.assertEqual(bob.new_lines(), ["* events as text"])
        self.alice.send("again")
        self.assertEqual(bob.new_lines(), ["<alice> again"])

    def test_a_line_with_a_line_end_inside_is_one_json_line(self) -> None:
        bob = Client(self.factory, _peer(2))
        bob.send("/events json")
        bob.new_lines()
        self.alice.send(b"one\ntwo\r\n")
        lines = bob.new_lines()
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(json.loads(lines[0])["lines"], ["one", "two"])

    def test_bad_argument_is_one_error_in_text(self) -> None:
        bob = Client(self.factory, _peer(2))
        bob.new_lines()
        bob.send("/events xml")
        self.assertEqual(bob.new_lines(), ["error: usage: /events text|json"])

    def test_first_line_before_entering_makes_the_welcome_and_history_json(self) -> None:
        """A program's first line, within the probe grace: its welcome and history come as JSON."""
        factory = ChatFactory(ChatConfig(history=5, probe_grace=0.25), clock=self.clock)
        alice = Client(factory, _peer(1))
        alice.send("/nick alice")
        alice.send("said before")
        bot = Client(factory, _peer(2))
        bot.send("/events json")  # (a word: it is no probe, and comes in at once)
        lines = bot.new_lines()
        self.assertEqual(lines[0], DEFAULT_GREETING)  # (the greeting: text, as always)
        kinds = [(e["type"], e.get("change")) for e in events(lines[1:])]
        self.assertEqual(kinds, [("notice", None), ("you", "welcome"), ("history", None)])
        self.assertEqual(alice.new_lines()[-1], "* guest2 joined")
        self.clock.advance(1)  # (and not let in twice)
        self.assertEqual(bot.new_lines(), [])
        self.assertEqual(alice.new_lines(), [])

    def test_only_the_first_line_goes_before_flood_control(self) -> None:
        """A read of many /events lines is paced like any other lines (one goes first)."""
        factory = ChatFactory(
            ChatConfig(probe_grace=0.25, exempt=(), flood_burst=2, flood_queue=5),
            clock=self.clock,
        )
        bot = Client(factory, _peer(2))
        bot.send(b"/events json\n" * 100)
        lines = bot.new_lines()
        answered = [line for line in lines if "events as json" in line]
        self.assertEqual(len(answered), 1 + 2)  # (the first, then the burst)
        self.assertIn("excess flood", lines[-1])

    def test_before_a_login(self) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(carol=b"secret")
        server = ChatServer(ChatConfig(), self.clock, checkers=[checker])
        factory = ChatFactory(server=server, clock=self.clock)
        carol = Client(factory, _peer(3))
        carol.new_lines()
        carol.send("/events json")
        self.assertEqual(events(carol.new_lines())[0]["text"], "events as json")
        carol.send("/login carol secret")
        you = [e for e in events(carol.new_lines()) if e["type"] == "you"]
        self.assertEqual(you[0]["name"], "carol")
        self.assertEqual(you[0]["change"], "welcome")

    def test_an_nc_user_sees_it_only_in_help(self) -> None:
        bob = Client(self.factory, _peer(2))
        self.assertIn(welcome("guest2"), bob.new_lines())
        bob.send("/help")
        helped = bob.new_lines()
        self.assertTrue(any("/events json|text" in line for line in helped), helped)
        self.assertFalse(any(line.startswith("{") for line in helped))
