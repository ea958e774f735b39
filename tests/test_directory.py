"""
The directory and its rooms, through IDirectory, heard by recording
participants.

L{DirectoryContract} holds what every implementation must do; each backend
runs it by subclassing with its own L{DirectoryContract.make_directory}
(today the in-memory one; a Redis-backed one runs the same cases).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_tcpchat.core.events import (
    Error,
    Event,
    History,
    Identity,
    Members,
    Message,
    Presence,
    Private,
)
from twisted_tcpchat.core.interfaces import IDirectory, IParticipant, IRoom, Origin
from twisted_tcpchat.core.names import format_idle
from twisted_tcpchat.rooms.memory import Directory
from twisted_tcpchat.testing import RecordingParticipant


def welcome(name: str) -> str:
    return f"* you are {name}; /nick NAME changes it, /help lists the commands"


class DirectoryContract:
    """The cases every L{IDirectory} implementation must pass."""

    clock: Clock
    #: What an address banned without a time limit is told.
    banned_for_good = "your address is banned until the server restarts"

    # what a backend provides

    def make_directory(self, **settings: Any) -> IDirectory:
        raise NotImplementedError

    def settle(self) -> None:
        """Let every request made so far be answered (a remote backend waits here)."""

    # helpers

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.directory = self.make_directory()

    def entered(
        self, *labels: str, directory: IDirectory | None = None, operator: bool = False
    ) -> list[RecordingParticipant]:
        """Participants entered in order, under their labels as names, inboxes emptied."""
        directory = directory or self.directory
        people = []
        for label in labels:
            person = RecordingParticipant(label, address=f"192.0.2.{len(label) + 10}")
            directory.enter(person, name=label, operator=operator)
            people.append(person)
        self.settle()
        for person in people:
            person.take()
        return people

    def lines(self, person: RecordingParticipant) -> list[str]:
        self.settle()
        return person.lines()

    # the interface

    def test_provides_idirectory(self) -> None:
        self.assertTrue(verifyObject(IDirectory, self.directory))  # type: ignore[attr-defined]
        self.assertTrue(verifyObject(IParticipant, RecordingParticipant()))  # type: ignore[attr-defined]

    # entering

    def test_guest_names_and_welcome(self) -> None:
        """Each newcomer gets a readable guest name, is told it, and is in the default room."""
        a, b = RecordingParticipant(), RecordingParticipant()
        self.directory.enter(a)
        self.directory.enter(b)
        self.settle()
        self.assertEqual((a.name, b.name, b.room), ("guest1", "guest2", "lobby"))
        self.assertEqual(self.lines(b), [welcome("guest2")])
        self.assertEqual(self.lines(a), [welcome("guest1"), "* guest2 joined"])

    def test_guest_names_skip_taken_ones(self) -> None:
        self.entered("guest1", "guest3")
        c = RecordingParticipant()
        self.directory.enter(c)
        self.settle()
        self.assertEqual(c.name, "guest2")

    def test_a_taken_name_is_refused_and_the_newcomer_stays_out(self) -> None:
        (a,) = self.entered("alice")
        b = RecordingParticipant()
        self.directory.enter(b, name="ALICE")
        self.assertEqual(self.lines(b), ["error: the name 'ALICE' is taken"])
        self.assertEqual(b.name, "")
        self.directory.say(b, ["hi"])
        self.assertEqual(self.lines(b), ["error: you are not in the chat"])
        self.assertEqual(self.lines(a), [])

    def test_entering_twice_is_ignored(self) -> None:
        (a,) = self.entered("alice")
        self.directory.enter(a, name="other")
        self.assertEqual(self.lines(a), [])
        self.assertEqual(a.name, "alice")

    # speaking

    def test_lines_go_to_everyone_else_in_the_room_prefixed(self) -> None:
        a, b, c = self.entered("a", "b", "c")
        self.directory.say(a, ["hello", "world"])
        self.assertEqual(self.lines(b), ["<a> hello", "<a> world"])
        self.assertEqual(self.lines(c), ["<a> hello", "<a> world"])
        self.assertEqual(self.lines(a), [])

    def test_messages_are_numbered_in_the_rooms_order(self) -> None:
        """Every member sees a room's messages in one order, numbered by the room."""
        a, b, c = self.entered("a", "b", "c")
        for i in range(5):
            self.directory.say([a, b][i % 2], [f"line {i}"])
        self.settle()
        heard = [e for e in c.take() if isinstance(e, Message)]
        self.assertEqual([m.lines[0] for m in heard], [f"line {i}" for i in range(5)])
        seqs = [m.seq for m in heard]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 5)
        self.assertTrue(all(m.room == "lobby" for m in heard))

    def test_echo(self) -> None:
        directory = self.make_directory(echo=True)
        a, b = self.entered("a", "b", directory=directory)
        directory.say(a, ["hi"])
        self.assertEqual(self.lines(a), ["<a> hi"])
        self.assertEqual(self.lines(b), ["<a> hi"])

    def test_action(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.act(a, "waves")
        self.assertEqual(self.lines(b), ["* a waves"])

    def test_someone_outside_the_chat_cannot_speak(self) -> None:
        (a,) = self.entered("a")
        outsider = RecordingParticipant()
        self.directory.say(outsider, ["hi"])
        self.directory.act(outsider, "waves")
        self.assertEqual(self.lines(outsider), ["error: you are not in the chat"] * 2)
        self.assertEqual(self.lines(a), [])

    # names

    def test_rename_announced(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.rename(a, "alice")
        self.assertEqual(self.lines(a), ["* you are now alice"])
        self.assertEqual(self.lines(b), ["* a is now known as alice"])
        self.directory.say(a, ["hi"])
        self.assertEqual(self.lines(b), ["<alice> hi"])

    def test_names_unique_ignoring_case(self) -> None:
        a, b = self.entered("alice", "b")
        self.directory.rename(b, "ALICE")
        self.assertEqual(self.lines(b), ["error: the name 'ALICE' is taken"])
        self.directory.rename(a, "Alice")
        self.assertEqual(self.lines(a), ["* you are now Alice"])
        self.directory.rename(a, "Alice")
        self.assertEqual(self.lines(a), ["* you are already Alice"])

    def test_invalid_and_reserved_names(self) -> None:
        (a,) = self.entered("a")
        for bad in ["", "x" * 31, "al ice", "ålice", "a\x1bb", "аlice"]:
            self.directory.rename(a, bad)
            (line,) = self.lines(a)
            self.assertTrue(line.startswith("error: invalid name"), line)
        self.directory.rename(a, "x" * 30)
        self.assertEqual(self.lines(a), ["* you are now " + "x" * 30])
        self.directory.rename(a, "Server")
        self.assertEqual(self.lines(a), ["error: the name 'Server' is reserved"])

    def test_a_name_is_free_again_after_a_rename_or_a_leave(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.rename(a, "c")
        self.settle()  # (two participants' requests: in a shared chat, either may go first)
        self.directory.rename(b, "a")
        self.assertEqual(self.lines(b), ["* a is now known as c", "* you are now a"])
        self.directory.leave(a, "bye")
        self.directory.rename(b, "c")
        self.assertEqual(self.lines(b)[-1], "* you are now c")

    def test_two_racing_for_one_name_exactly_one_wins(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.rename(a, "star")
        self.directory.rename(b, "star")
        self.settle()
        self.assertEqual(sorted([a.name, b.name]), ["b", "star"])

    # leaving

    def test_leave_announced_with_reason_and_twice_ignored(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.leave(a, "gone fishing")
        self.directory.leave(a, "again")
        self.assertEqual(self.lines(b), ["* a left (gone fishing)"])

    def test_quiet_presence_tells_members_nothing_but_observers_all(self) -> None:
        directory = self.make_directory(quiet_presence=True)
        seen: list[Event] = []
        directory.add_observer(lambda event, origin: seen.append(event))
        a, b = self.entered("a", "b", directory=directory)
        directory.rename(b, "bee")
        directory.join(b, "dev")
        directory.leave(b, "bye")
        self.assertEqual(self.lines(a), [])
        changes = [e.change for e in seen if isinstance(e, Presence)]
        self.assertEqual(changes, ["joined", "joined", "renamed", "moved-out", "moved-in", "left"])

    # history

    def test_newcomers_get_the_rooms_recent_lines_marked(self) -> None:
        directory = self.make_directory(history=3)
        (a,) = self.entered("a", directory=directory)
        directory.say(a, ["one", "two"])
        directory.act(a, "waves")
        directory.say(a, ["three"])
        (b,) = self.entered("b", directory=directory)
        directory.rename(b, "b")  # (nothing: already b)
        newcomer = RecordingParticipant()
        directory.enter(newcomer)
        self.assertEqual(
            self.lines(newcomer),
            [welcome("guest1"), "[history] <a> two", "[history] * a waves", "[history] <a> three"],
        )

    def test_a_long_paste_leaves_only_its_last_lines_in_history(self) -> None:
        directory = self.make_directory(history=2)
        (a,) = self.entered("a", directory=directory)
        directory.say(a, [f"line {i}" for i in range(100)])
        newcomer = RecordingParticipant()
        directory.enter(newcomer)
        self.assertEqual(
            self.lines(newcomer)[1:], ["[history] <a> line 98", "[history] <a> line 99"]
        )

    def test_history_off(self) -> None:
        directory = self.make_directory(history=0)
        (a,) = self.entered("a", directory=directory)
        directory.say(a, ["hi"])
        newcomer = RecordingParticipant()
        directory.enter(newcomer)
        self.assertEqual(self.lines(newcomer), [welcome("guest1")])

    def test_history_is_per_room(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.say(a, ["in the lobby"])
        self.directory.join(b, "dev")
        self.directory.say(b, ["in dev"])
        self.settle()
        self.directory.join(a, "#Dev")
        self.settle()
        history = [e for e in a.take() if isinstance(e, History)]
        self.assertEqual([m.lines for m in history[0].entries], [("in dev",)])  # type: ignore[union-attr]

    def test_recent_history_again_on_request(self) -> None:
        """What /events json replays: the room's last --history lines, times and all."""
        directory = self.make_directory(history=3)
        a, b = self.entered("a", "b", directory=directory)
        directory.say(a, ["one", "two"])
        self.clock.advance(60)
        directory.act(b, "waves")
        directory.say(b, ["three"])
        directory.whisper(a, "b", "secret")
        self.settle()
        given: list[tuple[str, tuple[Any, ...]]] = []
        directory.recent_history(a, lambda room, said: given.append((room, said)))  # type: ignore[attr-defined]
        self.settle()
        ((room, said),) = given
        self.assertEqual(room, "lobby")
        shown = [(e.sender, getattr(e, "lines", None) or e.text, e.at) for e in said]
        self.assertEqual(
            shown,
            [
                ("a", ("two",), 1_000_000),
                ("b", "waves", 1_000_060),
                ("b", ("three",), 1_000_060),
            ],
        )

    def test_private_messages_never_in_history(self) -> None:
        a, _b = self.entered("a", "b")
        self.directory.whisper(a, "b", "secret")
        newcomer = RecordingParticipant()
        self.directory.enter(newcomer)
        self.assertEqual(self.lines(newcomer), [welcome("guest1")])

    # private messages

    def test_only_the_target_hears_a_private_message_in_any_room(self) -> None:
        a, b, c = self.entered("a", "b", "c")
        self.directory.join(b, "dev")
        self.lines(a)
        self.lines(b)
        self.directory.whisper(a, "B", "psst")
        self.assertEqual(self.lines(b), ["[private from a] psst"])
        self.assertEqual(self.lines(a), ["[private to b] psst"])
        self.assertNotIn("psst", " ".join(self.lines(c)))

    def test_a_private_message_to_no_one(self) -> None:
        (a,) = self.entered("a")
        self.directory.whisper(a, "nobody", "hello?")
        self.assertEqual(self.lines(a), ["error: no one here is named 'nobody'"])

    # who

    def test_who_lists_the_room_with_idle_times(self) -> None:
        a, b, c = self.entered("bob", "alice", "carol")
        self.directory.join(c, "dev")
        self.settle()
        self.clock.advance(75)
        self.directory.say(a, ["hi"])
        self.directory.who(b)
        self.assertEqual(
            self.lines(b)[-3:],
            ["* 2 in #lobby:", "*   alice (idle 1m)", "*   bob (idle 0s)"],
        )

    def test_who_everywhere_and_whois_tell_the_room(self) -> None:
        a, b = self.entered("alice", "bob")
        self.directory.join(b, "dev")
        self.lines(a)
        self.directory.who(a, everywhere=True)
        self.assertEqual(
            self.lines(a),
            ["* 2 online:", "*   alice in #lobby (idle 0s)", "*   bob in #dev (idle 0s)"],
        )
        self.directory.whois(a, "BOB")
        self.assertEqual(self.lines(a), ["* bob is in #dev (idle 0s)"])
        self.directory.whois(a, "nobody")
        self.assertEqual(self.lines(a), ["error: no one here is named 'nobody'"])

    def test_format_idle(self) -> None:
        self.assertEqual(
            [format_idle(s) for s in (-1, 0, 59, 60, 3599, 3600, 86400 * 3)],
            ["0s", "0s", "59s", "1m", "59m", "1h", "3d"],
        )

    # rooms

    def test_joining_moves_someone_and_tells_both_rooms(self) -> None:
        a, b, c = self.entered("a", "b", "c")
        self.directory.join(c, "dev")
        self.assertEqual(self.lines(a), ["* c left for #dev"])
        self.assertEqual(self.lines(c), ["* you are now in #dev"])
        self.assertEqual(c.room, "dev")
        self.directory.join(b, "#DEV")
        self.assertEqual(self.lines(c), ["* b came from #lobby"])
        self.assertEqual(b.room, "dev")

    def test_lines_stay_in_their_room(self) -> None:
        a, b, c = self.entered("a", "b", "c")
        self.directory.join(b, "dev")
        self.directory.join(c, "dev")
        for person in (a, b, c):
            self.lines(person)
        self.directory.say(b, ["dev talk"])
        self.directory.say(a, ["lobby talk"])
        self.assertEqual(self.lines(c), ["<b> dev talk"])
        self.assertEqual(self.lines(a), [])
        self.assertEqual(self.lines(b), [])

    def test_part_goes_back_to_the_default_room(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.part(a)
        self.assertEqual(self.lines(a), ["error: you are in #lobby, the default room, already"])
        self.directory.join(a, "dev")
        self.directory.part(a)
        self.settle()
        self.assertEqual(a.room, "lobby")
        self.assertEqual(self.lines(b), ["* a left for #dev", "* a came from #dev"])

    def test_joining_ones_own_room_or_a_bad_name(self) -> None:
        (a,) = self.entered("a")
        self.directory.join(a, "Lobby")
        self.directory.join(a, "not a room")
        self.directory.join(a, "#")
        self.assertEqual(
            self.lines(a),
            [
                "error: you are in #lobby already",
                "error: invalid room name 'not a room': use 1-30 letters (A-Z, a-z), digits, "
                "_ or -, with or without a leading #",
                "error: invalid room name '#': use 1-30 letters (A-Z, a-z), digits, "
                "_ or -, with or without a leading #",
            ],
        )

    def test_rooms_lists_members_and_topics(self) -> None:
        a, b, c = self.entered("a", "b", "c")
        self.directory.join(b, "dev")
        self.directory.topic(b, "talk about code")
        self.directory.join(c, "Art")
        self.lines(a)
        self.directory.list_rooms(a)
        self.assertEqual(
            self.lines(a),
            ["* 3 rooms:", "*   #Art (1)", "*   #dev (1): talk about code", "*   #lobby (1)"],
        )

    def test_topic_shown_set_cleared_and_shown_to_newcomers(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.topic(a)
        self.assertEqual(self.lines(a), ["* #lobby has no topic; /topic TEXT sets one"])
        self.directory.topic(a, "welcome all")
        self.assertEqual(self.lines(b), ["* a set the topic of #lobby: welcome all"])
        self.assertEqual(self.lines(a), ["* a set the topic of #lobby: welcome all"])
        c = RecordingParticipant()
        self.directory.enter(c)
        self.assertEqual(
            self.lines(c)[:2], [welcome("guest1"), "* the topic of #lobby: welcome all"]
        )
        self.directory.topic(b, "")
        self.assertEqual(self.lines(a), ["* guest1 joined", "* b cleared the topic of #lobby"])

    def test_an_operator_may_lock_the_topic(self) -> None:
        (op,) = self.entered("op", operator=True)
        (a,) = self.entered("a")
        self.lines(op)
        self.directory.lock_topic(a, True)
        self.assertEqual(self.lines(a), ["error: only operators may do that"])
        self.directory.lock_topic(op, True)
        self.assertEqual(self.lines(op), ["* the topic of #lobby may now be set by operators only"])
        self.directory.topic(a, "mine")
        self.assertEqual(self.lines(a), ["error: only operators may set the topic of #lobby"])
        self.directory.topic(op, "rules")
        self.assertEqual(self.lines(a), ["* op set the topic of #lobby: rules"])
        self.directory.lock_topic(op, False)
        self.directory.topic(a, "mine")
        self.assertEqual(self.lines(a), ["* a set the topic of #lobby: mine"])

    def test_who_may_create_rooms(self) -> None:
        for setting, op_may, anyone_may in (
            ("anyone", True, True),
            ("operators", True, False),
            ("none", False, False),
        ):
            directory = self.make_directory(create_rooms=setting, rooms=("games",))
            (op,) = self.entered("op", directory=directory, operator=True)
            (a,) = self.entered("a", directory=directory)
            directory.join(a, "games")
            directory.join(op, "games")
            self.settle()
            self.assertEqual((a.room, op.room), ("games", "games"))
            directory.join(a, "new1")
            directory.join(op, "new2")
            self.settle()
            self.assertEqual((op.room == "new2", a.room == "new1"), (op_may, anyone_may), setting)
            if not anyone_may:
                self.assertIn("error: there is no room #new1", " ".join(self.lines(a)))

    def test_the_room_count_is_capped(self) -> None:
        directory = self.make_directory(max_rooms=2)
        a, b = self.entered("a", "b", directory=directory)
        directory.join(a, "one")
        self.settle()
        directory.join(b, "two")
        self.settle()
        self.assertEqual(b.room, "lobby")
        self.assertEqual(
            self.lines(b)[-1],
            "error: there is no room #two, and no more can be made: this server keeps at most "
            "2 rooms; /rooms lists them",
        )

    def test_an_empty_room_goes_once_its_history_is_idle(self) -> None:
        directory = self.make_directory(room_idle=600.0)
        a, b = self.entered("a", "b", directory=directory)
        directory.join(a, "quiet")
        directory.part(a)  # nothing was said: it goes at once
        directory.join(b, "chatty")
        directory.say(b, ["hello"])
        directory.part(b)
        self.clock.advance(599)
        directory.list_rooms(a)
        self.assertEqual(self.lines(a)[-3:], ["* 2 rooms:", "*   #chatty (0)", "*   #lobby (2)"])
        self.clock.advance(2)
        directory.list_rooms(a)
        self.assertEqual(self.lines(a)[-2:], ["* 1 room:", "*   #lobby (2)"])

    def test_permanent_rooms_and_rooms_with_a_topic_stay(self) -> None:
        directory = self.make_directory(rooms=("help",), room_idle=1.0)
        (a,) = self.entered("a", directory=directory)
        directory.join(a, "notes")
        directory.topic(a, "kept")
        directory.join(a, "help")
        directory.part(a)
        self.clock.advance(10)
        directory.list_rooms(a)
        self.assertEqual(
            self.lines(a)[-4:],
            ["* 3 rooms:", "*   #help (0)", "*   #lobby (1)", "*   #notes (0): kept"],
        )

    def test_a_room_made_again_starts_afresh(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.join(a, "temp")
        self.directory.part(a)
        self.settle()
        self.directory.join(b, "TEMP")
        self.settle()
        self.assertEqual(b.room, "TEMP")

    # operators

    def test_an_operator_kicks_from_the_server(self) -> None:
        (op,) = self.entered("op", operator=True)
        a, b = self.entered("a", "b")
        self.directory.join(a, "dev")
        self.lines(b)
        self.directory.kick(op, "A", "spam")
        self.settle()
        self.assertEqual(a.gone, "kicked by op: spam")
        self.assertIn("* you were kicked by op: spam", self.lines(a))
        self.assertEqual(self.lines(b), [])
        self.directory.whois(op, "a")
        self.assertEqual(self.lines(op)[-1], "error: no one here is named 'a'")

    def test_only_operators_kick_ban_and_list_bans(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.kick(a, "b", "")
        self.directory.ban(a, "b", None)
        self.directory.unban(a, "192.0.2.0/24")
        self.directory.list_bans(a)
        self.assertEqual(self.lines(a), ["error: only operators may do that"] * 4)
        self.assertIsNone(b.gone)

    def test_a_ban_by_name_removes_everyone_at_that_address(self) -> None:
        (op,) = self.entered("op", operator=True)
        a = RecordingParticipant(address="198.51.100.7")
        a2 = RecordingParticipant(address="198.51.100.7")
        b = RecordingParticipant(address="198.51.100.8")
        for person in (a, a2, b):
            self.directory.enter(person)
        self.settle()
        self.directory.ban(op, a.name, 900.0)
        self.settle()
        self.assertEqual((a.gone, a2.gone, b.gone), ("banned by op", "banned by op", None))
        self.assertEqual(
            self.directory.banned("198.51.100.7"), "your address is banned for another 15m"
        )
        self.assertIsNone(self.directory.banned("198.51.100.8"))
        self.directory.list_bans(op)
        self.assertEqual(self.lines(op)[-2:], ["* 1 ban", "*   198.51.100.7/32 (15m left)"])
        self.clock.advance(901)
        self.assertIsNone(self.directory.banned("198.51.100.7"))

    def test_a_ban_by_network_until_restart_and_unban(self) -> None:
        (op,) = self.entered("op", operator=True)
        self.directory.ban(op, "2001:db8::/48", None)
        self.settle()
        self.assertEqual(self.directory.banned("2001:db8:0:7::1"), self.banned_for_good)
        self.directory.unban(op, "2001:db8::/48")
        self.directory.unban(op, "2001:db8::/48")
        self.assertEqual(
            self.lines(op)[-2:],
            [
                "* lifted the ban on 2001:db8::/48",
                "error: '2001:db8::/48' is not banned (/bans lists the bans)",
            ],
        )
        self.assertIsNone(self.directory.banned("2001:db8:0:7::1"))

    # observers and notices

    def test_observers_hear_every_chat_event_with_its_origin(self) -> None:
        seen: list[tuple[Event, Origin]] = []
        self.directory.add_observer(lambda event, origin: seen.append((event, origin)))
        a, b = self.entered("a", "b")
        self.directory.say(a, ["hello"])
        self.directory.whisper(b, "a", "psst")
        self.directory.join(a, "dev")
        self.settle()
        kinds = [(event.kind, origin.name, origin.address) for event, origin in seen]
        self.assertEqual(
            kinds,
            [
                ("presence", "a", a.address),
                ("presence", "b", b.address),
                ("message", "a", a.address),
                ("private", "b", b.address),
                ("presence", "a", a.address),
                ("presence", "a", a.address),
            ],
        )
        message = seen[2][0]
        assert isinstance(message, Message)
        self.assertEqual((message.room, message.sender, message.lines), ("lobby", "a", ("hello",)))
        private = seen[3][0]
        assert isinstance(private, Private)
        self.assertEqual((private.sender, private.recipient, private.text), ("b", "a", "psst"))

    def test_an_observer_that_fails_costs_nothing_else(self) -> None:
        def broken(event: Event, origin: Origin) -> None:
            raise RuntimeError("observer bug")

        self.directory.add_observer(broken)
        a, b = self.entered("a", "b")
        self.directory.say(a, ["still delivered"])
        self.assertEqual(self.lines(b), ["<a> still delivered"])
        self.directory.remove_observer(broken)
        self.flushLoggedErrors(RuntimeError)  # type: ignore[attr-defined]

    def test_a_notice_to_a_room(self) -> None:
        a, b = self.entered("a", "b")
        self.directory.join(b, "dev")
        self.lines(a)
        self.directory.notice("#dev", "the build is green", sender="ci")
        self.assertEqual(self.lines(b)[-1], "* ci: the build is green")
        self.assertEqual(self.lines(a), [])

    def test_events_hold_no_rendered_text(self) -> None:
        """What participants hear is typed events (the front end renders them)."""
        a, b = self.entered("a", "b")
        self.directory.say(a, ["hi"])
        self.directory.rename(a, "al")
        self.settle()
        self.directory.who(b)
        self.settle()
        kinds = [type(event) for event in b.take()]
        self.assertEqual(kinds, [Message, Presence, Members])
        self.directory.rename(b, "bad name")
        self.settle()
        (error,) = b.take()
        self.assertIsInstance(error, Error)
        self.directory.join(b, "dev")
        self.settle()
        self.assertIsInstance(b.take()[0], Identity)


class InMemoryDirectoryTests(DirectoryContract, SynchronousTestCase):
    """The contract, in this process."""

    def make_directory(self, **settings: Any) -> IDirectory:
        return Directory(self.clock, **settings)

    def test_rooms_provide_iroom(self) -> None:
        directory = Directory(self.clock)
        room = directory.room("#LOBBY")
        assert room is not None
        self.assertTrue(verifyObject(IRoom, room))
        self.assertIsNone(directory.room("nowhere"))

    def test_join_and_leave_touch_no_other_member(self) -> None:
        """
        Joining or leaving a room of 5,000 with presence quiet tells its
        other members nothing.  (That it costs the same as in a room of 5 is
        measured, not asserted: python -m benchmarks joins.)
        """
        directory = Directory(self.clock, quiet_presence=True, history=0)
        crowd = [RecordingParticipant() for _ in range(5000)]
        for person in crowd:
            directory.enter(person)
            directory.join(person, "big")
        touched: list[object] = []
        for person in crowd:
            person.receive = touched.append  # type: ignore[method-assign]
        newcomer = RecordingParticipant()
        directory.enter(newcomer)
        directory.join(newcomer, "big")
        directory.part(newcomer)
        directory.leave(newcomer, "bye")
        self.assertEqual(touched, [])


class ReentrancyTests(SynchronousTestCase):
    """
    Participants and observers may act on what they hear (a moderation rule
    kicks, a bot leaves): the directory's next step still finds the chat as
    it is, and nobody is left behind in a room.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = Directory(self.clock)

    def test_a_kick_by_an_observer_during_a_move_leaves_no_ghost(self) -> None:
        op, spammer, watcher = (RecordingParticipant(label) for label in ("op", "sp", "w"))
        self.directory.enter(op, "op", operator=True)
        self.directory.enter(spammer, "spammer")
        self.directory.enter(watcher, "watcher")
        self.directory.join(watcher, "dev")

        def moderate(event: Event, origin: Origin) -> None:
            if isinstance(event, Presence) and event.name == "spammer":
                self.directory.kick(op, "spammer", "no")

        self.directory.add_observer(moderate)
        self.directory.join(spammer, "dev")
        self.assertEqual(spammer.gone, "kicked by op: no")
        room = self.directory.room("dev")
        assert room is not None
        self.assertEqual(list(room), [watcher])
        self.assertNotIn("* spammer came from #lobby", watcher.lines())
        spammer.take()
        self.directory.say(watcher, ["still here?"])
        self.assertEqual(spammer.take(), [])

    def test_a_ban_goes_on_when_one_it_removes_takes_another_with_it(self) -> None:
        """
        Removing one member makes another leave on hearing of it: the ban
        still removes everyone at the address, and fails for no one.
        """
        op = RecordingParticipant("op")
        self.directory.enter(op, "op", operator=True)
        people = [RecordingParticipant(str(i), address="198.51.100.7") for i in range(3)]
        for person in people:
            self.directory.enter(person)

        class Leaver(RecordingParticipant):
            def receive(inner, event: Event) -> None:  # noqa: N805
                super().receive(event)
                if isinstance(event, Presence) and event.change == Presence.LEFT:
                    self.directory.leave(inner, "upset")

        leaver = Leaver("leaver", address="198.51.100.7")
        self.directory.enter(leaver)
        self.directory.ban(op, "198.51.100.7", None)
        self.assertEqual([p.gone for p in people], ["banned by op"] * 3)
        self.directory.who(op, everywhere=True)
        self.assertEqual(op.lines()[-2:], ["* 1 online:", "*   op in #lobby (idle 0s, operator)"])

    def test_banning_one_ipv6_address_removes_whoever_is_there(self) -> None:
        op = RecordingParticipant("op")
        there = RecordingParticipant("there", address="2001:db8::1")
        neighbour = RecordingParticipant("neighbour", address="2001:db8::2")
        self.directory.enter(op, "op", operator=True)
        self.directory.enter(there)
        self.directory.enter(neighbour)
        self.directory.ban(op, "2001:db8::1", None)
        self.assertEqual((there.gone, neighbour.gone), ("banned by op", None))

    def test_a_topic_reaches_the_log_escaped(self) -> None:
        from twisted.logger import capturedLogs

        from tests.helpers import messages

        a = RecordingParticipant()
        self.directory.enter(a)
        with capturedLogs() as events:
            self.directory.topic(a, "\x1b[2J\u202eevil")
        self.assertEqual(messages(events), ["guest1 set the topic of #lobby: \\x1b[2J\\u202eevil"])

    def test_a_bot_that_fails_costs_the_room_nothing(self) -> None:
        from twisted_tcpchat import Bot

        def broken(event: Event) -> None:
            raise RuntimeError("bot bug")

        bot = Bot(self.directory, "bot", broken)
        bot.start(room="dev")
        a, b = RecordingParticipant(), RecordingParticipant()
        for person in (a, b):
            self.directory.enter(person)
            self.directory.join(person, "dev")
        b.take()
        self.directory.say(a, ["hello"])
        self.assertEqual((bot.room, b.lines()), ("dev", ["<guest1> hello"]))
        self.flushLoggedErrors(RuntimeError)
