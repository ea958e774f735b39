"""
The small interfaces that keep the chat logic apart from Twisted's wire.
"""

from __future__ import annotations

from collections.abc import Sequence

from zope.interface import Attribute, Interface


class IConnection(Interface):
    """
    One client's link, as the chat logic sees it: lines out, reading paused
    and resumed, and two ways to close.

    L{twisted_tcpchat.protocol.ChatProtocol} provides it over TCP; tests
    provide it with a recording fake.
    """

    def send_line(text: str, encoding: str = "utf-8") -> None:
        """Send one line of text: made safe to show, encoded, terminated."""

    def send_lines(lines: Sequence[str], encoding: str = "utf-8") -> None:
        """
        Send several lines in one write.  The same batch may go to many
        connections: it must not change once sent.
        """

    def close() -> None:
        """
        Close after what was sent is flushed; a peer that does not take it
        within the grace time is cut off.  Sending after this does nothing.
        """

    def abort() -> None:
        """Close at once, dropping whatever is still queued."""

    def pause_reading() -> None:
        """Stop reading from the peer (TCP then pushes back on it)."""

    def resume_reading() -> None:
        """Read from the peer again."""


class IParticipant(Interface):
    """
    A member of a room, as the room sees it: a name the room gives it, lines
    the room sends it, and being told to go.

    A client's L{twisted_tcpchat.server.Session} provides it, and so does the
    operator's console; tests provide it with a recording fake.
    """

    name = Attribute("The participant's name in the room; set by the room only.")
    address = Attribute("The participant's IP address, for bans by name; empty for the console.")

    def send_line(text: str) -> None:
        """Deliver one line of room traffic to this participant."""

    def send_lines(lines: Sequence[str]) -> None:
        """
        Deliver several lines at once (a batch relayed from one read); the
        same batch goes to every member, so it must not be changed.
        """

    def disconnect(reason: str) -> None:
        """
        The room has removed this participant (a kick): end its session.
        The room has already told it why and announced the leave.
        """


class IRoom(Interface):
    """
    One conversation.  Every request is one-way: the room answers through the
    participants' C{send_line} (errors included), so an implementation may
    live in this process or behind a network hop (a Redis-backed room).
    Nothing outside the room sees its member list.
    """

    def join(participant: IParticipant, name: str | None = None, operator: bool = False) -> None:
        """
        Add a participant: give it C{name} (or a free default such as C{guest7})
        and tell it so, send it the recent history, announce it to the others.
        An operator may kick.
        """

    def leave(participant: IParticipant, reason: str) -> None:
        """Remove a participant and announce why it left; unknown ones are ignored."""

    def say(participant: IParticipant, text: str) -> None:
        """Relay a line to every other member as C{<name> text}."""

    def say_lines(participant: IParticipant, texts: Sequence[str]) -> None:
        """Relay several lines, in order, as one batch to each member."""

    def act(participant: IParticipant, text: str) -> None:
        """Relay an action (C{/me}) as C{* name text}."""

    def rename(participant: IParticipant, name: str) -> None:
        """Change the participant's name, if that name is valid and free."""

    def whisper(participant: IParticipant, target: str, text: str) -> None:
        """Deliver C{text} to the member named C{target} only."""

    def who(participant: IParticipant) -> None:
        """Send the participant the list of members, with their idle times."""

    def kick(participant: IParticipant, target: str, reason: str) -> None:
        """An operator removes the member named C{target}."""

    def ban(participant: IParticipant, target: str, duration: float | None) -> None:
        """
        An operator bans the address of the member named C{target}, or the
        address or network C{target}, for C{duration} seconds or (None) until
        the server restarts; members there are removed.
        """

    def unban(participant: IParticipant, target: str) -> None:
        """An operator lifts the ban on the address or network C{target}."""

    def list_bans(participant: IParticipant) -> None:
        """Send an operator the bans in force."""

    def banned(address: str) -> str | None:
        """Whether C{address} is banned now: the line to refuse it with, or None."""
