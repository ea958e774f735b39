"""
The room, driven through IRoom by recording fake participants, and the slash
commands that reach it.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.helpers import FakeParticipant, welcome
from twisted_tcpchat.commands import HELP, Quit, perform
from twisted_tcpchat.interfaces import IParticipant, IRoom
from twisted_tcpchat.room import Room, format_idle, name_problem
from twisted_tcpchat.wire import Joined, encode_lines


class RoomCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.room = Room(self.clock)

    def joined(self, *labels: str, room: Room | None = None) -> list[FakeParticipant]:
        """Participants joined in order, their inboxes emptied."""
        room = room or self.room
        people = [FakeParticipant(label) for label in labels]
        for person in people:
            room.join(person)
        for person in people:
            person.take()
        return people


class InterfaceTests(RoomCase):
    def test_room_provides_iroom(self) -> None:
        self.assertTrue(verifyObject(IRoom, self.room))

    def test_fake_provides_iparticipant(self) -> None:
        self.assertTrue(verifyObject(IParticipant, FakeParticipant()))


class JoinTests(RoomCase):
    def test_default_names_and_welcome(self) -> None:
        """Each newcomer gets a readable default name and is told it."""
        a, b = FakeParticipant(), FakeParticipant()
        self.room.join(a)
        self.room.join(b)
        self.assertEqual((a.name, b.name), ("guest1", "guest2"))
        self.assertEqual(b.lines, [welcome("guest2")])

    def test_join_announced_to_others(self) -> None:
        (a,) = self.joined("a")
        b = FakeParticipant()
        self.room.join(b)
        self.assertEqual(a.take(), ["* guest2 joined"])

    def test_default_name_skips_taken(self) -> None:
        """A default name someone has taken with /nick is not handed out again."""
        (a,) = self.joined("a")
        self.room.rename(a, "guest2")
        b = FakeParticipant()
        self.room.join(b)
        self.assertEqual(b.name, "guest3")

    def test_join_with_name_taken(self) -> None:
        (_a,) = self.joined("a")
        console = FakeParticipant()
        self.room.join(console, name="GUEST1", operator=True)
        self.assertEqual(console.lines, ["error: the name 'GUEST1' is taken"])
        self.assertEqual(console.name, "")

    def test_joining_twice_is_ignored(self) -> None:
        (a,) = self.joined("a")
        self.room.join(a)
        self.assertEqual(a.take(), [])


class RelayTests(RoomCase):
    def test_line_goes_to_everyone_else_prefixed(self) -> None:
        """A line goes to every other member as <name> text, not back to the sender."""
        a, b, c = self.joined("a", "b", "c")
        self.room.say(a, "hello")
        self.assertEqual(
            (a.take(), b.take(), c.take()), ([], ["<guest1> hello"], ["<guest1> hello"])
        )

    def test_order_is_kept(self) -> None:
        a, b = self.joined("a", "b")
        for i in range(5):
            self.room.say(a, f"m{i}")
        self.assertEqual(b.take(), [f"<guest1> m{i}" for i in range(5)])

    def test_echo(self) -> None:
        """With echo the sender gets its own line back."""
        room = Room(self.clock, echo=True)
        a, _b = self.joined("a", "b", room=room)
        room.say(a, "hi")
        self.assertEqual(a.take(), ["<guest1> hi"])

    def test_action(self) -> None:
        a, b = self.joined("a", "b")
        self.room.act(a, "waves")
        self.assertEqual(b.take(), ["* guest1 waves"])

    def test_someone_outside_the_room_cannot_speak(self) -> None:
        (a,) = self.joined("a")
        stranger = FakeParticipant()
        self.room.say(stranger, "hi")
        self.assertEqual(a.take(), [])
        self.assertEqual(stranger.take(), ["error: you are not in the room"])


class NameTests(RoomCase):
    def test_rename_announced(self) -> None:
        a, b = self.joined("a", "b")
        self.room.rename(a, "alice")
        self.assertEqual(a.name, "alice")
        self.assertEqual(a.take(), ["* you are now alice"])
        self.assertEqual(b.take(), ["* guest1 is now known as alice"])
        self.room.say(a, "hi")
        self.assertEqual(b.take(), ["<alice> hi"])

    def test_names_unique_case_insensitively(self) -> None:
        a, b = self.joined("a", "b")
        self.room.rename(a, "Alice")
        b.take()
        self.room.rename(b, "aLICE")
        self.assertEqual(b.take(), ["error: the name 'aLICE' is taken"])
        self.assertEqual(b.name, "guest2")

    def test_change_case_of_own_name(self) -> None:
        (a,) = self.joined("a")
        self.room.rename(a, "alice")
        self.room.rename(a, "Alice")
        self.assertEqual(a.name, "Alice")

    def test_same_name_again(self) -> None:
        (a,) = self.joined("a")
        self.room.rename(a, "guest1")
        self.assertEqual(a.take(), ["* you are already guest1"])

    def test_invalid_names(self) -> None:
        """Names are 1-30 ASCII letters, digits, _ or -: everything else gets one error line."""
        (a,) = self.joined("a")
        for bad in ["", "a b", "x" * 31, "ali\u0441e", "a.b", "<x>", "a\x1b"]:
            self.room.rename(a, bad)
            (line,) = a.take()
            self.assertTrue(line.startswith(f"error: invalid name {bad!r}: use 1-30"), line)
        self.assertEqual(a.name, "guest1")

    def test_valid_edge_names(self) -> None:
        self.assertIsNone(name_problem("x" * 30))
        self.assertIsNone(name_problem("a_b-C9"))
        self.assertIsNone(name_problem("1"))

    def test_reserved_name(self) -> None:
        (a,) = self.joined("a")
        self.room.rename(a, "Server")
        self.assertEqual(a.take(), ["error: the name 'Server' is reserved"])

    def test_name_free_after_rename(self) -> None:
        """A name is free again the moment its holder renames."""
        a, b = self.joined("a", "b")
        self.room.rename(a, "alice")
        self.room.rename(a, "alicia")
        self.room.rename(b, "alice")
        self.assertEqual(b.name, "alice")

    def test_name_free_after_leave(self) -> None:
        a, b = self.joined("a", "b")
        self.room.rename(a, "alice")
        self.room.leave(a, "bye")
        self.room.rename(b, "alice")
        self.assertEqual(b.name, "alice")

    def test_race_exactly_one_wins(self) -> None:
        """Two members asking for the same name one right after the other: exactly one wins."""
        a, b = self.joined("a", "b")
        self.room.rename(a, "bob")
        self.room.rename(b, "bob")
        self.assertEqual(sorted([a.name, b.name]), ["bob", "guest2"])


class LeaveTests(RoomCase):
    def test_leave_announced_with_reason(self) -> None:
        a, b = self.joined("a", "b")
        self.room.leave(a, "bye")
        self.assertEqual(b.take(), ["* guest1 left (bye)"])
        self.room.say(b, "anyone?")
        self.assertEqual(a.take(), [])

    def test_leave_twice_is_ignored(self) -> None:
        a, b = self.joined("a", "b")
        self.room.leave(a, "bye")
        self.room.leave(a, "bye")
        self.assertEqual(b.take(), ["* guest1 left (bye)"])

    def test_quiet_presence(self) -> None:
        """--quiet-presence: no joins, renames or leaves announced; messages still relayed."""
        room = Room(self.clock, quiet_presence=True)
        a, b = self.joined("a", "b", room=room)
        room.join(FakeParticipant())
        room.rename(a, "alice")
        room.leave(a, "bye")
        self.assertEqual(b.take(), [])
        self.assertEqual(a.take(), ["* you are now alice"])


class HistoryTests(RoomCase):
    def test_newcomer_gets_recent_lines_marked(self) -> None:
        """A newcomer first gets the last N room lines, marked as history, then live traffic."""
        room = Room(self.clock, history=2)
        (a,) = self.joined("a", room=room)
        for text in ["one", "two", "three"]:
            room.say(a, text)
        room.act(a, "waves")
        late = FakeParticipant()
        room.join(late)
        self.assertEqual(
            late.take(),
            [welcome("guest2"), "[history] <guest1> three", "[history] * guest1 waves"],
        )
        room.say(a, "live")
        self.assertEqual(late.take(), ["<guest1> live"])

    def test_a_joined_batch_is_prefixed_whole_and_its_tail_kept(self) -> None:
        """A read's lines as one L{Joined} text: everyone gets them, the history its last N."""
        room = Room(self.clock, history=3)
        a, b = self.joined("a", "b", room=room)
        lines = [f"line {n}" for n in range(10)]
        room.say_lines(a, Joined("\n".join(lines)))
        self.assertEqual(b.take(), [f"<guest1> {line}" for line in lines])
        late = FakeParticipant()
        room.join(late)
        self.assertEqual(
            late.take(),
            [welcome("guest3"), *[f"[history] <guest1> line {n}" for n in (7, 8, 9)]],
        )

    def test_a_name_that_needs_escaping_is_escaped_on_a_joined_batch_too(self) -> None:
        """(Defence in depth: names are checked, so none holds a control.)"""
        (a,) = self.joined("a")
        batches: list[Sequence[str]] = []
        b = FakeParticipant("b")
        b.send_lines = batches.append  # type: ignore[method-assign]
        self.room.join(b)
        self.room._by_participant[a].name = "bad\x1bname"
        self.room.say_lines(a, Joined("one\ntwo"))
        self.assertEqual(encode_lines(batches[-1]), b"<bad\\x1bname> one\r\n<bad\\x1bname> two\r\n")

    def test_history_off(self) -> None:
        room = Room(self.clock, history=0)
        (a,) = self.joined("a", room=room)
        room.say(a, "one")
        late = FakeParticipant()
        room.join(late)
        self.assertEqual(late.take(), [welcome("guest2")])

    def test_private_messages_never_in_history(self) -> None:
        a, _b = self.joined("a", "b")
        self.room.whisper(a, "guest2", "secret")
        late = FakeParticipant()
        self.room.join(late)
        self.assertEqual(late.take(), [welcome("guest3")])


class PrivateTests(RoomCase):
    def test_only_the_target_sees_it(self) -> None:
        a, b, c = self.joined("a", "b", "c")
        self.room.whisper(a, "GUEST2", "psst")
        self.assertEqual(b.take(), ["[private from guest1] psst"])
        self.assertEqual(a.take(), ["[private to guest2] psst"])
        self.assertEqual(c.take(), [])

    def test_unknown_target(self) -> None:
        (a,) = self.joined("a")
        self.room.whisper(a, "nobody", "psst")
        self.assertEqual(a.take(), ["error: no one here is named 'nobody'"])


class WhoTests(RoomCase):
    def test_who_lists_members_with_idle_time(self) -> None:
        a, b = self.joined("a", "b")
        self.room.rename(b, "bob")
        a.take()
        self.clock.advance(125)
        self.room.say(b, "hi")
        self.clock.advance(5)
        self.room.who(a)
        self.assertEqual(
            a.take(), ["<bob> hi", "* 2 online:", "*   bob (idle 5s)", "*   guest1 (idle 2m)"]
        )

    def test_format_idle(self) -> None:
        self.assertEqual(
            [format_idle(s) for s in (0, 59, 60, 3599, 3600, 86400 * 3)],
            ["0s", "59s", "1m", "59m", "1h", "3d"],
        )


class KickTests(RoomCase):
    def test_operator_kicks(self) -> None:
        """An operator's kick: the target is told, removed, told to go; the others see why."""
        op = FakeParticipant()
        self.room.join(op, name="server", operator=True)
        a, b = self.joined("a", "b")
        op.take()
        self.room.kick(op, "guest1", "spam")
        self.assertEqual(a.take(), ["* you were kicked by server: spam"])
        self.assertEqual(a.gone, "kicked by server: spam")
        self.assertEqual(b.take(), ["* guest1 left (kicked by server: spam)"])
        self.room.say(b, "still here")
        self.assertEqual(a.take(), [])

    def test_non_operator_cannot_kick(self) -> None:
        a, b = self.joined("a", "b")
        self.room.kick(a, "guest2", "")
        self.assertEqual(a.take(), ["error: only operators may do that"])
        self.assertIsNone(b.gone)


class CommandTests(RoomCase):
    def test_plain_line_is_said(self) -> None:
        a, b = self.joined("a", "b")
        self.assertIsNone(perform(self.room, a, "hello /there"))
        self.assertEqual(b.take(), ["<guest1> hello /there"])

    def test_blank_line_not_relayed(self) -> None:
        a, b = self.joined("a", "b")
        perform(self.room, a, "   ")
        self.assertEqual(b.take(), [])

    def test_double_slash_sends_literal_slash(self) -> None:
        a, b = self.joined("a", "b")
        perform(self.room, a, "//etc/passwd is a file")
        self.assertEqual(b.take(), ["<guest1> /etc/passwd is a file"])

    def test_nick_msg_me_who(self) -> None:
        a, b = self.joined("a", "b")
        perform(self.room, a, "/nick alice")
        perform(self.room, a, "/msg guest2 hi there")
        perform(self.room, a, "/me waves")
        perform(self.room, b, "/WHO")
        self.assertEqual(
            b.take(),
            [
                "* guest1 is now known as alice",
                "[private from alice] hi there",
                "* alice waves",
                "* 2 online:",
                "*   alice (idle 0s)",
                "*   guest2 (idle 0s)",
            ],
        )

    def test_quit_with_and_without_reason(self) -> None:
        (a,) = self.joined("a")
        quit = perform(self.room, a, "/quit see you")
        self.assertIsInstance(quit, Quit)
        assert quit is not None
        self.assertEqual(quit.reason, "see you")
        quit = perform(self.room, a, "/quit")
        assert quit is not None
        self.assertEqual(quit.reason, "quit")

    def test_help(self) -> None:
        (a,) = self.joined("a")
        perform(self.room, a, "/help")
        self.assertEqual(a.take(), list(HELP))

    def test_unknown_command_one_usage_line_never_relayed(self) -> None:
        a, b = self.joined("a", "b")
        perform(self.room, a, "/dance wildly")
        self.assertEqual(a.take(), ["error: unknown command /dance; /help lists the commands"])
        self.assertEqual(b.take(), [])

    def test_usage_errors(self) -> None:
        (a,) = self.joined("a")
        for line, usage in [
            ("/nick", "/nick NAME"),
            ("/msg", "/msg NAME TEXT"),
            ("/msg guest1", "/msg NAME TEXT"),
            ("/me", "/me ACTION"),
            ("/kick", "/kick NAME [REASON]"),
        ]:
            perform(self.room, a, line)
            self.assertEqual(a.take(), [f"error: usage: {usage}"], line)

    def test_kick_command(self) -> None:
        op = FakeParticipant()
        self.room.join(op, name="server", operator=True)
        (a,) = self.joined("a")
        perform(self.room, op, "/kick guest1 be nice")
        self.assertEqual(a.gone, "kicked by server: be nice")
