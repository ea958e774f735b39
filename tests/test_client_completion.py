"""
Tab completion (client/completion.py): the pure rule, and its prompt_toolkit
completer, without a terminal.
"""

from __future__ import annotations

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from twisted.trial.unittest import SynchronousTestCase

from twisted_tcpchat.client.completion import ChatCompleter, complete
from twisted_tcpchat.client.events import ChatState

STATE = ChatState(
    name="guest1",
    room="lobby",
    members={"alice": "alice", "albert": "Albert", "bob": "bob", "guest1": "guest1"},
    rooms=["dev", "design", "lobby"],
    commands=[
        ("/join ROOM", "go to another room"),
        ("/nick NAME", "change your name"),
        ("/msg NAME TEXT", "a private message"),
        ("/me ACTION", "an action"),
        ("/help", "these commands"),
    ],
)


def completed(before: str, state: ChatState = STATE) -> list[str]:
    """What the line would read after each candidate."""
    return [before[: len(before) - c.replace] + c.text for c in complete(before, state)]


class CompleteTests(SynchronousTestCase):
    def test_commands_at_the_start(self) -> None:
        """A command word at the start of a line, from the server's /help, and a space."""
        self.assertEqual(completed("/jo"), ["/join "])
        self.assertEqual(completed("/m"), ["/me ", "/msg "])
        self.assertEqual(completed("/x"), [])

    def test_commands_before_help_came(self) -> None:
        """Before the server's /help is in, /help and /quit still complete."""
        self.assertEqual(completed("/h", ChatState(name="a", room="lobby")), ["/help "])

    def test_names_at_the_start_address_someone(self) -> None:
        """A name at the start of a line is how one addresses someone: 'alice: '."""
        self.assertEqual(completed("ali"), ["alice: "])
        self.assertEqual(completed("AL"), ["Albert: ", "alice: "])

    def test_names_elsewhere(self) -> None:
        """A name inside a line: 'alice ' (a space, no colon)."""
        self.assertEqual(completed("thanks ali"), ["thanks alice "])
        self.assertEqual(completed("/me waves at bo"), ["/me waves at bob "])

    def test_not_my_own_name(self) -> None:
        self.assertEqual(completed("gue"), [])

    def test_rooms_after_join(self) -> None:
        """/join completes rooms, with or without their #."""
        only_dev = ChatState(name="guest1", room="lobby", rooms=["dev", "lobby"])
        self.assertEqual(completed("/join #d", only_dev), ["/join #dev"])
        self.assertEqual(completed("/join #d"), ["/join #dev", "/join #design"])
        self.assertEqual(completed("/join lo"), ["/join lobby"])
        self.assertEqual(completed("/join x"), [])

    def test_names_after_msg_whois_kick(self) -> None:
        for command in ("/msg", "/whois", "/kick"):
            self.assertEqual(completed(f"{command} bo"), [f"{command} bob "])
        self.assertEqual(completed("/msg bob hi al"), ["/msg bob hi Albert ", "/msg bob hi alice "])

    def test_nothing_where_no_name_or_room_goes(self) -> None:
        """A command's argument that is neither (the new name of /nick), or an empty word."""
        self.assertEqual(completed("/nick al"), [])
        self.assertEqual(completed(""), [])
        self.assertEqual(completed("hello "), [])


class CompleterTests(SynchronousTestCase):
    def test_completer_replaces_the_word(self) -> None:
        """prompt_toolkit gets each candidate with the length of the word it replaces."""
        completer = ChatCompleter(lambda: STATE)
        got = list(completer.get_completions(Document("hi ali"), CompleteEvent()))
        self.assertEqual([(c.text, c.start_position) for c in got], [("alice ", -3)])

    def test_no_completion_without_events(self) -> None:
        """On another server (no state), Tab completes nothing."""
        completer = ChatCompleter(lambda: None)
        self.assertEqual(list(completer.get_completions(Document("/jo"), CompleteEvent())), [])
