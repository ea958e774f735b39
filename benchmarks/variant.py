"""
Our twistd with one speed shortcut taken out, to measure what it buys side
by side with ours in one run of the benchmark:

    python -m benchmarks fanout --servers ours,plain \\
        --server plain='{python} -m benchmarks.variant no-plain-read -n --pidfile= \\
        -r epoll tcpchat --port {port} --interface 127.0.0.1 --history 0 --quiet-presence'

Each variant replaces one function by the straightforward code it
shortcuts; everything else is ours as shipped.  The C{uncounted-*}
variants instead take out a cost, the metrics' counting of what is sent,
to measure what it costs (issue 17, C{python -m benchmarks metrics}).
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _no_plain_read() -> None:
    """Every read's lines looked at one by one, not with one regular expression."""
    from twisted_tcpchat.core import session

    session._plain_chat_text = lambda lines, exit_word: None  # type: ignore[assignment]


def _regex_escape_check() -> None:
    """The control-character check as one regular expression, without the ASCII bytes shortcut."""
    from twisted_tcpchat.core import session
    from twisted_tcpchat.text import escaping

    def needs_escape(text: str) -> bool:
        return escaping._NEEDS_ESCAPE_BUT_LF.search(text) is not None

    escaping.needs_escape = needs_escape
    session.needs_escape = needs_escape  # type: ignore[attr-defined]


def _write_at_once() -> None:
    """
    Every write straight to Twisted's transport.write, no end-of-turn send.
    The log is then not held either: the end-of-turn flush is what holds it
    (L{TurnFlusher.begin} is only called for a connection with a direct
    socket), and with Twisted's buffered writes, sent on the next turn, it
    could not wait for the sends anyway.
    """
    from twisted_tcpchat.frontends import tcp

    tcp.direct_socket = lambda transport, flusher: None  # type: ignore[assignment]


def _log_at_once() -> None:
    """The log written as events happen, not held until the turn's sends are done."""
    from twisted_tcpchat import logs

    logs.hold = lambda: None  # type: ignore[assignment]


def _uncounted_sends() -> None:
    """
    Nothing counted per send (issue 17's metrics): L{Stats.sent}, called
    once per connection per turn, does nothing, so the deliveries and bytes
    sent stay 0.
    """
    from twisted_tcpchat.core.stats import Stats

    Stats.sent = lambda self, data, events: None  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], None]] = {
    "no-plain-read": _no_plain_read,
    "regex-escape-check": _regex_escape_check,
    "write-at-once": _write_at_once,
    "log-at-once": _log_at_once,
    "uncounted-sends": _uncounted_sends,
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in VARIANTS:
        names = ", ".join(VARIANTS)
        raise SystemExit(f"usage: python -m benchmarks.variant VARIANT TWISTD-ARGS... ({names})")
    VARIANTS[argv[0]]()
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *argv[1:]]
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
