"""
Slash commands: one line of a participant's text turned into one request to
the room.  Shared by client sessions and the operator console.
"""

from __future__ import annotations

from twisted_tcpchat.interfaces import IParticipant, IRoom
from twisted_tcpchat.limits import parse_duration

HELP = (
    "* commands:",
    "*   /nick NAME           change your name",
    "*   /who                 who is here, and how long each has been idle",
    "*   /msg NAME TEXT       a private message that only NAME sees",
    "*   /me ACTION           an action, shown as: * yourname ACTION",
    "*   /quit [REASON]       leave the room",
    "*   /kick NAME [REASON]  remove someone (operators only)",
    "*   /ban NAME|ADDRESS [DURATION]  ban an address, e.g. for 15m, 2h, 7d (operators)",
    "*   /unban ADDRESS       lift a ban; /bans lists them (operators)",
    "*   //TEXT               say a line that starts with /",
)

USAGE = {
    "nick": "/nick NAME",
    "msg": "/msg NAME TEXT",
    "me": "/me ACTION",
    "kick": "/kick NAME [REASON]",
    "ban": "/ban NAME|ADDRESS [DURATION]",
    "unban": "/unban ADDRESS",
}


class Quit:
    """The line asked to leave, with this reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def chat_text(text: str) -> str | None:
    """What a typed line says to the room, or None when it is a command."""
    if not text.startswith("/"):
        return text
    if text.startswith("//"):
        return text[1:]
    return None


def perform(room: IRoom, participant: IParticipant, text: str) -> Quit | None:
    """
    Act on one line a participant typed: a chat line, or a command.

    @return: a L{Quit} when the line asks to leave (the caller ends the
        session), else None.
    """
    said = chat_text(text)
    if said is not None:
        if said.strip():
            room.say(participant, said)
        return None
    command, _, rest = text[1:].partition(" ")
    command = command.lower()
    rest = rest.strip()
    first, _, tail = rest.partition(" ")
    tail = tail.strip()
    if command in USAGE and not rest:
        participant.send_line(f"error: usage: {USAGE[command]}")
    elif command == "nick":
        room.rename(participant, rest)
    elif command == "msg":
        if tail:
            room.whisper(participant, first, tail)
        else:
            participant.send_line(f"error: usage: {USAGE['msg']}")
    elif command == "me":
        room.act(participant, rest)
    elif command == "kick":
        room.kick(participant, first, tail)
    elif command == "ban":
        try:
            duration = parse_duration(tail) if tail else None
        except ValueError as e:
            participant.send_line(f"error: {e}; usage: {USAGE['ban']}")
        else:
            room.ban(participant, first, duration)
    elif command == "unban":
        room.unban(participant, rest)
    elif command == "bans":
        room.list_bans(participant)
    elif command == "who":
        room.who(participant)
    elif command == "quit":
        return Quit(rest or "quit")
    elif command == "help":
        for line in HELP:
            participant.send_line(line)
    else:
        participant.send_line(f"error: unknown command /{command}; /help lists the commands")
    return None
