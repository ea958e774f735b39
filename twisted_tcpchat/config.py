"""
What an operator can set, with its defaults, checked once at start.

Both the twistd plugin's options and code embedding the server build a
L{ChatConfig}; a bad value raises L{ValueError} with a message that names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_tcpchat.room import name_problem
from twisted_tcpchat.wire import check_template

DEFAULT_PORT = 65432
DEFAULT_GREETING = "Connect succeed. Please send a message to me"


@dataclass(frozen=True)
class ChatConfig:
    """
    The server's settings.

    @ivar greeting: template of the line sent on connect (see
        L{twisted_tcpchat.wire.GREETING_FIELDS}).
    @ivar exit_word: a line that, alone, ends the client's session.
    @ivar once: the tutorials' iterative mode: one message per connection.
    @ivar max_line: longest line accepted, in bytes.
    @ivar max_unterminated: bytes without a line end before the client is
        dropped.
    @ivar close_grace: seconds a closing connection may take to flush before it
        is aborted (a peer that does not read would otherwise hang forever).
    @ivar history: room lines a newcomer gets first (0: none).
    @ivar echo: whether a sender gets its own lines back.
    @ivar quiet_presence: whether joins, renames and leaves go unannounced.
    @ivar console_name: the name the operator console speaks as.
    """

    greeting: str = DEFAULT_GREETING
    exit_word: str = "exit"
    once: bool = False
    max_line: int = 4096
    max_unterminated: int = 16384
    close_grace: float = 2.0
    history: int = 20
    echo: bool = False
    quiet_presence: bool = False
    console_name: str = "server"

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
        problem = name_problem(self.console_name)
        if problem is not None:
            raise ValueError(f"console-name: {problem}")
        if self.close_grace < 0:
            raise ValueError(f"close-grace: {self.close_grace} must not be negative")
