"""
Bans kept across restarts (--ban-file, issue 17): the file, written
atomically; what a bad file says; and a real server restarted with a ban.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from tests.helpers import start_twistd
from tests.test_cluster import LineSocket
from tests.test_tap import parse
from twisted_tcpchat.core.limits import Bans
from twisted_tcpchat.rooms.memory import Directory
from twisted_tcpchat.testing import RecordingParticipant

NET = ipaddress.ip_network("192.0.2.0/24")
HOST = ipaddress.ip_network("198.51.100.7/32")


def test_bans_survive_in_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "bans.json")
    bans = Bans(path)
    bans.add(NET, None)
    bans.add(HOST, 500.0)
    again = Bans(path, now=100.0)
    assert again.ban_on("192.0.2.9", 100.0) == (NET, None)
    assert again.ban_on("198.51.100.7", 100.0) == (HOST, 500.0)
    assert again.remove(NET)
    assert Bans(path, now=100.0).ban_on("192.0.2.9", 100.0) is None
    assert [p.name for p in tmp_path.iterdir()] == ["bans.json"]  # (no temporary left)


def test_ended_bans_are_not_read_back(tmp_path: Path) -> None:
    path = str(tmp_path / "bans.json")
    Bans(path).add(HOST, 50.0)
    assert Bans(path, now=100.0).listing(100.0) == []


def test_a_bad_file_is_one_line(tmp_path: Path) -> None:
    for text in ("not json", '{"a": 1}', '[{"network": "nonsense", "until": null}]'):
        path = tmp_path / "bans.json"
        path.write_text(text)
        with pytest.raises(ValueError, match=r"is not a list of bans written by tcpchat") as e:
            Bans(str(path))
        assert "\n" not in str(e.value)


def test_a_directory_with_a_ban_file_says_until_lifted(tmp_path: Path) -> None:
    path = str(tmp_path / "bans.json")
    directory = Directory(Clock(), ban_file=path)
    boss = RecordingParticipant("boss", address="192.0.2.1")
    directory.enter(boss, "boss", operator=True)
    directory.ban(boss, "198.51.100.7", None)
    assert directory.banned("198.51.100.7") == "your address is banned until lifted"
    assert json.loads(Path(path).read_text()) == [{"network": "198.51.100.7/32", "until": None}]
    reborn = Directory(Clock(), ban_file=path)
    assert reborn.banned("198.51.100.7") == "your address is banned until lifted"


def test_options(tmp_path: Path) -> None:
    good = str(tmp_path / "bans.json")
    assert parse("--ban-file", good)["config"].ban_file == good
    for argv, message in (
        (["--ban-file", good, "--redis", "redis://192.0.2.1:7480/0"], "kept in Redis"),
        (["--ban-file", str(tmp_path / "missing" / "bans.json")], "cannot write in"),
    ):
        with pytest.raises(SystemExit) as refused:
            parse(*argv)
        assert message in str(refused.value.code)
    (tmp_path / "bad.json").write_text("nonsense")
    with pytest.raises(SystemExit) as refused:
        parse("--ban-file", str(tmp_path / "bad.json"))
    assert "not a list of bans" in str(refused.value.code)


def test_a_ban_survives_a_restart_of_the_server(tmp_path: Path) -> None:
    """An operator bans 127.0.0.2; the server restarts; 127.0.0.2 is still refused."""
    path = str(tmp_path / "bans.json")
    options = ("--ban-file", path, "--auth", "memory:boss:pw", "--op", "boss")
    for round_ in range(2):
        process, port = start_twistd(tmp_path, *options)
        try:
            if round_ == 0:
                boss = LineSocket(port)
                boss.send("/login boss pw")
                boss.expect("* you are boss; /nick NAME changes it, /help lists the commands")
                boss.send("/ban 127.0.0.2")
                boss.expect("* banned 127.0.0.2/32 until lifted")
                boss.close()
            else:
                banned = LineSocket(port, source="127.0.0.2")
                banned.expect("error: your address is banned until lifted")
                banned.close()
        finally:
            process.stop()
