"""
The room: one conversation among participants, in this process.

It is the only holder of the member list.  It logs what only it sees
(renames); sessions log their own comings and goings.  Participants reach it through
L{IRoom} and hear from it through L{IParticipant}; a Redis-backed room can
take its place for a server spread over processes.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from twisted_tcpchat.interfaces import IParticipant, IRoom
from twisted_tcpchat.limits import Bans, Network, network_of
from twisted_tcpchat.logs import TurnLog
from twisted_tcpchat.wire import Joined

log = TurnLog(namespace="tcpchat")

#: What a name may hold: ASCII letters, digits, _ and -, 1 to 30 of them.
#: ASCII only, as IRC servers do by default: Unicode letters would let
#: "alice" with a Cyrillic a (U+0430) pass for "alice".
NAME_RULE = "1-30 letters (A-Z, a-z), digits, _ or -"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,30}")

#: Names no client may take: the operator console speaks as one of them.
RESERVED_NAMES = ("server",)


def name_problem(name: str) -> str | None:
    """Why C{name} cannot be a name, or None when it can."""
    if _NAME.fullmatch(name) is None:
        return f"invalid name {name!r}: use {NAME_RULE}"
    return None


def _network(text: str) -> Network | None:
    """An address or CIDR network, or None when C{text} is neither (a name)."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def format_idle(seconds: float) -> str:
    """Idle time in the largest whole unit: 42s, 5m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(slots=True)
class _Member:
    participant: IParticipant
    name: str
    operator: bool
    active_at: float


@implementer(IRoom)
class Room:
    """
    The in-process room.

    @param clock: for idle times.
    @param history: how many recent lines a newcomer gets (0: none).
    @param echo: whether a sender gets its own lines back.
    @param quiet_presence: whether joins, renames and leaves go unannounced.
    @param reserved: names no participant may take unless it joins with one
        (the console does).
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        history: int = 20,
        echo: bool = False,
        quiet_presence: bool = False,
        reserved: Iterable[str] = RESERVED_NAMES,
    ) -> None:
        self._clock = clock
        self._echo = echo
        self._quiet = quiet_presence
        self._reserved = {name.lower() for name in reserved}
        self._history: deque[str] = deque(maxlen=history)
        # Both views of the members, kept in step by _add and _remove.
        self._by_key: dict[str, _Member] = {}
        self._by_participant: dict[IParticipant, _Member] = {}
        self._guests = itertools.count(1)
        self._bans = Bans()

    # membership

    def join(
        self, participant: IParticipant, name: str | None = None, operator: bool = False
    ) -> None:
        if participant in self._by_participant:
            return
        if name is None:
            name = self._free_guest_name()
        elif name.lower() in self._by_key:
            participant.send_line(f"error: the name {name!r} is taken")
            return
        member = _Member(participant, name, operator, self._clock.seconds())
        self._add(member)
        participant.send_line(f"* you are {name}; /nick NAME changes it, /help lists the commands")
        for line in self._history:
            participant.send_line(f"[history] {line}")
        self._announce(f"* {name} joined", but=member)

    def leave(self, participant: IParticipant, reason: str) -> None:
        member = self._by_participant.get(participant)
        if member is None:
            return
        self._remove(member)
        self._announce(f"* {member.name} left ({reason})")

    def kick(self, participant: IParticipant, target: str, reason: str) -> None:
        kicker = self._operator(participant)
        if kicker is None:
            return
        victim = self._find(participant, target)
        if victim is None:
            return
        why = f"kicked by {kicker.name}" + (f": {reason}" if reason else "")
        self._remove(victim)
        victim.participant.send_line(f"* you were {why}")
        self._announce(f"* {victim.name} left ({why})")
        victim.participant.disconnect(why)

    def ban(self, participant: IParticipant, target: str, duration: float | None) -> None:
        operator = self._operator(participant)
        if operator is None:
            return
        network = _network(target)
        if network is None:
            member = self._find(participant, target)
            if member is None:
                return
            network = network_of(member.participant.address)
            if network is None:
                participant.send_line(f"error: {member.name} has no address to ban")
                return
        until = None if duration is None else self._clock.seconds() + duration
        self._bans.add(network, until)
        how_long = (
            "until the server restarts" if duration is None else f"for {format_idle(duration)}"
        )
        log.info(
            "{op} banned {network} {how_long}",
            op=operator.name,
            network=str(network),
            how_long=how_long,
        )
        participant.send_line(f"* banned {network} {how_long}")
        why = f"banned by {operator.name}"
        for member in list(self._by_participant.values()):
            address = network_of(member.participant.address)
            if (
                member is not operator
                and address is not None
                and address.version == network.version
                and address.subnet_of(network)  # type: ignore[arg-type]
            ):
                self._remove(member)
                member.participant.send_line(f"* you were {why} {how_long}")
                self._announce(f"* {member.name} left ({why})")
                member.participant.disconnect(why)

    def unban(self, participant: IParticipant, target: str) -> None:
        operator = self._operator(participant)
        if operator is None:
            return
        network = _network(target)
        if network is None or not self._bans.remove(network):
            participant.send_line(f"error: {target!r} is not banned (/bans lists the bans)")
            return
        log.info("{op} lifted the ban on {network}", op=operator.name, network=str(network))
        participant.send_line(f"* lifted the ban on {network}")

    def list_bans(self, participant: IParticipant) -> None:
        if self._operator(participant) is None:
            return
        now = self._clock.seconds()
        bans = self._bans.listing(now)
        participant.send_line(f"* {len(bans)} bans")
        for network, until in bans:
            left = "until restart" if until is None else f"{format_idle(until - now)} left"
            participant.send_line(f"*   {network} ({left})")

    def banned(self, address: str) -> str | None:
        ban = self._bans.ban_on(address, self._clock.seconds())
        if ban is None:
            return None
        _network_banned, until = ban
        if until is None:
            return "error: your address is banned until the server restarts"
        left = format_idle(until - self._clock.seconds())
        return f"error: your address is banned for another {left}"

    # conversation

    def say(self, participant: IParticipant, text: str) -> None:
        self.say_lines(participant, [text])

    def say_lines(self, participant: IParticipant, texts: Sequence[str]) -> None:
        sender = self._member(participant)
        if sender is not None:
            prefix = f"<{sender.name}> "
            lines: Sequence[str] | None = None
            if isinstance(texts, Joined):
                try:  # noqa: SIM105  (suppress() is a slower with-statement)
                    lines = texts.prefixed(prefix)  # (one pass, in C)
                except ValueError:  # (a name with something to escape in it)
                    pass
            if lines is None:
                lines = [prefix + text for text in texts]
            self._relay(sender, lines)

    def act(self, participant: IParticipant, text: str) -> None:
        sender = self._member(participant)
        if sender is not None:
            self._relay(sender, [f"* {sender.name} {text}"])

    def whisper(self, participant: IParticipant, target: str, text: str) -> None:
        sender = self._member(participant)
        if sender is None:
            return
        recipient = self._find(participant, target)
        if recipient is None:
            return
        sender.active_at = self._clock.seconds()
        recipient.participant.send_line(f"[private from {sender.name}] {text}")
        if recipient is not sender:
            participant.send_line(f"[private to {recipient.name}] {text}")

    def rename(self, participant: IParticipant, name: str) -> None:
        member = self._member(participant)
        if member is None:
            return
        problem = name_problem(name)
        key = name.lower()
        if problem is not None:
            participant.send_line(f"error: {problem}")
        elif key in self._reserved:
            participant.send_line(f"error: the name {name!r} is reserved")
        elif key in self._by_key and self._by_key[key] is not member:
            participant.send_line(f"error: the name {name!r} is taken")
        elif name == member.name:
            participant.send_line(f"* you are already {name}")
        else:
            old = member.name
            self._remove(member)
            member.name = name
            self._add(member)
            log.info("{old} is now known as {new}", old=old, new=name)
            participant.send_line(f"* you are now {name}")
            self._announce(f"* {old} is now known as {name}", but=member)

    def who(self, participant: IParticipant) -> None:
        if self._member(participant) is None:
            return
        now = self._clock.seconds()
        members = sorted(self._by_key.values(), key=lambda m: m.name.lower())
        participant.send_line(f"* {len(members)} online:")
        for member in members:
            flags = ", operator" if member.operator else ""
            participant.send_line(
                f"*   {member.name} (idle {format_idle(now - member.active_at)}{flags})"
            )

    # inside

    def _add(self, member: _Member) -> None:
        self._by_key[member.name.lower()] = member
        self._by_participant[member.participant] = member
        member.participant.name = member.name

    def _remove(self, member: _Member) -> None:
        del self._by_key[member.name.lower()]
        del self._by_participant[member.participant]

    def _member(self, participant: IParticipant) -> _Member | None:
        member = self._by_participant.get(participant)
        if member is None:
            participant.send_line("error: you are not in the room")
        return member

    def _operator(self, participant: IParticipant) -> _Member | None:
        member = self._member(participant)
        if member is not None and not member.operator:
            participant.send_line("error: only operators may do that")
            return None
        return member

    def _find(self, participant: IParticipant, name: str) -> _Member | None:
        member = self._by_key.get(name.lower())
        if member is None:
            participant.send_line(f"error: no one here is named {name!r}")
        return member

    def _free_guest_name(self) -> str:
        while True:
            name = f"guest{next(self._guests)}"
            if name not in self._by_key and name not in self._reserved:
                return name

    def _relay(self, sender: _Member, lines: Sequence[str]) -> None:
        """
        Room lines: into the history, out to every member (the sender too
        with echo) as one batch each - formatted once, encoded once per
        encoding (see L{encode_lines}), one write per member.
        """
        sender.active_at = self._clock.seconds()
        history = self._history
        if history.maxlen is None:
            history.extend(lines)
        elif history.maxlen:
            history.extend(lines[-history.maxlen :])  # (of a long batch: only those)
        speaker = sender.participant
        for participant in list(self._by_participant):
            if participant is not speaker:
                participant.send_lines(lines)
        # The sender's own copy last: if that write overflows its send queue
        # and removes it, everyone else already has the lines.
        if self._echo and speaker in self._by_participant:
            speaker.send_lines(lines)

    def _announce(self, line: str, but: _Member | None = None) -> None:
        if self._quiet:
            return
        for member in list(self._by_participant.values()):
            if member is not but:
                member.participant.send_line(line)
