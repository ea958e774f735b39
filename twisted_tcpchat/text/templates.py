"""
The operator's templates (the greeting): checked once at start, so that
rendering one for a client can never fail.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

#: The fields an operator's greeting may use, and what each means.
GREETING_FIELDS: Mapping[str, str] = {
    "peer": "the client's address (IP, or 'unix' on a UNIX socket)",
    "port": "the client's port",
    "server": "the address the client connected to",
    "clients": "how many clients are connected, this one included",
}

_SAMPLE = {"peer": "192.0.2.1", "port": 50000, "server": "192.0.2.2:65432", "clients": 1}


def check_template(template: str, fields: Mapping[str, object] = GREETING_FIELDS) -> None:
    """
    Refuse a template that could not be rendered for every client.

    @raise ValueError: with a message naming the problem.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"bad template ({e}); write {{{{ and }}}} for literal braces") from e
    known = ", ".join("{" + f + "}" for f in fields)
    for _literal, field, _spec, _conversion in parsed:
        if field is None:
            continue
        if field not in fields:
            what = f"{{{field}}}" if field else "{} (a field needs a name)"
            raise ValueError(f"unknown field {what}; known fields: {known}")
    try:
        template.format(**{k: _SAMPLE.get(k, "x") for k in fields})
    except (ValueError, TypeError) as e:
        raise ValueError(f"bad template ({e})") from e


def render_template(template: str, values: Mapping[str, object]) -> list[str]:
    """
    Render a template that L{check_template} accepted; one string per line,
    so an operator can write a multi-line greeting.
    """
    return template.format(**values).splitlines() or [""]
