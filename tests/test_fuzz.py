"""
Property tests over the server's dataReceived: whatever bytes arrive, in
whatever pieces and at whatever times, nothing raises, and what reaches
other clients is valid text with no raw control characters.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from tests.helpers import connect
from twisted_tcpchat.core.config import ChatConfig
from twisted_tcpchat.frontends.tcp import ChatFactory

INTERESTING = st.sampled_from(
    [
        b"\n",
        b"\r\n",
        b"\0",
        b"\x1b[2J",
        b"/nick x",
        b"/msg guest2 ",
        b"/quit",
        b"exit",
        b"\xe4\xb8\xad",
        "你".encode("gbk"),
        b"\xff",
        b"\x16\x03",
        b"GET / HTTP/1.1\r\n",
        "\u202e".encode(),
        b"//",
        b"/me ",
        b"/who\n",
        b"x" * 50,
    ]
)
CHUNK = st.lists(st.one_of(INTERESTING, st.binary(max_size=20)), max_size=6).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1]), CHUNK, st.sampled_from([0.0, 0.1, 0.5, 2.0])),
        max_size=25,
    ),
    st.booleans(),
)
def test_no_input_raises_and_output_stays_safe(
    steps: list[tuple[int, bytes, float]], first_is_limited: bool
) -> None:
    clock = Clock()
    factory = ChatFactory(
        ChatConfig(max_line=40, max_unterminated=120, flood_burst=3, flood_queue=8),
        clock=clock,
    )
    peers = [
        IPv4Address("TCP", "192.0.2.1" if first_is_limited else "127.0.0.1", 1),
        IPv4Address("TCP", "127.0.0.2", 2),
    ]
    with capturedLogs() as events:
        senders = [connect(factory=factory, peer=peer)[0] for peer in peers]
        _, reader = connect(factory=factory, peer=IPv4Address("TCP", "127.0.0.3", 3))
        for who, chunk, pause in steps:
            senders[who].dataReceived(chunk)
            clock.advance(pause)
        clock.advance(60)
    failures = [e for e in events if e.get("log_failure") is not None]
    assert failures == [], failures
    received = reader.value()
    assert received.endswith(b"\r\n")
    text = received.decode("utf-8")  # valid text
    body = text.replace("\r\n", "")
    assert not [c for c in body if (ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) < 0xA0]
    for bidi in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        assert bidi not in body
    assert factory.server.client_count <= 3


# The whole-read shortcut (session._plain_chat_text: one regular expression
# for a read of nothing but chat) must do exactly what the line-by-line
# path does with the same bytes: same lines to everyone, same log.
LINE_PARTS = st.sampled_from(
    [
        "hello",
        "exit",
        " exit ",
        "exit\u3000",
        "exited",
        "/nick x",
        "/me waves",
        "//not a command",
        "/who",
        " ",
        "\t",
        "",
        "\u3000",
        "\x85",
        "\x1b[2J",
        "\u202e",
        "你好",
        "é",
        "\r",
        "x" * 30,
    ]
)
READ = st.lists(st.lists(LINE_PARTS, max_size=3).map("".join), min_size=1, max_size=5)
ENCODED = st.sampled_from(["utf-8", "gbk"])


def _conversation(
    reads: list[tuple[list[str], str]], shortcut: bool
) -> tuple[bytes, bytes, list[str]]:
    from unittest import mock

    from twisted.logger import formatEvent

    from twisted_tcpchat.core import session

    patch = mock.patch.object(
        session,
        "_plain_chat_text",
        session._plain_chat_text if shortcut else (lambda lines, exit_word: None),
    )
    clock = Clock()
    factory = ChatFactory(ChatConfig(max_line=40, echo=True), clock=clock)
    with patch, capturedLogs() as events:
        sender, sent_back = connect(factory=factory, peer=IPv4Address("TCP", "127.0.0.1", 1))
        _, reader = connect(factory=factory, peer=IPv4Address("TCP", "127.0.0.1", 2))
        for lines, encoding in reads:
            sender.dataReceived(
                b"".join(line.encode(encoding, "replace") + b"\n" for line in lines)
            )
    logged = [formatEvent(e) for e in events]
    return reader.value(), sent_back.value(), logged


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(READ, ENCODED), min_size=1, max_size=6))
def test_the_whole_read_shortcut_does_what_line_by_line_does(
    reads: list[tuple[list[str], str]],
) -> None:
    assert _conversation(reads, shortcut=True) == _conversation(reads, shortcut=False)


@given(st.lists(st.lists(LINE_PARTS, max_size=3).map("".join), min_size=1, max_size=6))
def test_the_shortcut_says_plain_exactly_when_every_line_is(lines: list[str]) -> None:
    """The equivalence above compares two paths: the shortcut is taken, and only for plain reads."""
    from twisted_tcpchat.core.session import _is_chat, _plain_chat_text

    plain = all(_is_chat(line, "exit") for line in lines)
    assert (_plain_chat_text(lines, "exit") is not None) == plain
    assert _plain_chat_text(["a", "\u4f60", "exited"], "exit") == "a\n\u4f60\nexited"
