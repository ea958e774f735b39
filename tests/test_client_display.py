"""
How the terminal client shows tcpchat's typed events (client/display.py),
without a terminal: times from C{at} in a fixed time zone, stable name
colours readable on dark and light backgrounds, own lines, mentions and the
bell, dimmed presence and notices, marked errors and private messages,
escaped server text, no escape at all without colour, and the prompt.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_tcpchat.client.display import (
    CLIENT_KEYS,
    PALETTE,
    name_colour,
    prompt_text,
    render,
)
from twisted_tcpchat.client.events import ChatEvent, ChatState, mentions, parse_event

#: 1970-01-01 12:34 UTC, and an hour later.
AT, NOW = 12 * 3600 + 34 * 60, 13 * 3600 + 34 * 60

_SGR = re.compile(r"\x1b\[[0-9;]*m")


def event(**fields: Any) -> ChatEvent:
    """An event as it comes from the wire (through the parser, which makes text safe)."""
    parsed = parse_event(json.dumps(fields).encode())
    assert parsed is not None, fields
    return parsed


def said(sender: str, *lines: str, at: float = AT) -> ChatEvent:
    return event(type="message", room="lobby", sender=sender, lines=list(lines), seq=1, at=at)


ME = ChatState(name="bob", room="lobby")


def plain(e: ChatEvent, state: ChatState = ME) -> list[str]:
    return list(render(e, state, NOW, colour=False).lines)


def sgr(code: str, text: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m"


class InUTC(SynchronousTestCase):
    """Tests in a fixed time zone: C{TZ=UTC}, restored afterwards."""

    def setUp(self) -> None:
        before = os.environ.get("TZ")

        def restore() -> None:
            if before is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = before
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = "UTC"
        time.tzset()


class TimeTests(InUTC):
    def test_a_message_shows_the_time_it_was_said(self) -> None:
        """Every line of a message starts with HH:MM of its C{at}, in local time."""
        self.assertEqual(
            plain(said("alice", "hello", "world")),
            ["12:34 <alice> hello", "12:34 <alice> world"],
        )

    def test_history_lines_show_their_own_times(self) -> None:
        """History entries each show when they were said, not when they came."""
        history = event(
            type="history",
            room="lobby",
            entries=[
                {
                    "type": "message",
                    "room": "lobby",
                    "sender": "alice",
                    "lines": ["one"],
                    "seq": 1,
                    "at": AT,
                },
                {
                    "type": "action",
                    "room": "lobby",
                    "sender": "carol",
                    "text": "waves",
                    "seq": 2,
                    "at": AT + 60,
                },
            ],
        )
        self.assertEqual(plain(history), ["12:34 <alice> one", "12:35 * carol waves"])

    def test_events_without_a_time_show_now(self) -> None:
        """A line with no C{at} (presence, notices), or a useless one, shows the time it came."""
        joined = event(type="presence", room="lobby", name="carol", change="joined")
        self.assertEqual(plain(joined), ["13:34 -- carol joined"])
        for bad in (None, "noon", 1e300, True):
            self.assertEqual(
                plain(said("alice", "hi", at=bad)),
                ["13:34 <alice> hi"],
                bad,  # type: ignore[arg-type]
            )

    def test_another_time_zone(self) -> None:
        """The time is local: the same C{at} in UTC+2 (Etc/GMT-2) is two hours later."""
        os.environ["TZ"] = "Etc/GMT-2"
        time.tzset()
        self.assertEqual(plain(said("alice", "hi")), ["14:34 <alice> hi"])


class ColourTests(InUTC):
    def test_names_have_stable_colours(self) -> None:
        """
        A name's colour comes from a hash (not Python's, which changes per
        run): fixed values, the same whatever the case, spread over the palette.
        """
        self.assertEqual(name_colour("alice"), name_colour("ALICE"))
        self.assertEqual([name_colour(n) for n in ("alice", "bob", "carol")], [131, 98, 64])
        spread = {name_colour(f"guest{n}") for n in range(1, 41)}
        self.assertGreaterEqual(len(spread), len(PALETTE) - 2)
        self.assertTrue(spread <= set(PALETTE))

    def test_palette_readable_on_dark_and_light(self) -> None:
        """
        Every name colour has a contrast of at least 3.5:1 on a near-black
        and on a near-white background (WCAG's formula), and none is yellow.
        """

        def rgb(index: int) -> tuple[int, int, int]:
            levels = (0, 95, 135, 175, 215, 255)
            index -= 16
            return levels[index // 36], levels[index // 6 % 6], levels[index % 6]

        def luminance(colour: tuple[int, int, int]) -> float:
            def channel(value: int) -> float:
                c = value / 255
                return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

            r, g, b = (channel(v) for v in colour)
            return 0.2126 * r + 0.7152 * g + 0.0722 * b

        def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
            high, low = sorted((luminance(a), luminance(b)), reverse=True)
            return (high + 0.05) / (low + 0.05)

        for index in PALETTE:
            self.assertTrue(16 <= index <= 231, index)
            colour = rgb(index)
            self.assertGreaterEqual(contrast(colour, (30, 30, 30)), 3.5, index)
            self.assertGreaterEqual(contrast(colour, (250, 250, 250)), 3.5, index)
            r, g, b = colour
            self.assertFalse(r >= 135 and g >= 135 and b < 95, f"{index} is a yellow")

    def test_escape_sequences(self) -> None:
        """The time is dim, the sender's name in its colour, the text as it is."""
        (line,) = render(said("alice", "hi"), ME, NOW).lines
        self.assertEqual(line, sgr("2", "12:34 ") + "<" + sgr("38;5;131", "alice") + "> hi")

    def test_own_lines_bold(self) -> None:
        """My own line: <me> text, my name in its colour and bold."""
        (line,) = render(said("bob", "mine"), ME, NOW).lines
        self.assertIn("<" + sgr("38;5;98;1", "bob") + "> mine", line)

    def test_presence_and_notices_dimmed(self) -> None:
        """Presence and notices: every part dim (the name keeps its colour)."""
        (line,) = render(
            event(type="presence", room="lobby", name="carol", change="joined"), ME, NOW
        ).lines
        self.assertEqual(
            line,
            sgr("2", "13:34 ") + sgr("2", "-- ") + sgr("38;5;64;2", "carol") + sgr("2", " joined"),
        )
        (notice,) = render(
            event(type="notice", text="kicked", room=None, sender=None), ME, NOW
        ).lines
        self.assertEqual(_SGR.sub("", notice), "13:34 -- kicked")
        self.assertIn(sgr("2", "kicked"), notice)

    def test_errors_marked_red(self) -> None:
        (line,) = render(event(type="error", text="no such room"), ME, NOW).lines
        self.assertEqual(line, sgr("2", "13:34 ") + sgr("1;31", "error:") + " no such room")

    def test_no_colour_means_no_escape_at_all(self) -> None:
        """Without colour not one escape sequence, whatever the event."""
        samples = [
            said("alice", "hi bob"),
            said("bob", "mine"),
            event(type="private", sender="alice", recipient="bob", text="psst", at=AT, echo=False),
            event(type="error", text="nope"),
            event(type="presence", room="lobby", name="carol", change="left", reason="bye"),
            event(type="help", commands=[{"usage": "/nick NAME", "text": "change your name"}]),
        ]
        for sample in samples:
            for line in render(sample, ME, NOW, colour=False).lines:
                self.assertNotIn("\x1b", line)


class MarkingTests(InUTC):
    def test_private_messages(self) -> None:
        """[alice → you] for one to me, [you → carol] for my own copy of one I sent."""
        to_me = event(type="private", sender="alice", recipient="bob", text="psst", at=AT)
        mine = event(type="private", sender="bob", recipient="carol", text="hi", at=AT, echo=True)
        self.assertEqual(plain(to_me), ["12:34 [alice → you] psst"])
        self.assertEqual(plain(mine), ["12:34 [you → carol] hi"])

    def test_actions(self) -> None:
        action = event(type="action", room="lobby", sender="alice", text="waves", seq=3, at=AT)
        self.assertEqual(plain(action), ["12:34 * alice waves"])

    def test_presence_changes(self) -> None:
        def presence(change: str, reason: str = "", other: str = "") -> list[str]:
            return plain(
                event(
                    type="presence",
                    room="lobby",
                    name="carol",
                    change=change,
                    reason=reason,
                    other=other,
                )
            )

        self.assertEqual(
            presence("left", reason="disconnected"), ["13:34 -- carol left (disconnected)"]
        )
        self.assertEqual(presence("moved-out", other="dev"), ["13:34 -- carol left for #dev"])
        self.assertEqual(presence("moved-in", other="dev"), ["13:34 -- carol came from #dev"])
        self.assertEqual(presence("renamed", other="caz"), ["13:34 -- carol is now known as caz"])

    def test_who_i_am(self) -> None:
        def you(change: str, operator: bool = False) -> list[str]:
            return plain(
                event(type="you", name="bob", room="dev", change=change, operator=operator)
            )

        self.assertEqual(
            you("welcome", operator=True),
            ["13:34 -- you are bob in #dev, an operator; /help lists the commands"],
        )
        self.assertEqual(you("renamed"), ["13:34 -- you are now bob"])
        self.assertEqual(you("moved"), ["13:34 -- you are now in #dev"])

    def test_server_text_stays_escaped(self) -> None:
        """
        Control characters a server puts in JSON strings (\\u001b, a bidi
        override) show as escapes, never raw; only the display's own
        colours are escape sequences.
        """
        raw = said("alice", "\x1b[2J\x1b]0;owned\x07 \u202eevil")
        for colour in (True, False):
            (line,) = render(raw, ME, NOW, colour).lines
            self.assertIn("\\x1b[2J\\x1b]0;owned\\x07 \\u202eevil", line)
            self.assertEqual(_SGR.sub("", line).count("\x1b"), 0)
            self.assertNotIn("\x07", line)
            self.assertNotIn("\u202e", line)
        sender = event(type="presence", room="lobby", name="\x1b[31mx", change="joined")
        self.assertEqual(plain(sender), ["13:34 -- \\x1b[31mx joined"])

    def test_help_lists_the_servers_commands_then_the_keys(self) -> None:
        """/help: the server's commands for me (per role), aligned, then the client's keys."""
        shown = plain(
            event(
                type="help",
                commands=[
                    {"usage": "/nick NAME", "text": "change your name"},
                    {"usage": "/kick NAME [REASON]", "text": "remove someone"},
                ],
            )
        )
        self.assertEqual(
            shown,
            [
                "13:34 -- commands:",
                "13:34    /nick NAME           change your name",
                "13:34    /kick NAME [REASON]  remove someone",
                "13:34    //TEXT               say a line that starts with /",
                f"13:34 -- {CLIENT_KEYS}",
            ],
        )
        self.assertIn("Tab", CLIENT_KEYS)
        self.assertIn("Ctrl-C", CLIENT_KEYS)

    def test_members_and_rooms(self) -> None:
        members = event(
            type="members",
            room="lobby",
            members=[
                {"name": "bob", "room": "lobby", "idle": 3, "operator": True},
                {"name": "carol", "room": "lobby", "idle": 400, "operator": False},
            ],
        )
        self.assertEqual(
            plain(members),
            [
                "13:34 -- 2 in #lobby:",
                "13:34 --   bob (idle 3s, operator)",
                "13:34 --   carol (idle 6m)",
            ],
        )
        rooms = event(
            type="rooms",
            rooms=[
                {"name": "dev", "members": 0, "topic": "", "seq": 0},
                {"name": "lobby", "members": 2, "topic": "hi", "seq": 4},
            ],
        )
        self.assertEqual(
            plain(rooms),
            ["13:34 -- 2 rooms:", "13:34 --   #dev (0)", "13:34 --   #lobby (2, you are here): hi"],
        )

    def test_not_an_event_shown_as_text(self) -> None:
        """A text line, and an event of a kind this client does not know, show as text."""
        self.assertEqual(plain(ChatEvent.text_line("Goodbye.")), ["13:34 Goodbye."])
        self.assertEqual(plain(event(type="future", x=1)), ['13:34 {"type": "future", "x": 1}'])


class MentionTests(InUTC):
    def test_whole_word_ignoring_case(self) -> None:
        """My name as a whole word, in any case, with punctuation around: a mention."""
        for text in ("bob", "hi bob", "Bob: look", "@BOB!", "(bob)", "thanks,bob."):
            self.assertTrue(mentions(text, "bob"), text)

    def test_not_inside_another_word_or_name(self) -> None:
        """Inside a longer word or name (names hold letters, digits, _ and -): no mention."""
        for text in ("bobby", "kabob", "bob2", "bob_x", "bob-bot", "x-bob", "b o b", ""):
            self.assertFalse(mentions(text, "bob"), text)
        self.assertFalse(mentions("bob", None))

    def test_a_name_with_a_dash(self) -> None:
        self.assertTrue(mentions("hey ann-marie!", "ann-marie"))
        self.assertFalse(mentions("hey ann!", "ann-marie"))

    def test_mention_highlighted_and_rings(self) -> None:
        """
        A message or action from someone else naming me: the sender reversed,
        the text bold, and the bell; one without my name, or my own, rings
        nothing; nor does history.
        """
        shown = render(said("alice", "hi bob"), ME, NOW)
        self.assertTrue(shown.bell)
        (line,) = shown.lines
        self.assertIn(sgr("38;5;131;1;7", "alice"), line)
        self.assertIn(sgr("1", "hi bob"), line)
        action = event(type="action", room="lobby", sender="alice", text="pokes Bob", seq=1, at=AT)
        self.assertTrue(render(action, ME, NOW).bell)
        self.assertFalse(render(said("alice", "hi all"), ME, NOW).bell)
        self.assertFalse(render(said("bob", "I am bob"), ME, NOW).bell)
        history = event(
            type="history",
            room="lobby",
            entries=[
                {
                    "type": "message",
                    "room": "lobby",
                    "sender": "alice",
                    "lines": ["bob?"],
                    "seq": 1,
                    "at": AT,
                }
            ],
        )
        self.assertFalse(render(history, ME, NOW).bell)

    def test_private_message_to_me_rings(self) -> None:
        """A private message to me rings too; my own copy of one I sent does not."""
        to_me = event(type="private", sender="alice", recipient="bob", text="psst", at=AT)
        mine = event(type="private", sender="bob", recipient="alice", text="hi", at=AT, echo=True)
        self.assertTrue(render(to_me, ME, NOW).bell)
        self.assertFalse(render(mine, ME, NOW).bell)


class PromptTests(SynchronousTestCase):
    def test_prompt(self) -> None:
        """[name@room] once known; '> ' before (and on any other server)."""
        self.assertEqual(prompt_text(None), "> ")
        self.assertEqual(prompt_text(ChatState()), "> ")
        self.assertEqual(prompt_text(ChatState(name="bob")), "> ")
        self.assertEqual(prompt_text(ME, colour=False), "[bob@lobby] ")
        self.assertEqual(prompt_text(ME), "[" + sgr("38;5;98", "bob") + "@lobby] ")
