"""
Tests for L{qemud.tap}: the C{twistd qemud} options (a documented contract,
see the README's "Running the daemon") and the service tree L{makeService}
builds from them.  Nothing is started: services are built and inspected.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from qemud import tap
from qemud.daemon.listeners import HostPort
from qemud.daemon.manager import DomainManagerService
from qemud.daemon.paths import DaemonPaths
from qemud.daemon.protocol import ClientTracker, RPCServerFactory


def parse(*argv: str) -> tap.Options:
    """
    @return: L{tap.Options} after parsing C{argv}.
    """
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class OptionsTestBase(SynchronousTestCase):
    """Runs as a non-root user unless a test says otherwise."""

    def setUp(self) -> None:
        self.as_uid(1000)

    def as_uid(self, uid: int) -> None:
        self.patch(tap.os, "geteuid", lambda: uid)

    def assertUsageError(self, *argv: str, mentions: str) -> usage.UsageError:
        """
        Parsing C{argv} fails with a UsageError whose message contains C{mentions}.
        """
        with self.assertRaises(usage.UsageError) as cm:
            parse(*argv)
        self.assertIn(mentions, str(cm.exception))
        return cm.exception


class ModeOptionsTests(OptionsTestBase):
    """C{--session}, C{--system} and their defaults."""

    def test_defaults_non_root(self) -> None:
        """A normal user gets a session daemon with the documented limits."""
        o = parse()
        self.assertTrue(o["session"])
        self.assertFalse(o["system"])
        self.assertEqual(o["max-clients"], 5000)
        self.assertEqual(o["max-client-requests"], 64)
        self.assertEqual(o["tls-handshake-timeout"], 10.0)
        self.assertEqual((o["listen"], o["listen-tcp"], o["listen-tls"], o["define"]),
                         ([], [], [], []))
        self.assertFalse(o["no-autostart"])
        self.assertIsNone(o["root"])

    def test_defaults_root(self) -> None:
        """root gets the system daemon."""
        self.as_uid(0)
        o = parse()
        self.assertTrue(o["system"])
        self.assertFalse(o["session"])

    def test_explicit_mode_wins(self) -> None:
        """An explicit --session as root, or --system as a user, is kept."""
        self.as_uid(0)
        self.assertFalse(parse("--session")["system"])
        self.as_uid(1000)
        self.assertFalse(parse("--system")["session"])

    def test_session_and_system_refused(self) -> None:
        """--session and --system together are a usage error."""
        self.assertUsageError("--session", "--system", mentions="--session and --system")

    def test_repeatable_options_are_fresh_per_instance(self) -> None:
        """Lists of repeatable options are not shared between Options instances."""
        parse("--listen", "unix:/tmp/a.sock", "--define", __file__)
        o = parse()
        self.assertEqual((o["listen"], o["define"]), ([], []))


class ListenOptionsTests(OptionsTestBase):
    """C{--listen}, C{--listen-tcp}, C{--listen-tls}."""

    def test_listen_tcp_loopback(self) -> None:
        """A loopback TCP address is accepted as is, repeatable."""
        o = parse("--listen-tcp", "127.0.0.1:16509", "--listen-tcp", "localhost")
        self.assertEqual(o["listen-tcp"], [HostPort("127.0.0.1", 16509),
                                           HostPort("127.0.0.1", 16509)])

    def test_listen_tcp_ipv6(self) -> None:
        """[::1]:PORT is an IPv6 loopback listener."""
        o = parse("--listen-tcp", "[::1]:16509")
        self.assertEqual(o["listen-tcp"], [HostPort("::1", 16509)])

    def test_listen_tcp_wildcard_refused(self) -> None:
        """A non-loopback TCP address needs --allow-insecure-tcp; the error names it."""
        e = self.assertUsageError("--listen-tcp", "0.0.0.0:1", mentions="0.0.0.0:1")
        self.assertIn("--allow-insecure-tcp", str(e))
        self.assertUsageError("--listen-tcp", "[::]:1", mentions="[::]:1")

    def test_listen_tcp_wildcard_allowed(self) -> None:
        """With --allow-insecure-tcp (before or after), any address is accepted."""
        o = parse("--listen-tcp", "0.0.0.0:1", "--allow-insecure-tcp")
        self.assertEqual(o["listen-tcp"], [HostPort("0.0.0.0", 1)])
        o = parse("--allow-insecure-tcp", "--listen-tcp", "[::]:2")
        self.assertEqual(o["listen-tcp"], [HostPort("::", 2)])

    def test_listen_tls_any_address(self) -> None:
        """TLS listeners may use any address, default port 16514."""
        o = parse("--listen-tls", "0.0.0.0", "--listen-tls", "[::1]:1")
        self.assertEqual(o["listen-tls"], [HostPort("0.0.0.0", 16514), HostPort("::1", 1)])

    def test_bad_addresses_refused(self) -> None:
        """Bad hosts and ports are usage errors naming the option and the value."""
        for option in ("--listen-tcp", "--listen-tls"):
            for value, mentions in (("example.com:1", "example.com"),
                                    ("127.0.0.1:0", "'0'"),
                                    ("127.0.0.1:70000", "70000"),
                                    ("127.0.0.1:x", "'x'"),
                                    ("[::1:1", "[::1:1")):
                e = self.assertUsageError(option, value, mentions=mentions)
                self.assertIn(option, str(e))

    def test_non_ascii_port_is_usage_error(self) -> None:
        """A port of non-ASCII digits is a UsageError, not a traceback."""
        self.assertUsageError("--listen-tcp", "127.0.0.1:\u00b2", mentions="\u00b2")

    def test_listen_endpoint_strings_kept(self) -> None:
        """--listen keeps Twisted endpoint strings in order."""
        o = parse("--listen", "unix:/tmp/a.sock", "--listen", "systemd:domain=UNIX:index=0")
        self.assertEqual(o["listen"], ["unix:/tmp/a.sock", "systemd:domain=UNIX:index=0"])


class OtherOptionsTests(OptionsTestBase):
    """C{--max-clients}, C{--define} and friends."""

    def test_max_clients(self) -> None:
        """--max-clients and --max-client-requests take integers of at least 1."""
        o = parse("--max-clients", "3", "--max-client-requests", "1")
        self.assertEqual((o["max-clients"], o["max-client-requests"]), (3, 1))
        self.assertUsageError("--max-clients", "0", mentions="--max-clients")
        self.assertUsageError("--max-clients", "-5", mentions="--max-clients")
        self.assertUsageError("--max-client-requests", "0", mentions="--max-client-requests")
        self.assertUsageError("--max-clients", "many", mentions="many")

    def test_define_missing_file_refused(self) -> None:
        """--define of a file that does not exist names the file."""
        missing = os.path.abspath(self.mktemp())
        self.assertUsageError("--define", missing, mentions=missing)

    def test_define_directory_refused(self) -> None:
        """--define of a directory is refused too."""
        d = self.mktemp()
        os.mkdir(d)
        self.assertUsageError("--define", d, mentions=d)

    def test_define_existing_files(self) -> None:
        """--define is repeatable and keeps the paths in order."""
        a, b = self.mktemp(), self.mktemp()
        for path in (a, b):
            with open(path, "w") as f:
                f.write("<domain/>")
        self.assertEqual(parse("--define", a, "--define", b)["define"], [a, b])

    def test_flags(self) -> None:
        """The boolean options are plain flags."""
        o = parse("--no-autostart", "--tls-anonymous-readonly", "--tls-allowed-dn", "O=A,CN=*",
                  "--tls-allowed-dn", "CN=b", "--tls-handshake-timeout", "2.5")
        self.assertTrue(o["no-autostart"])
        self.assertTrue(o["tls-anonymous-readonly"])
        self.assertEqual(o["tls-allowed-dn"], ["O=A,CN=*", "CN=b"])
        self.assertEqual(o["tls-handshake-timeout"], 2.5)

    def test_unknown_option(self) -> None:
        """An unknown option is a usage error."""
        self.assertUsageError("--listen-udp", "1", mentions="listen-udp")


class PathsOptionTests(OptionsTestBase):
    """L{tap.Options.paths}: which layout the options select."""

    def test_root_system(self) -> None:
        """--root --system is the system layout below the (absolute) root."""
        o = parse("--root", "/tmp/qdx", "--system")
        self.assertEqual(o.paths(), DaemonPaths.system("/tmp/qdx"))

    def test_root_session_has_no_ro_socket(self) -> None:
        """--root --session is the rooted layout without the read-only socket."""
        p = parse("--root", "/tmp/qdx", "--session").paths()
        self.assertIsNone(p.socket_ro)
        self.assertEqual(p.socket, "/tmp/qdx/run/qemud/qemud-sock")
        self.assertEqual(p.config_dir, "/tmp/qdx/etc/qemud/qemu")

    def test_relative_root_made_absolute(self) -> None:
        """A relative --root is made absolute (the daemon may chdir)."""
        p = parse("--root", "rel", "--system").paths()
        self.assertEqual(p.config_dir, os.path.join(os.getcwd(), "rel", "etc", "qemud", "qemu"))

    def test_unrooted(self) -> None:
        """Without --root: the system layout for --system, the session one otherwise."""
        self.assertEqual(parse("--system").paths(), DaemonPaths.system())
        self.assertEqual(parse("--session").paths(), DaemonPaths.session())


class MakeServiceTests(OptionsTestBase):
    """The service tree, built and inspected, never started."""

    def setUp(self) -> None:
        super().setUp()
        self.root = os.path.abspath(self.mktemp())

    def build(self, *argv: str) -> list[Any]:
        service = tap.makeService(parse("--root", self.root, *argv))
        self.assertIsInstance(service, MultiService)
        self.assertFalse(service.running)
        return list(service)  # type: ignore[call-overload]

    def listeners(self, children: list[Any]) -> list[tuple[Any, RPCServerFactory]]:
        found = []
        for child in children:
            if isinstance(child, StreamServerEndpointService):
                found.append((child.endpoint, child.factory))
        return found

    def test_system_tree(self) -> None:
        """
        --system: the manager first, the signal service, then the 0600
        read-write and 0666 read-only UNIX listeners below the root.
        """
        children = self.build("--system")
        self.assertEqual(len(children), 4)
        self.assertIsInstance(children[0], DomainManagerService)
        self.assertIsInstance(children[1], tap._Signals)
        (rw_ep, rw), (ro_ep, ro) = self.listeners(children)
        for ep in (rw_ep, ro_ep):
            self.assertIsInstance(ep, UNIXServerEndpoint)
        self.assertEqual((rw_ep._address, rw_ep._mode),
                         (os.path.join(self.root, "run/qemud/qemud-sock"), 0o600))
        self.assertEqual((ro_ep._address, ro_ep._mode),
                         (os.path.join(self.root, "run/qemud/qemud-sock-ro"), 0o666))
        self.assertEqual((rw.readonly, ro.readonly), (False, True))
        self.assertEqual((rw.secure, ro.secure), (True, True))
        self.assertEqual(rw.default_uri, "qemu:///system")
        self.assertFalse(os.path.exists(self.root), "building must not create directories")

    def test_session_tree(self) -> None:
        """--session: one UNIX listener, no read-only socket, qemu:///session by default."""
        children = self.build("--session")
        self.assertEqual(len(children), 3)
        ((ep, factory),) = self.listeners(children)
        self.assertIsInstance(ep, UNIXServerEndpoint)
        self.assertFalse(factory.readonly)
        self.assertEqual(factory.default_uri, "qemu:///session")

    def test_all_listeners_share_one_tracker(self) -> None:
        """
        Every listener (UNIX, --listen, TCP v4 and v6) shares one tracker with
        the --max-clients limit; TCP is not secure; limits are passed on.
        """
        children = self.build("--system", "--listen", "unix:/tmp/qd-tap-test.sock",
                              "--listen-tcp", "127.0.0.1:16509", "--listen-tcp", "[::1]:16510",
                              "--max-clients", "7", "--max-client-requests", "3")
        listeners = self.listeners(children)
        self.assertEqual(len(children), 2 + 5)
        kinds = [type(ep) for ep, _ in listeners]
        self.assertEqual(kinds, [UNIXServerEndpoint, UNIXServerEndpoint, UNIXServerEndpoint,
                                 TCP4ServerEndpoint, TCP6ServerEndpoint])
        self.assertEqual(listeners[2][0]._address, "/tmp/qd-tap-test.sock")
        self.assertEqual((listeners[3][0]._port, listeners[3][0]._interface),
                         (16509, "127.0.0.1"))
        self.assertEqual((listeners[4][0]._port, listeners[4][0]._interface), (16510, "::1"))
        trackers = {id(f.tracker) for _, f in listeners}
        self.assertEqual(len(trackers), 1)
        tracker = listeners[0][1].tracker
        self.assertIsInstance(tracker, ClientTracker)
        self.assertEqual(tracker.max_clients, 7)
        self.assertIs(children[1]._tracker, tracker)
        self.assertEqual({f.max_client_requests for _, f in listeners}, {3})
        self.assertEqual([f.secure for _, f in listeners], [True, True, True, False, False])
        self.assertEqual([f.readonly for _, f in listeners], [False, True, False, False, False])

    def test_listeners_fail_loudly(self) -> None:
        """A listener that cannot bind stops the daemon (raised synchronously)."""
        children = self.build("--session")
        for child in children:
            if isinstance(child, StreamServerEndpointService):
                self.assertTrue(child._raiseSynchronously)

    def test_manager_options(self) -> None:
        """--define files and --no-autostart reach the domain manager."""
        xml = self.mktemp()
        with open(xml, "w") as f:
            f.write("<domain/>")
        manager = self.build("--session", "--define", xml)[0]
        self.assertEqual((manager._defines, manager._autostart), ([xml], True))
        manager = self.build("--session", "--no-autostart")[0]
        self.assertFalse(manager._autostart)

    def test_guest_timeouts(self) -> None:
        """
        --qmp-timeout and --kill-timeout become the time limits of every
        guest the driver starts or re-attaches; they must be positive.
        """
        manager = self.build("--session", "--qmp-timeout", "5", "--kill-timeout", "2")[0]
        driver = manager.driver
        for made in (driver._guest_factory, driver._guest_attach):
            timeouts = made.keywords["timeouts"]
            self.assertEqual((timeouts.command, timeouts.kill), (5.0, 2.0))
        for option in ("--qmp-timeout", "--kill-timeout"):
            with self.assertRaises(usage.UsageError) as ctx:
                parse(option, "0")
            self.assertIn(option, str(ctx.exception))

    def test_tls_broken_pki_dir_exits_1(self) -> None:
        """
        --listen-tls with a pki dir lacking the files exits with status 1 and
        one line on stderr naming the problem, not a traceback.
        """
        pki = os.path.abspath(self.mktemp())
        os.mkdir(pki)
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as cm:
            self.build("--session", "--listen-tls", "127.0.0.1:16514", "--pki-dir", pki)
        self.assertEqual(cm.exception.code, 1)
        text = stderr.getvalue()
        self.assertEqual(text.count("\n"), 1, text)
        self.assertTrue(text.startswith("qemud: "), text)
        self.assertIn(pki, text)

    def test_unwritable_layout_exits_1(self) -> None:
        """
        A layout that cannot be created (here: below a regular file; for a
        user, a home that does not exist) stops the daemon before it starts
        (before twistd daemonizes or writes a pidfile), with status 1 and
        one line on stderr naming the directory, not a traceback.
        """
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w"):
            pass
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as cm:
            tap.makeService(parse("--root", blocker))
        self.assertEqual(cm.exception.code, 1)
        text = stderr.getvalue()
        self.assertEqual(text.count("\n"), 1, text)
        self.assertTrue(text.startswith(f"qemud: cannot create directory {blocker}/"), text)

    def test_tls_listener(self) -> None:
        """With a good pki dir, each --listen-tls adds a TCP listener sharing the tracker."""
        from tests.integration.pki import shared_test_pki

        pki = shared_test_pki().server_dir
        children = self.build("--session", "--listen-tls", "127.0.0.1:16514",
                              "--listen-tls", "[::1]", "--pki-dir", pki)
        listeners = self.listeners(children)
        self.assertEqual([type(ep) for ep, _ in listeners],
                         [UNIXServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint])
        self.assertEqual(listeners[2][0]._port, 16514)


class SignalsTests(SynchronousTestCase):
    """L{tap._Signals}: SIGHUP reloads, SIGTERM stops, stopping drains calls."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.reloads: list[None] = []
        self.tracker = ClientTracker(clock=self.clock.seconds)
        self.handlers: dict[int, Any] = {}
        self.patch(tap.signal, "signal", self.fake_signal)
        self.service = tap._Signals(_FakeReactor(self.clock), lambda: self.reloads.append(None),
                                    self.tracker, 30.0)

    def fake_signal(self, signum: int, handler: Any) -> Any:
        old = self.handlers.get(signum, signal.SIG_DFL)
        self.handlers[signum] = handler
        return old

    def test_hup_reloads(self) -> None:
        """SIGHUP schedules a reload of the config directory in the reactor thread."""
        self.service.startService()
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        reactor = self.service._reactor
        self.assertEqual(self.reloads, [])
        reactor.run_pending()
        self.assertEqual(self.reloads, [None])

    def test_term_stops_reactor(self) -> None:
        """SIGTERM (installed once the reactor runs) stops the reactor."""
        self.service.startService()
        reactor = self.service._reactor
        self.assertNotIn(signal.SIGTERM, self.handlers)
        reactor.run_pending()
        self.handlers[signal.SIGTERM](signal.SIGTERM, None)
        reactor.run_pending()
        self.assertTrue(reactor.stopped)

    def test_stop_waits_for_calls(self) -> None:
        """Stopping waits for calls in flight, and restores SIGHUP's default."""
        self.service.startService()
        self.tracker.call_started()
        d = self.service.stopService()
        self.assertEqual(self.handlers[signal.SIGHUP], signal.SIG_DFL)
        self.assertNoResult(d)
        self.tracker.call_finished()
        self.successResultOf(d)

    def test_stop_drain_timeout(self) -> None:
        """A call that never finishes delays the stop by the drain timeout only."""
        self.service.startService()
        self.tracker.call_started()
        d = self.service.stopService()
        self.clock.advance(29.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.successResultOf(d)


    def test_stop_waits_for_clients_to_go_quiet(self) -> None:
        """
        Once idle, a stopping daemon still serves a client's next call (virsh
        looks the domain up right after a start's reply) and closes its
        clients gracefully only after a quiet period without calls.
        """
        client = _FakeClient()
        self.tracker.connected(client)  # type: ignore[arg-type]
        self.tracker.call_received()
        self.service.startService()
        d = self.service.stopService()
        self.clock.advance(tap.QUIET_PERIOD / 2)
        self.tracker.call_received()  # a call arrives within the quiet period
        self.clock.advance(tap.QUIET_PERIOD / 2)
        self.assertFalse(client.transport.disconnecting)
        self.clock.advance(tap.QUIET_PERIOD / 2)
        self.assertTrue(client.transport.disconnecting)
        self.assertNoResult(d)
        self.tracker.disconnected(client)  # type: ignore[arg-type]
        self.successResultOf(d)

    def test_quiet_period_counts_from_the_last_reply(self) -> None:
        """
        A call that ran long before its reply does not shorten the quiet
        period: the client's follow-up call (virsh closes its connection
        right after a start's reply) still has the whole period.
        """
        client = _FakeClient()
        self.tracker.connected(client)  # type: ignore[arg-type]
        self.tracker.call_received()
        self.tracker.call_started()
        self.service.startService()
        d = self.service.stopService()
        self.clock.advance(5.0)
        self.tracker.call_finished()
        self.clock.advance(0)
        self.assertFalse(client.transport.disconnecting)
        self.clock.advance(tap.QUIET_PERIOD)
        self.assertTrue(client.transport.disconnecting)
        self.tracker.disconnected(client)  # type: ignore[arg-type]
        self.successResultOf(d)

    def test_stop_closes_quiet_clients_at_once(self) -> None:
        """
        Clients whose latest call is older than the quiet period are closed
        as soon as the daemon stops: an idle connection costs no delay.
        """
        client = _FakeClient()
        self.tracker.connected(client)  # type: ignore[arg-type]
        self.tracker.call_received()
        self.clock.advance(tap.QUIET_PERIOD)
        self.service.startService()
        d = self.service.stopService()
        self.assertTrue(client.transport.disconnecting)
        self.tracker.disconnected(client)  # type: ignore[arg-type]
        self.successResultOf(d)


class _FakeClient:
    """A connected protocol: only its transport's loseConnection matters."""

    def __init__(self) -> None:
        self.transport = StringTransport()


class _FakeReactor:
    """callWhenRunning, callFromThread and stop, recorded; time from a Clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: list[tuple[Any, tuple[Any, ...]]] = []
        self.stopped = False

    def callWhenRunning(self, f: Any, *args: Any) -> None:
        self.pending.append((f, args))

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.pending.append((f, args))

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:
        return self.clock.callLater(delay, f, *args, **kw)

    def seconds(self) -> float:
        return self.clock.seconds()

    def stop(self) -> None:
        self.stopped = True

    def run_pending(self) -> None:
        pending, self.pending = self.pending, []
        for f, args in pending:
            f(*args)
