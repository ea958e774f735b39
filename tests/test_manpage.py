"""
The man pages: rendered from the option tables, committed up to date, every
option in them, roff escaped, and groff reading them without a warning.
"""

from __future__ import annotations

import difflib
import io
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import SkipTest

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import twisted_tcpchat
from twisted_tcpchat import manpage
from twisted_tcpchat.client.main import make_parser, parse_arguments
from twisted_tcpchat.manpage import (
    OptionDoc,
    argument,
    escape,
    paragraph,
    parse_examples,
    text_line,
)
from twisted_tcpchat.tap import HELP_EXAMPLES, HELP_GROUPS, Options

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "docs" / "man"
REGENERATE = ".venv/bin/python -m twisted_tcpchat.manpage docs/man"

#: The requests and macros the pages use; any other line starting with a
#: dot would be text that escaped its escaping.
REQUESTS = {"TH", "SH", "SS", "TP", "PP", "RS", "RE", "nf", "fi", "br", "nh", "ad", '\\"'}


def words(text: str) -> str:
    return " ".join(text.split())


class CommittedPagesTests(SynchronousTestCase):
    def test_committed_pages_are_current(self) -> None:
        """
        docs/man holds exactly what the generator makes from today's
        tables: an option added or changed without regenerating fails here.
        """
        for name, text in manpage.pages().items():
            path = MAN / name
            committed = path.read_text(encoding="ascii") if path.exists() else ""
            if committed != text:
                diff = difflib.unified_diff(
                    committed.splitlines(),
                    text.splitlines(),
                    f"docs/man/{name} (committed)",
                    f"docs/man/{name} (from the tables now)",
                    lineterm="",
                )
                self.fail(
                    f"docs/man/{name} is out of date with the option tables; regenerate "
                    f"it with `{REGENERATE}` and commit it:\n" + "\n".join(list(diff)[:40])
                )

    def test_pyproject_installs_the_committed_pages(self) -> None:
        """The wheel's data files are the generator's page names, under share/man."""
        text = (ROOT / "pyproject.toml").read_text()
        self.assertIn(f'"share/man/man1" = ["docs/man/{manpage.CLIENT_PAGE}"]', text)
        self.assertIn(f'"share/man/man8" = ["docs/man/{manpage.SERVER_PAGE}"]', text)


class ServerPageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.page = manpage.server_page()

    def test_every_option_is_in_the_page(self) -> None:
        """Every flag, parameter and opt_ method that --help sees, long and short."""
        options = Options()
        names = {opt.rstrip("=") for opt in options.longOpt}
        self.assertIn("port", names)
        self.assertIn("listen", names)  # an opt_ method
        self.assertIn("echo", names)  # a flag
        for name in names:
            self.assertIn(rf"\fB{escape('--' + name)}\fR", self.page, name)
        for key, long in options.synonyms.items():
            if key != long and len(key) == 1:
                self.assertIn(rf"\fB\-{key}\fR", self.page, key)

    def test_texts_and_defaults_as_in_help(self) -> None:
        """Each option's text, default included, is the one --help prints."""
        help_text = words(Options().getUsage(width=100_000))
        for _, docs in manpage.server_groups(Options()):
            for doc in docs:
                self.assertIn(words(doc.text), help_text)
                self.assertIn(paragraph(doc.text), self.page)
        self.assertIn(r"[default: 65432]", self.page)
        self.assertIn(r"[default: Connect succeed. Please send a message to me]", self.page)

    def test_one_subsection_per_help_group_in_order(self) -> None:
        places = [self.page.index(f".SS {argument(title)}\n") for title, _ in HELP_GROUPS]
        self.assertEqual(places, sorted(places))
        self.assertLess(self.page.index(".SH OPTIONS\n"), places[0])

    def test_examples_from_help(self) -> None:
        """Each line of each command in --help's examples, as one literal line."""
        commands = [line for command, _ in parse_examples(HELP_EXAMPLES) for line in command]
        self.assertGreaterEqual(len(commands), 2)
        for line in commands:
            self.assertIn("\n" + text_line(escape(line)) + "\n", self.page)

    def test_header_holds_the_version_and_no_date(self) -> None:
        version = twisted_tcpchat.__version__
        self.assertIn(f'\n.TH TWISTD\\-TCPCHAT 8 "" "tcpchat {version}" ', self.page)

    def test_value_names_are_of_real_options(self) -> None:
        """Each value's name (--listen=ENDPOINT) belongs to an option that takes a value."""
        takes_value = {opt.rstrip("=") for opt in Options().longOpt if opt.endswith("=")}
        self.assertLessEqual(set(manpage.VALUE_NAMES), takes_value)

    def test_a_new_option_appears(self) -> None:
        """An option added to the tables is in the page without touching the generator."""

        class More(Options):
            optParameters = [["frobnicate", None, "7", "How hard to frobnicate."]]

        page = manpage.server_page(More(), groups=(*HELP_GROUPS, ("Extra", ("frobnicate",))))
        self.assertIn(r"\fB\-\-frobnicate\fR=\fIFROBNICATE\fR", page)
        self.assertIn("How hard to frobnicate. [default: 7]", page)

    def test_an_option_in_no_group_is_refused(self) -> None:
        """An option left out of HELP_GROUPS would be missing from the page: refused."""

        class More(Options):
            optFlags = [["frobnicate", None, "Frobnicate."]]

        with self.assertRaises(ValueError) as e:
            manpage.server_page(More())
        self.assertIn("frobnicate", str(e.exception))


class ClientPageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.page = manpage.client_page()

    def test_every_option_and_argument_is_in_the_page(self) -> None:
        """Every option string, argument and help text of tcpchat --help."""
        actions = make_parser()._actions
        self.assertGreater(len(actions), 10)
        for action in actions:
            for spelling in action.option_strings:
                self.assertIn(rf"\fB{escape(spelling)}\fR", self.page, spelling)
            if not action.option_strings:
                self.assertIn(rf"\fI{escape(str(action.metavar))}\fR", self.page)
            self.assertIn(paragraph(action.help or ""), self.page, action.dest)

    def test_values_named_as_in_help(self) -> None:
        self.assertIn(r"\fB\-m\fR \fITEXT\fR, \fB\-\-message\fR \fITEXT\fR", self.page)
        self.assertIn(r"\fB\-\-line\-ending\fR \fI{lf,crlf,nul,none}\fR", self.page)
        self.assertIn("\\fB\\-\\-reconnect\\fR\n", self.page)

    def test_exit_status_and_environment(self) -> None:
        status = self.page.split('.SH "EXIT STATUS"\n', 1)[1].split("\n.SH", 1)[0]
        self.assertIn("2 for bad arguments", status)
        self.assertIn("\\fBTCPCHAT_PASSWORD\\fR", self.page.split(".SH ENVIRONMENT", 1)[1])

    def test_examples_are_valid_command_lines(self) -> None:
        """Each example parses as tcpchat's arguments, and is shown literally."""
        for command, _ in manpage.CLIENT_EXAMPLES:
            argv = shlex.split(command)
            self.assertEqual(argv[0], "tcpchat")
            parse_arguments(argv[1:])
            self.assertIn("\n" + text_line(escape(command)) + "\n", self.page)


class CommandTests(SynchronousTestCase):
    def scratch(self) -> Path:
        """A directory removed after the test (mktemp would leave one in the checkout)."""
        path = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, path)
        return path

    def test_writes_both_pages(self) -> None:
        """python -m twisted_tcpchat.manpage OUTDIR writes what pages() renders."""
        outdir = self.scratch() / "man"
        self.patch(sys, "stdout", io.StringIO())
        self.assertEqual(manpage.main([str(outdir)]), 0)
        for name, text in manpage.pages().items():
            self.assertEqual((outdir / name).read_text(encoding="ascii"), text)

    def test_not_a_directory_is_one_line(self) -> None:
        path = self.scratch() / "file"
        path.write_text("")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as e:
            manpage.main([str(path)])
        self.assertEqual(e.exception.code, 1)
        self.assertEqual(stderr.getvalue(), f"manpage: {str(path)!r} is not a directory\n")


class EscapingTests(SynchronousTestCase):
    def test_leading_dot_is_not_a_request(self) -> None:
        self.assertEqual(text_line(escape(".SH injected")), r"\&.SH injected")
        self.assertEqual(paragraph("\n   .SH injected\n  here"), r"\&.SH injected here")
        self.assertEqual(text_line("a .dot inside"), "a .dot inside")

    def test_quote_is_never_a_control_character(self) -> None:
        """A leading ' would be a request too; every ' is the \\(aq glyph."""
        self.assertEqual(escape("'quoted' it's"), r"\(aqquoted\(aq it\(aqs")
        self.assertEqual(text_line("'x"), r"\&'x")

    def test_backslash_is_literal(self) -> None:
        self.assertEqual(escape(r"interface=\:\:1"), r"interface=\(rs:\(rs:1")
        self.assertEqual(escape(r"\fBbold?"), r"\(rsfBbold?")

    def test_hyphens_are_minus_signs(self) -> None:
        self.assertEqual(escape("--max-line"), r"\-\-max\-line")

    def test_glyphs_groff_would_change(self) -> None:
        self.assertEqual(escape("~/.local ^ `x`"), r"\(ti/.local \(ha \(gax\(ga")

    def test_non_ascii_by_code_point(self) -> None:
        self.assertEqual(escape("世界 é"), r"\[u4E16]\[u754C] \[u00E9]")
        self.assertTrue(escape("😀\x7f").isascii())

    def test_macro_argument_quoted(self) -> None:
        self.assertEqual(argument('say "hi" - now'), r'"say \(dqhi\(dq \- now"')

    def test_option_tag(self) -> None:
        self.assertEqual(
            OptionDoc(("-p", "--port"), "PORT", "", equals=True).tag(),
            r"\fB\-p\fR \fIPORT\fR, \fB\-\-port\fR=\fIPORT\fR",
        )
        self.assertEqual(OptionDoc(("--echo",), None, "").tag(), r"\fB\-\-echo\fR")

    def test_examples_parsed(self) -> None:
        text = (
            "Examples:\n  cmd one \\\n      --more\n      what it does,\n      at length\n  two\n"
        )
        self.assertEqual(
            parse_examples(text),
            [(["cmd one \\", "    --more"], "what it does, at length"), (["two"], "")],
        )

    def test_pages_hold_only_known_requests(self) -> None:
        """No line of text in either page became a request, and all is ASCII."""
        for page in manpage.pages().values():
            self.assertTrue(page.isascii())
            for line in page.splitlines():
                self.assertFalse(line.startswith("'"), line)
                if line.startswith("."):
                    request = re.split(r"[ \n]", line[1:], maxsplit=1)[0]
                    self.assertIn(request, REQUESTS, line)


class Tricky(usage.Options):
    synopsis = "[options]"
    longdesc = ".SH injected\n'quoted at the start"
    optParameters = [["dash-name", "d", "a\\b", ".starts with a dot"]]
    optFlags = [["quote", None, "'quoted' and 世界 ~/x"]]


class GroffTests(SynchronousTestCase):
    def groff(self, source: str, *args: str) -> str:
        """groff's output for the page C{source}; fails on any warning."""
        groff = shutil.which("groff")
        if groff is None:
            raise SkipTest("groff is not installed: the pages are not rendered")
        result = subprocess.run(
            [groff, "-man", "-ww", *args],
            input=source.encode("ascii"),
            capture_output=True,
            check=False,
        )
        self.assertEqual((result.returncode, result.stderr.decode()), (0, ""))
        return result.stdout.decode("utf-8")

    def test_committed_pages_render_without_warnings(self) -> None:
        for name in (manpage.CLIENT_PAGE, manpage.SERVER_PAGE):
            self.groff((MAN / name).read_text(encoding="ascii"), "-z")

    def test_tricky_text_renders_as_written(self) -> None:
        """Dots, quotes, backslashes, hyphens and Chinese come out as they went in."""
        page = manpage.server_page(
            Tricky(),
            version="9.9",
            groups=(("A 'group' \\ -", ("dash-name", "quote", "help", "version")),),
            examples="Examples:\n  .dot command \\\n      --more\n      'explained'\n",
        )
        shown = self.groff(page, "-Tutf8", "-P-cbou").replace("\u2212", "-")
        for text in (
            ".SH injected 'quoted at the start",
            "-d DASH_NAME, --dash-name=DASH_NAME",
            ".starts with a dot [default: a\\b]",
            "'quoted' and 世界 ~/x",
            "A 'group' \\ -",
            "    .dot command \\\n",
            "        --more",
            "'explained':",
        ):
            self.assertIn(text, shown)
        self.assertEqual(words(shown).count("DESCRIPTION"), 1)

    def test_client_page_reads_as_help(self) -> None:
        shown = self.groff(manpage.client_page(), "-Tutf8", "-P-cbou").replace("\u2212", "-")
        self.assertIn("--line-ending {lf,crlf,nul,none}", shown)
        self.assertIn("TCPCHAT_PASSWORD", shown)
