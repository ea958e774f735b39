"""
The page in a real browser: Debian's chromium, headless, driven by
selenium through Debian's chromedriver, against C{twistd -n tcpchat --web}
on loopback, beside a real C{nc}.

Screenshots (desktop and phone width, light and dark) go to
C{$TCPCHAT_SCREENSHOTS} when it is set (docs/screenshots holds the ones of
the last release), else to the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DEADLINE, Process, need, start_twistd, welcome
from tests.redis_server import free_port
from tests.test_peers import Peer

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("autobahn")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

DESKTOP = (1200, 760)
PHONE = (390, 780)


def _browser(dark: bool = False, size: tuple[int, int] = DESKTOP) -> Any:
    for program in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(program):
            pytest.skip(f"{program} is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # (CI runs as root)
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={size[0]},{size[1]}",
        "--force-color-profile=srgb",
    ):
        options.add_argument(argument)
    if dark:
        options.add_argument("--force-dark-mode")
        options.add_argument("--blink-settings=preferredColorScheme=0")
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class Page:
    """One browser on the chat page: what a person sees and does there."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.driver = _browser(**kwargs)
        self.driver.get(url)

    def wait(self, condition: Callable[[], object], what: str) -> None:
        try:
            WebDriverWait(self.driver, DEADLINE, 0.05).until(lambda _: condition())
        except Exception as e:
            raise AssertionError(f"waited {DEADLINE} s for {what}; the page shows:\n"
                                 + "\n".join(self.lines())) from e  # fmt: skip

    def lines(self) -> list[str]:
        """The conversation, one entry per line: time, who and text, as shown."""
        script = (
            "return [...document.querySelectorAll('#log li')]"
            ".map(li => [...li.children].map(c => c.textContent).join(' ').trim())"
        )
        return list(self.driver.execute_script(script))

    def expect(self, text: str) -> None:
        """Wait until an entry ends with C{text} (after its time)."""
        self.wait(lambda: any(line.endswith(text) for line in self.lines()), repr(text))

    def text_of(self, element_id: str) -> str:
        return str(self.driver.find_element(By.ID, element_id).text)

    def say(self, text: str) -> None:
        box = self.driver.find_element(By.ID, "say")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def status(self) -> str:
        return str(self.driver.find_element(By.ID, "status").get_attribute("data-state"))

    def shot(self, directory: Path, name: str, size: tuple[int, int]) -> Path:
        self.driver.set_window_size(*size)
        path = directory / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def quit(self) -> None:
        with contextlib.suppress(WebDriverException):
            self.driver.quit()


@pytest.fixture
def pages() -> Iterator[list[Page]]:
    opened: list[Page] = []
    yield opened
    for page in opened:
        page.quit()


def _screenshots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("TCPCHAT_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _serve(tmp_path: Path, chat: int, web: int, *options: str) -> Process:
    """C{twistd -n tcpchat} with its chat on port C{chat} and the page on C{web}."""
    process, _ = start_twistd(
        tmp_path,
        "--port",
        str(chat),
        "--interface",
        "127.0.0.1",
        "--web",
        f"tcp:{web}:interface=127.0.0.1",
        "--history",
        "20",
        *options,
    )
    process.wait_for_output(r"web page and WebSocket on http://127\.0\.0\.1:\d+/")
    return process


def test_two_browsers_and_nc_in_one_room(tmp_path: Path, pages: list[Page]) -> None:
    """
    Two browsers and nc talk both ways; the XSS line is text; a room switch;
    the server restarts and the pages reconnect on their own; screenshots.
    """
    need("nc")
    chat, web = free_port(), free_port()
    server = _serve(tmp_path, chat, web)
    url = f"http://127.0.0.1:{web}/"
    nc: Peer | None = None
    try:
        alice = Page(url)
        pages.append(alice)
        alice.expect("you are guest1; /help lists the commands")
        alice.say("/nick alice")
        alice.expect("you are now alice")

        nc = Peer("nc", chat, tmp_path)
        nc.expect(welcome("guest2"))
        nc.say("/nick bob")
        alice.expect("guest2 is now known as bob")

        carol = Page(url, dark=True)
        pages.append(carol)
        carol.expect("you are guest3; /help lists the commands")
        carol.say("/nick carol")
        nc.expect("* guest3 is now known as carol")

        # Browser to nc and browser; nc to both browsers.
        alice.say("hello from the browser")
        nc.expect("<alice> hello from the browser")
        carol.expect("alice hello from the browser")
        alice.expect("alice hello from the browser")
        own = [line for line in alice.lines() if line.endswith("alice hello from the browser")]
        assert len(own) == 1, alice.lines()  # (its own line, shown once)
        nc.say("hi alice, nc here")
        alice.expect("bob hi alice, nc here")
        carol.expect("bob hi alice, nc here")
        # The input line keeps what was typed: up brings back the last line.
        box = alice.driver.find_element(By.ID, "say")
        box.send_keys(Keys.ARROW_UP)
        assert box.get_attribute("value") == "hello from the browser"
        box.send_keys(Keys.ARROW_UP)
        assert box.get_attribute("value") == "/nick alice"
        box.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN)
        assert box.get_attribute("value") == ""
        carol.say("/me waves")
        nc.expect("* carol waves")
        alice.expect("carol waves")

        # Markup from nc is shown as the characters typed, and nothing runs.
        alice.driver.execute_script("window.alert = () => { window.alerted = true; };")
        xss = "<img src=x onerror=alert(1)> <b>bold?</b>"
        nc.say(xss)
        alice.expect(f"bob {xss}")
        assert alice.driver.find_elements(By.CSS_SELECTOR, "#log img, #log b") == []
        assert alice.driver.execute_script("return window.alerted === undefined")

        # A mention is marked; members and the room list are shown.
        nc.say("alice: see this?")
        alice.wait(
            lambda: bool(alice.driver.find_elements(By.CSS_SELECTOR, "#log li.mention")),
            "the mention marked",
        )
        alice.wait(lambda: "bob" in alice.text_of("members"), "bob in the member list")
        assert "carol" in alice.text_of("members")
        alice.wait(lambda: "#lobby" in alice.text_of("rooms"), "the room list")

        # A private message is shown apart.
        nc.say("/msg carol psst")
        carol.expect("bob → you psst")
        private = carol.driver.find_elements(By.CSS_SELECTOR, "#log li.private")
        assert private, carol.lines()
        carol.wait(lambda: "bob" in carol.text_of("privates"), "bob under Private")

        nc.say("/topic Tea and sockets")
        alice.expect("bob set the topic: Tea and sockets")
        alice.wait(lambda: alice.text_of("topic") == "Tea and sockets", "the topic shown")

        shots = _screenshots(tmp_path)
        alice.shot(shots, "desktop", DESKTOP)
        carol.shot(shots, "desktop-dark", DESKTOP)
        alice.shot(shots, "phone", PHONE)
        alice.driver.find_element(By.ID, "menu").click()
        alice.wait(lambda: alice.driver.find_element(By.ID, "rooms").is_displayed(), "the drawer")
        alice.shot(shots, "phone-rooms", PHONE)
        alice.driver.find_element(By.ID, "menu").click()
        carol.shot(shots, "phone-dark", PHONE)
        alice.driver.set_window_size(*DESKTOP)
        carol.driver.set_window_size(*DESKTOP)

        # A room switch: carol goes to #dev by the form; the lobby hears it.
        join = carol.driver.find_element(By.ID, "join-name")
        join.send_keys("dev")
        join.send_keys(Keys.ENTER)
        carol.expect("you are now in #dev")
        carol.wait(lambda: carol.text_of("room-title") == "#dev", "the title #dev")
        alice.expect("carol left for #dev")
        nc.expect("* carol left for #dev")
        carol.say("anyone in dev?")
        alice.say("/join dev")
        alice.expect("you are now in #dev")
        alice.expect("carol anyone in dev?")  # (from #dev's history: said before alice came)
        carol.expect("alice came from #lobby")
        alice.say("here")
        carol.expect("alice here")
        # (Two messages: lines that arrive in one read are one message, so
        # nc's answer to /whois is awaited between them.)
        nc.say("lobby only")
        nc.say("/whois bob")
        nc.process.wait_for_output(r"\* bob is in #lobby")
        nc.say("and again")
        # The lobby shows 2 unread lines in the room list; a click goes back there.
        lobby = "#rooms button[data-room='lobby']"

        def unread() -> str:
            script = f"return document.querySelector(\"{lobby} .unread\")?.textContent || ''"
            return str(alice.driver.execute_script(script))

        nc.say("/who")  # (nc's lines are in: it has its answer)
        nc.process.wait_for_output(r"\*   bob \(idle")
        alice.say("/rooms")
        alice.wait(lambda: unread() == "2", "2 unread in the lobby")
        alice.driver.find_element(By.CSS_SELECTOR, lobby).click()
        alice.expect("you are now in #lobby")
        alice.expect("bob lobby only")  # (from the lobby's history)

        # The server restarts: the pages say they are reconnecting, then are back.
        server.stop()
        alice.wait(lambda: alice.status() == "reconnecting", "the reconnecting state")
        assert "reconnecting" in alice.text_of("status")
        server = _serve(tmp_path, chat, web)
        # Said on the new server, likely before the pages are back: they get
        # it from the history (the room's numbers started again at 1).
        early = Peer("nc", chat, tmp_path)
        early.say("said while you were away")
        early.expect("* you are guest1; /nick NAME changes it, /help lists the commands")
        alice.wait(lambda: alice.status() == "open", "alice reconnected")
        carol.wait(lambda: carol.status() == "open", "carol reconnected")
        # Each takes its name again and goes back to its room.
        alice.wait(lambda: alice.text_of("me") == "alice", "alice named alice again")
        carol.wait(lambda: carol.text_of("room-title") == "#dev", "carol back in #dev")
        alice.expect("said while you were away")
        nc2 = Peer("nc", chat, tmp_path)
        nc2.say("after the restart")
        alice.expect("after the restart")
        alice.say("back again")
        nc2.expect("<alice> back again")
        nc2.process.stop()
        early.process.stop()
    finally:
        if nc is not None:
            nc.process.stop()
        server.stop()


def test_the_page_logs_in(tmp_path: Path, pages: list[Page]) -> None:
    """
    On a server with --auth the page asks for a login and hides the
    password; kicked, it stays out (no reconnecting by itself) until the
    person asks, and then asks for the login again.
    """
    chat, web = free_port(), free_port()
    process = _serve(
        tmp_path, chat, web, "--auth", "memory:alice:wonderland:boss:pw", "--op", "boss"
    )
    try:
        page = Page(f"http://127.0.0.1:{web}/")
        pages.append(page)
        page.wait(
            lambda: page.driver.find_element(By.ID, "login-form").is_displayed(),
            "the login form",
        )
        password = page.driver.find_element(By.ID, "login-password")
        assert password.get_attribute("type") == "password"
        page.driver.find_element(By.ID, "login-name").send_keys("alice")
        password.send_keys("wonderland")
        password.send_keys(Keys.ENTER)
        page.wait(lambda: page.text_of("me") == "alice", "logged in as alice")
        assert not page.driver.find_element(By.ID, "login-form").is_displayed()
        assert "wonderland" not in "\n".join(page.lines())

        boss = Peer("nc", chat, tmp_path)
        boss.say("/login boss pw")
        boss.expect("* you are boss; /nick NAME changes it, /help lists the commands")
        boss.say("/kick alice enough")
        page.expect("you were kicked by boss: enough")
        page.wait(lambda: page.status() == "closed", "the closed state")
        assert page.driver.find_element(By.ID, "reconnect").is_displayed()
        assert "reconnecting" not in page.text_of("status")
        page.driver.find_element(By.ID, "reconnect").click()
        page.wait(
            lambda: page.driver.find_element(By.ID, "login-form").is_displayed(),
            "the login form again (the kept login was dropped)",
        )
        boss.process.stop()
    finally:
        process.stop()


def _one_page(tmp_path: Path, pages: list[Page], *options: str) -> tuple[Process, Page]:
    """A server with C{options}, and one page on it, welcomed as guest1."""
    chat, web = free_port(), free_port()
    process = _serve(tmp_path, chat, web, *options)
    try:
        page = Page(f"http://127.0.0.1:{web}/")
        pages.append(page)
        page.expect("you are guest1; /help lists the commands")
    except BaseException:
        process.stop()
        raise
    return process, page


def test_own_lines_once_with_echo(tmp_path: Path, pages: list[Page]) -> None:
    """With --echo the server sends a page its own lines back: shown once, not twice."""
    process, page = _one_page(tmp_path, pages, "--echo")
    try:
        page.say("echo me")
        page.say("/me   waves  ")
        page.say("/who")  # (answered after both echoes: the page has them by then)
        page.expect("1 in #lobby:")
        said = [line for line in page.lines() if line.endswith(("echo me", "waves"))]
        assert len(said) == 2, page.lines()
    finally:
        process.stop()


def test_own_lines_once_after_a_rename_and_a_room_switch(tmp_path: Path, pages: list[Page]) -> None:
    """Lines said under an old name come back in history: still shown once."""
    process, page = _one_page(tmp_path, pages)
    try:
        page.say("said as a guest")
        page.say("/nick alice")
        page.expect("you are now alice")
        page.say("/join other")
        page.expect("you are now in #other")
        page.say("/join lobby")
        page.expect("you are now in #lobby")
        page.say("/who")
        page.expect("1 in #lobby:")
        said = [line for line in page.lines() if line.endswith("said as a guest")]
        assert len(said) == 1, page.lines()
    finally:
        process.stop()
