"""
The directory and its rooms, in this process: the default backend.

L{Directory} holds every name and the room each participant is in;
L{Room} holds one conversation's members, numbering, history and topic.
Both answer with events (L{twisted_tcpchat.core.events}); neither knows
any wire.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from twisted_tcpchat.core.config import CREATE_ROOMS, ROOM_IDLE, may_create_rooms, no_room
from twisted_tcpchat.core.events import (
    Action,
    Error,
    Event,
    History,
    Identity,
    MemberInfo,
    Members,
    Message,
    Notice,
    Presence,
    Private,
    RoomInfo,
    Rooms,
    Said,
    Topic,
    Whois,
)
from twisted_tcpchat.core.interfaces import ChatObserver, IDirectory, IParticipant, IRoom, Origin
from twisted_tcpchat.core.limits import Bans, network_of, parse_network, within
from twisted_tcpchat.core.names import (
    RESERVED_NAMES,
    format_idle,
    name_problem,
    room_name,
    room_problem,
)
from twisted_tcpchat.logs import TurnLog
from twisted_tcpchat.text.escaping import escape_controls

log = TurnLog(namespace="tcpchat")


def _lines_of(entry: Said) -> int:
    return len(entry.lines) if isinstance(entry, Message) else 1


@implementer(IRoom)
class Room:
    """
    One conversation in this process.

    @ivar name: its name, as first given.
    @ivar topic: its topic ('' for none).
    @ivar topic_locked: whether only operators may set the topic.
    @ivar permanent: whether it stays when empty (the default room,
        C{--room}).
    @ivar last_said_at: when its last line was said.
    """

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        observe: Callable[[Event, IParticipant | None], None],
        *,
        history: int = 20,
        echo: bool = False,
        quiet_presence: bool = False,
        permanent: bool = False,
    ) -> None:
        self.name = name
        self.topic = ""
        self.topic_locked = False
        self.permanent = permanent
        self._clock = clock
        self._observe = observe
        self._echo = echo
        self._quiet = quiet_presence
        # Members in the order they came (a dict as an ordered set): adding
        # and removing one costs the same in a room of 5 or of 5,000.
        self._members: dict[IParticipant, None] = {}
        # The number of the last message or action said here.
        self.seq = 0
        # The last --history lines said here (whole messages; the oldest
        # may hold more lines than are replayed), and how many lines that is.
        self._history_size = history
        self._history: deque[Said] = deque()
        self._history_lines = 0
        self.last_said_at = 0.0
        #: The call that will close the room once it has been empty long enough.
        self.expiry: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[IParticipant]:
        return iter(list(self._members))

    def info(self) -> RoomInfo:
        return RoomInfo(self.name, len(self._members), self.topic, self.seq)

    # membership

    def add(self, participant: IParticipant, came_from: str | None = None) -> None:
        self._members[participant] = None
        if self.topic:
            participant.receive(Topic(self.name, self.topic))
        recent = self.recent()
        if recent:
            participant.receive(History(self.name, recent))
        if participant not in self._members:
            return  # (removed meanwhile: nobody is told it came)
        if came_from is None:
            self._announce(Presence(self.name, participant.name, Presence.JOINED), participant)
        else:
            self._announce(
                Presence(self.name, participant.name, Presence.MOVED_IN, other=came_from),
                participant,
            )

    def remove(self, participant: IParticipant, reason: str, going_to: str | None = None) -> None:
        if self._members.pop(participant, True) is True:
            return  # (not a member)
        if going_to is None:
            event = Presence(self.name, participant.name, Presence.LEFT, reason=reason)
        else:
            event = Presence(self.name, participant.name, Presence.MOVED_OUT, other=going_to)
        self._announce(event, participant)

    def rename(self, participant: IParticipant, old: str) -> None:
        event = Presence(self.name, old, Presence.RENAMED, other=participant.name)
        self._announce(event, participant)

    # conversation

    def say(self, participant: IParticipant, lines: Sequence[str]) -> None:
        now = self._clock.seconds()
        self.seq += 1
        message = Message(self.name, participant.name, tuple(lines), self.seq, now)
        self._relay(message, participant)

    def act(self, participant: IParticipant, text: str) -> None:
        now = self._clock.seconds()
        self.seq += 1
        self._relay(Action(self.name, participant.name, text, self.seq, now), participant)

    def notice(self, text: str, sender: str | None = None) -> None:
        event = Notice(text, room=self.name, sender=sender)
        for member in list(self._members):
            member.receive(event)
        self._observe(event, None)

    def set_topic(self, participant: IParticipant, text: str) -> None:
        self.topic = text
        event = Topic(self.name, text, by=participant.name)
        for member in list(self._members):
            member.receive(event)
        self._observe(event, participant)

    def recent(self) -> tuple[Said, ...]:
        """The last --history lines said here, oldest first."""
        entries = list(self._history)
        excess = self._history_lines - self._history_size
        first = entries[0] if entries else None
        if excess > 0 and isinstance(first, Message):  # (an action is one line: never in excess)
            entries[0] = replace(first, lines=first.lines[excess:])
        return tuple(entries)

    # inside

    def _relay(self, said: Said, sender: IParticipant) -> None:
        """Into the history, then out to every member (the sender too with echo)."""
        self.last_said_at = said.at
        self._remember(said)
        for member in list(self._members):
            if member is not sender:
                member.receive(said)
        # The sender's own copy last: should that write overflow its send
        # queue and remove it, everyone else already has the lines.
        if self._echo and sender in self._members:
            sender.receive(said)
        self._observe(said, sender)

    def _remember(self, said: Said) -> None:
        size = self._history_size
        if not size:
            return
        lines = _lines_of(said)
        if isinstance(said, Message) and lines > size:  # (of a long paste, what is replayed)
            said = replace(said, lines=said.lines[-size:])
            lines = size
        history = self._history
        history.append(said)
        self._history_lines += lines
        while self._history_lines - _lines_of(history[0]) >= size:
            self._history_lines -= _lines_of(history.popleft())

    def _announce(self, event: Presence, but: IParticipant) -> None:
        if not self._quiet:
            for member in list(self._members):
                if member is not but:
                    member.receive(event)
        self._observe(event, but)


@dataclass(slots=True, eq=False)
class _Member:
    """What the directory knows of a participant."""

    participant: IParticipant
    name: str
    operator: bool
    active_at: float
    room: Room


@implementer(IDirectory)
class Directory:
    """
    The in-process directory: names, rooms, private messages, operators
    and bans of one server.

    @param clock: for idle times, bans and rooms' idle expiry.
    @param default_room: where everyone starts, and where C{/part} leads.
    @param rooms: rooms that always exist, beside the default one.
    @param create_rooms: who may create a room by joining it: C{anyone},
        C{operators} or C{none} (see L{CREATE_ROOMS}).
    @param max_rooms: the most rooms at once.
    @param history: lines of each room a newcomer gets first (0: none).
    @param echo: whether a sender hears its own lines.
    @param quiet_presence: whether joins, moves, renames and leaves go
        unannounced to members (observers still hear them).
    @param reserved: names no participant may take by renaming (the console
        enters with one).
    @param room_idle: seconds an empty room without a topic outlives its
        last line.
    @param ban_file: where bans are kept across restarts (written
        atomically at each change); None: in memory only.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        default_room: str = "lobby",
        rooms: Iterable[str] = (),
        create_rooms: str = "anyone",
        max_rooms: int = 1000,
        history: int = 20,
        echo: bool = False,
        quiet_presence: bool = False,
        reserved: Iterable[str] = RESERVED_NAMES,
        room_idle: float = ROOM_IDLE,
        ban_file: str | None = None,
    ) -> None:
        if create_rooms not in CREATE_ROOMS:
            raise ValueError(f"create-rooms: {create_rooms!r} is not one of {CREATE_ROOMS}")
        self._clock = clock
        self._create_rooms = create_rooms
        self._max_rooms = max_rooms
        self._room_settings = {"history": history, "echo": echo, "quiet_presence": quiet_presence}
        self._room_idle = room_idle
        self._reserved = {name.lower() for name in reserved}
        self._members: dict[IParticipant, _Member] = {}
        self._by_name: dict[str, _Member] = {}
        self._rooms: dict[str, Room] = {}
        self._guests = itertools.count(1)
        self._bans = Bans(ban_file, clock.seconds()) if ban_file else Bans()
        # What a ban without end lasts: kept in a file, until lifted.
        self._for_good = " until the server restarts" if ban_file is None else " until lifted"
        self._observers: list[ChatObserver] = []
        for text in (default_room, *rooms):
            name = room_name(text)
            if name is None:
                raise ValueError(room_problem(text))
            if name.lower() not in self._rooms:
                self._add_room(name, permanent=True)
        self.default_room = self._rooms[room_name(default_room).lower()]  # type: ignore[union-attr]

    # queries, for this process (a remote directory answers with events)

    def room(self, name: str) -> Room | None:
        """The room named C{name} (a leading C{#} or not), or None."""
        key = room_name(name)
        return None if key is None else self._rooms.get(key.lower())

    def rooms(self) -> list[Room]:
        """Every room, by name."""
        return [self._rooms[key] for key in sorted(self._rooms)]

    def recent_history(
        self, participant: IParticipant, give: Callable[[str, tuple[Said, ...]], None]
    ) -> None:
        """
        The last --history lines of the participant's room, given to
        C{give(room, lines)} (a client that asked for JSON events gets its
        state again: C{/events json}).
        """
        member = self._members.get(participant)
        if member is not None:
            give(member.room.name, member.room.recent())

    def local_rooms(self) -> list[tuple[str, int]]:
        """For the metrics: every room, with how many are in it."""
        return [(room.name, len(room._members)) for room in self._rooms.values()]

    def __contains__(self, participant: object) -> bool:
        return participant in self._members

    # members

    def enter(
        self, participant: IParticipant, name: str | None = None, operator: bool = False
    ) -> None:
        if participant in self._members:
            return
        if name is None:
            name = self._free_guest_name()
        else:
            problem = name_problem(name)
            if problem is not None:
                participant.receive(Error(problem))
                return
            if name.lower() in self._by_name:
                participant.receive(Error(f"the name {name!r} is taken"))
                return
        room = self.default_room
        member = _Member(participant, name, operator, self._clock.seconds(), room)
        self._members[participant] = member
        self._by_name[name.lower()] = member
        participant.name = name
        participant.room = room.name
        participant.receive(Identity(name, room.name, Identity.WELCOME, operator))
        if self._still(member):
            self._seat(member, room)

    def leave(self, participant: IParticipant, reason: str) -> None:
        member = self._members.pop(participant, None)
        if member is None:
            return
        del self._by_name[member.name.lower()]
        self._unseat(member, reason)

    def rename(self, participant: IParticipant, name: str) -> None:
        member = self._member(participant)
        if member is None:
            return
        problem = name_problem(name)
        key = name.lower()
        if problem is not None:
            participant.receive(Error(problem))
        elif key in self._reserved:
            participant.receive(Error(f"the name {name!r} is reserved"))
        elif key in self._by_name and self._by_name[key] is not member:
            participant.receive(Error(f"the name {name!r} is taken"))
        elif name == member.name:
            participant.receive(Identity(name, member.room.name, Identity.SAME, member.operator))
        else:
            old = member.name
            del self._by_name[old.lower()]
            member.name = participant.name = name
            self._by_name[key] = member
            log.info("{old} is now known as {new}", old=old, new=name, room=member.room.name)
            participant.receive(Identity(name, member.room.name, Identity.RENAMED, member.operator))
            member.room.rename(participant, old)

    # conversation

    def say(self, participant: IParticipant, lines: Sequence[str]) -> None:
        member = self._member(participant)
        if member is not None:
            member.active_at = self._clock.seconds()
            member.room.say(participant, lines)

    def act(self, participant: IParticipant, text: str) -> None:
        member = self._member(participant)
        if member is not None:
            member.active_at = self._clock.seconds()
            member.room.act(participant, text)

    def whisper(self, participant: IParticipant, target: str, text: str) -> None:
        sender = self._member(participant)
        if sender is None:
            return
        recipient = self._find(participant, target)
        if recipient is None:
            return
        now = sender.active_at = self._clock.seconds()
        event = Private(sender.name, recipient.name, text, now)
        recipient.participant.receive(event)
        if recipient is not sender:
            participant.receive(Private(sender.name, recipient.name, text, now, echo=True))
        self._observe(event, participant)

    def notice(self, room: str, text: str, sender: str | None = None) -> None:
        found = self.room(room)
        if found is None:
            raise KeyError(f"no room {room!r}")
        found.notice(text, sender)

    # rooms

    def join(self, participant: IParticipant, room: str) -> None:
        member = self._member(participant)
        if member is None:
            return
        name = room_name(room)
        if name is None:
            participant.receive(Error(room_problem(room)))
            return
        target = self._rooms.get(name.lower())
        if target is member.room:
            participant.receive(Error(f"you are in #{target.name} already"))
            return
        if target is None:
            refusal = self._creation_refusal(member, name)
            if refusal is not None:
                participant.receive(Error(refusal))
                return
            target = self._add_room(name)
            log.info("{name} created #{room}", name=member.name, room=name)
        self._move(member, target)

    def part(self, participant: IParticipant) -> None:
        member = self._member(participant)
        if member is None:
            return
        if member.room is self.default_room:
            participant.receive(
                Error(f"you are in #{self.default_room.name}, the default room, already")
            )
            return
        self._move(member, self.default_room)

    def topic(self, participant: IParticipant, text: str | None = None) -> None:
        member = self._member(participant)
        if member is None:
            return
        room = member.room
        if text is None:
            participant.receive(Topic(room.name, room.topic))
        elif room.topic_locked and not member.operator:
            participant.receive(Error(f"only operators may set the topic of #{room.name}"))
        else:
            member.active_at = self._clock.seconds()
            log.info(
                "{name} set the topic of #{room}: {topic}",
                name=member.name,
                room=room.name,
                topic=escape_controls(text),
            )
            room.set_topic(participant, text)

    def lock_topic(self, participant: IParticipant, locked: bool) -> None:
        member = self._operator(participant)
        if member is None:
            return
        room = member.room
        room.topic_locked = locked
        who = "operators only" if locked else "anyone"
        participant.receive(Notice(f"the topic of #{room.name} may now be set by {who}"))

    def list_rooms(self, participant: IParticipant) -> None:
        if self._member(participant) is not None:
            participant.receive(Rooms(tuple(room.info() for room in self.rooms())))

    def who(self, participant: IParticipant, everywhere: bool = False) -> None:
        member = self._member(participant)
        if member is None:
            return
        if everywhere:
            members: Iterable[_Member] = self._members.values()
        else:
            members = (self._members[p] for p in member.room if p in self._members)
        listing = sorted((self._info(m) for m in members), key=lambda m: m.name.lower())
        participant.receive(Members(None if everywhere else member.room.name, tuple(listing)))

    def whois(self, participant: IParticipant, name: str) -> None:
        if self._member(participant) is None:
            return
        found = self._find(participant, name)
        if found is not None:
            participant.receive(Whois(self._info(found)))

    # operators

    def kick(self, participant: IParticipant, target: str, reason: str) -> None:
        kicker = self._operator(participant)
        if kicker is None:
            return
        victim = self._find(participant, target)
        if victim is None:
            return
        why = f"kicked by {kicker.name}" + (f": {reason}" if reason else "")
        self._remove(victim, why, f"you were {why}")

    def ban(self, participant: IParticipant, target: str, duration: float | None) -> None:
        operator = self._operator(participant)
        if operator is None:
            return
        network = parse_network(target)
        if network is None:
            member = self._find(participant, target)
            if member is None:
                return
            network = network_of(member.participant.address)
            if network is None:
                participant.receive(Error(f"{member.name} has no address to ban"))
                return
        until = None if duration is None else self._clock.seconds() + duration
        self._bans.add(network, until)
        how_long = self._for_good.strip() if duration is None else f"for {format_idle(duration)}"
        log.info(
            "{op} banned {network} {how_long}",
            op=operator.name,
            network=str(network),
            how_long=how_long,
        )
        participant.receive(Notice(f"banned {network} {how_long}"))
        why = f"banned by {operator.name}"
        for member in list(self._members.values()):
            if member is not operator and within(member.participant.address, network):
                self._remove(member, why, f"you were {why} {how_long}")

    def unban(self, participant: IParticipant, target: str) -> None:
        operator = self._operator(participant)
        if operator is None:
            return
        network = parse_network(target)
        if network is None or not self._bans.remove(network):
            participant.receive(Error(f"{target!r} is not banned (/bans lists the bans)"))
            return
        log.info("{op} lifted the ban on {network}", op=operator.name, network=str(network))
        participant.receive(Notice(f"lifted the ban on {network}"))

    def list_bans(self, participant: IParticipant) -> None:
        if self._operator(participant) is None:
            return
        for_good = "until restart" if self._bans.path is None else "until lifted"
        for line in self._bans.report(self._clock.seconds(), for_good):
            participant.receive(Notice(line))

    def banned(self, address: str) -> str | None:
        return self._bans.refusal(address, self._clock.seconds(), self._for_good)

    # observers

    def add_observer(self, observer: ChatObserver) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: ChatObserver) -> None:
        self._observers.remove(observer)

    # inside

    def _observe(self, event: Event, participant: IParticipant | None) -> None:
        if not self._observers:
            return
        if participant is None:
            origin = Origin("", "")
        else:
            origin = Origin(participant.name, participant.address)
        for observer in list(self._observers):
            try:
                observer(event, origin)
            except Exception:
                log.failure("an observer failed on {event!r}", event=event)

    def _member(self, participant: IParticipant) -> _Member | None:
        member = self._members.get(participant)
        if member is None:
            participant.receive(Error("you are not in the chat"))
        return member

    def _operator(self, participant: IParticipant) -> _Member | None:
        member = self._member(participant)
        if member is not None and not member.operator:
            participant.receive(Error("only operators may do that"))
            return None
        return member

    def _find(self, participant: IParticipant, name: str) -> _Member | None:
        member = self._by_name.get(name.lower())
        if member is None:
            participant.receive(Error(f"no one here is named {name!r}"))
        return member

    def _info(self, member: _Member) -> MemberInfo:
        idle = self._clock.seconds() - member.active_at
        return MemberInfo(member.name, member.room.name, idle, member.operator)

    def _free_guest_name(self) -> str:
        while True:
            name = f"guest{next(self._guests)}"
            if name not in self._by_name and name not in self._reserved:
                return name

    def _remove(self, member: _Member, why: str, notice: str) -> None:
        """An operator removes C{member}: it is told, its room hears why, it is disconnected."""
        participant = member.participant
        if not self._still(member):
            return  # (gone meanwhile: a ban's earlier removals may have ended it)
        del self._members[participant]
        del self._by_name[member.name.lower()]
        participant.receive(Notice(notice))
        self._unseat(member, why)
        participant.disconnect(why)

    def _creation_refusal(self, member: _Member, name: str) -> str | None:
        """Why C{member} may not create the room C{name}, or None."""
        if not may_create_rooms(self._create_rooms, member.operator):
            return no_room(name, self._create_rooms)
        if len(self._rooms) >= self._max_rooms:
            return no_room(name, self._create_rooms, self._max_rooms)
        return None

    def _add_room(self, name: str, permanent: bool = False) -> Room:
        room = Room(name, self._clock, self._observe, permanent=permanent, **self._room_settings)  # type: ignore[arg-type]
        self._rooms[name.lower()] = room
        return room

    def _seat(self, member: _Member, room: Room, came_from: str | None = None) -> None:
        if room.expiry is not None:
            if room.expiry.active():
                room.expiry.cancel()
            room.expiry = None
        room.add(member.participant, came_from)

    def _unseat(self, member: _Member, reason: str) -> None:
        room = member.room
        room.remove(member.participant, reason)
        self._room_emptied(room)

    def _still(self, member: _Member) -> bool:
        """
        Whether C{member} is still in the chat: telling anyone anything (a
        bot, an observer) may end a participant before the directory's
        next step.
        """
        return self._members.get(member.participant) is member

    def _move(self, member: _Member, target: Room) -> None:
        participant = member.participant
        old = member.room
        old.remove(participant, "", going_to=target.name)
        if not self._still(member):
            self._room_emptied(old)
            return
        member.room = target
        participant.room = target.name
        member.active_at = self._clock.seconds()
        log.info(
            "{name} moved from #{old} to #{new}", name=member.name, old=old.name, new=target.name
        )
        participant.receive(Identity(member.name, target.name, Identity.MOVED, member.operator))
        if self._still(member):
            self._seat(member, target, came_from=old.name)
        self._room_emptied(old)

    def _room_emptied(self, room: Room) -> None:
        """Close C{room} once it is empty, has no topic, is not permanent, and is idle enough."""
        if len(room) or room.topic or room.permanent:
            return
        wait = 0.0
        if room.recent():
            wait = room.last_said_at + self._room_idle - self._clock.seconds()
        if wait <= 0:
            self._close_room(room)
        else:
            room.expiry = self._clock.callLater(wait, self._close_room, room)

    def _close_room(self, room: Room) -> None:
        room.expiry = None
        if len(room) or room.topic or self._rooms.get(room.name.lower()) is not room:
            return
        del self._rooms[room.name.lower()]
        log.info("#{room} closed (empty)", room=room.name)
