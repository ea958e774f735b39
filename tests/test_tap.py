"""
The twistd plugin: its options (every one, every bad value), the plugin
registration, and the public names.
"""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

import twisted_tcpchat
from twisted_tcpchat import service, tap
from twisted_tcpchat.core.config import DEFAULT_GREETING, ChatConfig
from twisted_tcpchat.tap import DEFAULT_BACKLOG, Options, makeService


def parse(*argv: str) -> Options:
    options = Options(reactor=MemoryReactor())
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    def assertRefused(self, argv: list[str], message: str) -> str:
        """The options are refused with one line that holds C{message}: that line."""
        with self.assertRaises(SystemExit) as e:
            parse(*argv)
        text = str(e.exception.code)
        self.assertIn(message, text)
        self.assertEqual(text.count("\n"), 0, text)
        self.assertTrue(text.startswith("tcpchat: "), text)
        return text

    def test_defaults(self) -> None:
        """No options: port 65432 on every interface, the tutorial greeting, 'exit'."""
        options = parse()
        self.assertEqual(
            options["endpoints"], [f"tcp6:65432:interface=\\:\\::backlog={DEFAULT_BACKLOG}"]
        )
        # (twistd waits 0.25 s for a probe to go; the library lets clients in at once.)
        self.assertEqual(options["config"], ChatConfig(probe_grace=0.25))
        self.assertEqual(options["config"].greeting, DEFAULT_GREETING)
        self.assertEqual(options["config"].exit_word, "exit")
        self.assertFalse(options["config"].once)

    def test_port_and_interface(self) -> None:
        self.assertEqual(
            parse("--port", "4000", "--interface", "127.0.0.1")["endpoints"],
            [f"tcp:4000:interface=127.0.0.1:backlog={DEFAULT_BACKLOG}"],
        )
        self.assertEqual(
            parse("-p", "0", "-i", "::1")["endpoints"],
            [f"tcp6:0:interface=\\:\\:1:backlog={DEFAULT_BACKLOG}"],
        )

    def test_listen_repeatable_and_replaces_default(self) -> None:
        """--listen takes endpoint strings; with it the default listener is not added."""
        self.assertEqual(
            parse("--listen", "tcp:1234", "--listen", "unix:/tmp/x.sock:mode=600")["endpoints"],
            [
                f"tcp:1234:backlog={DEFAULT_BACKLOG}",
                f"unix:/tmp/x.sock:mode=600:backlog={DEFAULT_BACKLOG}",
            ],
        )

    def test_listen_plus_port(self) -> None:
        """--port given beside --listen adds a listener of its own."""
        self.assertEqual(
            parse("--listen", "tcp:1234", "--port", "99", "-i", "127.0.0.1")["endpoints"],
            [
                f"tcp:1234:backlog={DEFAULT_BACKLOG}",
                f"tcp:99:interface=127.0.0.1:backlog={DEFAULT_BACKLOG}",
            ],
        )

    def test_backlog(self) -> None:
        self.assertEqual(
            parse("--backlog", "7", "--listen", "tcp:1", "--listen", "tcp:2:backlog=3")[
                "endpoints"
            ],
            ["tcp:1:backlog=7", "tcp:2:backlog=3"],
        )

    def test_greeting_exit_word_once(self) -> None:
        c = parse("--greeting", "hi {peer}", "--exit-word", "quit", "--once")["config"]
        self.assertEqual((c.greeting, c.exit_word, c.once), ("hi {peer}", "quit", True))

    def test_limits(self) -> None:
        c = parse("--max-line", "100", "--max-unterminated", "1000")["config"]
        self.assertEqual((c.max_line, c.max_unterminated), (100, 1000))

    def test_presence_and_history_options(self) -> None:
        c = parse("--history", "5", "--echo", "--quiet-presence", "--console-name", "boss")[
            "config"
        ]
        self.assertEqual(
            (c.history, c.echo, c.quiet_presence, c.console_name), (5, True, True, "boss")
        )
        self.assertEqual(parse("--history", "0")["config"].history, 0)

    def test_room_options(self) -> None:
        config = parse(
            "--default-room",
            "#Main",
            "--room",
            "help",
            "--room",
            "dev",
            "--create-rooms",
            "operators",
            "--max-rooms",
            "50",
        )["config"]
        self.assertEqual(
            (config.default_room, config.rooms, config.create_rooms, config.max_rooms),
            ("#Main", ("help", "dev"), "operators", 50),
        )

    def test_bad_room_options_refused(self) -> None:
        self.assertRefused(["--default-room", "no spaces"], "--default-room: invalid room name")
        self.assertRefused(["--room", "x" * 31], "--room: invalid room name")
        self.assertRefused(
            ["--create-rooms", "everyone"], "--create-rooms: 'everyone' is not one of anyone"
        )
        self.assertRefused(["--max-rooms", "0"], "--max-rooms: '0' is not a whole number")
        self.assertRefused(["--max-rooms", "2", "--room", "a", "--room", "b"], "--max-rooms: 2")
        self.assertRefused(["--classic", "--once"], "--classic: --once and --classic")

    def test_classic_may_have_a_console(self) -> None:
        options = parse("--classic", "--console")
        self.assertTrue(options["config"].classic)

    def test_console_flag(self) -> None:
        self.assertTrue(parse("--console")["console"])

    def test_console_refused_with_once(self) -> None:
        self.assertRefused(
            ["--console", "--once"], "--console needs the room or --classic; --once has neither"
        )

    def test_console_refused_when_daemonizing(self) -> None:
        """Under twistd without -n there is no terminal: --console is refused at start."""
        from twisted.scripts.twistd import ServerOptions

        with self.assertRaises(SystemExit) as e:
            ServerOptions().parseOptions(["tcpchat", "--console"])
        self.assertIn("--console needs a terminal, and a daemon has none", str(e.exception.code))
        options = ServerOptions()
        options.parseOptions(["-n", "tcpchat", "--console"])
        self.assertTrue(options.subOptions["console"])

    def test_bad_room_options(self) -> None:
        self.assertRefused(["--history", "-1"], "--history: '-1' is not a whole number at least 0")
        self.assertRefused(["--history", "lots"], "--history: 'lots'")
        self.assertRefused(
            ["--console-name", "the boss"], "--console-name: invalid name 'the boss'"
        )

    def test_limit_options(self) -> None:
        c = parse(
            "--quiet-time",
            "0.5",
            "--encoding",
            "gbk",
            "--flood-burst",
            "3",
            "--flood-rate",
            "0.5",
            "--flood-queue",
            "7",
            "--send-queue",
            "1000",
            "--max-clients",
            "100",
            "--per-address",
            "4",
            "--connect-rate",
            "5",
            "--exempt",
            "10.0.0.0/8",
            "--exempt",
            "::1",
            "--idle-timeout",
            "300",
            "--keepalive",
            "0",
        )["config"]
        self.assertEqual(
            (c.quiet_time, c.encoding, c.flood_burst, c.flood_rate, c.flood_queue),
            (0.5, "gbk", 3, 0.5, 7),
        )
        self.assertEqual(
            (c.send_queue, c.max_clients, c.per_address, c.connect_rate),
            (1000, 100, 4, 5),
        )
        self.assertEqual(c.exempt, ("10.0.0.0/8", "::1"))
        self.assertEqual((c.idle_timeout, c.keepalive), (300, 0))

    def test_limit_defaults(self) -> None:
        c = parse()["config"]
        self.assertEqual(
            (c.quiet_time, c.encoding, c.flood_burst, c.flood_rate, c.flood_queue),
            (0.3, None, 10, 2.0, 50),
        )
        self.assertEqual(
            (c.send_queue, c.max_clients, c.per_address, c.connect_rate, c.exempt),
            (262144, None, 16, 10, ("127.0.0.0/8", "::1/128")),
        )
        self.assertEqual((c.idle_timeout, c.keepalive), (0, 60))

    def test_exempt_none(self) -> None:
        self.assertEqual(parse("--exempt", "none")["config"].exempt, ())

    def test_bad_limit_values(self) -> None:
        for argv, message in [
            (["--quiet-time", "0"], "--quiet-time: '0' is not a number more than 0"),
            (["--quiet-time", "soon"], "--quiet-time: 'soon' is not a number"),
            (["--flood-rate", "nan"], "--flood-rate: 'nan' is not a number"),
            (["--flood-rate", "-1"], "--flood-rate: '-1'"),
            (["--flood-burst", "0"], "--flood-burst: '0' is not a whole number at least 1"),
            (["--flood-queue", "x"], "--flood-queue: 'x'"),
            (["--send-queue", "0"], "--send-queue: '0'"),
            (["--max-clients", "0"], "--max-clients: '0'"),
            (["--per-address", "0"], "--per-address: '0'"),
            (["--connect-rate", "0"], "--connect-rate: '0'"),
            (["--idle-timeout", "-5"], "--idle-timeout: '-5' is not a number 0 or more"),
            (["--keepalive", "-1"], "--keepalive: '-1' is not a whole number at least 0"),
            (["--encoding", "klingon"], "--encoding: 'klingon' is not a known encoding"),
            (["--encoding", "utf-16"], "--encoding: 'utf-16' does not write ASCII as ASCII"),
            (["--encoding", "cp500"], "--encoding: 'cp500' does not write ASCII as ASCII"),
            (["--encoding", "hex"], "--encoding: 'hex' is not a known encoding"),
            (["--exempt", "10.0.0.0/33"], "--exempt: '10.0.0.0/33' is not an IPv4 or IPv6 network"),
        ]:
            self.assertRefused(argv, message)

    def test_bad_port(self) -> None:
        self.assertRefused(["--port", "abc"], "--port: 'abc' is not a whole number 0 to 65535")
        self.assertRefused(["--port", "65536"], "--port: '65536' is not a whole number 0 to 65535")
        self.assertRefused(["--port", "-1"], "--port: '-1'")

    def test_bad_backlog(self) -> None:
        self.assertRefused(["--backlog", "0"], "--backlog: '0' is not a whole number 1 to 65535")

    def test_bad_interface(self) -> None:
        self.assertRefused(
            ["--interface", "not an address"],
            "--interface: 'not an address' is not an IPv4 or IPv6 address",
        )

    def test_bad_listen(self) -> None:
        self.assertRefused(["--listen", "foo:bar"], "Unknown endpoint type: 'foo'")
        self.assertRefused(["--listen", "tcp:notaport"], "--listen: bad endpoint 'tcp:notaport")

    def test_bad_greeting(self) -> None:
        self.assertRefused(["--greeting", "hi {nick}"], "--greeting: unknown field {nick}")
        self.assertRefused(["--greeting", "hi {"], "--greeting: bad template")

    def test_bad_exit_word(self) -> None:
        self.assertRefused(["--exit-word", ""], "--exit-word: '' must be non-empty")
        self.assertRefused(["--exit-word", " x"], "--exit-word: ' x'")
        self.assertRefused(["--exit-word", "a\x1b"], "--exit-word:")

    def test_bad_limits(self) -> None:
        self.assertRefused(["--max-line", "0"], "--max-line: '0' is not a whole number at least 1")
        self.assertRefused(["--max-line", "x"], "--max-line: 'x'")
        self.assertRefused(
            ["--max-line", "100", "--max-unterminated", "50"],
            "--max-unterminated: 50 must be at least the max-line (100)",
        )

    def test_unknown_option(self) -> None:
        self.assertRefused(["--bogus"], "option --bogus not recognized")

    def test_help_documents_every_option_with_default(self) -> None:
        """--help names every option and its default."""
        text = str(Options())
        for name, default in [
            ("--port", "65432"),
            ("--interface", "every IPv4 and IPv6 interface"),
            ("--listen", "tcp6:65432"),
            ("--backlog", str(DEFAULT_BACKLOG)),
            ("--greeting", "Connect succeed"),
            ("--exit-word", "exit"),
            ("--once", "off"),
            ("--max-line", "4096"),
            ("--max-unterminated", "16384"),
            ("--history", "20"),
            ("--echo", "off"),
            ("--quiet-presence", "off"),
            ("--console ", "off"),
            ("--console-name", "server"),
            ("--quiet-time", "0.3"),
            ("--encoding", "UTF-8, else GBK"),
            ("--flood-burst", "10"),
            ("--flood-rate", "2"),
            ("--flood-queue", "50"),
            ("--send-queue", "262144"),
            ("--max-clients", "open-file limit"),
            ("--per-address", "16"),
            ("--connect-rate", "10"),
            ("--exempt", "127.0.0.0/8"),
            ("--idle-timeout", "0"),
            ("--keepalive", "60"),
        ]:
            self.assertIn(name, text)
            section = text[text.index(name) : text.index(name) + 600]
            self.assertIn("[default:", section, name)
            self.assertIn(default, " ".join(section.split()), name)

    def test_make_service(self) -> None:
        """makeService builds a service listening where the options say."""
        reactor = MemoryReactor()
        options = Options(reactor=reactor)
        options.parseOptions(["--port", "0", "--interface", "127.0.0.1", "--greeting", "yo"])
        svc = makeService(options)
        self.assertIsInstance(svc, service.ChatService)
        self.assertEqual(svc.factory.server.config.greeting, "yo")
        svc.privilegedStartService()
        svc.startService()
        self.assertEqual(reactor.tcpServers[0][0], 0)
        self.assertEqual(reactor.tcpServers[0][3], "127.0.0.1")
        self.assertEqual(reactor.tcpServers[0][2], DEFAULT_BACKLOG)

    def test_start_raises_open_file_limit_and_sizes_clients(self) -> None:
        """At start the soft open-file limit goes up to the hard one; max clients follow it."""
        import resource

        from twisted_tcpchat.core.limits import clients_for_open_files

        svc = makeService(parse("--port", "0", "--interface", "127.0.0.1"))
        svc.privilegedStartService()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.assertEqual(soft, hard)
        self.assertEqual(svc.factory.server.max_clients, clients_for_open_files(soft))
        explicit = makeService(parse("--max-clients", "5", "--port", "0"))
        explicit.privilegedStartService()
        self.assertEqual(explicit.factory.server.max_clients, 5)


class PluginTests(SynchronousTestCase):
    def test_plugin_registered(self) -> None:
        """twistd finds the tcpchat service maker, pointing at our tap module."""
        import twisted.plugins

        makers = {m.tapname: m for m in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("tcpchat", makers)
        self.assertIs(makers["tcpchat"].options, tap.Options)
        self.assertTrue(makers["tcpchat"].description)


class ExportTests(SynchronousTestCase):
    def test_version_matches_metadata(self) -> None:
        from importlib.metadata import version

        self.assertEqual(twisted_tcpchat.__version__, version("twisted-tcpchat"))


class RedisOptionsTests(SynchronousTestCase):
    """--redis and --workers: what they need, and one line when it is missing."""

    def assertRefused(self, argv: list[str], message: str) -> None:
        OptionsTests.assertRefused(self, argv, message)  # type: ignore[arg-type]

    def test_redis_urls(self) -> None:
        from twisted_tcpchat.rooms.redislink import RedisAddress

        address = RedisAddress.parse("redis://user:pw@[::1]:6380/3")
        self.assertEqual((address.host, address.port, address.db), ("::1", 6380, 3))
        self.assertEqual((address.username, address.password), ("user", "pw"))
        self.assertEqual(str(address), "redis://[::1]:6380/3")
        address = RedisAddress.parse("unix:///run/redis.sock?db=2")
        self.assertEqual((address.path, address.db), ("/run/redis.sock", 2))
        address = RedisAddress.parse("rediss://cache.example:6390?ca=/etc/ca.pem")
        self.assertEqual((address.scheme, address.ca, address.db), ("rediss", "/etc/ca.pem", 0))
        self.assertEqual(
            parse("--redis", "redis://192.0.2.1:7480/0")["config"].redis, "redis://192.0.2.1:7480/0"
        )

    def test_bad_redis_urls(self) -> None:
        for url, problem in [
            ("http://x", "is not a redis://"),
            ("redis://:7480/0", "names no host"),
            ("redis://h:port/0", "bad port"),
            ("redis://h:7480/zero", "the database must be a number"),
            ("unix://", "names no socket path"),
        ]:
            self.assertRefused(["--redis", url], problem)

    def test_workers_need_redis(self) -> None:
        self.assertRefused(["--workers", "2"], "--workers needs --redis")
        self.assertRefused(["--workers", "0"], "--workers")
        self.assertRefused(
            ["--workers", "2", "--redis", "redis://h/0", "--listen", "ssl:1:privateKey=k"],
            "--workers shares plain TCP listeners only",
        )

    def test_redis_has_no_classic_mode(self) -> None:
        self.assertRefused(["--redis", "redis://h/0", "--classic"], "--redis: --classic")

    def test_redis_without_the_client_library_says_what_to_install(self) -> None:
        from twisted_tcpchat.rooms import redislink

        self.patch(redislink, "redis_available", lambda: False)
        self.assertRefused(["--redis", "redis://h/0"], "pip install 'twisted-tcpchat[redis]'")

    def test_workers_service(self) -> None:
        from twisted_tcpchat.workers import WorkerPool, without_workers

        options = parse("--redis", "redis://h/0", "--workers=3", "--port", "0")
        pool = [s for s in options.getService() if isinstance(s, WorkerPool)]
        self.assertEqual(len(pool), 1)
        self.assertEqual(pool[0].count, 3)
        self.assertEqual(pool[0].argv, ["--redis", "redis://h/0", "--port", "0"])
        self.assertEqual(without_workers(["--workers", "2", "-p", "1"]), ["-p", "1"])

    def test_workers_share_the_first_process_twistd_options(self) -> None:
        from twisted_tcpchat.workers import twistd_options

        argv = ["twistd", "-n", "--pidfile", "x.pid", "-l", "chat.log", "--uid=7", "-g", "8",
                "--reactor=epoll", "tcpchat", "--workers", "2"]  # fmt: skip
        self.assertEqual(twistd_options(argv), ["-l", "chat.log", "--reactor=epoll"])
        self.assertEqual(twistd_options(["twist", "tcpchat"]), [])


class WebOptionsTests(SynchronousTestCase):
    """--web and --web-origin: what they take, and one line for what they refuse."""

    def assertRefused(self, argv: list[str], message: str) -> None:
        OptionsTests.assertRefused(self, argv, message)  # type: ignore[arg-type]

    def test_web_endpoints_and_origins(self) -> None:
        options = parse(
            "--web", "tcp:8080", "--web", "tcp6:8081", "--web-origin", "https://chat.example"
        )
        self.assertEqual(options["web"], ["tcp:8080", "tcp6:8081"])
        chat = options.getService()
        self.assertEqual(chat.web, ("tcp:8080", "tcp6:8081"))
        self.assertEqual(chat.web_origins, ("https://chat.example",))

    def test_no_web_by_default(self) -> None:
        self.assertEqual(parse().getService().web, ())

    def test_refused(self) -> None:
        self.assertRefused(["--web", "nonsense:1"], "--web: bad endpoint 'nonsense:1'")
        self.assertRefused(["--web-origin", "https://a.example"], "there is no --web page")
        self.assertRefused(["--web", "tcp:0", "--web-origin", "a.example"], "is not an origin")
        for origin, why in (
            ("https://a.example/chat", "without a path"),
            ("https://*.example.com", "no * in it"),
        ):
            self.assertRefused(["--web", "tcp:0", "--web-origin", origin], why)
        self.assertRefused(["--web", "tcp:0", "--classic"], "--classic and --once have no rooms")

    def test_any_origin(self) -> None:
        self.assertEqual(parse("--web", "tcp:0", "--web-origin", "*")["web-origins"], ["*"])

    def test_web_without_the_library_says_what_to_install(self) -> None:
        self.patch(tap, "web_available", lambda: False)
        self.assertRefused(["--web", "tcp:0"], "pip install 'twisted-tcpchat[web]'")


class MetricsOptionsTests(SynchronousTestCase):
    assertRefused = WebOptionsTests.assertRefused

    def test_metrics_without_the_library_says_what_to_install(self) -> None:
        self.patch(tap, "metrics_available", lambda: False)
        self.assertRefused(["--metrics", "tcp:0"], "pip install 'twisted-tcpchat[metrics]'")

    def test_an_endpoint_and_a_path(self) -> None:
        options = parse("--web", "tcp:0", "--metrics", "tcp:0", "--metrics", "/stats")
        self.assertEqual(options["metrics-endpoints"], ["tcp:0"])
        self.assertEqual(options["metrics-path"], "/stats")


class MetadataTests(SynchronousTestCase):
    def test_classifiers(self) -> None:
        """What a PyPI user filters by: the framework, the topic, typed."""
        from importlib.metadata import metadata

        classifiers = metadata("twisted-tcpchat").get_all("Classifier") or []
        for expected in (
            "Framework :: Twisted",
            "Topic :: Communications :: Chat",
            "Typing :: Typed",
        ):
            self.assertIn(expected, classifiers)


class HelpTests(SynchronousTestCase):
    def test_every_option_is_in_one_group(self) -> None:
        """A new option cannot be left out of --help: each is in exactly one group."""
        from twisted_tcpchat.tap import HELP_GROUPS

        options = {opt.rstrip("=") for opt in Options().longOpt}
        grouped = [name for _, names in HELP_GROUPS for name in names]
        self.assertEqual(sorted(grouped), sorted(set(grouped)))
        self.assertEqual(set(grouped), options)

    def test_groups_in_order_then_examples(self) -> None:
        text = Options().getUsage(width=100)
        headings = ["Listening:", "Rooms and conversation:", "Limits:", "Security:", "Operations:"]
        places = [text.index(heading) for heading in headings]
        self.assertEqual(places, sorted(places))
        self.assertEqual(text.count("--port="), 1)
        self.assertGreater(text.index("Examples:"), places[-1])
        self.assertIn("twistd -n tcpchat --port 65432 --web tcp:8080", text)
