"""
One client's session, on a recording connection (no wire at all): its
phases, what a line means in each, the commands, and --classic.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import messages
from twisted_tcpchat.core.commands import Command, Commands, Context, builtin_commands
from twisted_tcpchat.core.config import DEFAULT_GREETING, ChatConfig
from twisted_tcpchat.core.events import Message
from twisted_tcpchat.core.server import ChatServer
from twisted_tcpchat.core.session import BadLine, Peer, Phase, Session
from twisted_tcpchat.testing import RecordingConnection, RecordingParticipant


def welcome(name: str) -> str:
    return f"* you are {name}; /nick NAME changes it, /help lists the commands"


class SessionCase(SynchronousTestCase):
    config = ChatConfig()

    def setUp(self) -> None:
        self.clock = Clock()
        self.server = ChatServer(self.config, self.clock)
        self.peers = 0

    def client(self, host: str = "127.0.0.1") -> tuple[Session, RecordingConnection]:
        """A connected, greeted session (loopback: not paced), its lines so far taken."""
        self.peers += 1
        connection = RecordingConnection()
        session = self.server.connected(connection, Peer(host, 40000 + self.peers, "s:1"))
        connection.lines()
        return session, connection

    def say(self, session: Session, *lines: str) -> None:
        """Lines of one read, as a front end hands them over (UTF-8 sizes)."""
        session.received(list(lines), [len(line.encode()) for line in lines])


class PhaseTests(SessionCase):
    def test_the_moves_are_declared_and_nothing_else_is_allowed(self) -> None:
        session, _ = self.client()
        self.assertIs(session.phase, Phase.CHAT)
        with self.assertRaises(AssertionError):
            session._move(Phase.LOGIN)
        session.ended("gone")
        self.assertIs(session.phase, Phase.CLOSED)
        with self.assertRaises(AssertionError):
            session._move(Phase.CHAT)

    def test_a_refused_client_is_told_and_closed_without_a_seat(self) -> None:
        self.server.max_clients = 1
        self.client()
        connection = RecordingConnection()
        session = self.server.connected(connection, Peer("127.0.0.1", 5, "s:1"))
        self.assertIs(session.phase, Phase.CLOSING)
        self.assertEqual(connection.lines(), ["error: server full (1 clients); try again later"])
        self.assertEqual(connection.closed, "closed")
        session.ended("closed")
        self.assertEqual(self.server.client_count, 1)

    def test_greeting_then_the_default_room(self) -> None:
        connection = RecordingConnection()
        session = self.server.connected(connection, Peer("127.0.0.1", 5, "s:1"))
        self.assertEqual(connection.lines(), [DEFAULT_GREETING, welcome("guest1")])
        self.assertEqual((session.name, session.room), ("guest1", "lobby"))

    def test_lines_after_the_exit_word_in_the_same_read_are_not_handled(self) -> None:
        a, _ = self.client()
        _b, b_out = self.client()
        b_out.lines()
        self.say(a, "one", "exit", "never said")
        self.assertEqual(b_out.lines(), ["<guest1> one", "* guest1 left (exit)"])


class ChatLineTests(SessionCase):
    def test_chat_lines_of_a_read_are_one_message_and_commands_keep_their_place(self) -> None:
        a, _a_out = self.client()
        _b, b_out = self.client()
        self.say(a, "one", "two", "/nick alice", "three", "//four", " five", "", "six")
        heard = b_out.events
        messages_heard = [e.lines for e in heard if isinstance(e, Message)]
        self.assertEqual(
            messages_heard, [("one", "two"), ("three",), ("/four",), (" five",), ("six",)]
        )
        self.assertEqual(
            b_out.lines(),
            [
                "<guest1> one",
                "<guest1> two",
                "* guest1 is now known as alice",
                "<alice> three",
                "<alice> /four",
                "<alice>  five",
                "<alice> six",
            ],
        )

    def test_lines_after_a_kick_in_the_same_read_are_not_handled(self) -> None:
        """
        Kicked while its read is handled (by an application's rule): the
        rest of the read is dropped, quietly.
        """
        op = RecordingParticipant()
        directory = self.server.directory
        directory.enter(op, "op", operator=True)

        def moderate(event: object, origin: object) -> None:
            if isinstance(event, Message) and "badword" in event.lines:
                directory.kick(op, event.sender, "language")

        directory.add_observer(moderate)
        a, a_out = self.client()
        with capturedLogs() as events:
            self.say(a, "badword", "exit", "more")
        self.assertEqual(a_out.lines(), ["* you were kicked by op: language"])
        self.assertEqual(a_out.closed, "closed")
        self.assertEqual([e for e in events if e.get("log_failure")], [])
        self.assertEqual(
            [line for line in messages(events) if "ended" in line or "disconnected" in line],
            ["guest1 (127.0.0.1:40001) disconnected (kicked by op: language)"],
        )

    def test_lines_that_start_with_a_slash_or_a_space_are_said_as_any_line(self) -> None:
        """
        //x and an indented line go the one way chat goes: to the room, and
        into one log event with its fields.
        """
        a, _ = self.client()
        _, b_out = self.client()
        with capturedLogs() as events:
            self.say(a, "//not a command", "  indented")
        self.assertEqual(b_out.lines(), ["<guest1> /not a command", "<guest1>   indented"])
        said = [(e["text"], e["size"]) for e in events if "said" in e]
        self.assertEqual(said, [("/not a command", 15), ("  indented", 10)])

    def test_a_bad_line_answers_its_sender_in_its_place(self) -> None:
        a, a_out = self.client()
        _b, b_out = self.client()
        b_out.lines()
        with capturedLogs() as events:
            a.received(
                ["fine", BadLine(9, "that line is no good", "sent a bad line"), "after"], [4, 9, 5]
            )
        self.assertEqual(a_out.lines()[-1], "error: that line is no good")
        self.assertEqual(b_out.lines(), ["<guest1> fine", "<guest1> after"])
        self.assertIn("guest1 (127.0.0.1:40001) sent a bad line", messages(events))

    def test_a_command_word_ends_at_any_whitespace(self) -> None:
        a, a_out = self.client()
        self.say(a, "/who\t", "/WHO", "/wh\tx")
        self.assertEqual(
            a_out.lines(),
            [
                "* 1 in #lobby:",
                "*   guest1 (idle 0s)",
                "* 1 in #lobby:",
                "*   guest1 (idle 0s)",
                "error: unknown command /wh; /help lists the commands",
            ],
        )

    def test_usage_errors_name_the_usage(self) -> None:
        a, a_out = self.client()
        self.say(a, "/nick", "/msg", "/msg bob", "/me", "/join", "/who everyone", "/topic-lock on")
        self.assertEqual(
            a_out.lines(),
            [
                "error: usage: /nick NAME",
                "error: usage: /msg NAME TEXT",
                "error: usage: /msg NAME TEXT",
                "error: usage: /me ACTION",
                "error: usage: /join ROOM",
                "error: usage: /who [*] (/whois NAME tells where someone is)",
                "error: only operators may do that",
            ],
        )

    def test_help_shows_operators_commands_to_operators_only(self) -> None:
        a, a_out = self.client()
        self.say(a, "/help")
        shown = a_out.lines()
        self.assertEqual(shown[0], "* commands:")
        self.assertTrue(any(line.startswith("*   /join ROOM") for line in shown))
        self.assertFalse(any("/kick" in line or "/ban" in line for line in shown))
        console = RecordingParticipant()
        self.server.directory.enter(console, "op", operator=True)
        context = Context(
            console, self.server.directory, operator=True, commands=self.server.commands
        )
        self.server.commands.run(context, "/help")
        self.assertTrue(any("/kick NAME [REASON]" in line for line in console.lines()))

    def test_topic_shown_set_and_cleared(self) -> None:
        a, a_out = self.client()
        self.say(a, "/topic", "/topic  plans for Friday ", "/topic", "/topic -", "/topic")
        self.assertEqual(
            a_out.lines(),
            [
                "* #lobby has no topic; /topic TEXT sets one",
                "* guest1 set the topic of #lobby: plans for Friday",
                "* the topic of #lobby: plans for Friday",
                "* guest1 cleared the topic of #lobby",
                "* #lobby has no topic; /topic TEXT sets one",
            ],
        )

    def test_quit_with_a_reason(self) -> None:
        a, a_out = self.client()
        _b, b_out = self.client()
        a_out.lines()
        self.say(a, "/quit  see you ")
        self.assertEqual(a_out.lines(), ["Goodbye."])
        self.assertEqual(a_out.closed, "closed")
        self.assertEqual(b_out.lines(), ["* guest1 left (see you)"])

    def test_half_close_says_goodbye_too(self) -> None:
        """A client that sends its lines and half-closes gets the goodbye exit and /quit get."""
        a, a_out = self.client()
        _b, b_out = self.client()
        a_out.lines()
        self.say(a, "last words")
        a.input_ended()
        self.assertEqual(a_out.lines(), ["Goodbye."])
        self.assertEqual(a_out.closed, "closed")
        self.assertEqual(b_out.lines(), ["<guest1> last words", "* guest1 left (disconnected)"])

    def test_paced_lines_still_count_after_a_half_close(self) -> None:
        config = ChatConfig(flood_burst=1, flood_rate=1.0)
        self.server = ChatServer(config, self.clock)
        a, a_out = self.client(host="192.0.2.9")
        _b, b_out = self.client()
        a_out.lines()
        self.say(a, "one", "two", "three")
        self.assertTrue(a_out.paused)
        a.input_ended()
        self.assertIsNone(a_out.closed)
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(
            b_out.lines(),
            ["<guest1> one", "<guest1> two", "<guest1> three", "* guest1 left (disconnected)"],
        )
        self.assertEqual(a_out.lines(), ["Goodbye."])
        self.assertEqual(a_out.closed, "closed")


class CommandRegistryTests(SessionCase):
    def test_an_application_adds_a_command(self) -> None:
        def echo(context: Context, argument: str) -> None:
            context.reply(f"{context.name} in #{context.room} said {argument!r}")

        self.server.commands.add(Command("echo", echo, "/echo TEXT", "say it back"))
        a, a_out = self.client()
        self.say(a, "/ECHO hi  there")
        self.assertEqual(a_out.lines(), ["* guest1 in #lobby said 'hi  there'"])
        self.say(a, "/help")
        shown = [" ".join(line.split()) for line in a_out.lines()]
        self.assertIn("* /echo TEXT say it back", shown)

    def test_names_are_checked_and_not_taken_twice(self) -> None:
        commands = Commands(builtin_commands())
        with self.assertRaises(ValueError):
            commands.add(Command("who", lambda c, a: None))
        with self.assertRaises(ValueError):
            Command("Bad Name", lambda c, a: None)
        commands.add(Command("who", lambda c, a: c.reply("mine")), replace=True)
        self.assertIn("who", commands)

    def test_a_command_that_fails_answers_internal_error_only(self) -> None:
        def broken(context: Context, argument: str) -> None:
            raise RuntimeError("bug in a plugin")

        self.server.commands.add(Command("broken", broken))
        a, a_out = self.client()
        _b, b_out = self.client()
        a_out.lines()
        self.say(a, "/broken", "still here")
        self.assertEqual(a_out.lines(), ["error: internal error; your line was not handled"])
        self.assertEqual(b_out.lines(), ["<guest1> still here"])
        self.flushLoggedErrors(RuntimeError)


class ClassicTests(SessionCase):
    config = ChatConfig(classic=True)

    def test_one_answer_per_message_and_no_room(self) -> None:
        a, a_out = self.client()
        _b, b_out = self.client()
        self.say(a, "hello", "", "你好")
        self.assertEqual(
            a_out.lines(), ["Received 5 bytes", "Received 0 bytes", "Received 6 bytes"]
        )
        self.assertEqual(b_out.lines(), [])
        self.assertNotIn(a, self.server.directory)
        self.say(a, "exit")
        self.assertEqual(a_out.lines(), ["Goodbye."])

    def test_the_console_answers_the_oldest_message_waiting(self) -> None:
        shown: list[str] = []
        desk = self.server.classic
        desk.console = shown.append
        a, a_out = self.client()
        b, b_out = self.client()
        self.say(a, "first")
        self.say(b, "second")
        self.assertEqual(shown, ["<127.0.0.1:40001> first", "<127.0.0.1:40002> second"])
        self.assertEqual(a_out.lines() + b_out.lines(), [])
        self.assertEqual(desk.reply("to you, a"), "127.0.0.1:40001")
        self.assertEqual(a_out.lines(), ["to you, a"])
        b.ended("gone")
        self.assertIsNone(desk.reply("nobody is left"))

    def test_an_answer_never_goes_to_someone_else_when_its_asker_has_gone(self) -> None:
        shown: list[str] = []
        desk = self.server.classic
        desk.console = shown.append
        a, a_out = self.client()
        b, b_out = self.client()
        self.say(a, "what is 2+2?")
        self.say(b, "capital of France?")
        a.input_ended()
        self.assertEqual(shown[-1], "* 127.0.0.1:40001 left; its message waits no more")
        self.assertEqual(desk.reply("Paris"), "127.0.0.1:40002")
        self.assertEqual(b_out.lines(), ["Paris"])
        self.assertEqual(a_out.lines(), ["Goodbye."])

    def test_a_console_that_goes_acknowledges_what_waits(self) -> None:
        desk = self.server.classic
        desk.console = lambda line: None
        a, a_out = self.client()
        self.say(a, "waiting")
        desk.detach()
        self.assertEqual(a_out.lines(), ["Received 7 bytes"])
        self.say(a, "next")
        self.assertEqual(a_out.lines(), ["Received 4 bytes"])

    def test_once_answers_and_closes(self) -> None:
        self.server = ChatServer(ChatConfig(once=True), self.clock)
        a, a_out = self.client()
        self.say(a, "hello", "more")
        self.assertEqual(a_out.lines(), ["Received 5 bytes. Goodbye."])
        self.assertEqual(a_out.closed, "closed")
