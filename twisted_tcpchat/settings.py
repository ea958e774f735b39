"""
C{--config PATH}: a TOML file of the settings a running server can take on,
read at the start and again at each reload (SIGHUP).

Its keys are the long options' names (C{flood-rate = 5}, C{deny =
["203.0.113.0/24"]}), and its values go through the same checks as the
command line's.  A setting is in one place only: the file or the command
line.  Settings that shape the rooms or the listeners stay on the command
line, since changing them needs a restart.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from twisted_tcpchat.core.config import LIVE_SETTINGS, option_name

#: The keys a settings file may have.
LIVE_OPTIONS = tuple(option_name(setting) for setting in LIVE_SETTINGS)

#: Keys whose value is a list of networks (CIDR), as repeated options are.
_NETWORK_LISTS = ("allow", "deny", "exempt")

#: Keys whose value is text; the others are numbers.
_TEXTS = ("greeting", "exit-word")

#: Option values as the command line gives them: text, or lists of text.
OptionValues = dict[str, str | list[str]]


def read_settings(path: str, known: Collection[str], given: Collection[str]) -> OptionValues:
    """
    The settings in the TOML file at C{path}, as option values (text, or a
    list of text for allow, deny and exempt) for the command line's checks.

    @param known: the long names of every option, to tell a setting that
        needs a restart from one that does not exist.
    @param given: the options given on the command line, which the file may
        not set again.
    @raise ValueError: in one line, starting C{--config PATH:}, for a file
        that cannot be read or is not TOML, or the first key that is not a
        setting, cannot change while the server runs, is also on the command
        line, or has a value of the wrong kind.
    """
    where = f"--config {path}"
    try:
        import tomllib
    except ModuleNotFoundError:  # (Python 3.10)
        raise ValueError("--config needs Python 3.11 or newer (its tomllib)") from None
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as e:
        raise ValueError(f"{where}: cannot read it: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{where}: not TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text (byte {e.start})") from None
    values: OptionValues = {}
    for key, value in table.items():
        if key not in LIVE_OPTIONS:
            raise ValueError(f"{where}: {_not_live(key, known)}")
        if key in given:
            raise ValueError(
                f"{where}: {key} is given on the command line too (--{key}); set it in one place"
            )
        values[key] = _option_value(where, key, value)
    return values


def _not_live(key: str, known: Collection[str]) -> str:
    """Why a key may not be in the file: it needs a restart, or it is no setting at all."""
    if key in known:
        return (
            f"{key} cannot change while the server runs; give --{key} on the command line "
            "(a change needs a restart)"
        )
    return (
        f"{key!r} is not a setting that can change while the server runs "
        f"(those are: {', '.join(LIVE_OPTIONS)})"
    )


def _option_value(where: str, key: str, value: Any) -> str | list[str]:
    """The value of C{key} as the command line would give it, or ValueError in one line."""
    if key in _NETWORK_LISTS:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(
                f'{where}: {key}: {value!r} is not a list of networks, like ["10.0.0.0/8"]'
            )
        if key == "exempt" and value == ["none"]:  # (as --exempt none: no network)
            return []
        return list(value)
    if key in _TEXTS:
        if not isinstance(value, str):
            raise ValueError(f'{where}: {key}: {value!r} is not text (in "quotes")')
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{where}: {key}: {value!r} is not a number")
    return str(value)
