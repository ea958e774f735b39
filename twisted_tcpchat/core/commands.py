"""
Slash commands: a registry of named commands, each one line of a
participant's text turned into requests to the directory.

The built-in ones are registered by L{builtin_commands}; an embedding
application adds its own with L{Commands.add}::

    def roll(context: Context, argument: str) -> None:
        context.notice_room(f"{context.name} rolls {random.randint(1, 6)}")

    service.commands.add(Command("roll", roll, help="roll a die"))

Client sessions and the operator's console both run commands through it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from twisted_tcpchat.core.events import Error, Help, Notice
from twisted_tcpchat.core.interfaces import IDirectory, IParticipant
from twisted_tcpchat.core.limits import parse_duration

_COMMAND_NAME = re.compile(r"[a-z][a-z0-9_-]{0,29}")

#: How a connection may get its events (C{/events}): as the text lines an
#: nc user reads, or as JSON objects, one a line, as the WebSocket sends them.
EVENT_FORMATS = ("text", "json")


class Context:
    """
    What a command gets: who runs it (C{participant}, an operator or not),
    the directory to make requests of, and ways to answer.

    @ivar quit_reason: set by L{quit}: the session then ends with it.
    """

    def __init__(
        self,
        participant: IParticipant,
        directory: IDirectory,
        *,
        operator: bool = False,
        fixed_name: bool = False,
        commands: Commands | None = None,
    ) -> None:
        self.participant = participant
        self.directory = directory
        self.operator = operator
        #: Whether the name is the login name, which /nick may not change.
        self.fixed_name = fixed_name
        self.commands = commands
        self.quit_reason: str | None = None

    @property
    def name(self) -> str:
        """The caller's name."""
        return str(self.participant.name)

    @property
    def room(self) -> str:
        """The room the caller is in."""
        return str(self.participant.room)

    def reply(self, text: str) -> None:
        """Answer the caller alone with a notice."""
        self.participant.receive(Notice(text))

    def error(self, text: str) -> None:
        """Refuse: an error to the caller alone."""
        self.participant.receive(Error(text))

    def notice_room(self, text: str) -> None:
        """Tell everyone in the caller's room (a bot's or a game's announcement)."""
        self.directory.notice(self.room, text)

    def quit(self, reason: str) -> None:
        """End the caller's session once the command is done."""
        self.quit_reason = reason


@dataclass(frozen=True)
class Command:
    """
    One slash command.

    @ivar name: what follows the slash (lower case: C{/ROLL} runs C{roll}).
    @ivar run: called with the L{Context} and the rest of the line (stripped).
    @ivar usage: how to call it, e.g. C{/msg NAME TEXT} (default: C{/name}).
    @ivar help: what it does, in a few words.
    @ivar operator: only operators may run it, and only they see it in /help.
    @ivar needs_argument: without one, the caller gets the usage instead.
    """

    name: str
    run: Callable[[Context, str], None]
    usage: str = ""
    help: str = ""
    operator: bool = False
    needs_argument: bool = False

    def __post_init__(self) -> None:
        if _COMMAND_NAME.fullmatch(self.name) is None:
            raise ValueError(
                f"command name {self.name!r}: 1-30 lower-case letters, digits, _ or -, "
                "starting with a letter"
            )
        if not self.usage:
            object.__setattr__(self, "usage", f"/{self.name}")


class Commands:
    """The commands of a server, by name."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: dict[str, Command] = {}
        for command in commands:
            self.add(command)

    def add(self, command: Command, replace: bool = False) -> None:
        """Register C{command}; ValueError if its name is taken, unless C{replace}."""
        if command.name in self._commands and not replace:
            raise ValueError(f"there is a /{command.name} command already")
        self._commands[command.name] = command

    def remove(self, name: str) -> None:
        """Unregister the command C{name}."""
        del self._commands[name]

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def help(self, operator: bool) -> Help:
        """The commands C{operator} (or not) may run, for /help."""
        return Help(
            tuple((c.usage, c.help) for c in self._commands.values() if operator or not c.operator)
        )

    def run(self, context: Context, text: str) -> None:
        """
        Run the command line C{text} (C{/word rest}): the word ends at any
        whitespace, and is not case-sensitive.
        """
        parts = text[1:].split(None, 1)
        word = parts[0].lower() if parts else ""
        rest = parts[1].strip() if len(parts) > 1 else ""
        command = self._commands.get(word)
        if command is None:
            context.error(f"unknown command /{word}; /help lists the commands")
        elif command.operator and not context.operator:
            context.error("only operators may do that")
        elif command.needs_argument and not rest:
            context.error(f"usage: {command.usage}")
        else:
            command.run(context, rest)


def _split(rest: str) -> tuple[str, str]:
    """The first word of C{rest}, and the rest after it (stripped)."""
    parts = rest.split(None, 1)
    return (parts[0], parts[1].strip()) if len(parts) > 1 else (rest, "")


def _nick(context: Context, rest: str) -> None:
    if context.fixed_name:
        context.error("on this server your name is your login name")
    else:
        context.directory.rename(context.participant, rest)


def _msg(context: Context, rest: str) -> None:
    target, text = _split(rest)
    if not text:
        context.error("usage: /msg NAME TEXT")
    else:
        context.directory.whisper(context.participant, target, text)


def _me(context: Context, rest: str) -> None:
    context.directory.act(context.participant, rest)


def _join(context: Context, rest: str) -> None:
    context.directory.join(context.participant, rest)


def _part(context: Context, rest: str) -> None:
    context.directory.part(context.participant)


def _rooms(context: Context, rest: str) -> None:
    context.directory.list_rooms(context.participant)


def _topic(context: Context, rest: str) -> None:
    text = "" if rest == "-" else rest or None  # (- clears it; nothing shows it)
    context.directory.topic(context.participant, text)


def _topic_lock(context: Context, rest: str) -> None:
    if rest.lower() not in ("on", "off"):
        context.error("usage: /topic-lock on|off")
    else:
        context.directory.lock_topic(context.participant, rest.lower() == "on")


def _who(context: Context, rest: str) -> None:
    if rest not in ("", "*"):
        context.error("usage: /who [*] (/whois NAME tells where someone is)")
    else:
        context.directory.who(context.participant, everywhere=rest == "*")


def _whois(context: Context, rest: str) -> None:
    context.directory.whois(context.participant, rest)


def _events(context: Context, rest: str) -> None:
    kind = rest.lower()
    if kind not in EVENT_FORMATS:
        context.error(f"usage: /events {'|'.join(EVENT_FORMATS)}")
        return
    switch = getattr(context.participant, "events_as", None)
    if switch is None or not switch(kind):
        context.error("this connection cannot change how it gets events")
        return
    context.reply(f"events as {kind}")


def _quit(context: Context, rest: str) -> None:
    context.quit(rest or "quit")


def _help(context: Context, rest: str) -> None:
    if context.commands is not None:
        context.participant.receive(context.commands.help(context.operator))


def _kick(context: Context, rest: str) -> None:
    target, reason = _split(rest)
    context.directory.kick(context.participant, target, reason)


def _ban(context: Context, rest: str) -> None:
    target, duration = _split(rest)
    try:
        seconds = parse_duration(duration) if duration else None
    except ValueError as e:
        context.error(f"{e}; usage: /ban NAME|ADDRESS [DURATION]")
    else:
        context.directory.ban(context.participant, target, seconds)


def _unban(context: Context, rest: str) -> None:
    context.directory.unban(context.participant, rest)


def _bans(context: Context, rest: str) -> None:
    context.directory.list_bans(context.participant)


def builtin_commands() -> list[Command]:
    """tcpchat's own commands, in the order /help lists them."""
    return [
        Command("nick", _nick, "/nick NAME", "change your name", needs_argument=True),
        Command(
            "join", _join, "/join ROOM", "go to another room (made if new)", needs_argument=True
        ),
        Command("part", _part, "/part", "go back to the default room"),
        Command("rooms", _rooms, "/rooms", "the rooms, with members and topics"),
        Command("topic", _topic, "/topic [TEXT|-]", "show, set or (-) clear this room's topic"),
        Command("who", _who, "/who [*]", "who is in this room (*: in every room), idle times"),
        Command("whois", _whois, "/whois NAME", "which room NAME is in", needs_argument=True),
        Command(
            "msg", _msg, "/msg NAME TEXT", "a private message only NAME sees", needs_argument=True
        ),
        Command(
            "me", _me, "/me ACTION", "an action, shown as: * yourname ACTION", needs_argument=True
        ),
        Command(
            "events",
            _events,
            "/events json|text",
            "get events as JSON objects, one a line (for programs), or as text",
            needs_argument=True,
        ),
        Command("quit", _quit, "/quit [REASON]", "leave the chat"),
        Command("help", _help, "/help", "these commands"),
        Command(
            "kick",
            _kick,
            "/kick NAME [REASON]",
            "remove someone",
            operator=True,
            needs_argument=True,
        ),
        Command(
            "ban",
            _ban,
            "/ban NAME|ADDRESS [DURATION]",
            "ban an address, e.g. for 15m, 2h, 7d",
            operator=True,
            needs_argument=True,
        ),
        Command(
            "unban", _unban, "/unban ADDRESS", "lift a ban", operator=True, needs_argument=True
        ),
        Command("bans", _bans, "/bans", "the bans in force", operator=True),
        Command(
            "topic-lock",
            _topic_lock,
            "/topic-lock on|off",
            "only operators may set this room's topic (on), or anyone (off)",
            operator=True,
            needs_argument=True,
        ),
    ]
