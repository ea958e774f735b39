"""
What an operator can set, with its defaults, checked once at start.

Both the twistd plugin's options and code embedding the server build a
L{ChatConfig}; a bad value raises L{ValueError} with a message that names it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from twisted_tcpchat.core.limits import LOOPBACK, parse_networks
from twisted_tcpchat.core.names import name_problem, room_name, room_problem
from twisted_tcpchat.text.encodings import writes_ascii_as_ascii
from twisted_tcpchat.text.templates import check_template

DEFAULT_PORT = 65432
DEFAULT_GREETING = "Connect succeed. Please send a message to me"

#: Who may create a room by joining it (C{--create-rooms}).
CREATE_ROOMS = ("anyone", "operators", "none")

#: Seconds an empty room without a topic outlives its last line.
ROOM_IDLE = 3600.0

#: The settings a running server takes on (L{ChatServer.reconfigure
#: <twisted_tcpchat.core.server.ChatServer.reconfigure>}, a reload): the
#: greeting, the exit word, who may come in and the limits.  The others
#: shape the rooms, the listeners or the mode, which are built once.
LIVE_SETTINGS = (
    "greeting",
    "exit_word",
    "allow",
    "deny",
    "exempt",
    "max_clients",
    "per_address",
    "connect_rate",
    "max_line",
    "max_unterminated",
    "quiet_time",
    "flood_rate",
    "flood_burst",
    "flood_queue",
    "send_queue",
    "idle_timeout",
    "probe_grace",
    "tls_timeout",
    "keepalive",
)


@dataclass(frozen=True)
class ChatConfig:
    """
    The server's settings.

    @ivar greeting: template of the line sent on connect (see
        L{twisted_tcpchat.wire.GREETING_FIELDS}).
    @ivar exit_word: a line that, alone, ends the client's session.
    @ivar once: the tutorials' iterative mode: one message per connection.
    @ivar classic: the tutorials' server: the greeting, then one answer per
        message (the console's typed reply, or an acknowledgement); no rooms.
    @ivar max_line: longest line accepted, in bytes.
    @ivar max_unterminated: bytes without a line end before the client is
        dropped.
    @ivar close_grace: seconds a closing connection may take to flush before it
        is aborted (a peer that does not read would otherwise hang forever).
    @ivar history: lines of a room a newcomer gets first (0: none).
    @ivar default_room: the room everyone starts in.
    @ivar rooms: rooms that always exist, beside the default one.
    @ivar create_rooms: who may create a room by joining it: anyone,
        operators or none.
    @ivar max_rooms: the most rooms at once.
    @ivar room_idle: seconds an empty room without a topic outlives its
        last line.
    @ivar echo: whether a sender gets its own lines back.
    @ivar quiet_presence: whether joins, renames and leaves go unannounced.
    @ivar console_name: the name the operator console speaks as.
    @ivar quiet_time: seconds of silence after which what a client sent
        without any line end is taken as one message (classic C clients).
    @ivar encoding: every client's encoding, or None to detect it per client
        (UTF-8, else GB18030/GBK).
    @ivar flood_burst: lines a client may send at once...
    @ivar flood_rate: ...then lines per second; the excess is delayed.
    @ivar flood_queue: delayed lines past which the client is disconnected.
    @ivar send_queue: bytes queued for a client that does not read, past
        which it is disconnected.
    @ivar max_clients: clients at once (None: what the open-file limit allows).
    @ivar per_address: connections at once from one address (IPv6: one /64).
    @ivar connect_rate: new connections per minute from one address.
    @ivar exempt: networks (CIDR) free of the per-address and flood limits.
    @ivar idle_timeout: seconds without a line before a client is
        disconnected (0: never).
    @ivar probe_grace: seconds a new TCP client is greeted but not yet in a
        room, unless it sends something first: a health check that
        connects and closes within them (C{nc -z}) is never announced,
        sent history or listed (0: in at once, the library's default;
        twistd's is 0.25).
    @ivar keepalive: seconds of silence before TCP keepalive probes start
        (then every 10 s, 6 times: a vanished peer is noticed in about
        keepalive + 60 s); 0 leaves keepalive off.
    @ivar allow: networks (CIDR) that alone may connect, if any are given.
    @ivar deny: networks refused, unless also allowed.
    @ivar operators: login names that may /kick and /ban.
    @ivar tls_timeout: seconds a TLS handshake may take.
    @ivar redis: the Redis that makes this process a node of a shared chat.
    @ivar ban_file: where bans are kept across restarts (in memory only:
        None); with C{redis}, Redis keeps them.
    """

    greeting: str = DEFAULT_GREETING
    exit_word: str = "exit"
    once: bool = False
    classic: bool = False
    max_line: int = 4096
    max_unterminated: int = 16384
    close_grace: float = 2.0
    history: int = 20
    default_room: str = "lobby"
    rooms: tuple[str, ...] = ()
    create_rooms: str = "anyone"
    max_rooms: int = 1000
    room_idle: float = ROOM_IDLE
    echo: bool = False
    quiet_presence: bool = False
    console_name: str = "server"
    quiet_time: float = 0.3
    encoding: str | None = None
    flood_burst: int = 10
    flood_rate: float = 2.0
    flood_queue: int = 50
    send_queue: int = 256 * 1024
    max_clients: int | None = None
    per_address: int = 16
    connect_rate: int = 10
    exempt: tuple[str, ...] = LOOPBACK
    idle_timeout: float = 0.0
    probe_grace: float = 0.0
    keepalive: int = 60
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    tls_timeout: float = 10.0
    redis: str | None = None
    ban_file: str | None = None

    def __post_init__(self) -> None:
        try:
            check_template(self.greeting)
        except ValueError as e:
            raise ValueError(f"greeting: {e}") from None
        word = self.exit_word
        if not word or word != word.strip() or not word.isprintable():
            raise ValueError(
                f"exit-word: {word!r} must be non-empty, printable, "
                "without leading or trailing spaces"
            )
        if self.max_line < 1:
            raise ValueError(f"max-line: {self.max_line} must be at least 1 byte")
        if self.max_unterminated < self.max_line:
            raise ValueError(
                f"max-unterminated: {self.max_unterminated} must be at least "
                f"the max-line ({self.max_line})"
            )
        if self.history < 0:
            raise ValueError(f"history: {self.history} must not be negative")
        for option, names in (("default-room", (self.default_room,)), ("room", self.rooms)):
            for name in names:
                if room_name(name) is None:
                    raise ValueError(f"{option}: {room_problem(name)}")
        if self.create_rooms not in CREATE_ROOMS:
            raise ValueError(
                f"create-rooms: {self.create_rooms!r} is not one of {', '.join(CREATE_ROOMS)}"
            )
        if self.max_rooms < 1 + len(self.rooms):
            raise ValueError(
                f"max-rooms: {self.max_rooms} leaves no room for the default room and --room ones"
            )
        if self.room_idle < 0:
            raise ValueError(f"room-idle: {self.room_idle} must not be negative")
        if self.once and self.classic:
            raise ValueError("classic: --once and --classic are two different servers; pick one")
        problem = name_problem(self.console_name)
        if problem is not None:
            raise ValueError(f"console-name: {problem}")
        if self.encoding is not None:
            try:
                ascii_ok = writes_ascii_as_ascii(self.encoding)
            except LookupError:  # (also a bytes-to-bytes codec, like hex)
                raise ValueError(f"encoding: {self.encoding!r} is not a known encoding") from None
            if not ascii_ok:
                raise ValueError(
                    f"encoding: {self.encoding!r} does not write ASCII as ASCII; "
                    "lines cannot be framed in it"
                )
        for name in ("quiet_time", "flood_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', '-')}: must be more than 0")
        for name in ("flood_burst", "flood_queue", "send_queue", "per_address", "connect_rate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')}: must be at least 1")
        if self.max_clients is not None and self.max_clients < 1:
            raise ValueError("max-clients: must be at least 1")
        for name in ("idle_timeout", "keepalive"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', '-')}: must not be negative")
        for name in ("exempt", "allow", "deny"):
            try:
                parse_networks(getattr(self, name))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        for operator in self.operators:
            problem = name_problem(operator)
            if problem is not None:
                raise ValueError(f"op: {problem}")
        if self.tls_timeout <= 0:
            raise ValueError("tls-timeout: must be more than 0")
        if self.close_grace < 0:
            raise ValueError(f"close-grace: {self.close_grace} must not be negative")


def option_name(setting: str) -> str:
    """The command-line option of a L{ChatConfig} field: C{flood_rate} is C{flood-rate}."""
    return setting.replace("_", "-")


def restart_needed(old: ChatConfig, new: ChatConfig) -> list[str]:
    """The settings (as options) that differ between C{old} and C{new} and cannot change live."""
    return [
        option_name(field.name)
        for field in fields(ChatConfig)
        if field.name not in LIVE_SETTINGS and getattr(old, field.name) != getattr(new, field.name)
    ]


def config_changes(old: ChatConfig, new: ChatConfig) -> list[str]:
    """
    What taking on C{new} instead of C{old} changes, one short phrase per
    setting, for the log: C{flood-rate 2 → 5}, C{allow: +10.0.0.0/8}.  A
    greeting is only said to have changed: it may be long, and the log has
    it at the next connection anyway.
    """
    changes = []
    for name in LIVE_SETTINGS:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        option = option_name(name)
        if name == "greeting":
            changes.append("greeting changed")
        elif name in ("allow", "deny", "exempt"):
            changes.append(f"{option}: {_networks_change(before, after)}")
        elif name == "exit_word":
            changes.append(f"{option} {before!r} → {after!r}")
        else:
            changes.append(f"{option} {_setting_text(before)} → {_setting_text(after)}")
    return changes


def _setting_text(value: float | None) -> str:
    if value is None:
        return "(the open-file limit)"
    return f"{value:g}"


def _networks_change(before: tuple[str, ...], after: tuple[str, ...]) -> str:
    """C{+ADDED -REMOVED} networks, each as its normal CIDR, in the order given."""
    old = [str(network) for network in parse_networks(before)]
    new = [str(network) for network in parse_networks(after)]
    words = [f"+{n}" for n in dict.fromkeys(new) if n not in old]
    words += [f"-{n}" for n in dict.fromkeys(old) if n not in new]
    return " ".join(words) or "the same networks, in another order"


def may_create_rooms(create_rooms: str, operator: bool) -> bool:
    """Whether someone (an operator or not) may make a room by joining it."""
    return create_rooms == "anyone" or (create_rooms == "operators" and operator)


def no_room(name: str, create_rooms: str, max_rooms: int | None = None) -> str:
    """
    Why joining the room C{name} that does not exist made none: who may
    create rooms (C{create_rooms}), or (with C{max_rooms}) that the server
    has all the rooms it keeps.
    """
    if max_rooms is not None:
        return (
            f"there is no room #{name}, and no more can be made: this server keeps at "
            f"most {max_rooms} rooms; /rooms lists them"
        )
    who = "" if create_rooms == "none" else " (only operators may create rooms)"
    return f"there is no room #{name}{who}; /rooms lists the rooms"
