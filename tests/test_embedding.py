"""
What an embedding application gets: the exports, the dice bot of
examples/dice.tac (shown in the README), observers, and endpoint objects.
"""

from __future__ import annotations

import random
import re
import runpy
from importlib import resources
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

import twisted_tcpchat
from tests.helpers import Client, messages
from tests.test_loopback import dial, eventually, reactor
from twisted_tcpchat import Event, Message, Origin
from twisted_tcpchat.core.limits import clients_for_open_files
from twisted_tcpchat.service import make_service, raise_open_file_limit

ROOT = Path(__file__).resolve().parent.parent
DICE = ROOT / "examples" / "dice.tac"

#: Where each exported name is defined.
EXPORTS = {
    "Action": "core.events",
    "Bot": "core.bot",
    "ChatConfig": "core.config",
    "ChatFactory": "frontends.tcp",
    "ChatObserver": "core.interfaces",
    "ChatProtocol": "frontends.tcp",
    "ChatServer": "core.server",
    "ChatService": "service",
    "Command": "core.commands",
    "Commands": "core.commands",
    "Context": "core.commands",
    "Directory": "rooms.memory",
    "Error": "core.events",
    "Event": "core.events",
    "Help": "core.events",
    "History": "core.events",
    "IConnection": "core.interfaces",
    "IDirectory": "core.interfaces",
    "IParticipant": "core.interfaces",
    "IRoom": "core.interfaces",
    "Identity": "core.events",
    "ListenError": "service",
    "MemberInfo": "core.events",
    "Members": "core.events",
    "Message": "core.events",
    "Notice": "core.events",
    "Origin": "core.interfaces",
    "Presence": "core.events",
    "Private": "core.events",
    "Room": "rooms.memory",
    "RoomInfo": "core.events",
    "Rooms": "core.events",
    "Text": "core.events",
    "Topic": "core.events",
    "Whois": "core.events",
    "make_service": "service",
}


class ExportTests(SynchronousTestCase):
    def test_the_exports_are_the_real_objects(self) -> None:
        """__all__ lists exactly the embedding API, each name the object its module defines."""
        import importlib

        self.assertEqual(sorted(twisted_tcpchat.__all__), sorted([*EXPORTS, "__version__"]))
        for name, module in EXPORTS.items():
            real = getattr(importlib.import_module(f"twisted_tcpchat.{module}"), name)
            self.assertIs(getattr(twisted_tcpchat, name), real, name)

    def test_the_package_ships_its_type_hints(self) -> None:
        """PEP 561: py.typed is in the package, so a type checker uses its hints."""
        self.assertTrue(resources.files("twisted_tcpchat").joinpath("py.typed").is_file())


def load_dice() -> dict[str, Any]:
    """The example's globals, run as twistd would run it (its service not started)."""
    return runpy.run_path(str(DICE))


class DiceBotTests(SynchronousTestCase):
    def test_the_readme_shows_the_example_as_it_is(self) -> None:
        blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
        self.assertIn(DICE.read_text(), blocks)

    def test_the_example_is_about_twenty_lines(self) -> None:
        code = [line for line in DICE.read_text().splitlines() if line.strip()]
        self.assertLessEqual(len(code), 24)

    def test_the_bot_welcomes_and_answers_roll_in_the_rooms_of_the_roller(self) -> None:
        example = load_dice()
        factory = example["service"].factory
        alice = Client(factory, IPv4Address("TCP", "127.0.0.1", 5001))
        self.assertEqual(alice.new_lines()[-1], "<dice> welcome, guest1! /roll throws a die")
        bob = Client(factory, IPv4Address("TCP", "127.0.0.1", 5002))
        bob.send("/join dev")
        carol = Client(factory, IPv4Address("TCP", "127.0.0.1", 5003))
        carol.send("/join dev")
        for client in (alice, bob, carol):
            client.new_lines()
        random.seed(2026)
        expected = random.Random(2026).randint(1, 20)
        bob.send("/roll 20")
        line = f"* dice: guest2 rolls {expected} (1-20)"
        self.assertEqual(bob.new_lines(), [line])
        self.assertEqual(carol.new_lines(), [line])
        self.assertEqual(alice.new_lines(), [])
        alice.send("/roll banana")
        self.assertRegex(alice.new_lines()[0], r"^\* dice: guest1 rolls [1-6] \(1-6\)$")
        alice.send("/help")
        shown = [re.sub(r"  +", "  ", line) for line in alice.new_lines()]
        self.assertIn("*  /roll [SIDES]  throw a die for the room", shown)
        alice.send("/who")
        self.assertEqual(
            alice.new_lines()[:3], ["* 2 in #lobby:", "*   dice (idle 0s)", "*   guest1 (idle 0s)"]
        )


class ObserverTests(SynchronousTestCase):
    def test_an_application_watches_every_chat_event_with_its_fields(self) -> None:
        """Chat events arrive typed, with room, name, address and text apart."""
        service = make_service(["tcp:0"])
        seen: list[tuple[Event, Origin]] = []
        service.directory.add_observer(lambda event, origin: seen.append((event, origin)))
        alice = Client(service.factory, IPv4Address("TCP", "198.51.100.4", 5001))
        alice.send("hello 世界")
        said = [(e, o) for e, o in seen if isinstance(e, Message)]
        self.assertEqual(len(said), 1)
        message, origin = said[0]
        self.assertEqual(
            (message.room, message.sender, message.lines, origin.name, origin.address),
            ("lobby", "guest1", ("hello 世界",), "guest1", "198.51.100.4"),
        )


@pytest_twisted.ensureDeferred
async def test_endpoint_objects_listen_size_and_shut_down() -> None:
    """
    ChatService takes endpoint objects as well as strings: it listens on
    them, sizes itself to the open-file limit, and tells clients goodbye on stop.
    """
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    service = make_service([endpoint, "tcp:0:interface=127.0.0.1"], reactor=reactor)
    with capturedLogs() as events:
        service.privilegedStartService()
        service.startService()
    try:
        assert len(service.ports) == 2
        limit = raise_open_file_limit()
        assert service.server.max_clients == clients_for_open_files(limit)
        assert f"tcpchat takes up to {service.server.max_clients} clients" in " ".join(
            messages(events)
        )
        clients = [await dial(port.getHost().port) for port in service.ports]
        for client in clients:
            await eventually(lambda client=client: len(client.lines) >= 2, "the welcome")
    finally:
        await service.stopService()
    for client in clients:
        await client.closed
        assert client.lines[-1] == "server shutting down"
