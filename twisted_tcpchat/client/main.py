"""
The C{tcpchat} command: a chat client for tcpchat and for any line-based TCP
server (nc, the C tutorials' servers).

    tcpchat [options] [HOST [PORT]]
    tcpchat [options] ENDPOINT            (tcp:host=example.org:port=65432, tls:HOST:PORT)

L{main} is the whole program for L{task.react}; L{run} is the console
script, which picks the reactor first (asyncio on a terminal, so that
prompt_toolkit shares its loop).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import ipaddress
import math
import os
import random
import re
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO, cast

from OpenSSL import SSL, crypto
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS
from twisted.internet.interfaces import IReactorCore, IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS

from twisted_tcpchat import __version__
from twisted_tcpchat.client.io import (
    PlainScreen,
    StdinLines,
    TerminalInput,
    TerminalScreen,
    ask_address,
    in_loop,
)
from twisted_tcpchat.client.protocol import ChatClientFactory, Dialer
from twisted_tcpchat.client.session import ClientSession, ClientSettings
from twisted_tcpchat.client.wire import LINE_ENDINGS, check_encoding
from twisted_tcpchat.core.config import DEFAULT_PORT

#: Where to connect when no host is given (and the user is not asked).
DEFAULT_HOST = "127.0.0.1"

#: Exit status for bad arguments, as argparse and the BSD tools use.
USAGE = 2

#: Endpoint types taken as an endpoint string even when what follows the
#: colon is a number (C{unix:1234} is a socket file, not host "unix").
_ENDPOINT_TYPES = ("tcp", "tls", "ssl", "unix")

_HOST_PORT = re.compile(r"(?P<host>[^:\[\]]+):(?P<port>\d+)")
_BRACKETED = re.compile(r"\[(?P<host>[^\]]+)\](?::(?P<port>\d+))?")
_UNESCAPED_COLON = re.compile(r"(?<!\\):")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class Target:
    """
    Where to connect: a host and a port, or a Twisted client endpoint string.

    @ivar description: the endpoint string, or None for host and port.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    description: str | None = None

    def __str__(self) -> str:
        """HOST:PORT as people write it ([::1]:65432), for messages."""
        if self.description is not None:
            return _endpoint_address(self.description)
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def endpoint(
        self, reactor: IReactorCore, timeout: float, cafile: str | None = None
    ) -> IStreamClientEndpoint:
        """
        The endpoint to connect with.

        @raise ValueError: a bad endpoint string, or a C{cafile} that cannot
            be used with it.
        """
        if cafile is not None:
            if self.description is None:
                raise ValueError("--cafile goes with a tls:HOST:PORT server")
            return tls_with_ca(reactor, self.description, cafile, timeout)
        if self.description is not None:
            try:
                endpoint: IStreamClientEndpoint = clientFromString(reactor, self.description)
                return endpoint
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"bad endpoint {self.description!r}: {e}") from None
        # IPv6 and IPv4, names resolved without blocking, first address
        # that answers wins.  The Dialer's deadline (just shorter) decides.
        return HostnameEndpoint(reactor, self.host, self.port, timeout=timeout + 1)


def parse_target(text: str, port: str | None = None) -> Target:
    """
    The target a user wrote: C{HOST}, C{HOST PORT}, C{HOST:PORT},
    C{[IPv6]:PORT}, an IPv6 address, or an endpoint string (C{tcp:...},
    C{tls:...}, C{unix:...}).

    @raise ValueError: naming the problem.
    """
    text = text.strip()
    if not text:
        raise ValueError("the server address is empty")
    found_port: str | None = None
    host = text
    if (match := _BRACKETED.fullmatch(text)) is not None:
        host, found_port = match["host"], match["port"]
    elif ":" in text and not _is_ipv6(text):
        kind = text.split(":", 1)[0]
        match = _HOST_PORT.fullmatch(text)
        if kind in _ENDPOINT_TYPES or match is None:
            if port is not None:
                raise ValueError(f"a PORT ({port}) goes with a HOST, not an endpoint string")
            return Target(description=text)
        host, found_port = match["host"], match["port"]
    if found_port is not None and port is not None:
        raise ValueError(f"the port is given twice ({text} and {port})")
    if " " in host or not host:
        raise ValueError(f"{host!r} is not a host name or address")
    chosen = found_port if found_port is not None else port
    return Target(host, _port(chosen) if chosen is not None else DEFAULT_PORT)


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def _endpoint_parts(description: str) -> tuple[str, str, int] | None:
    """The type, host and port of a tcp, tls or ssl endpoint string, or None."""
    kind, *args = _UNESCAPED_COLON.split(description)
    if kind not in ("tcp", "tls", "ssl"):
        return None
    named = dict(a.split("=", 1) for a in args if "=" in a)
    plain = [a for a in args if "=" not in a]
    if "host" not in named and plain:
        named["host"] = plain.pop(0)
    if "port" not in named and plain:
        named["port"] = plain.pop(0)
    if "host" not in named or "port" not in named or not named["port"].isdigit():
        return None
    return kind, named["host"].replace("\\:", ":"), int(named["port"])


def _endpoint_address(description: str) -> str:
    """HOST:PORT of a tcp, tls or ssl endpoint string; the string itself otherwise."""
    parts = _endpoint_parts(description)
    return description if parts is None else str(Target(parts[1], parts[2]))


def tls_with_ca(
    reactor: IReactorCore, description: str, cafile: str, timeout: float
) -> IStreamClientEndpoint:
    """
    C{tls:HOST:PORT} verified against the CA certificate(s) in C{cafile}
    instead of the system's roots: for a server with a private CA.

    @raise ValueError: not a tls: string, or a CA file that cannot be used.
    """
    parts = _endpoint_parts(description)
    if parts is None or parts[0] != "tls":
        raise ValueError("--cafile goes with a tls:HOST:PORT server")
    _, host, port = parts
    try:
        trust = Certificate.loadPEM(Path(cafile).read_bytes())
    except (OSError, ValueError, SSL.Error, crypto.Error) as e:
        raise ValueError(f"--cafile {cafile}: not a readable PEM certificate ({e})") from None
    return wrapClientTLS(
        optionsForClientTLS(host, trustRoot=trust),
        HostnameEndpoint(reactor, host, port, timeout=timeout + 1),
    )


def _seconds(allow_zero: bool) -> Callable[[str], float]:
    least = "0 or more" if allow_zero else "more than 0"

    def seconds(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds ({least})")
        return number

    return seconds


def _encoding(value: str) -> str:
    try:
        return check_encoding(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _nick(value: str) -> str:
    if not value or not value.isprintable() or " " in value:
        raise argparse.ArgumentTypeError(f"{value!r} must be one word of printable characters")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Bad arguments: the usage, one line saying what is wrong, exit status 2."""
        self.print_usage(sys.stderr)
        print(f"tcpchat: {message}", file=sys.stderr)
        print("Run 'tcpchat --help' for the options.", file=sys.stderr)
        raise SystemExit(USAGE)


def make_parser() -> argparse.ArgumentParser:
    """The command line of C{tcpchat}."""
    parser = _Parser(
        prog="tcpchat",
        description=(
            "Chat over TCP: what the server sends is shown as it arrives, while you type. "
            "'exit', '/quit' or the end of input (Ctrl-D) leave.  On a terminal, with a "
            "tcpchat server, lines come with their times and names in colours, the prompt "
            "shows your name and room, Tab completes commands, names and rooms, and a line "
            "that mentions you rings the bell; Ctrl-C clears the line, or leaves on an "
            "empty one (exit status 130)."
        ),
        epilog=(
            f"HOST defaults to {DEFAULT_HOST} (on a terminal you are asked) and PORT to "
            f"{DEFAULT_PORT}; HOST:PORT, [IPv6]:PORT and Twisted client endpoint strings "
            "(tcp:host=H:port=P, tls:H:P, unix:/path) work too.  Exit status: 0 when the "
            "chat ended, 1 when the server could not be reached or the connection broke, "
            "2 for bad arguments."
        ),
    )
    parser.add_argument("host", nargs="?", metavar="HOST", help="server name or address")
    parser.add_argument("port", nargs="?", metavar="PORT", help=f"server port [{DEFAULT_PORT}]")
    parser.add_argument(
        "-m",
        "--message",
        action="append",
        default=[],
        metavar="TEXT",
        help="send TEXT (repeatable: one line each), show what the server answers until "
        "it closes or goes quiet (--wait), and exit",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds(allow_zero=False),
        default=10.0,
        metavar="SECONDS",
        help="give up connecting after this long [10]",
    )
    parser.add_argument(
        "--wait",
        type=_seconds(allow_zero=True),
        default=1.0,
        metavar="SECONDS",
        help="once you are done (-m, end of input, exit), stop waiting for the server to "
        "close after it has been quiet this long [1]",
    )
    parser.add_argument(
        "--line-ending",
        choices=list(LINE_ENDINGS),
        default="lf",
        help="what ends each line sent [lf]; a classic C server that compares its raw "
        "buffer with 'exit' needs none",
    )
    parser.add_argument(
        "--encoding",
        type=_encoding,
        default="utf-8",
        metavar="NAME",
        help="text encoding on the wire [utf-8]; gbk for a Chinese Windows peer",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="when the connection is lost, reconnect and carry on: after about 1 s, "
        "then 1.5 times longer each time, at most a minute",
    )
    parser.add_argument(
        "--nick", type=_nick, metavar="NAME", help="take this name right after connecting"
    )
    parser.add_argument(
        "--cafile",
        metavar="FILE",
        help="with tls:HOST:PORT, trust the CA certificate(s) in FILE (PEM) instead of "
        "the system's; the server's certificate is always verified",
    )
    parser.add_argument(
        "--user",
        type=_nick,
        metavar="NAME",
        help="log in as NAME (/login) right after connecting; the password is asked for "
        "without echo, or read from the TCPCHAT_PASSWORD environment variable",
    )
    parser.add_argument(
        "--no-color",
        action="store_true",
        help="on a terminal, show tcpchat's lines without colours (as does a non-empty "
        "NO_COLOR environment variable)",
    )
    parser.add_argument(
        "--no-bell",
        action="store_true",
        help="on a terminal, do not ring the bell when a line mentions your name or a "
        "private message comes",
    )
    parser.add_argument("--version", action="version", version=f"tcpchat {__version__}")
    return parser


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """
    The arguments, checked; C{target} is the L{Target}, or None when no
    HOST was given.  Bad arguments end the program (usage, exit status 2).
    """
    parser = make_parser()
    arguments = parser.parse_intermixed_args(list(argv))
    if arguments.message and arguments.reconnect:
        parser.error("--reconnect keeps a chat going; -m sends and ends")
    arguments.target = None
    if arguments.host is not None:
        try:
            arguments.target = parse_target(arguments.host, arguments.port)
        except ValueError as e:
            parser.error(str(e))
    return arguments


def _password(user: str) -> str:
    """The password for --user: from the environment, or asked without echo."""
    password = os.environ.get("TCPCHAT_PASSWORD")
    if password is None:
        if not _is_terminal(sys.stdin):
            _usage_error("--user needs a terminal to ask for the password, or TCPCHAT_PASSWORD")
        password = getpass.getpass(f"password for {user}: ")
    if not password or any(c in password for c in "\r\n\0"):
        _usage_error("the password must be one line, not empty")
    return password


def _usage_error(message: str) -> NoReturn:
    make_parser().error(message)


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


def _on_asyncio(reactor: object) -> bool:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    return isinstance(reactor, AsyncioSelectorReactor)


def _announcing(policy: Callable[[int], float], session: ClientSession) -> Callable[[int], float]:
    """A retry policy that also tells the session when the next attempt is."""

    def retry(attempt: int) -> float:
        delay = policy(attempt)
        session.reconnect_scheduled(delay)
        return delay

    return retry


def retry_policy(jitter: Callable[[], float] = random.random) -> Callable[[int], float]:
    """
    How long to wait before each new attempt with C{--reconnect}: 1 s, then
    1.5 times longer each time, at most 60 s, each plus up to C{jitter()}
    seconds (so that clients of a restarted server do not all come at once).
    """
    return backoffPolicy(initialDelay=1.0 / 1.5, factor=1.5, maxDelay=60.0, jitter=jitter)


def connect(
    clock: IReactorTime,
    session: ClientSession,
    endpoint: IStreamClientEndpoint,
    timeout: float,
    policy: Callable[[int], float] | None = None,
) -> Callable[[], Deferred[None]]:
    """
    Start connecting the session: once, or for as long as it runs with
    C{reconnect} (Twisted's L{ClientService}, with exponential backoff:
    C{policy}, L{retry_policy} by default).

    @return: what stops connecting (and closes a connection still open).
    """
    factory = ChatClientFactory(session, clock)
    dialer = Dialer(endpoint, session.connect_failed, clock, timeout)
    if session.settings.reconnect:
        announcing = _announcing(policy or retry_policy(), session)
        service = ClientService(dialer, factory, retryPolicy=announcing, clock=clock)
        service.startService()
        return service.stopService
    dialer.connect(factory).addErrback(lambda failure: None)  # the Dialer told the session
    return lambda: succeed(None)


async def main(reactor: IReactorCore, argv: Sequence[str]) -> None:
    """
    The C{tcpchat} program: parse C{argv}, chat, and end with the exit status
    (a C{SystemExit} for L{task.react}).  A bug shows as one line, not a
    traceback.
    """
    try:
        await _main(reactor, argv)
    except Exception as e:
        print(f"tcpchat: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(1) from None


async def _main(reactor: IReactorCore, argv: Sequence[str]) -> None:
    options = parse_arguments(argv)
    interactive = not options.message and _is_terminal(sys.stdin) and _is_terminal(sys.stdout)
    on_terminal = interactive and _on_asyncio(reactor)
    if on_terminal:
        # From here on we run inside the reactor's (asyncio's) loop, where
        # prompt_toolkit must start.
        await task.deferLater(reactor, 0, lambda: None)  # type: ignore[arg-type]
    target: Target | None = options.target
    if target is None:
        target = await _ask_target() if on_terminal else Target()
        if target is None:
            return
    try:
        endpoint = target.endpoint(reactor, options.timeout, options.cafile)
    except ValueError as e:
        _usage_error(str(e))
    login = None
    if options.user is not None:
        login = (options.user, _password(options.user))
    settings = ClientSettings(
        server=str(target),
        encoding=options.encoding,
        line_ending=LINE_ENDINGS[options.line_ending],
        wait=options.wait,
        nick=options.nick,
        login=login,
        reconnect=options.reconnect,
        greet_connect=on_terminal,
        events=on_terminal,
    )
    blocking = {fd: _blocking(fd) for fd in (0, 1, 2)}
    reactor.addSystemEventTrigger("after", "shutdown", _restore_blocking, blocking)
    try:
        if on_terminal:
            colour = not options.no_color and not os.environ.get("NO_COLOR")
            session, status = await _chat_on_terminal(
                reactor, settings, endpoint, options.timeout, colour, not options.no_bell
            )
        else:
            session, status = await _chat_plainly(
                reactor, settings, endpoint, options.timeout, options.message
            )
    finally:
        _restore_blocking(blocking)
    if session.error is not None:
        print(f"tcpchat: {session.error}", file=sys.stderr)
    if status:
        raise SystemExit(status)


async def _ask_target() -> Target | None:
    while True:
        answer = await in_loop(ask_address(DEFAULT_HOST))
        if answer is None:
            return None
        try:
            return parse_target(*answer.split(None, 1)) if " " in answer else parse_target(answer)
        except ValueError as e:
            print(f"tcpchat: {e}")


async def _chat_on_terminal(
    reactor: IReactorCore,
    settings: ClientSettings,
    endpoint: IStreamClientEndpoint,
    timeout: float,
    colour: bool,
    bell: bool,
) -> tuple[ClientSession, int]:
    from prompt_toolkit.patch_stdout import patch_stdout

    # raw: the screen's colours pass; the server's text is escaped before.
    with patch_stdout(raw=True):
        screen = TerminalScreen(colour=colour, bell=bell)
        session = ClientSession(screen, _clock(reactor), settings)
        _end_on_signals(reactor, session)
        reader = TerminalInput(session, colour)
        screen.on_change = reader.invalidate
        stop = connect(_clock(reactor), session, endpoint, timeout)
        reading = Deferred.fromCoroutine(reader.run())
        status = await session.done
        reader.stop()
        await reading
        await stop()
    return session, status


async def _chat_plainly(
    reactor: IReactorCore,
    settings: ClientSettings,
    endpoint: IStreamClientEndpoint,
    timeout: float,
    messages: Sequence[str],
) -> tuple[ClientSession, int]:
    session = ClientSession(PlainScreen(), _clock(reactor), settings)
    _end_on_signals(reactor, session)
    stop = connect(_clock(reactor), session, endpoint, timeout)
    stdin: StdinLines | None = None
    stdio = None
    if messages:
        for text in messages:
            session.line_typed(text)
        session.input_ended()
    else:
        from twisted.internet.stdio import StandardIO

        stdin = StdinLines(session)
        try:
            stdio = StandardIO(stdin, reactor=reactor)
        except OSError:  # no stdin at all
            stdin = None
            session.input_ended()
    status = await session.done
    await stop()
    if stdin is not None and stdio is not None:
        await stdin.let_go(stdio)
    return session, status


def _end_on_signals(reactor: IReactorCore, session: ClientSession) -> None:
    """
    SIGINT (Ctrl-C in a pipe) and SIGTERM end the session quietly, with
    status 128 + the signal's number as a shell expects: not as a broken
    connection, which is what the reactor's own handlers would make of it.
    """

    def install() -> None:
        def stopped(number: int, frame: object) -> None:
            reactor.callFromThread(session.interrupted, 128 + number)  # type: ignore[attr-defined]

        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, stopped)

    reactor.callWhenRunning(install)


def _clock(reactor: IReactorCore) -> IReactorTime:
    return cast(IReactorTime, reactor)


def _blocking(fd: int) -> bool | None:
    try:
        return os.get_blocking(fd)
    except OSError:
        return None


def _restore_blocking(blocking: dict[int, bool | None]) -> None:
    """StandardIO leaves stdin and stdout non-blocking; a shell after us would suffer."""
    for fd, was in blocking.items():
        if was is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(fd, was)


def run() -> NoReturn:
    """The console script: pick the reactor, then run L{main}."""
    if _is_terminal(sys.stdin) and _is_terminal(sys.stdout):
        _install_asyncio_reactor()
    task.react(main, (sys.argv[1:],))


def _install_asyncio_reactor() -> None:
    if "twisted.internet.reactor" in sys.modules:
        return
    import asyncio

    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
