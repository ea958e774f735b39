"""
tcpchat's typed events on the client's side, without a terminal: telling
tcpchat from other servers, parsing its JSON events, the state kept from
them (client/events.py), and the ClientSession's switch to them on a
StringTransport with a task.Clock and a recording screen: what is sent,
what is shown, what is hidden.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers import welcome
from tests.test_client_session import HalfCloseableTransport
from twisted_tcpchat.client.events import (
    LOGIN_NEEDED,
    ChatEvent,
    ChatState,
    parse_event,
    recognise,
    typed_as_said,
)
from twisted_tcpchat.client.io import TerminalScreen
from twisted_tcpchat.client.protocol import ChatClientFactory
from twisted_tcpchat.client.session import (
    ANSWER_WAIT,
    EVENTS_MAX_LINE,
    HOLD,
    RECOGNISE_WITHIN,
    SWITCH_WAIT,
    ClientSession,
    ClientSettings,
    IEventScreen,
    Mode,
)
from twisted_tcpchat.core.config import DEFAULT_GREETING

SERVER = IPv4Address("TCP", "127.0.0.1", 65432)


def line(**fields: Any) -> bytes:
    """One event as the server sends it after /events json."""
    return json.dumps(fields, separators=(",", ":")).encode() + b"\r\n"


def text(*lines: str) -> bytes:
    return b"".join(t.encode() + b"\r\n" for t in lines)


ANSWER = line(type="notice", text="events as json", room=None, sender=None)


def you(name: str = "guest1", room: str = "lobby", change: str = "same", op: bool = False) -> bytes:
    return line(type="you", name=name, room=room, change=change, operator=op)


def message(sender: str, said: str, at: float = 1000.0, seq: int = 1) -> dict[str, Any]:
    return {
        "type": "message",
        "room": "lobby",
        "sender": sender,
        "lines": [said],
        "seq": seq,
        "at": at,
    }


def history(*entries: dict[str, Any]) -> bytes:
    return line(type="history", room="lobby", entries=list(entries))


# ---------------------------------------------------------------- pure


class RecogniseTests(SynchronousTestCase):
    def test_tcpchats_welcome_and_login_request(self) -> None:
        """tcpchat's welcome (with the name it gave) and its login request are recognised."""
        self.assertEqual(recognise(welcome("guest7")).name, "guest7")  # type: ignore[union-attr]
        found = recognise(LOGIN_NEEDED)
        self.assertIsNotNone(found)
        self.assertIsNone(found.name)  # type: ignore[union-attr]

    def test_anything_else_is_not(self) -> None:
        for other in (
            DEFAULT_GREETING,
            "* you are guest1",
            welcome("guest1") + " ",
            "<bob> " + welcome("guest1"),
            welcome("no spaces allowed"),
            "Message received",
        ):
            self.assertIsNone(recognise(other), other)


class ParseTests(SynchronousTestCase):
    def test_an_event(self) -> None:
        event = parse_event(b'{"type":"message","sender":"alice","lines":["hi"],"at":5}')
        assert event is not None
        self.assertEqual(
            (event.kind, event.text("sender"), event.texts("lines"), event.number("at")),
            ("message", "alice", ["hi"], 5.0),
        )

    def test_not_events(self) -> None:
        """Text, bad JSON, JSON that is not an object with a string type: not events."""
        for raw in (
            b"<alice> {hi}",
            b"{not json",
            b'{"type": 5}',
            b'{"text": "no type"}',
            b"[1, 2]",
            b'{"type":"x"}\xff',
            b"[" * 100_000,
        ):
            self.assertIsNone(parse_event(raw), raw[:20])

    def test_wrong_field_types_never_fail(self) -> None:
        """A field missing or of the wrong type reads as empty, never as an exception."""
        event = parse_event(b'{"type":"message","sender":7,"lines":"x","at":"noon","echo":1}')
        assert event is not None
        self.assertEqual(
            (event.text("sender"), event.texts("lines"), event.number("at"), event.flag("echo")),
            ("", [], None, False),
        )
        self.assertEqual(event.items("lines"), [])
        self.assertIsNone(event.item("member"))

    def test_strings_made_safe_on_the_way_in(self) -> None:
        """Control characters, bidi overrides and lone surrogates arrive as visible escapes."""
        event = parse_event(b'{"type":"text","text":"\\u001b[2J\\u202e\\ud800 ok","k\\u0007":1}')
        assert event is not None
        self.assertEqual(event.text("text"), "\\x1b[2J\\u202e\\ud800 ok")
        self.assertIn("k\\x07", event.fields)


class StateTests(SynchronousTestCase):
    def apply(self, state: ChatState, raw: bytes) -> None:
        event = parse_event(raw.rstrip())
        assert event is not None
        state.apply(event)

    def test_who_and_where(self) -> None:
        """you: my name, room and role; a new room forgets the old room's members."""
        state = ChatState()
        self.apply(state, you("alice", "lobby", "welcome", op=True))
        self.assertEqual((state.name, state.room, state.operator), ("alice", "lobby", True))
        self.apply(state, line(type="presence", room="lobby", name="bob", change="joined"))
        self.assertEqual(state.others(), ["bob"])
        self.apply(state, you("alice", "dev", "moved"))
        self.assertEqual((state.room, state.operator, state.others()), ("dev", False, []))
        self.assertIn("dev", state.rooms)

    def test_members_from_who_and_presence(self) -> None:
        """Members of my room from /who (or /who *) and each presence event in my room."""
        state = ChatState(name="alice", room="lobby")
        self.apply(
            state,
            line(
                type="members",
                room=None,
                members=[
                    {"name": "alice", "room": "lobby", "idle": 0},
                    {"name": "bob", "room": "lobby", "idle": 0},
                    {"name": "zed", "room": "dev", "idle": 0},
                ],
            ),
        )
        self.assertEqual(state.others(), ["bob"])
        for change, name, other in (
            ("joined", "carol", ""),
            ("moved-in", "dan", "dev"),
            ("renamed", "bob", "robert"),
            ("left", "carol", ""),
            ("moved-out", "dan", "dev"),
        ):
            self.apply(
                state, line(type="presence", room="lobby", name=name, change=change, other=other)
            )
        self.assertEqual(state.others(), ["robert"])
        self.apply(state, line(type="presence", room="dev", name="eve", change="joined"))
        self.assertEqual(state.others(), ["robert"])

    def test_rooms_and_commands(self) -> None:
        state = ChatState(name="alice", room="lobby")
        self.apply(state, line(type="rooms", rooms=[{"name": "lobby"}, {"name": "Dev"}]))
        self.apply(state, line(type="help", commands=[{"usage": "/join ROOM", "text": "go"}]))
        self.assertEqual((state.rooms, state.commands), (["Dev", "lobby"], [("/join ROOM", "go")]))

    def test_typed_lines_as_said(self) -> None:
        """What the user types, as the room hears it: chat, //text, /me; not commands."""
        state = ChatState(name="alice", room="lobby")

        def said(typed: str) -> tuple[str, list[str], str] | None:
            event = typed_as_said(typed, state, 5.0)
            if event is None:
                return None
            return event.kind, event.texts("lines"), event.text("text")

        self.assertEqual(said("hello"), ("message", ["hello"], ""))
        self.assertEqual(said("//slash"), ("message", ["/slash"], ""))
        self.assertEqual(said("/me waves"), ("action", [], "waves"))
        self.assertEqual(
            said("pasted one\npasted two"), ("message", ["pasted one", "pasted two"], "")
        )
        for not_said in ("/join dev", "/me", "/me   ", "   ", ""):
            self.assertIsNone(said(not_said), not_said)
        self.assertIsNone(typed_as_said("hello", ChatState(), 5.0))


# ---------------------------------------------------------------- the session


@implementer(IEventScreen)
class RecordingEventScreen:
    """An IEventScreen that records what it is given, in order: lines, notices, events."""

    def __init__(self) -> None:
        self.shown: list[Any] = []
        self.changes = 0

    def show_line(self, text: str) -> None:
        self.shown.append(text)

    def notice(self, text: str) -> None:
        self.shown.append(f"tcpchat: {text}")

    def show_event(self, event: ChatEvent, state: ChatState, now: float) -> None:
        assert isinstance(event, ChatEvent), event
        self.shown.append(event)

    def state_changed(self) -> None:
        self.changes += 1

    def take(self) -> list[Any]:
        shown, self.shown = self.shown, []
        return shown

    def kinds(self) -> list[str]:
        """What was shown since the last look: events by kind (text events by their text)."""
        return [
            (f"text: {e.text('text')}" if e.kind == "text" else e.kind)
            if isinstance(e, ChatEvent)
            else e
            for e in self.take()
        ]


class Terminal:
    """A session on a terminal (events on), connected to a StringTransport."""

    def __init__(self, greet: bool = True, **changes: Any) -> None:
        self.clock = Clock()
        self.screen = RecordingEventScreen()
        settings = ClientSettings(server="127.0.0.1:65432", events=True, **changes)
        self.session = ClientSession(self.screen, self.clock, settings)
        self.factory = ChatClientFactory(self.session, self.clock)
        self.protocol = self.factory.buildProtocol(SERVER)
        self.transport = HalfCloseableTransport(peerAddress=SERVER)
        self.protocol.makeConnection(self.transport)
        if greet:
            self.receive(text(DEFAULT_GREETING))
            self.screen.take()

    def receive(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def sent(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def switch(self, *more: bytes) -> None:
        """The welcome arrives, then the server's answer to /events json."""
        self.receive(text(welcome("guest1")))
        assert self.sent() == b"/events json\n"
        self.receive(you() + b"".join(more) + ANSWER)


class SwitchTests(SynchronousTestCase):
    def test_the_screens_are_event_screens(self) -> None:
        self.assertTrue(verifyObject(IEventScreen, RecordingEventScreen()))
        self.assertTrue(verifyObject(IEventScreen, TerminalScreen()))

    def test_welcome_makes_the_client_ask_for_events(self) -> None:
        """
        tcpchat's welcome: /events json goes out at once, and what comes is
        held (the welcome and the text history are not shown) until the
        answer; typed lines wait for it too.
        """
        run = Terminal()
        run.receive(text(welcome("guest1"), "[history] <bob> old"))
        self.assertEqual(run.sent(), b"/events json\n")
        self.assertEqual(run.session.mode, Mode.SWITCHING)
        self.assertEqual(run.screen.take(), [])
        run.session.line_typed("hello")
        self.assertEqual(run.sent(), b"")
        run.receive(you() + history(message("bob", "old")) + ANSWER)
        self.assertEqual(run.session.mode, Mode.EVENTS)
        shown = run.screen.take()
        self.assertEqual([e.kind for e in shown], ["you", "history", "message"])
        self.assertEqual(shown[0].text("change"), "welcome")  # (told as a welcome)
        self.assertEqual(shown[1].items("entries")[0].text("sender"), "bob")
        self.assertEqual((shown[2].text("sender"), shown[2].texts("lines")), ("guest1", ["hello"]))
        self.assertEqual(run.sent(), b"/who\n/rooms\n/help\nhello\n")
        self.assertEqual((run.session.chat.name, run.session.chat.room), ("guest1", "lobby"))
        self.assertGreater(run.screen.changes, 0)

    def test_other_servers_never_get_the_request(self) -> None:
        """
        A server whose first lines are not tcpchat's: nothing but the user's
        lines go out, every line shows as it came; a line like tcpchat's
        welcome later on (someone saying it) is just a line.
        """
        run = Terminal()
        late = [f"line {n}" for n in range(RECOGNISE_WITHIN)]
        run.receive(text(*late, welcome("guest1")))
        run.session.line_typed("hello")
        self.assertEqual(run.sent(), b"hello\n")
        self.assertEqual(run.screen.take(), [*late, welcome("guest1")])
        self.assertEqual(run.session.mode, Mode.PLAIN)
        run.clock.advance(SWITCH_WAIT * 2)
        self.assertEqual(run.sent(), b"")

    def test_not_on_a_pipe(self) -> None:
        """Without events (a pipe, -m): the welcome is a line like any other, nothing is asked."""
        clock = Clock()
        screen = RecordingEventScreen()
        session = ClientSession(screen, clock, ClientSettings(server="x"))
        protocol = ChatClientFactory(session, clock).buildProtocol(SERVER)
        transport = HalfCloseableTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(text(DEFAULT_GREETING, welcome("guest1")))
        clock.advance(SWITCH_WAIT)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(screen.take(), [DEFAULT_GREETING, welcome("guest1")])

    def test_not_with_a_line_ending_that_ends_no_line(self) -> None:
        """--line-ending none or nul: tcpchat could not tell the request from a message."""
        for ending in (b"", b"\0"):
            run = Terminal(line_ending=ending)
            run.receive(text(welcome("guest1")))
            run.clock.advance(ANSWER_WAIT)
            self.assertEqual(run.sent(), b"")
            self.assertEqual(run.session.mode, Mode.PLAIN)

    def test_nick_answer_and_history_text_replaced_by_events(self) -> None:
        """
        Text lines that the typed ones repeat are dropped: the welcome, the
        answer to --nick, the text history and a chat line the typed history
        has; the rest (a presence line, the topic) is shown, as text.
        """
        run = Terminal(greet=False, nick="alice")
        run.receive(text(DEFAULT_GREETING))
        self.assertEqual(run.sent(), b"/nick alice\n")
        run.receive(
            text(
                welcome("guest1"),
                "* the topic of #lobby: hi",
                "[history] <bob> old",
                "* you are now alice",
                "<bob> new",
                "* carol joined",
            )
        )
        self.assertEqual(run.sent(), b"/events json\n")
        run.receive(
            you("alice") + history(message("bob", "old"), message("bob", "new", seq=2)) + ANSWER
        )
        self.assertEqual(
            run.screen.kinds(),
            [
                DEFAULT_GREETING,
                "you",
                "text: * the topic of #lobby: hi",
                "text: * carol joined",
                "history",
            ],
        )
        self.assertEqual(run.session.chat.name, "alice")

    def test_without_typed_history_text_history_stays(self) -> None:
        """No history event (an empty room, --history 0): held text lines are all shown."""
        run = Terminal()
        run.receive(text(welcome("guest1"), "[history] <bob> old"))
        run.sent()
        run.receive(ANSWER)
        self.assertEqual(
            run.screen.kinds(), [f"text: {welcome('guest1')}", "text: [history] <bob> old"]
        )

    def test_login_request_then_login_as_events(self) -> None:
        """
        --user on a server that needs a login: its request comes with the
        greeting; /events json goes before the /login, whose welcome then
        comes as an event; the client then learns the rest, quietly.
        """
        run = Terminal(greet=False, login=("carol", "pw"))
        run.receive(text(DEFAULT_GREETING, LOGIN_NEEDED))
        self.assertEqual(run.sent(), b"/events json\n")
        run.receive(ANSWER)
        self.assertEqual(run.sent(), b"/login carol pw\n")
        self.assertEqual(run.screen.kinds(), [DEFAULT_GREETING, f"text: {LOGIN_NEEDED}"])
        run.receive(you("carol", change="welcome", op=True))
        self.assertEqual(run.sent(), b"/who\n/rooms\n/help\n")
        self.assertEqual(run.screen.kinds(), ["you"])
        self.assertTrue(run.session.chat.operator)

    def test_refused_by_an_older_tcpchat(self) -> None:
        """An error naming /events: no events; what was held shows as lines, and lines go on."""
        run = Terminal()
        run.receive(text(welcome("guest1")))
        run.sent()
        run.session.line_typed("hello")
        run.receive(text("error: unknown command /events; /help lists the commands"))
        self.assertEqual(run.session.mode, Mode.PLAIN)
        # (not the refusal: the user never asked for events)
        self.assertEqual(run.screen.take(), [welcome("guest1")])
        self.assertEqual(run.sent(), b"hello\n")

    def test_no_answer(self) -> None:
        """No answer within SWITCH_WAIT: as a refusal."""
        run = Terminal()
        run.receive(text(welcome("guest1"), "<bob> hi"))
        run.sent()
        run.session.line_typed("hello")
        run.clock.advance(SWITCH_WAIT - 0.01)
        self.assertEqual((run.screen.take(), run.sent()), ([], b""))
        run.clock.advance(0.01)
        self.assertEqual(run.screen.take(), [welcome("guest1"), "<bob> hi"])
        self.assertEqual(run.sent(), b"hello\n")

    def test_a_late_answer_still_switches(self) -> None:
        """
        Past SWITCH_WAIT (a busy server paced the request): text shows and
        the user's lines go, but the typed events still wait for the answer,
        never shown as raw JSON, and then the client switches.
        """
        run = Terminal()
        run.receive(text(welcome("guest1")))
        run.sent()
        run.session.line_typed("hello")
        run.clock.advance(SWITCH_WAIT)
        self.assertEqual(run.screen.take(), [welcome("guest1")])
        self.assertEqual(run.sent(), b"hello\n")
        run.receive(you() + text("<bob> meanwhile"))
        self.assertEqual(run.screen.take(), ["<bob> meanwhile"])
        run.receive(history(message("bob", "old")) + ANSWER)
        self.assertEqual(run.session.mode, Mode.EVENTS)
        self.assertEqual([e.kind for e in run.screen.take()], ["you", "history"])

    def test_a_history_twice_is_shown_once(self) -> None:
        """With --redis the entering history may come after the switch, which replays it."""
        run = Terminal()
        run.switch(history(message("bob", "one", seq=1), message("bob", "two", seq=2)))
        run.screen.take()
        run.receive(history(message("bob", "one", seq=1), message("bob", "two", seq=2)))
        self.assertEqual(run.screen.take(), [])
        run.receive(history(message("bob", "two", seq=2), message("bob", "three", seq=3)))
        (shown,) = run.screen.take()
        self.assertEqual([e.texts("lines") for e in shown.items("entries")], [["three"]])

    def test_lost_while_switching(self) -> None:
        """The connection lost while held: the held lines are shown, then the notice."""
        run = Terminal()
        run.receive(text(welcome("guest1")))
        run.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            run.screen.take(), [welcome("guest1"), "tcpchat: connection closed by server"]
        )


class EventsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.run = Terminal()
        self.run.switch()
        self.run.screen.take()
        self.assertEqual(self.run.sent(), b"/who\n/rooms\n/help\n")

    def test_the_clients_own_questions_are_answered_quietly(self) -> None:
        """
        The answers to the client's own /who, /rooms and /help go into its
        state, unseen; the same asked by the user are shown.
        """
        run = self.run
        members = line(type="members", room="lobby", members=[{"name": "guest1"}, {"name": "bob"}])
        rooms = line(type="rooms", rooms=[{"name": "lobby"}, {"name": "dev"}])
        helped = line(type="help", commands=[{"usage": "/join ROOM", "text": "go"}])
        run.receive(members + rooms + helped)
        self.assertEqual(run.screen.take(), [])
        chat = run.session.chat
        self.assertEqual(
            (chat.others(), chat.rooms, chat.commands[0][0]),
            (["bob"], ["dev", "lobby"], "/join ROOM"),
        )
        run.session.line_typed("/who")
        run.receive(members)
        self.assertEqual(run.screen.kinds(), ["members"])

    def test_a_who_of_everyone_is_never_taken_for_a_quiet_answer(self) -> None:
        """/join and /who * at once: the join's quiet /who is hidden, the user's /who * shown."""
        run = self.run
        run.receive(
            line(type="members", room="lobby", members=[])
            + line(type="rooms", rooms=[])
            + line(type="help", commands=[])
        )
        run.receive(you(room="dev", change="moved"))
        run.screen.take()
        everyone = line(type="members", room=None, members=[{"name": "bob", "room": "lobby"}])
        run.receive(everyone + line(type="members", room="dev", members=[]))
        self.assertEqual(
            [(e.kind, e.optional_text("room")) for e in run.screen.take()], [("members", None)]
        )

    def test_own_lines_shown_once(self) -> None:
        """
        My line is shown as sent (the server does not echo); a server with
        --echo sends it back, and that copy is not shown; others' lines are.
        """
        run = self.run
        run.session.line_typed("hello")
        run.session.line_typed("/me waves")
        run.session.line_typed("/join dev")
        self.assertEqual(run.sent(), b"hello\n/me waves\n/join dev\n")
        self.assertEqual(run.screen.kinds(), ["message", "action"])
        run.receive(line(**message("guest1", "hello")))
        run.receive(line(type="action", room="lobby", sender="GUEST1", text="waves", seq=2, at=1))
        run.receive(line(**message("bob", "hi")))
        self.assertEqual(run.screen.kinds(), ["message"])

    def test_quit_words_are_not_chat(self) -> None:
        run = self.run
        run.session.line_typed("exit")
        self.assertEqual((run.sent(), run.screen.take()), (b"exit\n", []))

    def test_moving_and_role_change_ask_again(self) -> None:
        """Another room: /who and /rooms again; becoming an operator: /help again."""
        run = self.run
        run.receive(you(room="dev", change="moved"))
        self.assertEqual(run.sent(), b"/who\n/rooms\n")
        run.receive(you(room="dev", change="same", op=True))
        self.assertEqual(run.sent(), b"/help\n")
        run.receive(you("zed", room="dev", change="renamed", op=True))
        self.assertEqual(run.sent(), b"")
        self.assertEqual(run.screen.kinds(), ["you", "you", "you"])

    def test_the_answer_notice_is_hidden_and_text_lines_shown(self) -> None:
        """'events as json' never shows (even when the user asked); text lines show as text."""
        run = self.run
        run.receive(ANSWER + text("* events as text", "plain"))
        self.assertEqual(run.screen.kinds(), ["text: * events as text", "text: plain"])

    def test_an_event_larger_than_a_chat_line(self) -> None:
        """Events may be far longer than the 64 KiB a text line is cut at: one event still."""
        run = self.run
        big = line(**message("bob", "x" * 200_000))
        self.assertLess(len(big), EVENTS_MAX_LINE)
        run.receive(big)
        (shown,) = run.screen.take()
        self.assertEqual(len(shown.texts("lines")[0]), 200_000)

    def test_a_slow_event_is_waited_for(self) -> None:
        """Half an event, then a pause: not shown as text (a text line would be); whole later."""
        run = self.run
        data = line(**message("bob", "slow"))
        run.receive(data[:10])
        run.clock.advance(HOLD * 4)
        self.assertEqual(run.screen.take(), [])
        run.receive(data[10:])
        self.assertEqual(run.screen.kinds(), ["message"])

    def test_reconnect_starts_again(self) -> None:
        """A new connection (--reconnect) may be another server: state forgotten, watching again."""
        run = Terminal(reconnect=True)
        run.switch()
        run.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(run.session.chat.name, "guest1")
        clock, session = run.clock, run.session
        protocol = ChatClientFactory(session, clock).buildProtocol(SERVER)
        transport = HalfCloseableTransport()
        protocol.makeConnection(transport)
        self.assertEqual((session.mode, session.chat), (Mode.WATCHING, ChatState()))
