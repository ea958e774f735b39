"""
Bad input, every case its own test, on StringTransport with task.Clock:
framing, encodings, sanitising, limits, lifecycle, traffic that is not chat.
The rule each time: one clear answer to that client and/or one log line,
nothing lost or delayed for anyone else, memory bounded, no crash.
"""

from __future__ import annotations

import socket

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import Client, messages
from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.frontends.tcp import ChatFactory, ChatProtocol, tune_tcp
from twisted_tcpchat.testing import RecordingParticipant

LOCAL = IPv4Address("TCP", "127.0.0.1", 50000)


def remote(n: int = 7, port: int = 40000) -> IPv4Address:
    return IPv4Address("TCP", f"192.0.2.{n}", port)


class BadInputCase(SynchronousTestCase):
    config = ChatConfig()

    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = ChatFactory(self.config, clock=self.clock)

    def client(self, peer: IPv4Address | IPv6Address = LOCAL, *, fresh: bool = True) -> Client:
        client = Client(self.factory, peer)
        if fresh:
            client.new_lines()
        return client

    def pair(self) -> tuple[Client, Client]:
        """A sender (exempt, on loopback) and a reader, both past their welcome."""
        sender, reader = self.client(), self.client(remote(9))
        sender.new_lines()
        return sender, reader


class FramingTests(BadInputCase):
    def test_nul_ends_a_line(self) -> None:
        sender, reader = self.pair()
        sender.send(b"hello\0")
        self.assertEqual(reader.new_lines(), ["<guest1> hello"])

    def test_whole_fixed_buffer_relays_only_the_c_string(self) -> None:
        """A 1000-byte buffer: C string, NUL, an older message's leftovers: the string only."""
        sender, reader = self.pair()
        buffer = b"hi\0" + b"ld message that was longer\n" + b"\0" * 970
        sender.send(buffer)
        self.assertEqual(reader.new_lines(), ["<guest1> hi"])

    def test_zero_filled_buffer(self) -> None:
        sender, reader = self.pair()
        sender.send(b"yo" + b"\0" * 998)
        self.assertEqual(reader.new_lines(), ["<guest1> yo"])

    def test_no_terminator_is_one_message_once_quiet(self) -> None:
        """send(s, buf, strlen(buf), 0): after a quiet moment, what was sent is one message."""
        sender, reader = self.pair()
        sender.send(b"hello,this is client")
        self.assertEqual(reader.new_lines(), [])
        self.clock.advance(0.3)
        self.assertEqual(reader.new_lines(), ["<guest1> hello,this is client"])

    def test_no_terminator_pieces_joined_until_quiet(self) -> None:
        sender, reader = self.pair()
        sender.send(b"hel")
        self.clock.advance(0.2)
        sender.send(b"lo")
        self.clock.advance(0.2)
        self.assertEqual(reader.new_lines(), [])
        self.clock.advance(0.1)
        self.assertEqual(reader.new_lines(), ["<guest1> hello"])

    def test_line_client_held_to_lines(self) -> None:
        """Once a client has ended a line, a partial line waits for its end (telnet typing)."""
        sender, reader = self.pair()
        sender.send(b"first\nsecond half")
        self.clock.advance(10)
        self.assertEqual(reader.new_lines(), ["<guest1> first"])
        sender.send(b" done\n")
        self.assertEqual(reader.new_lines(), ["<guest1> second half done"])

    def test_crlf_split_across_reads(self) -> None:
        sender, reader = self.pair()
        sender.send(b"split\r")
        sender.send(b"\n")
        self.assertEqual(reader.new_lines(), ["<guest1> split"])

    def test_bare_cr_inside_a_line_is_escaped(self) -> None:
        """A bare CR could overwrite the reader's line: it arrives as \\x0d."""
        sender, reader = self.pair()
        sender.send(b"innocent\rEVIL\n")
        self.assertEqual(reader.new_lines(), ["<guest1> innocent\\x0dEVIL"])

    def test_blank_lines_not_relayed(self) -> None:
        sender, reader = self.pair()
        sender.send(b"\n\r\n   \n")
        self.assertEqual(reader.new_lines(), [])


class EncodingTests(BadInputCase):
    def test_gbk_client_understood(self) -> None:
        """A Chinese Windows console's GBK reaches a UTF-8 reader as UTF-8."""
        sender, reader = self.pair()
        sender.send("你好，世界\r\n".encode("gbk"))
        self.assertEqual(reader.new_lines(), ["<guest1> 你好，世界"])

    def test_gbk_client_gets_gbk(self) -> None:
        """What is sent to a client detected as GBK goes out in GBK."""
        gbk, utf8 = self.pair()
        gbk.send("我在这里\n".encode("gbk"))
        gbk.new_lines("gbk")
        utf8.send("中文消息\n".encode())
        self.assertEqual(gbk.new_lines("gbk"), ["<guest2> 中文消息"])

    def test_valid_utf8_wins_after_gbk(self) -> None:
        """
        A client that sent a GBK line and then sends valid UTF-8 is read as
        UTF-8 (not GBK mojibake), in one read or line by line, and answered in UTF-8.
        """
        switcher, reader = self.pair()
        switcher.send("你好\n".encode("gbk"))
        switcher.send("世界\n".encode())
        switcher.send("你好\n".encode("gbk") + "世界\n".encode())
        self.assertEqual(
            reader.new_lines(),
            ["<guest1> 你好", "<guest1> 世界", "<guest1> 你好", "<guest1> 世界"],
        )
        switcher.new_lines()
        reader.send("收到\n".encode())
        self.assertEqual(switcher.new_lines(), ["<guest2> 收到"])

    def test_character_outside_gbk_becomes_question_mark(self) -> None:
        gbk, utf8 = self.pair()
        gbk.send("中\n".encode("gbk"))
        gbk.new_lines("gbk")
        utf8.send("smile 😀\n".encode())
        self.assertEqual(gbk.new_lines("gbk"), ["<guest2> smile ?"])

    def test_undecodable_bytes_error_not_relayed(self) -> None:
        sender, reader = self.pair()
        with capturedLogs() as events:
            sender.send(b"\xff\xff\xfe\n")
        self.assertEqual(
            sender.new_lines(), ["error: that line is not UTF-8 or GBK text; not delivered"]
        )
        self.assertEqual(reader.new_lines(), [])
        self.assertEqual(len(messages(events)), 1)

    def test_fixed_encoding(self) -> None:
        factory = ChatFactory(ChatConfig(encoding="latin-1"), clock=self.clock)
        sender, reader = Client(factory, LOCAL), Client(factory, remote(9))
        sender.new_lines("latin-1")
        reader.new_lines("latin-1")
        sender.send("café\n".encode("latin-1"))
        self.assertEqual(reader.new_lines("latin-1"), ["<guest1> café"])


class SanitisingTests(BadInputCase):
    def test_escape_sequence(self) -> None:
        sender, reader = self.pair()
        sender.send(b"\x1b[2J\x1b[31mred\n")
        self.assertEqual(reader.new_lines(), ["<guest1> \\x1b[2J\\x1b[31mred"])

    def test_osc_title(self) -> None:
        sender, reader = self.pair()
        sender.send(b"\x1b]0;owned\x07title\n")
        self.assertEqual(reader.new_lines(), ["<guest1> \\x1b]0;owned\\x07title"])

    def test_backspace_and_bell(self) -> None:
        sender, reader = self.pair()
        sender.send(b"abc\x08\x08\x08xyz\x07\n")
        self.assertEqual(reader.new_lines(), ["<guest1> abc\\x08\\x08\\x08xyz\\x07"])

    def test_del_and_c1(self) -> None:
        sender, reader = self.pair()
        sender.send("a\x7fb\x9bc\x85\n".encode())
        self.assertEqual(reader.new_lines(), ["<guest1> a\\x7fb\\x9bc\\x85"])

    def test_bidi_override(self) -> None:
        sender, reader = self.pair()
        sender.send("admin\u202egnp.exe\u2069\n".encode())
        self.assertEqual(reader.new_lines(), ["<guest1> admin\\u202egnp.exe\\u2069"])

    def test_tab_stays(self) -> None:
        sender, reader = self.pair()
        sender.send(b"a\tb\n")
        self.assertEqual(reader.new_lines(), ["<guest1> a\tb"])

    def test_control_characters_in_the_log_escaped(self) -> None:
        sender, _ = self.pair()
        with capturedLogs() as events:
            sender.send(b"\x1b[31mred\x07\n")
        self.assertEqual(
            messages(events), ["guest1 (127.0.0.1:50000) sent 9 bytes: \\x1b[31mred\\x07"]
        )

    def test_every_byte_sent_to_a_client_is_safe(self) -> None:
        """No raw control byte but TAB and the CRLF line ends ever reaches a client."""
        sender, reader = self.pair()
        sender.send(bytes(range(1, 256)).replace(b"\n", b"") + b"\n")
        sender.send(bytes(range(1, 128)).replace(b"\n", b"") + b"\n")
        raw = reader.raw().replace(b"\r\n", b"")
        self.assertFalse([b for b in raw if (b < 0x20 and b != 0x09) or b == 0x7F], raw)
        self.assertIn(b"\\x1b", raw)


class LengthTests(BadInputCase):
    config = ChatConfig(max_line=20, max_unterminated=100)

    def test_overlong_line_error_and_good_line_still_delivered(self) -> None:
        sender, reader = self.pair()
        sender.send(b"x" * 21 + b"\nshort\n")
        self.assertEqual(
            sender.new_lines(), ["error: line too long (21 bytes; the limit is 20); not delivered"]
        )
        self.assertEqual(reader.new_lines(), ["<guest1> short"])
        self.assertFalse(sender.transport.disconnecting)

    def test_unterminated_flood_error_then_disconnect(self) -> None:
        sender, reader = self.pair()
        sender.send(b"y" * 101)
        self.assertEqual(
            sender.new_lines(),
            ["error: 101 bytes without a line end (the limit is 100); disconnecting"],
        )
        self.assertTrue(sender.transport.disconnecting)
        self.assertEqual(reader.new_lines(), ["* guest1 left (line too long)"])


class FloodTests(BadInputCase):
    config = ChatConfig(flood_burst=3, flood_rate=2.0, flood_queue=5)

    def flooder(self) -> tuple[Client, Client]:
        flooder, reader = self.client(remote(7)), self.client(LOCAL)
        flooder.new_lines()
        return flooder, reader

    def test_burst_passes_at_once(self) -> None:
        flooder, reader = self.flooder()
        flooder.send(b"1\n2\n3\n")
        self.assertEqual(reader.new_lines(), ["<guest1> 1", "<guest1> 2", "<guest1> 3"])

    def test_excess_delayed_not_dropped_in_order(self) -> None:
        flooder, reader = self.flooder()
        flooder.send(b"1\n2\n3\n4\n5\n")
        self.assertEqual(len(reader.new_lines()), 3)
        self.clock.advance(0.5)
        self.assertEqual(reader.new_lines(), ["<guest1> 4"])
        self.clock.advance(0.5)
        self.assertEqual(reader.new_lines(), ["<guest1> 5"])

    def test_reading_paused_while_lines_wait(self) -> None:
        """While lines wait, the flooder's connection is not read: TCP pushes back on it."""
        flooder, _ = self.flooder()
        flooder.send(b"1\n2\n3\n4\n")
        self.assertEqual(flooder.transport.producerState, "paused")
        self.clock.advance(0.5)
        self.assertEqual(flooder.transport.producerState, "producing")

    def test_too_many_waiting_disconnects_with_reason(self) -> None:
        flooder, reader = self.flooder()
        with capturedLogs() as events:
            flooder.send(b"".join(b"%d\n" % i for i in range(10)))
        self.assertEqual(
            flooder.new_lines(),
            ["error: excess flood: more than 5 lines waiting; disconnecting"],
        )
        self.assertTrue(flooder.transport.disconnecting)
        self.assertEqual(
            reader.new_lines(),
            ["<guest1> 0", "<guest1> 1", "<guest1> 2", "* guest1 left (excess flood)"],
            "the burst is relayed before the excess is counted",
        )
        self.assertIn(
            "guest1 (192.0.2.7:40000) flooded (7 lines waiting); disconnected", messages(events)
        )

    def test_loopback_exempt(self) -> None:
        """Loopback is exempt by default (as ergo does): local tools are not paced."""
        sender, reader = self.client(LOCAL), self.client(remote(9))
        sender.send(b"".join(b"%d\n" % i for i in range(30)))
        self.assertEqual(len(reader.new_lines()), 30)

    def test_flooder_does_not_delay_others(self) -> None:
        flooder, reader = self.flooder()
        other = self.client(remote(8))
        reader.new_lines()
        flooder.send(b"1\n2\n3\n4\n")
        other.send(b"meanwhile\n")
        self.assertEqual(reader.new_lines()[-1], "<guest3> meanwhile")


class SendQueueTests(BadInputCase):
    config = ChatConfig(send_queue=1000)

    def test_non_reader_cut_off_past_the_cap(self) -> None:
        """A client that stops reading is cut off once its queue passes the cap; others get all."""
        stuck, sender = self.client(remote(7)), self.client(LOCAL)
        reader = self.client(remote(8))
        stuck.new_lines()
        sender.new_lines()
        stuck.protocol.pauseProducing()  # what Twisted does when 64 KiB are unsent
        with capturedLogs() as events:
            for i in range(40):
                sender.send(b"line %02d " % i + b"z" * 30 + b"\n")
                self.clock.advance(0)  # (the end of the turn)
        self.assertTrue(stuck.transport.disconnected, "aborted, not closed politely")
        self.assertEqual(len([x for x in reader.new_lines() if x.startswith("<guest2> line")]), 40)
        log = messages(events)
        self.assertTrue(any("disconnected: not reading" in line for line in log), log)

    def test_reader_that_catches_up_is_kept(self) -> None:
        slow, sender = self.client(remote(7)), self.client(LOCAL)
        for _ in range(5):
            slow.protocol.pauseProducing()
            for _ in range(10):
                sender.send(b"x" * 50 + b"\n")
            slow.protocol.resumeProducing()
        self.assertFalse(slow.transport.disconnecting)

    def test_a_reader_cut_off_mid_relay_leaves_only_once_the_relay_is_done(self) -> None:
        """
        The send queue overflowing while a room relays (a TLS client: it is
        written to at once) does not take the reader out mid-relay: the room
        finishes, and the reader leaves at the end of the turn, from the
        room it is in.
        """
        stuck, sender = self.client(remote(7)), self.client(LOCAL)
        other = self.client(remote(8))
        stuck.send(b"/join dev\n")
        other.send(b"/join dev\n")
        other.new_lines()
        stuck.protocol.pauseProducing()
        other.send(b"y" * 980 + b"\n")  # 991 bytes queued for stuck: under its cap of 1000
        self.clock.advance(0)
        sender.send(b"/join dev\n")  # the presence line takes it over
        self.assertIn("* guest2 came from #lobby", other.new_lines())
        self.clock.advance(0)
        self.assertEqual(other.new_lines(), ["* guest1 left (not reading)"])
        other.send(b"/who\n")
        self.assertEqual(
            other.new_lines(), ["* 2 in #dev:", "*   guest2 (idle 0s)", "*   guest3 (idle 0s)"]
        )

    def test_others_see_the_reason(self) -> None:
        stuck, sender = self.client(remote(7)), self.client(LOCAL)
        sender.new_lines()
        stuck.protocol.pauseProducing()
        sender.send(b"".join(b"y" * 100 + b"\n" for _ in range(20)))
        self.clock.advance(0)  # (the end of the turn)
        self.assertIn("* guest1 left (not reading)", sender.new_lines())


class AdmissionTests(BadInputCase):
    config = ChatConfig(max_clients=2, per_address=2, connect_rate=3)

    def test_server_full_line_never_silent(self) -> None:
        a, _ = self.client(LOCAL), self.client(LOCAL)
        a.new_lines()
        full = Client(self.factory, remote(5))
        self.assertEqual(full.new_lines(), ["error: server full (2 clients); try again later"])
        self.assertTrue(full.transport.disconnecting)
        self.assertEqual(a.new_lines(), [], "the refused client never joined the room")

    def test_slot_free_again_after_leave(self) -> None:
        a, _ = self.client(LOCAL), self.client(LOCAL)
        a.lost()
        again = Client(self.factory, remote(5))
        self.assertFalse(again.transport.disconnecting)

    def test_per_address_limit(self) -> None:
        factory = ChatFactory(ChatConfig(per_address=2), clock=self.clock)
        Client(factory, remote(7, 1))
        Client(factory, remote(7, 2))
        third = Client(factory, remote(7, 3))
        self.assertEqual(
            third.new_lines(),
            ["error: too many connections from your address (the limit is 2); try again later"],
        )
        self.assertFalse(Client(factory, remote(8)).transport.disconnecting)

    def test_ipv6_counted_by_64(self) -> None:
        factory = ChatFactory(ChatConfig(per_address=2), clock=self.clock)
        Client(factory, IPv6Address("TCP", "2001:db8::1", 1))
        Client(factory, IPv6Address("TCP", "2001:db8::2", 2))
        third = Client(factory, IPv6Address("TCP", "2001:db8::ffff:3", 3))
        self.assertTrue(third.transport.disconnecting)
        other = Client(factory, IPv6Address("TCP", "2001:db8:0:1::1", 4))
        self.assertFalse(other.transport.disconnecting)

    def test_connect_rate(self) -> None:
        factory = ChatFactory(ChatConfig(connect_rate=3), clock=self.clock)
        for port in range(3):
            Client(factory, remote(7, port)).lost()
        fourth = Client(factory, remote(7, 9))
        self.assertEqual(
            fourth.new_lines(),
            [
                "error: too many new connections from your address (the limit is 3 per 60 s); "
                "try again in 61 s"
            ],
        )
        self.clock.advance(61)
        self.assertFalse(Client(factory, remote(7, 10)).transport.disconnecting)

    def test_exempt_network_lifts_per_address_limits(self) -> None:
        factory = ChatFactory(ChatConfig(per_address=1, exempt=("192.0.2.0/24",)), clock=self.clock)
        clients = [Client(factory, remote(7, p)) for p in range(5)]
        self.assertFalse(any(c.transport.disconnecting for c in clients))

    def test_no_exemption(self) -> None:
        factory = ChatFactory(ChatConfig(per_address=1, exempt=()), clock=self.clock)
        Client(factory, LOCAL)
        self.assertTrue(Client(factory, LOCAL).transport.disconnecting)


class IdleTests(BadInputCase):
    config = ChatConfig(idle_timeout=60)

    def test_idle_client_disconnected_with_reason(self) -> None:
        idle, other = self.client(remote(7)), self.client(remote(8))
        idle.new_lines()
        self.clock.advance(60)
        self.assertEqual(idle.new_lines(), ["error: idle for 60 s; disconnecting"])
        self.assertTrue(idle.transport.disconnecting)
        self.assertIn("* guest1 left (timed out)", other.new_lines())

    def test_activity_resets_the_timer(self) -> None:
        busy = self.client(remote(7))
        for _ in range(5):
            self.clock.advance(50)
            busy.send(b"still here\n")
        self.assertFalse(busy.transport.disconnecting)

    def test_off_by_default_never_server_wide(self) -> None:
        factory = ChatFactory(ChatConfig(), clock=self.clock)
        client = Client(factory, remote(7))
        self.clock.advance(10 * 86400)
        self.assertFalse(client.transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class KeepaliveTests(SynchronousTestCase):
    def test_keepalive_tuned_on_tcp_sockets(self) -> None:
        """Keepalive probes start after 60 s, every 10 s, 6 times; TCP_NODELAY is set."""
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        try:

            class Handle:
                def getHandle(self) -> socket.socket:
                    return server

            tune_tcp(Handle(), 60)
            opt = server.getsockopt
            self.assertEqual(opt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
            self.assertEqual(opt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 60)
            self.assertEqual(opt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), 10)
            self.assertEqual(opt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT), 6)
            self.assertEqual(opt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        finally:
            for s in (listener, client, server):
                s.close()


class LifecycleTests(BadInputCase):
    config = ChatConfig(flood_burst=1, flood_rate=1.0)

    def test_half_close_delivers_waiting_lines_then_closes(self) -> None:
        flooder, reader = self.client(remote(7)), self.client(LOCAL)
        flooder.new_lines()
        flooder.send(b"a\nb\nc\n")
        flooder.protocol.readConnectionLost()
        self.assertFalse(flooder.transport.disconnecting)
        self.clock.pump([1, 1])
        self.assertEqual(
            reader.new_lines(),
            ["<guest1> a", "<guest1> b", "<guest1> c", "* guest1 left (disconnected)"],
        )
        self.assertTrue(flooder.transport.disconnecting)

    def test_shutdown_tells_every_client(self) -> None:
        a, b = self.client(LOCAL), self.client(remote(7))
        self.factory.server.shut_down()
        self.assertEqual(a.new_lines()[-1], "server shutting down")
        self.assertEqual(b.new_lines()[-1], "server shutting down")
        self.assertTrue(a.transport.disconnecting and b.transport.disconnecting)

    def test_closing_connection_cut_off_after_grace(self) -> None:
        a = self.client(LOCAL)
        a.send(b"exit\n")
        self.clock.advance(2.1)
        self.assertTrue(a.transport.disconnected)


class NotChatTests(BadInputCase):
    def test_http_request_explained_and_closed(self) -> None:
        web, reader = self.client(remote(7)), self.client(LOCAL)
        web.new_lines()
        web.send(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        self.assertEqual(
            web.new_lines(),
            ["error: this is a chat server, not a web server; connect with nc or tcpchat"],
        )
        self.assertTrue(web.transport.disconnecting)
        self.assertNotIn("<guest1> GET / HTTP/1.1", reader.new_lines())

    def test_tls_client_hello_explained_and_closed(self) -> None:
        tls = self.client(remote(7))
        tls.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32))
        self.assertEqual(
            tls.new_lines(), ["error: this port speaks plain text, not TLS; connect without TLS"]
        )
        self.assertTrue(tls.transport.disconnecting)

    def test_http_words_later_are_chat(self) -> None:
        sender, reader = self.pair()
        sender.send(b"hi\n")
        sender.send(b"GET / HTTP/1.1\n")
        self.assertEqual(reader.new_lines(), ["<guest1> hi", "<guest1> GET / HTTP/1.1"])


class RobustnessTests(BadInputCase):
    def test_data_after_close_is_ignored(self) -> None:
        a, reader = self.pair()
        a.send(b"exit\nlate\n")
        a.send(b"later\n")
        self.assertEqual(reader.new_lines(), ["* guest1 left (exit)"])

    def test_writes_after_disconnect_are_harmless(self) -> None:
        a, b = self.pair()
        a.lost()
        b.send(b"to nobody\n")
        self.assertEqual(a.transport.value().count(b"to nobody"), 0)

    def test_refused_client_connection_lost_is_quiet(self) -> None:
        factory = ChatFactory(ChatConfig(max_clients=1), clock=self.clock)
        Client(factory, LOCAL)
        refused = Client(factory, LOCAL)
        with capturedLogs() as events:
            refused.lost()
        self.assertEqual(messages(events), [])
        self.assertEqual(factory.server.client_count, 1)

    def test_protocol_without_session_errors_cleanly(self) -> None:
        """A protocol is only ever used connected: buildProtocol + makeConnection."""
        protocol = self.factory.buildProtocol(LOCAL)
        self.assertIsInstance(protocol, ChatProtocol)
        protocol.makeConnection(StringTransport(peerAddress=LOCAL))
        protocol.dataReceived(b"fine\n")


class ReviewFindingsTests(BadInputCase):
    """Cases an independent review found; each failed before its fix."""

    def test_quit_reason_reaches_the_log_escaped(self) -> None:
        sender, _ = self.pair()
        with capturedLogs() as events:
            sender.send("/quit x\rFAKE \x1b[2J")
        log = "\n".join(messages(events))
        self.assertNotIn("\x1b", log)
        self.assertNotIn("\r", log)
        self.assertIn("quit (x\\x0dFAKE \\x1b[2J)", log)

    def test_echo_reaches_others_before_the_sender_can_be_cut_off(self) -> None:
        """With --echo, a sender cut off by its own echo never leaves before its line arrives."""
        factory = ChatFactory(ChatConfig(echo=True, send_queue=10), clock=self.clock)
        sender, reader = Client(factory, LOCAL), Client(factory, remote(9))
        sender.new_lines()
        reader.new_lines()
        sender.protocol.pauseProducing()  # not reading: its echo overflows the queue
        sender.send("hello there")
        self.clock.advance(0)  # (the end of the turn)
        self.assertEqual(
            reader.new_lines(), ["<guest1> hello there", "* guest1 left (not reading)"]
        )

    def test_shutdown_empties_the_room(self) -> None:
        self.client(LOCAL)
        self.client(remote(7))
        self.factory.server.shut_down()
        directory = self.factory.server.directory
        console = RecordingParticipant()
        directory.enter(console)
        directory.who(console)
        self.assertEqual(console.lines()[-2:], ["* 1 in #lobby:", "*   guest3 (idle 0s)"])


class TokenBucketTests(SynchronousTestCase):
    def test_rounding_never_gives_a_wait_too_small_to_pass(self) -> None:
        """
        Found by the fuzz test: tokens a hair under 1 made a wait of ~1e-15 s,
        and at a large clock value now + wait == now, so the drain spun forever.
        """
        from twisted_tcpchat.core.limits import TokenBucket

        bucket = TokenBucket(rate=3.0, burst=1, now=1e9)
        bucket._tokens = 1 - 1e-15
        self.assertEqual(bucket.delay(1e9), 0.0)
        wait = bucket.delay(1e9)
        self.assertGreater(1e9 + wait, 1e9)

    def test_burst_then_rate(self) -> None:
        from twisted_tcpchat.core.limits import TokenBucket

        bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
        self.assertEqual([bucket.delay(0.0) for _ in range(3)], [0.0, 0.0, 0.0])
        self.assertEqual(bucket.delay(0.0), 0.5)
        self.assertEqual(bucket.delay(0.5), 0.0)
