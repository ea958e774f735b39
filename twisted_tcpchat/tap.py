"""
The twistd plugin's options and service: C{twistd -n tcpchat --port 65432}.
"""

from __future__ import annotations

import getopt
import ipaddress
import math
import os
import signal
import socket
import textwrap
import threading
from collections.abc import Callable, Mapping
from functools import partial
from importlib.util import find_spec
from typing import Any, cast

from twisted.application.service import Service
from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.python import usage

from twisted_tcpchat.core.config import CREATE_ROOMS, DEFAULT_GREETING, DEFAULT_PORT, ChatConfig
from twisted_tcpchat.core.limits import LOOPBACK
from twisted_tcpchat.service import ChatService, make_service
from twisted_tcpchat.settings import OptionValues, read_settings
from twisted_tcpchat.text.templates import GREETING_FIELDS

log = Logger(namespace="tcpchat")

#: Pending connections the kernel may hold; Twisted's default is 50 and
#: ncat's 10, which loses clients that arrive in bursts.  511 is what
#: nginx and Redis use.
DEFAULT_BACKLOG = 511

#: Endpoint types that take a backlog= argument.
_BACKLOG_TYPES = ("tcp", "tcp6", "unix", "ssl")


def _ipv6_available() -> bool:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return False
    return True


def tcp_description(port: int, interface: str | None, backlog: int) -> str:
    """
    The endpoint string for C{--port}/C{--interface}: no interface means
    every IPv4 and IPv6 interface (IPv4 only where IPv6 is off).
    """
    if interface is None:
        interface = "::" if _ipv6_available() else "0.0.0.0"  # noqa: S104
    kind = "tcp6" if ":" in interface else "tcp"
    return f"{kind}:{port}:interface={quoteStringArgument(interface)}:backlog={backlog}"


def with_backlog(description: str, backlog: int) -> str:
    """Add C{backlog=} to a listening endpoint string that takes one and lacks it."""
    kind = description.split(":", 1)[0]
    if kind in _BACKLOG_TYPES and ":backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


def _integer(option: str, value: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"{low} to {high}" if high is not None else f"at least {low}"
        raise usage.UsageError(f"--{option}: {value!r} is not a whole number {bounds}")
    return number


def _number(option: str, value: str, positive: bool = True) -> float:
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "more than 0" if positive else "0 or more"
        raise usage.UsageError(f"--{option}: {value!r} is not a number {bound}")
    return number


def chat_config(values: Mapping[str, Any]) -> ChatConfig:
    """
    The server's settings from option values (what the command line gave,
    with a --config file's settings beside them), checked as the command
    line's always are.

    @raise usage.UsageError: in one line, starting C{--OPTION:}.
    """
    try:
        return ChatConfig(
            greeting=values["greeting"],
            exit_word=values["exit-word"],
            once=bool(values["once"]),
            classic=bool(values["classic"]),
            max_line=_integer("max-line", values["max-line"], 1),
            max_unterminated=_integer("max-unterminated", values["max-unterminated"], 1),
            history=_integer("history", values["history"], 0),
            default_room=values["default-room"],
            rooms=tuple(values["rooms"]),
            create_rooms=values["create-rooms"],
            max_rooms=_integer("max-rooms", values["max-rooms"], 1),
            echo=bool(values["echo"]),
            quiet_presence=bool(values["quiet-presence"]),
            console_name=values["console-name"],
            quiet_time=_number("quiet-time", values["quiet-time"]),
            encoding=values["encoding"],
            flood_burst=_integer("flood-burst", values["flood-burst"], 1),
            flood_rate=_number("flood-rate", values["flood-rate"]),
            flood_queue=_integer("flood-queue", values["flood-queue"], 1),
            send_queue=_integer("send-queue", values["send-queue"], 1),
            max_clients=(
                None
                if values["max-clients"] is None
                else _integer("max-clients", values["max-clients"], 1)
            ),
            per_address=_integer("per-address", values["per-address"], 1),
            connect_rate=_integer("connect-rate", values["connect-rate"], 1),
            exempt=LOOPBACK if values["exempt"] is None else tuple(values["exempt"]),
            idle_timeout=_number("idle-timeout", values["idle-timeout"], positive=False),
            probe_grace=_number("probe-grace", values["probe-grace"], positive=False),
            keepalive=_integer("keepalive", values["keepalive"], 0),
            allow=tuple(values["allow"]),
            deny=tuple(values["deny"]),
            operators=tuple(values["operators"]),
            tls_timeout=_number("tls-timeout", values["tls-timeout"]),
            redis=values["redis"],
            ban_file=values["ban-file"],
        )
    except ValueError as e:
        raise usage.UsageError(f"--{e}") from None


_FIELDS_HELP = "; ".join(f"{{{k}}}: {v}" for k, v in GREETING_FIELDS.items())


#: How `twistd tcpchat --help` groups the options (every one is in a group:
#: tests/test_tap.py checks).
HELP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Listening",
        ("port", "interface", "listen", "backlog", "web", "web-origin", "redis", "workers"),
    ),
    (
        "Rooms and conversation",
        (
            "greeting",
            "exit-word",
            "default-room",
            "room",
            "create-rooms",
            "max-rooms",
            "history",
            "echo",
            "quiet-presence",
            "encoding",
            "quiet-time",
            "console",
            "console-name",
            "classic",
            "once",
        ),
    ),
    (
        "Limits",
        (
            "max-clients",
            "per-address",
            "connect-rate",
            "exempt",
            "max-line",
            "max-unterminated",
            "flood-rate",
            "flood-burst",
            "flood-queue",
            "send-queue",
            "idle-timeout",
            "probe-grace",
            "keepalive",
            "tls-timeout",
        ),
    ),
    ("Security", ("auth", "help-auth", "help-auth-type", "op", "allow", "deny", "ban-file")),
    ("Operations", ("config", "metrics", "version", "help")),
)

#: The examples at the end of `twistd tcpchat --help`.
HELP_EXAMPLES = """Examples:
  twistd -n tcpchat --port 65432 --web tcp:8080
      the chat on port 65432, and its page in a browser on port 8080
  twistd -n tcpchat --listen ssl:6697:privateKey=key.pem:certKey=cert.pem \\
      --auth file:users.txt --op alice --ban-file bans.json
      TLS only, with logins, an operator, and bans kept across restarts
"""


class Options(usage.Options, strcred.AuthOptionMixin):
    """Options of C{twistd tcpchat}."""

    # --auth: names and passwords, checked by any twisted.cred checker.
    supportedInterfaces = (IUsernamePassword,)

    synopsis = "[options]"
    longdesc = (
        "A TCP chat server: greets each client, shows every line a client sends "
        "(who, how many bytes, what), and ends a session on the exit word. "
        "Without --listen it listens on --port on every IPv4 and IPv6 interface."
    )

    optFlags = [
        ["echo", None, "Send each client its own lines back too. [default: off]"],
        [
            "quiet-presence",
            None,
            "Do not announce joins, renames and leaves (large rooms). [default: off]",
        ],
        [
            "console",
            None,
            "Make this terminal the operator's console: it shows the room and speaks in "
            "it; needs the foreground (twistd -n). [default: off]",
        ],
        [
            "once",
            None,
            "The tutorials' iterative server: take one message per "
            "connection, acknowledge it, close. [default: off]",
        ],
        [
            "classic",
            None,
            "The tutorials' server, for their lockstep clients: the greeting, then one "
            "answer per message (with --console, the line the operator types; else an "
            "acknowledgement); no rooms. [default: off]",
        ],
    ]
    optParameters = [
        ["port", "p", str(DEFAULT_PORT), "TCP port to listen on (0: any free port)."],
        [
            "interface",
            "i",
            None,
            "IPv4 or IPv6 address to listen on. [default: every IPv4 and IPv6 interface]",
        ],
        [
            "backlog",
            None,
            str(DEFAULT_BACKLOG),
            "Connections the kernel may queue before they are accepted.",
        ],
        [
            "greeting",
            "g",
            DEFAULT_GREETING,
            f"Line sent to each client on connect. May use {_FIELDS_HELP}; "
            "{{ and }} are literal braces.",
        ],
        ["exit-word", None, "exit", "A line that alone ends the client's session."],
        ["history", None, "20", "Lines of a room a newcomer gets first (0: none)."],
        ["default-room", None, "lobby", "The room everyone starts in (and /part leads to)."],
        [
            "create-rooms",
            None,
            "anyone",
            "Who may create a room by joining it: " + ", ".join(CREATE_ROOMS) + ".",
        ],
        [
            "max-rooms",
            None,
            "1000",
            "The most rooms at once; past it /join of a new room is refused.",
        ],
        ["console-name", None, "server", "The name the operator console speaks as."],
        [
            "max-line",
            None,
            "4096",
            "Longest line accepted, in bytes; longer ones get an error line and are dropped.",
        ],
        [
            "max-unterminated",
            None,
            "16384",
            "Bytes without a line end before the client is disconnected.",
        ],
        [
            "quiet-time",
            None,
            "0.3",
            "Seconds of silence after which what a client sent without any line end is one "
            "message (classic C clients); a client that has ended a line is held to lines.",
        ],
        [
            "encoding",
            None,
            None,
            "Every client's text encoding. [default: per client: UTF-8, else GBK/GB18030]",
        ],
        ["flood-burst", None, "10", "Lines a client may send at once before pacing starts."],
        ["flood-rate", None, "2", "Lines per second a client may send after its burst."],
        [
            "flood-queue",
            None,
            "50",
            "Paced lines waiting past which the client is disconnected (excess flood).",
        ],
        [
            "send-queue",
            None,
            str(256 * 1024),
            "Bytes queued for a client that does not read past which it is disconnected.",
        ],
        [
            "max-clients",
            None,
            None,
            "Clients at once; more are told the server is full. "
            "[default: the open-file limit (raised to its hard limit) less 64]",
        ],
        [
            "per-address",
            None,
            "16",
            "Connections at once from one address (IPv6: one /64).",
        ],
        ["connect-rate", None, "10", "New connections per minute from one address."],
        [
            "idle-timeout",
            None,
            "0",
            "Seconds without a line before a client is disconnected (0: never).",
        ],
        [
            "probe-grace",
            None,
            "0.25",
            "Seconds a new client is greeted but not yet in a room unless it sends "
            "something: a health check that connects and closes within them (nc -z) "
            "is never announced (0: in at once).",
        ],
        [
            "tls-timeout",
            None,
            "10",
            "Seconds a TLS client has to finish its handshake before it is dropped.",
        ],
        [
            "redis",
            None,
            None,
            "Make this process one node of a chat shared through Redis: "
            "redis://[USER:PASSWORD@]HOST:PORT/DB, rediss://... (TLS; ?ca=PATH), "
            "unix:///PATH?db=DB. [default: in this process only]",
        ],
        [
            "ban-file",
            None,
            None,
            "Keep bans in this file across restarts (written atomically at each /ban and "
            "/unban). With --redis they are kept in Redis.",
        ],
        [
            "workers",
            None,
            "1",
            "Processes on this machine sharing the listening sockets, each a node of "
            "--redis (which it needs).",
        ],
        [
            "keepalive",
            None,
            "60",
            "Seconds of silence before TCP keepalive probes (every 10 s, 6 times) find a "
            "vanished peer (0: off).",
        ],
    ]

    def __init__(self, reactor: IReactorCore | None = None) -> None:
        super().__init__()
        self["listen"] = []
        self["web"] = []
        self["web-origins"] = []
        self["metrics"] = []
        self["exempt"] = None
        self["operators"] = []
        self["rooms"] = []
        self["allow"] = []
        self["deny"] = []
        self["credCheckers"] = []
        self["config-file"] = None
        self._reactor = reactor

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse, and turn a usage error into one line and exit status 1: twistd
        would print its whole help page before the line that matters.
        """
        import sys

        self._argv = list(sys.argv[1:] if options is None else options)
        self._given = self._given_options(self._argv)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise SystemExit(f"tcpchat: {e} (see: twistd tcpchat --help)") from None

    def _given_options(self, argv: list[str]) -> frozenset[str]:
        """
        The long names of the options on the command line (abbreviations
        resolved as getopt resolves them for parseOptions), so that a
        --config file cannot set one of them a second time.
        """
        try:
            pairs, _ = getopt.getopt(argv, self.shortOpt, self.longOpt)
        except getopt.error:
            return frozenset()  # (parseOptions says what is wrong)
        names = (option.lstrip("-") for option, _ in pairs)
        return frozenset(self.synonyms.get(name, name) for name in names)

    def opt_config(self, path: str) -> None:
        """A TOML file of the settings that can change while the server runs: greeting, exit-word, allow, deny, exempt and the limits, by these options' names (flood-rate = 5); each in one place, the file or the command line. SIGHUP reads it again, with the --auth file: users and the TLS certificates, dropping no one."""  # noqa: E501
        self["config-file"] = path

    def opt_listen(self, description: str) -> None:
        """Listen on a Twisted endpoint: tcp:65432, tcp6:65432:interface=\\:\\:1, unix:/run/tcpchat.sock (repeatable; with it, --port and --interface add a listener only when given). [default: tcp6:65432:interface=\\:\\:]"""  # noqa: E501
        self["listen"].append(description)

    def getUsage(self, width: int | None = None) -> str:
        """The options in groups (L{HELP_GROUPS}), then two examples."""
        if not width:
            width = int(os.environ.get("COLUMNS", "80"))
        short = {long: key for key, long in self.synonyms.items() if key != long and len(key) == 1}
        kinds = {
            opt.rstrip("="): "parameter" if opt.endswith("=") else "flag" for opt in self.longOpt
        }
        parts = []
        for title, names in HELP_GROUPS:
            described = [
                {
                    "long": name,
                    "short": short.get(name),
                    "doc": self.docs[name],
                    "optType": kinds[name],
                    "default": self.defaults.get(name),
                    "dispatch": self._dispatch.get(name),
                }
                for name in names
            ]
            parts.append(f"{title}:\n" + "".join(usage.docMakeChunks(described, width)))
        longdesc = "\n".join(textwrap.wrap(self.longdesc, width))
        return "\n".join([*parts, longdesc, "", HELP_EXAMPLES])

    def opt_version(self) -> None:
        """Print tcpchat's version, Twisted's and Python's, and exit."""
        import platform
        import sys

        import twisted
        import twisted_tcpchat

        print(
            f"tcpchat {twisted_tcpchat.__version__} "
            f"(Twisted {twisted.__version__}, Python {platform.python_version()})"
        )
        sys.exit(0)

    def opt_web(self, description: str) -> None:
        """Serve the web page at / and its WebSocket at /ws on a Twisted endpoint: tcp:8080, ssl:8443:privateKey=KEY:certKey=CERT (repeatable; needs the [web] extra)."""  # noqa: E501
        self["web"].append(description)

    def opt_metrics(self, where: str) -> None:
        """Serve Prometheus metrics at /metrics and the health check at /health on a Twisted endpoint (tcp:9100:interface=127.0.0.1; keep it private), or at /PATH on the --web port (repeatable)."""  # noqa: E501
        self["metrics"].append(where)

    def opt_web_origin(self, origin: str) -> None:
        """Let pages from this origin (https://chat.example.com; *: any) open the WebSocket; the page's own always may (repeatable)."""  # noqa: E501
        self["web-origins"].append(origin)

    def opt_auth(self, description: str) -> None:
        """Require logins checked by twisted.cred: memory:NAME:PASSWORD[:NAME:PASSWORD...], file:PATH (lines of name:password), unix; repeatable; see --help-auth. [default: no login needed]"""  # noqa: E501
        kind, _, path = description.partition(":")
        if kind != "file":
            super().opt_auth(description)
            return
        # Not Twisted's file: checker, which reads the file at every login.
        from twisted_tcpchat.authfile import AuthFile

        if not path.strip():
            raise usage.UsageError("--auth file: needs the file: file:PATH")
        try:
            self.addChecker(AuthFile(path))
        except ValueError as e:
            raise usage.UsageError(f"--auth file:{path}: {e}") from None

    def opt_room(self, name: str) -> None:
        """A room that always exists, even empty (repeatable). [default: only the default room]"""
        self["rooms"].append(name)

    def opt_op(self, name: str) -> None:
        """A login name that may /kick and /ban (repeatable; needs --auth)."""
        self["operators"].append(name)

    def opt_allow(self, cidr: str) -> None:
        """Only these networks (CIDR) may connect (repeatable); allow wins over --deny. [default: everyone]"""  # noqa: E501
        self["allow"].append(cidr)

    def opt_deny(self, cidr: str) -> None:
        """Refuse these networks (CIDR) unless allowed (repeatable). [default: none]"""
        self["deny"].append(cidr)

    def opt_exempt(self, cidr: str) -> None:
        """A network (CIDR) free of the per-address and flood limits; repeatable; 'none' for no network. [default: 127.0.0.0/8 and ::1]"""  # noqa: E501
        if self["exempt"] is None:
            self["exempt"] = []
        if cidr != "none":
            self["exempt"].append(cidr)

    def opt_port(self, value: str) -> None:
        self["port"] = value
        self._port_given = True

    opt_p = opt_port

    def opt_interface(self, value: str) -> None:
        self["interface"] = value
        self._port_given = True

    opt_i = opt_interface

    _port_given = False
    _argv: list[str] = []
    _given: frozenset[str] = frozenset()

    def postOptions(self) -> None:
        port = _integer("port", self["port"], 0, 65535)
        interface = self["interface"]
        if interface is not None:
            try:
                interface = str(ipaddress.ip_address(interface))
            except ValueError:
                raise usage.UsageError(
                    f"--interface: {interface!r} is not an IPv4 or IPv6 address"
                ) from None
        backlog = _integer("backlog", self["backlog"], 1, 65535)
        self["config"] = self._chat_config(self._settings_file())
        self._check_console()
        self._check_logfile()
        self._check_redis()
        if self["credCheckers"] and (self["classic"] or self["once"]):
            raise usage.UsageError(
                "--auth: --classic and --once have no logins (nor names, nor rooms)"
            )
        if self["operators"] and not self["credCheckers"]:
            raise usage.UsageError(
                "--op needs --auth: without logins anyone could take an operator's name"
            )
        listen = [with_backlog(d, backlog) for d in self["listen"]]
        if self._port_given or not listen:
            listen.append(tcp_description(port, interface, backlog))
        if self["workers"] > 1 and not all(d.startswith(("tcp:", "tcp6:")) for d in listen):
            raise usage.UsageError(
                "--workers shares plain TCP listeners only; put TLS in front, or run one "
                "process per TLS port or UNIX socket"
            )
        reactor = self._get_reactor()
        for description in listen:
            _check_endpoint("listen", description, reactor)
        self["endpoints"] = listen
        self._check_web(reactor)
        self._check_metrics(reactor)

    def _check_metrics(self, reactor: IReactorCore) -> None:
        paths = [where for where in self["metrics"] if where.startswith("/")]
        self["metrics-endpoints"] = [where for where in self["metrics"] if where not in paths]
        self["metrics-path"] = paths[0] if paths else None
        if not self["metrics"]:
            return
        if self["workers"] > 1:
            raise usage.UsageError(
                "--metrics: each of --workers' processes counts its own clients; run one "
                "process per node instead, each with its own --metrics"
            )
        if not metrics_available():
            raise usage.UsageError(METRICS_INSTALL_HINT)
        if len(paths) > 1:
            raise usage.UsageError("--metrics: one /PATH on the web port is enough")
        for path in paths:
            if not self["web"]:
                raise usage.UsageError(f"--metrics {path}: there is no --web port to serve it on")
            segment = path.strip("/")
            if not segment or "/" in segment or segment in _web_paths():
                raise usage.UsageError(
                    f"--metrics: {path!r} must be one free path on the web port, like /metrics"
                )
        for description in self["metrics-endpoints"]:
            _check_endpoint("metrics", description, reactor)

    def _settings_file(self) -> OptionValues:
        """The settings of the --config file, as option values ({} without one)."""
        path = self["config-file"]
        if path is None:
            return {}
        known = set(self.synonyms.values())
        try:
            return read_settings(path, known, self._given)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def _chat_config(self, settings: OptionValues) -> ChatConfig:
        """
        The settings: the command line's, and the --config file's
        (C{settings}); a bad value from the file is said to be from it.
        """
        try:
            return chat_config({**self, **settings})
        except usage.UsageError as e:
            text = str(e)
            option = text.removeprefix("--").split(":", 1)[0]
            if option in settings:
                text = f"--config {self['config-file']}: {text.removeprefix('--')}"
            raise usage.UsageError(text) from None

    def reread_config(self) -> ChatConfig:
        """
        The settings as they are now: the command line's with the --config
        file read again (what a reload takes on).

        @raise ValueError: in one line, for a file or a value that is wrong.
        """
        try:
            return self._chat_config(self._settings_file())
        except usage.UsageError as e:
            raise ValueError(str(e)) from None

    def _check_web(self, reactor: IReactorCore) -> None:
        if not self["web"]:
            if self["web-origins"]:
                raise usage.UsageError("--web-origin: there is no --web page to allow it for")
            return
        if self["classic"] or self["once"]:
            raise usage.UsageError("--web: --classic and --once have no rooms for the page")
        if not web_available():
            raise usage.UsageError(WEB_INSTALL_HINT)
        for description in self["web"]:
            _check_endpoint("web", description, reactor)
        from twisted_tcpchat.frontends.web import origin_problem

        for origin in self["web-origins"]:
            problem = origin_problem(origin)
            if problem is not None:
                raise usage.UsageError(f"--web-origin: {origin!r} {problem}")

    def _check_redis(self) -> None:
        workers = self["workers"] = _integer("workers", self["workers"], 1, 256)
        if workers > 1 and self["redis"] is None:
            raise usage.UsageError(
                "--workers needs --redis: separate processes share their clients' names "
                "and rooms only through Redis"
            )
        if workers > 1 and self["console"]:
            raise usage.UsageError("--workers: the console needs one process; leave one out")
        if self["redis"] is None:
            self._check_ban_file()
            return
        if self["ban-file"] is not None:
            raise usage.UsageError("--ban-file: with --redis the bans are kept in Redis")
        if self["classic"] or self["once"]:
            raise usage.UsageError("--redis: --classic and --once have no names nor rooms to share")
        from twisted_tcpchat.rooms.redislink import INSTALL_HINT, RedisAddress, redis_available

        try:
            RedisAddress.parse(self["redis"])
        except ValueError as e:
            raise usage.UsageError(f"--{e}") from None
        if not redis_available():
            raise usage.UsageError(INSTALL_HINT)

    def _check_ban_file(self) -> None:
        """A ban file that cannot be read or written: one line now, not at the first /ban."""
        path = self["ban-file"]
        if path is None:
            return
        from twisted_tcpchat.core.limits import Bans

        try:
            Bans(path)
        except ValueError as e:
            raise usage.UsageError(f"--{e}") from None
        directory = os.path.dirname(os.path.abspath(path))
        if not os.access(directory, os.W_OK):
            raise usage.UsageError(f"--ban-file: cannot write in {directory!r}")

    def _check_logfile(self) -> None:
        """
        A twistd --logfile that cannot be opened: one line now, not a
        traceback once twistd tries (it opens the file after our options).
        """
        parent = getattr(self, "parent", None)
        path = parent.get("logfile") if parent is not None else None
        if not path or path == "-":
            return
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise usage.UsageError(f"--logfile: cannot open {path!r}: {e.strerror or e}") from None

    def _check_console(self) -> None:
        if not self["console"]:
            return
        if self["once"]:
            raise usage.UsageError("--console needs the room or --classic; --once has neither")
        parent = getattr(self, "parent", None)
        if parent is not None and "nodaemon" in parent and not parent["nodaemon"]:
            raise usage.UsageError(
                "--console needs a terminal, and a daemon has none: run twistd -n tcpchat --console"
            )

    def _get_reactor(self) -> IReactorCore:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = cast(IReactorCore, reactor)
        return self._reactor

    def getService(self) -> ChatService:
        """The configured service (what L{makeService} returns)."""
        from twisted_tcpchat import workers

        reactor = self._get_reactor()
        inherited = workers.inherited_endpoints(reactor)
        service = make_service(
            inherited or self["endpoints"],
            self["config"],
            reactor=reactor,
            console=bool(self["console"]),
            checkers=self["credCheckers"],
            # The first process alone serves the page (a worker adopts only
            # the chat's TCP sockets); its WebSocket clients are its own.
            web=() if inherited else self["web"],
            web_origins=self["web-origins"],
            metrics=self["metrics-endpoints"],
            metrics_path=self["metrics-path"],
        )
        pool = None
        if self["workers"] > 1:
            pool = workers.WorkerPool(service, self["workers"], self._argv, reactor)
            pool.setServiceParent(service)
        Hangup(reactor, partial(self._reload, service, pool)).setServiceParent(service)
        parent = os.environ.get("TCPCHAT_PARENT")
        if parent and os.environ.get(workers.INHERITED):
            workers.ParentWatch(reactor, int(parent)).setServiceParent(service)
        return service

    def _reload(self, service: ChatService, pool: Any) -> None:
        """
        SIGHUP's reload: the --config file, the auth files and the TLS
        certificates read again (see L{ChatService.reload}); each worker
        process does the same for itself.
        """
        service.reload(self.reread_config if self["config-file"] is not None else None)
        if pool is not None:
            pool.reload()


def _check_endpoint(option: str, description: str, reactor: IReactorCore) -> None:
    """Refuse, in one line, an endpoint string that cannot be listened on."""
    if description.startswith("ssl:") and ":sslmethod=" in description:
        raise usage.UsageError(
            f"--{option}: sslmethod= would bypass the TLS 1.2 minimum; leave it out"
        )
    try:
        serverFromString(reactor, description)
    except IndexError:
        if not description.startswith("systemd:"):
            raise
        raise usage.UsageError(
            f"--{option}: no socket passed by systemd for {description!r} (systemd passes "
            "them to a service started by its .socket unit: docs/systemd.md)"
        ) from None
    except (ValueError, TypeError, KeyError, OSError) as e:
        raise usage.UsageError(f"--{option}: bad endpoint {description!r}: {e}") from None
    except Exception as e:  # e.g. OpenSSL.SSL.Error for a key that is not one
        raise usage.UsageError(
            f"--{option}: bad endpoint {description!r}: {type(e).__name__}: {e}"
        ) from None


def _web_paths() -> set[str]:
    """The web port's own paths, which --metrics /PATH may not take: its page's files too."""
    from importlib.resources import files

    page = files("twisted_tcpchat.frontends") / "page"
    return {"ws", "health", *(entry.name for entry in page.iterdir())}


#: What --metrics without the [metrics] extra says.
METRICS_INSTALL_HINT = (
    "--metrics needs the Prometheus library: pip install 'twisted-tcpchat[metrics]'"
)

#: What --web without the [web] extra says.
WEB_INSTALL_HINT = "--web needs the WebSocket library: pip install 'twisted-tcpchat[web]'"


def metrics_available() -> bool:
    """Whether the metrics' library (prometheus_client) is installed."""
    return find_spec("prometheus_client") is not None


def web_available() -> bool:
    """Whether the web front end's library (autobahn) is installed."""
    return find_spec("autobahn") is not None


def has_terminal() -> bool:
    """
    Whether this process has a controlling terminal that is still there:
    once it hangs up (a closed terminal window, an ssh session that ended),
    Linux detaches it from every process of its session, and opening
    C{/dev/tty} fails (ENXIO).
    """
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


class Hangup(Service):
    """
    SIGHUP, which means one of two things.  For a C{twistd -n} server whose
    terminal went away (it had one at the start, and has none now), it
    stops the server as SIGTERM does: every client is told, the log says
    why.  Any other SIGHUP (C{kill -HUP}, C{systemctl reload}, a daemon's, or
    one sent while the terminal is still there) reloads (C{reload}), and
    nobody is dropped.

    Left alone when SIGHUP is ignored (C{nohup}), and only in the main
    thread (where signals can be handled).  The handler only hands the
    signal to the reactor: looking at the terminal and reading files happen
    in the reactor's next turn, outside the handler.
    """

    def __init__(
        self,
        reactor: IReactorCore,
        reload: Callable[[], object],
        terminal: Callable[[], bool] = has_terminal,
    ) -> None:
        self._reactor = reactor
        self._reload = reload
        self._terminal = terminal
        self._had_terminal = False
        self._stopping = False
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
            return
        # (Now, after twistd has daemonized: a daemon has no terminal.)
        self._had_terminal = self._terminal()
        self._previous = signal.signal(signal.SIGHUP, self._received)

    def stopService(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        super().stopService()

    def _received(self, number: int, frame: Any) -> None:
        cast(Any, self._reactor).callFromThread(self.hung_up, number)

    def hung_up(self, number: int = signal.SIGHUP) -> None:
        """A SIGHUP, in a turn of the reactor: stop if the terminal went away, else reload."""
        if self._stopping:
            return
        if not (self._had_terminal and not self._terminal()):
            self._reload()
            return
        self._stopping = True
        log.info(
            "tcpchat: SIGHUP: shutting down, clients told (as on SIGTERM): the terminal went away"
        )
        stop = getattr(self._reactor, "sigTerm", None)
        if stop is not None:  # (twistd then ends by the signal it stopped on)
            stop(number, None)
        else:
            self._reactor.stop()


def makeService(options: Options) -> ChatService:
    """IServiceMaker API: the service twistd runs."""
    return options.getService()
