"""
Events as JSON objects: what the WebSocket front end sends, one object per
event, documented in C{docs/websocket.md}.

Each object has C{"type"} (the event's C{kind}) and the event's fields by
name: nested values (a history's entries, a room list, a member list) are
objects and arrays of the same kind.  Text is sent as it was said, control
characters and markup included: a client shows it as text, never as markup.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

from twisted_tcpchat.core.events import Event, Help

#: The key of the JSON rendering kept on an event (L{Event.rendered}).
JSON_KEY = "json"


def _plain(value: Any) -> Any:
    """A field's value as JSON data: events and records become objects."""
    if isinstance(value, Event):
        return event_data(value)
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def event_data(event: Event) -> dict[str, Any]:
    """C{event} as a JSON object: C{{"type": kind, field: value, ...}}."""
    data: dict[str, Any] = {"type": event.kind}
    if isinstance(event, Help):
        data["commands"] = [{"usage": usage, "text": text} for usage, text in event.commands]
        return data
    for f in fields(event):
        if not f.name.startswith("_"):
            data[f.name] = _plain(getattr(event, f.name))
    return data


def json_text(event: Event, key: str = JSON_KEY) -> str:
    """C{event} as one line of compact JSON (non-ASCII text kept as it is)."""
    return json.dumps(event_data(event), ensure_ascii=False, separators=(",", ":"))


#: The key of the JSON line kept on an event (L{json_line}).
JSON_LINE_KEY = "json-line"


def json_line(event: Event, key: str = JSON_LINE_KEY) -> bytes:
    """
    C{event} as one line of JSON in UTF-8, ended by CRLF: what a TCP
    connection gets after C{/events json}.  (JSON escapes line ends inside
    strings, so an event is always exactly one line.)
    """
    return (json_text(event) + "\r\n").encode("utf-8", "surrogatepass")
