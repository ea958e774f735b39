"""
Tab completion for the input line: L{complete} is the rule, a pure
function of the text before the cursor and what the client knows
(L{ChatState}); L{ChatCompleter} hands it to prompt_toolkit.

- a command at the start of a line: C{/jo} → C{/join };
- a name of my room: at the start of a line C{al} → C{alice: } (as people
  address each other), elsewhere C{alice };
- a room after C{/join}: C{/join #d} → C{/join #dev};
- a name after C{/msg}, C{/whois}, C{/kick}: C{/msg bo} → C{/msg bob };
  and in the text of C{/me}, C{/msg}, C{/topic}, C{/quit} as in a chat line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from twisted_tcpchat.client.events import ChatState, command_words

#: Commands whose first argument is a name, and the one whose is a room.
NAME_COMMANDS = ("/msg", "/whois", "/kick")
ROOM_COMMANDS = ("/join",)

#: Commands followed by text to say, where names complete as in a chat line.
TEXT_COMMANDS = ("/me", "/msg", "/topic", "/quit")

#: What completes a command before the server's /help has listed them.
KNOWN_COMMANDS = ("/help", "/quit")


@dataclass(frozen=True)
class Candidate:
    """Replace the last C{replace} characters before the cursor with C{text}."""

    text: str
    replace: int


def _starting(words: Iterable[str], prefix: str) -> list[str]:
    folded = prefix.casefold()
    return [w for w in words if w.casefold().startswith(folded)]


def complete(before: str, state: ChatState) -> list[Candidate]:
    """The ways to complete the word that ends at the cursor (C{before} is the text up to it)."""
    word = before.rsplit(" ", 1)[-1]
    words_before = before[: len(before) - len(word)].split()
    names = state.others()
    if not words_before:
        if word.startswith("/"):
            commands = command_words(state.commands) or list(KNOWN_COMMANDS)
            return [Candidate(c + " ", len(word)) for c in _starting(commands, word)]
        if not word:
            return []
        return [Candidate(n + ": ", len(word)) for n in _starting(names, word)]
    command = words_before[0] if words_before[0].startswith("/") else None
    if command is not None and len(words_before) == 1:
        if command in ROOM_COMMANDS:
            hash_ = "#" if word.startswith("#") else ""
            rooms = _starting(state.rooms, word[len(hash_) :])
            return [Candidate(hash_ + r, len(word)) for r in rooms]
        if command in NAME_COMMANDS:
            return [Candidate(n + " ", len(word)) for n in _starting(names, word)]
    if (command is not None and command not in TEXT_COMMANDS) or not word:
        return []
    return [Candidate(n + " ", len(word)) for n in _starting(names, word)]


class ChatCompleter(Completer):
    """prompt_toolkit's side of L{complete}: C{source} gives the state, or None (no completion)."""

    def __init__(self, source: Callable[[], ChatState | None]) -> None:
        self._source = source

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        state = self._source()
        if state is None:
            return
        for candidate in complete(document.text_before_cursor, state):
            yield Completion(candidate.text, start_position=-candidate.replace)
