"""
The README's two commands: where they are, and that CI runs the test one.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_readme_opens_with_the_two_commands() -> None:
    """The first two shell blocks: run the server; install and test."""
    run, test = readme_commands()[:2]
    assert "\n" not in run
    assert "\n" not in test
    assert run.endswith("twistd -n tcpchat --port 65432")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the README's test command verbatim."""
    test = readme_commands()[1]
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()
