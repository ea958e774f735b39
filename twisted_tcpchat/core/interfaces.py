"""
The interfaces that keep the chat apart from its wires and its storage.

A front end (TCP, the console, a WebSocket) turns a client into a
L{IParticipant}.  The L{IDirectory} is the server-wide registry - names,
private messages, operators, bans, the rooms - and each L{IRoom} one
conversation: membership, relay, history, presence.  Every request is
one-way: the answer, an error included, comes back as events
(L{twisted_tcpchat.core.events}) to the participant's C{receive}, so an
implementation may live in this process or behind a network hop (a
Redis-backed directory).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zope.interface import Attribute, Interface

from twisted_tcpchat.core.events import Event


class Ending(enum.Enum):
    """
    Why the server closed a session, for a front end that tells its client
    apart from the text (a WebSocket's close code: the page reconnects by
    itself after a restart, not after a kick).
    """

    #: The client asked: /quit, the exit word, the end of its input, served once.
    QUIT = "quit"
    #: The server is stopping: it may be back soon.
    SHUTDOWN = "shutdown"
    #: Refused for now: the server is full, too many from the address.
    BUSY = "busy"
    #: Refused: the address is banned or not allowed.
    REFUSED = "refused"
    #: Removed by an operator: a kick, a ban.
    REMOVED = "removed"
    #: Ended by the server's rules: flooding, idle, a line without end ...
    ENDED = "ended"
    #: The server lost the client's place (a node cut off from the shared
    #: chat): it may come back at once.
    LOST = "lost"


class IParticipant(Interface):
    """
    Someone in the chat, as the directory and its rooms see it: a client's
    session, the operator's console, a bot.
    """

    name = Attribute("Its name; set by the directory only ('' until it has entered).")
    room = Attribute("The room it is in; set by the directory only ('' until it has entered).")
    address = Attribute("Its IP address, for bans by name; '' for the console and bots.")

    def receive(event: Event) -> None:
        """
        Hear one event (a message, a presence change, an error ...).  It
        may act on it (a bot answers, leaves); but a front end cuts off a
        client that does not read at the end of the turn, not here: the
        room may be in the middle of relaying to everyone.
        """

    def disconnect(reason: str, ending: Ending = Ending.REMOVED) -> None:
        """
        The directory has removed this participant (C{ending}: a kick or a
        ban, or L{Ending.LOST}: the server lost its place): end its session.
        It has already been told why, and its leaving announced.
        """


class IConnection(Interface):
    """
    One client's link, as its session sees it: events out, reading paused
    and resumed, and two ways to close.  Each front end provides it.
    """

    def send(event: Event) -> None:
        """Render C{event} for this client and send it."""

    def close(ending: Ending | None = None) -> None:
        """
        Close after what was sent is flushed; a peer that does not take it
        within the grace time is cut off.  Sending after this does nothing.
        C{ending} says why, for a front end that can tell its client (a
        WebSocket's close code).
        """

    def abort() -> None:
        """Close at once, dropping whatever is still queued."""

    def pause_reading() -> None:
        """Stop reading from the peer (TCP then pushes back on it)."""

    def resume_reading() -> None:
        """Read from the peer again."""


@dataclass(frozen=True, slots=True)
class Origin:
    """
    Who caused an event, for observers: a participant's name and address
    (both '' for the server itself; the address '' for the console and bots).
    """

    name: str
    address: str


#: Something that watches every chat event (an embedding application, a
#: bot, a metrics exporter): called with the event and its origin.
ChatObserver = Callable[[Event, Origin], None]


class IRoom(Interface):
    """
    One conversation.  The directory alone adds and removes members (it
    keeps names and knows who may do what); the room relays, numbers,
    remembers and announces.
    """

    name = Attribute("The room's name, as first given (unique ignoring case).")

    def add(participant: IParticipant, came_from: str | None = None) -> None:
        """
        Seat C{participant} (an L{IParticipant}, already named): send it the
        topic and the recent history, and announce it - as joined, or as
        come from the room C{came_from}.
        """

    def remove(participant: IParticipant, reason: str, going_to: str | None = None) -> None:
        """Unseat it, and announce why it left (or that it left for C{going_to})."""

    def rename(participant: IParticipant, old: str) -> None:
        """C{participant}, once called C{old}, has a new name: announce it."""

    def say(participant: IParticipant, lines: Sequence[str]) -> None:
        """Relay lines said at once, as one message, to every other member."""

    def act(participant: IParticipant, text: str) -> None:
        """Relay an action (C{/me}) to every other member."""

    def notice(text: str, sender: str | None = None) -> None:
        """Tell every member something (a bot's or the server's announcement)."""

    def set_topic(participant: IParticipant, text: str) -> None:
        """Set the topic (an empty text clears it) and tell every member."""


class IDirectory(Interface):
    """
    The server-wide registry: names, private messages, operators, bans and
    the rooms.  Requests name the L{IParticipant} making them; answers are
    events to it.  A participant must L{enter} before anything else.
    """

    def enter(participant: IParticipant, name: str | None = None, operator: bool = False) -> None:
        """
        Give C{participant} the name C{name} (refused with an error when it
        is invalid or taken; a reserved name may be given here, as the
        console's is) or a free guest name, and seat it in the
        default room.  An operator may kick, ban, and set locked topics.
        """

    def leave(participant: IParticipant, reason: str) -> None:
        """It leaves the chat: its room hears C{reason}; its name is free again."""

    def rename(participant: IParticipant, name: str) -> None:
        """Change its name, if that name is valid and free."""

    def say(participant: IParticipant, lines: Sequence[str]) -> None:
        """Lines said at once (no LF in any), to its room."""

    def act(participant: IParticipant, text: str) -> None:
        """An action (C{/me}), to its room."""

    def whisper(participant: IParticipant, target: str, text: str) -> None:
        """A private message to the participant named C{target}, in any room."""

    def join(participant: IParticipant, room: str) -> None:
        """Move it to the room C{room}, creating the room if allowed."""

    def part(participant: IParticipant) -> None:
        """Move it back to the default room."""

    def topic(participant: IParticipant, text: str | None = None) -> None:
        """Show (C{text} None) or set its room's topic (an empty text clears it)."""

    def lock_topic(participant: IParticipant, locked: bool) -> None:
        """An operator lets only operators set its room's topic, or everyone again."""

    def list_rooms(participant: IParticipant) -> None:
        """Send it the rooms, with member counts and topics."""

    def who(participant: IParticipant, everywhere: bool = False) -> None:
        """Send it the members of its room (or of every room), with idle times."""

    def whois(participant: IParticipant, name: str) -> None:
        """Send it where the participant named C{name} is."""

    def notice(room: str, text: str, sender: str | None = None) -> None:
        """
        Tell every member of C{room} something (an application's
        announcement); KeyError if there is no such room (a remote
        directory, which cannot know at once, logs that instead).
        """

    def kick(participant: IParticipant, target: str, reason: str) -> None:
        """An operator removes the participant named C{target} from the chat."""

    def ban(participant: IParticipant, target: str, duration: float | None) -> None:
        """
        An operator bans the address of the participant named C{target}, or
        the address or network C{target}, for C{duration} seconds or (None)
        until the server restarts; participants there are removed.
        """

    def unban(participant: IParticipant, target: str) -> None:
        """An operator lifts the ban on the address or network C{target}."""

    def list_bans(participant: IParticipant) -> None:
        """Send an operator the bans in force."""

    def banned(address: str) -> str | None:
        """
        Whether C{address} is banned now: the error to refuse it with, or
        None.  A query answered at once, asked of every connection: a
        remote directory answers it from a copy of the bans it keeps here.
        """

    def add_observer(observer: ChatObserver) -> None:
        """Tell C{observer} every chat event from now on."""

    def remove_observer(observer: ChatObserver) -> None:
        """Stop telling C{observer}."""
