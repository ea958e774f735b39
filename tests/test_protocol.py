"""
The server protocol on StringTransport: greeting, messages shown, exit,
--once, line endings, chunking, bad input, and how connections end.
"""

from __future__ import annotations

import random

from twisted.internet.address import IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import CLIENT, connect, lines_of, messages, welcome
from twisted_tcpchat.core.config import DEFAULT_GREETING, ChatConfig
from twisted_tcpchat.core.session import Session
from twisted_tcpchat.frontends.tcp import ChatFactory, address_parts

PEER = f"{CLIENT.host}:{CLIENT.port}"
WHO = f"guest1 ({PEER})"
WELCOME = welcome()


class GreetingTests(SynchronousTestCase):
    def test_default_greeting(self) -> None:
        """A client is greeted with the tutorials' line on connect."""
        _, transport = connect()
        self.assertEqual(lines_of(transport), [DEFAULT_GREETING, WELCOME])

    def test_greeting_template_fields(self) -> None:
        """--greeting may name the client's address, port, the server and the head count."""
        config = ChatConfig(greeting="welcome {peer} ({port}) to {server}; {clients} here")
        _, transport = connect(config)
        self.assertEqual(
            lines_of(transport)[0], "welcome 192.0.2.7 (40001) to 192.0.2.1:65432; 1 here"
        )

    def test_clients_field_counts_connections(self) -> None:
        factory = ChatFactory(ChatConfig(greeting="{clients}"), clock=Clock())
        connect(factory=factory)
        _, second = connect(factory=factory)
        self.assertEqual(lines_of(second)[0], "2")

    def test_multiline_greeting(self) -> None:
        _, transport = connect(ChatConfig(greeting="one\ntwo"))
        self.assertEqual(lines_of(transport), ["one", "two", WELCOME])

    def test_connect_is_logged(self) -> None:
        with capturedLogs() as events:
            connect()
        self.assertEqual(messages(events), [f"{WHO} connected"])


class MessageTests(SynchronousTestCase):
    def test_message_logged_with_sender_and_size(self) -> None:
        """Each line is logged with who sent it, its byte count and its text."""
        protocol, _ = connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"hello\n")
        self.assertEqual(messages(events), [f"{WHO} sent 5 bytes: hello"])

    def test_utf8_counted_in_bytes(self) -> None:
        """The byte count is of the bytes sent: 中文 is 6 bytes."""
        protocol, _ = connect()
        with capturedLogs() as events:
            protocol.dataReceived("中文\r\n".encode())
        self.assertEqual(messages(events), [f"{WHO} sent 6 bytes: 中文"])

    def test_braces_stay_literal_in_the_log(self) -> None:
        """A message is data, never a format string: {} and {peer} stay literal."""
        protocol, _ = connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"{} {peer} {0} {log_format}\n")
        self.assertEqual(
            messages(events), [f"{WHO} sent 26 bytes: {{}} {{peer}} {{0}} {{log_format}}"]
        )

    def test_control_characters_never_reach_the_log_raw(self) -> None:
        """ESC sequences, BEL and bidi overrides are escaped before they are logged."""
        protocol, _ = connect()
        with capturedLogs() as events:
            protocol.dataReceived("\x1b]0;pwned\x07\x1b[2J\u202eabc\n".encode())
        (line,) = messages(events)
        self.assertEqual(line, f"{WHO} sent 20 bytes: \\x1b]0;pwned\\x07\\x1b[2J\\u202eabc")

    def test_lf_and_crlf(self) -> None:
        """LF and CRLF both end a line; the CR is not part of the message."""
        protocol, _ = connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"one\ntwo\r\nthree\r\n")
        self.assertEqual(
            messages(events),
            [
                f"{WHO} sent 3 bytes: one",
                f"{WHO} sent 3 bytes: two",
                f"{WHO} sent 5 bytes: three",
            ],
        )

    def test_no_reply_to_a_message(self) -> None:
        """In the default mode a message is shown to the operator, not answered."""
        protocol, transport = connect()
        protocol.dataReceived(b"hello\n")
        self.assertEqual(lines_of(transport), [DEFAULT_GREETING, WELCOME])
        self.assertFalse(transport.disconnecting)


class ExitTests(SynchronousTestCase):
    def test_exit_word_ends_the_session(self) -> None:
        """'exit' gets a goodbye line, then the connection closes; it is logged."""
        protocol, transport = connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"exit\r\n")
        self.assertEqual(lines_of(transport), [DEFAULT_GREETING, WELCOME, "Goodbye."])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(messages(events), [f"{WHO} ended the session (exit)"])

    def test_lines_after_exit_are_ignored(self) -> None:
        """hello, world and exit joined in one read: two messages, then goodbye; nothing after."""
        protocol, transport = connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"hello\nworld\nexit\nafter\n")
            protocol.dataReceived(b"later\n")
        self.assertEqual(lines_of(transport), [DEFAULT_GREETING, WELCOME, "Goodbye."])
        self.assertEqual(
            messages(events),
            [
                f"{WHO} sent 5 bytes: hello",
                f"{WHO} sent 5 bytes: world",
                f"{WHO} ended the session (exit)",
            ],
        )

    def test_exit_with_surrounding_spaces(self) -> None:
        protocol, transport = connect()
        protocol.dataReceived(b"  exit \n")
        self.assertTrue(transport.disconnecting)

    def test_exit_is_a_whole_line(self) -> None:
        """'exit now' or 'EXIT' is a message, not the exit word."""
        protocol, transport = connect()
        protocol.dataReceived(b"exit now\nEXIT\n")
        self.assertFalse(transport.disconnecting)

    def test_custom_exit_word(self) -> None:
        protocol, transport = connect(ChatConfig(exit_word="bye"))
        protocol.dataReceived(b"exit\n")
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"bye\n")
        self.assertEqual(lines_of(transport)[-1], "Goodbye.")
        self.assertTrue(transport.disconnecting)

    def test_client_disconnect_logged_once(self) -> None:
        """A client that closes (FIN) is logged once, without a traceback."""
        protocol, _ = connect()
        with capturedLogs() as events:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(messages(events), [f"{WHO} disconnected (closed by the client)"])
        self.assertFalse([e for e in events if e.get("log_failure")])

    def test_client_reset_logged_once(self) -> None:
        """A client that resets (RST) is logged once, with the reason."""
        protocol, _ = connect()
        with capturedLogs() as events:
            protocol.connectionLost(Failure(ConnectionLost("Connection reset by peer")))
        (line,) = messages(events)
        self.assertIn(f"{WHO} disconnected (connection lost:", line)
        self.assertIn("Connection reset by peer", line)

    def test_no_second_log_line_after_exit(self) -> None:
        protocol, _ = connect()
        protocol.dataReceived(b"exit\n")
        with capturedLogs() as events:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(messages(events), [])

    def test_closing_peer_that_does_not_read_is_aborted(self) -> None:
        """A peer that does not take the goodbye within the grace time is cut off."""
        clock = Clock()
        protocol, transport = connect(ChatConfig(close_grace=2.0), clock=clock)
        protocol.dataReceived(b"exit\n")
        clock.advance(1.9)
        self.assertFalse(transport.disconnected)
        clock.advance(0.2)
        self.assertTrue(transport.disconnected)  # what abortConnection sets

    def test_abort_timer_cancelled_when_closed_in_time(self) -> None:
        clock = Clock()
        protocol, transport = connect(clock=clock)
        protocol.dataReceived(b"exit\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertFalse(transport.disconnected)


class OnceTests(SynchronousTestCase):
    def test_once_acknowledges_one_message_and_closes(self) -> None:
        """--once: greet, take one message, show it, acknowledge it, close."""
        protocol, transport = connect(ChatConfig(once=True))
        with capturedLogs() as events:
            protocol.dataReceived(b"hello,this is client\nsecond\n")
        self.assertEqual(lines_of(transport), [DEFAULT_GREETING, "Received 20 bytes. Goodbye."])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            messages(events),
            [f"{PEER} sent 20 bytes: hello,this is client", f"{PEER} was served once"],
        )

    def test_once_exit_first(self) -> None:
        protocol, transport = connect(ChatConfig(once=True))
        protocol.dataReceived(b"exit\n")
        self.assertEqual(lines_of(transport), [DEFAULT_GREETING, "Goodbye."])

    def test_once_serves_clients_concurrently(self) -> None:
        """While one --once client has not sent yet, another is greeted and served."""
        factory = ChatFactory(ChatConfig(once=True), clock=Clock())
        slow, slow_transport = connect(factory=factory)
        fast, fast_transport = connect(factory=factory)
        fast.dataReceived(b"quick\n")
        self.assertEqual(lines_of(fast_transport)[-1], "Received 5 bytes. Goodbye.")
        self.assertFalse(slow_transport.disconnecting)
        slow.dataReceived(b"slow\n")
        self.assertEqual(lines_of(slow_transport)[-1], "Received 4 bytes. Goodbye.")


class BadInputTests(SynchronousTestCase):
    def test_overlong_line_gets_an_error_and_client_stays(self) -> None:
        """A line longer than the limit gets an error line, is not shown; the next line is."""
        protocol, transport = connect(ChatConfig(max_line=10))
        with capturedLogs() as events:
            protocol.dataReceived(b"x" * 11 + b"\nok\n")
        self.assertEqual(
            lines_of(transport)[2:],
            ["error: line too long (11 bytes; the limit is 10); not delivered"],
        )
        self.assertFalse(transport.disconnecting)
        self.assertEqual(
            messages(events),
            [f"{WHO} sent an over-long line (11 bytes); dropped", f"{WHO} sent 2 bytes: ok"],
        )

    def test_unterminated_flood_disconnects(self) -> None:
        """More than the unterminated limit without a line end: error line, then disconnect."""
        protocol, transport = connect(ChatConfig(max_line=10, max_unterminated=100))
        protocol.dataReceived(b"y" * 100)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"y")
        self.assertEqual(
            lines_of(transport)[2:],
            ["error: 101 bytes without a line end (the limit is 100); disconnecting"],
        )
        self.assertTrue(transport.disconnecting)

    def test_undecodable_bytes_get_an_error_line(self) -> None:
        """Bytes in no known encoding get one error line and are logged escaped."""
        protocol, transport = connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"\xff\xfeabc\n")
        self.assertEqual(
            lines_of(transport)[2:], ["error: that line is not UTF-8 or GBK text; not delivered"]
        )
        self.assertEqual(
            messages(events), [f"{WHO} sent 5 bytes in no known encoding: \\xff\\xfeabc"]
        )

    def test_exception_in_handler_answers_internal_error(self) -> None:
        """A bug handling one line answers 'internal error', logs one traceback, and goes on."""
        protocol, transport = connect()
        calls = []

        def broken(session: Session, text: str, size: int) -> None:
            calls.append(text)
            if text == "/boom":
                raise RuntimeError("bug")

        self.patch(Session, "_other_line_in_chat", broken)
        with capturedLogs() as events:
            protocol.dataReceived(b"/boom\n/fine\n")
        self.assertEqual(calls, ["/boom", "/fine"])
        self.assertEqual(
            lines_of(transport)[2:], ["error: internal error; your line was not handled"]
        )
        failures = [e for e in events if e.get("log_failure")]
        self.assertEqual(len(failures), 1)
        self.assertFalse(transport.disconnecting)
        self.flushLoggedErrors(RuntimeError)


STREAM = b"hello\r\nworld\n\xe4\xb8\xad\xe6\x96\x87\r\n{x}\n" + b"z" * 40 + b"\nexit\nignored\n"


def run_stream(cuts: list[int]) -> tuple[list[str], list[str], bool]:
    protocol, transport = connect(ChatConfig(max_line=32))
    start = 0
    with capturedLogs() as events:
        for cut in [*sorted(cuts), len(STREAM)]:
            protocol.dataReceived(STREAM[start:cut])
            start = cut
    return lines_of(transport), messages(events), transport.disconnecting


class ChunkingTests(SynchronousTestCase):
    def test_whole_bytewise_and_random_splits_agree(self) -> None:
        """The same stream whole, byte by byte and in random splits: same replies, same log."""
        whole = run_stream([])
        self.assertEqual(
            whole[0][-2:],
            ["error: line too long (40 bytes; the limit is 32); not delivered", "Goodbye."],
        )
        self.assertEqual(len(whole[1]), 6)
        self.assertTrue(whole[2])
        self.assertEqual(run_stream(list(range(1, len(STREAM)))), whole)
        rng = random.Random(6357)
        for _ in range(100):
            cuts = rng.sample(range(1, len(STREAM)), rng.randint(1, 12))
            self.assertEqual(run_stream(cuts), whole)


class AddressTests(SynchronousTestCase):
    def test_ipv4_mapped_shown_as_ipv4(self) -> None:
        self.assertEqual(address_parts(IPv6Address("TCP", "::ffff:127.0.0.1", 5)), ("127.0.0.1", 5))

    def test_ipv6(self) -> None:
        self.assertEqual(address_parts(IPv6Address("TCP", "::1", 5)), ("::1", 5))

    def test_unix(self) -> None:
        self.assertEqual(address_parts(UNIXAddress(None)), ("unix", 0))

    def test_ipv6_peer_in_log_is_bracketed(self) -> None:
        protocol, _ = connect(peer=IPv6Address("TCP", "::1", 7))  # type: ignore[arg-type]
        with capturedLogs() as events:
            protocol.dataReceived(b"hi\n")
        self.assertEqual(messages(events), ["guest1 ([::1]:7) sent 2 bytes: hi"])


class HalfCloseTests(SynchronousTestCase):
    def test_half_close_flushes_and_closes(self) -> None:
        """A client that shuts down its sending side gets what it is owed, then the close."""
        protocol, transport = connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"hi\n")
            protocol.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            messages(events),
            [f"{WHO} sent 2 bytes: hi", f"{WHO} disconnected (closed by the client)"],
        )
        with capturedLogs() as events:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(messages(events), [])

    def test_unterminated_last_line_is_a_message_at_eof(self) -> None:
        """A message sent with no line end at all, then EOF, is still shown (C send())."""
        protocol, _ = connect()
        with capturedLogs() as events:
            protocol.dataReceived(b"no newline")
            protocol.readConnectionLost()
        self.assertEqual(messages(events)[0], f"{WHO} sent 10 bytes: no newline")

    def test_once_with_unterminated_message_and_eof(self) -> None:
        """--once: a message without a line end followed by EOF is acknowledged."""
        protocol, transport = connect(ChatConfig(once=True))
        protocol.dataReceived(b"hello")
        protocol.readConnectionLost()
        self.assertEqual(lines_of(transport)[-1], "Received 5 bytes. Goodbye.")
