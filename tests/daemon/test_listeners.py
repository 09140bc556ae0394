"""
Tests for L{qemud.daemon.listeners} (C{HOST:PORT} parsing, endpoints) and
for the daemon-wide L{ClientTracker} that every listener's factory shares.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon.listeners import (
    DEFAULT_TCP_PORT,
    DEFAULT_TLS_PORT,
    AddressError,
    HostPort,
    parse_host_port,
    tcp_endpoint,
    unix_endpoint,
)
from qemud.daemon.protocol import ClientTracker, RPCServerFactory, RPCServerProtocol
from qemud.rpc.framing import OK, MessageDecoder
from qemud.rpc.remote import PROC
from tests.daemon.test_dispatch import XML, FakeDriver
from tests.daemon.test_protocol import call
from tests.rpc.test_remote import layout_for

#: (text, expected host, expected port) with default port 16509.
GOOD = [
    ("127.0.0.1:1234", "127.0.0.1", 1234),
    ("127.0.0.1", "127.0.0.1", DEFAULT_TCP_PORT),
    ("0.0.0.0:16509", "0.0.0.0", 16509),
    ("10.1.2.3:65535", "10.1.2.3", 65535),
    ("192.168.0.1:1", "192.168.0.1", 1),
    ("localhost", "127.0.0.1", DEFAULT_TCP_PORT),
    ("localhost:5000", "127.0.0.1", 5000),
    ("[::1]:16509", "::1", 16509),
    ("[::1]", "::1", DEFAULT_TCP_PORT),
    ("[::]:7", "::", 7),
    ("[2001:db8::1]:443", "2001:db8::1", 443),
    ("::1", "::1", DEFAULT_TCP_PORT),
]

#: (text, a fragment the error message must contain).
BAD = [
    ("example.com:16509", "'example.com'"),
    ("example.com", "'example.com'"),
    ("", "''"),
    (":16509", "''"),
    ("127.0.0.1:0", "'0'"),
    ("127.0.0.1:65536", "'65536'"),
    ("127.0.0.1:-1", "'-1'"),
    ("127.0.0.1:http", "'http'"),
    ("127.0.0.1:", "127.0.0.1:"),
    ("127.0.0.1:1:2", "127.0.0.1:1:2"),
    ("256.0.0.1:1", "'256.0.0.1'"),
    ("[::1", "missing ']'"),
    ("[::1]16509", "'16509'"),
    ("[::1]:", "[::1]:"),
    ("[::1]:99999", "'99999'"),
    ("[example.com]:1", "'example.com'"),
    ("[127.0.0.1:1]", "'127.0.0.1:1'"),
    ("127.0.0.1:\u0663", "\u0663"),
    ("127.0.0.1: 80", "' 80'"),
    ("127.0.0.1:\u00b2", "\u00b2"),
]


class ParseHostPortTests(SynchronousTestCase):
    """L{parse_host_port}: the values C{--listen-tcp} and C{--listen-tls} accept."""

    def test_good(self) -> None:
        """IPv4, bracketed IPv6, localhost, with and without a port."""
        for text, host, port in GOOD:
            self.assertEqual(parse_host_port(text, DEFAULT_TCP_PORT), HostPort(host, port), text)

    def test_default_port_is_the_callers(self) -> None:
        """Without a port, the caller's default (16509 TCP, 16514 TLS) is used."""
        self.assertEqual(parse_host_port("127.0.0.1", DEFAULT_TLS_PORT).port, 16514)
        self.assertEqual(parse_host_port("[::1]", DEFAULT_TLS_PORT).port, 16514)

    def test_bad(self) -> None:
        """Host names, bad ports and broken brackets raise AddressError naming the value."""
        wrong = []
        for text, fragment in BAD:
            try:
                result = parse_host_port(text, DEFAULT_TCP_PORT)
            except AddressError as e:
                if fragment not in str(e):
                    wrong.append(f"{text!r}: message {str(e)!r} lacks {fragment!r}")
            except Exception as e:  # noqa: BLE001 - reported below
                wrong.append(f"{text!r}: {type(e).__name__}: {e}")
            else:
                wrong.append(f"{text!r}: accepted as {result}")
        self.assertEqual(wrong, [])

    def test_non_ascii_digits(self) -> None:
        """
        Ports are ASCII digits: a superscript two is an AddressError (not a
        bare ValueError from int(), which escapes the option parser).
        """
        self.assertRaises(AddressError, parse_host_port, "127.0.0.1:\u00b2", DEFAULT_TCP_PORT)

    def test_str_round_trips(self) -> None:
        """C{str(HostPort)} is a valid option value that parses back to the same address."""
        for text, _, _ in GOOD:
            address = parse_host_port(text, DEFAULT_TCP_PORT)
            self.assertEqual(parse_host_port(str(address), 1), address, text)
        self.assertEqual(str(HostPort("::1", 5)), "[::1]:5")
        self.assertEqual(str(HostPort("127.0.0.1", 5)), "127.0.0.1:5")


class HostPortTests(SynchronousTestCase):
    """L{HostPort.is_loopback} and L{HostPort.is_ipv6}."""

    def test_loopback(self) -> None:
        """127.0.0.0/8, ::1 and localhost are loopback."""
        for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
            self.assertTrue(HostPort(host, 1).is_loopback, host)

    def test_not_loopback(self) -> None:
        """Wildcard and routable addresses are not loopback."""
        for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.1", "2001:db8::1", "128.0.0.1"):
            self.assertFalse(HostPort(host, 1).is_loopback, host)

    def test_ipv6(self) -> None:
        """Only IPv6 literals are IPv6."""
        self.assertTrue(HostPort("::1", 1).is_ipv6)
        self.assertTrue(HostPort("2001:db8::1", 1).is_ipv6)
        self.assertFalse(HostPort("127.0.0.1", 1).is_ipv6)


class EndpointTests(SynchronousTestCase):
    """The endpoints built for TCP (v4, v6) and UNIX listeners."""

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.factory = Factory()

    def test_tcp4(self) -> None:
        """An IPv4 address gives a TCP4 endpoint bound to that interface and port."""
        ep = tcp_endpoint(self.reactor, HostPort("127.0.0.1", 16509))
        self.assertIsInstance(ep, TCP4ServerEndpoint)
        ep.listen(self.factory)
        ((port, factory, _, interface),) = self.reactor.tcpServers
        self.assertEqual((port, factory, interface), (16509, self.factory, "127.0.0.1"))

    def test_tcp6(self) -> None:
        """An IPv6 address gives a TCP6 endpoint bound to that interface and port."""
        ep = tcp_endpoint(self.reactor, HostPort("::1", 16510))
        self.assertIsInstance(ep, TCP6ServerEndpoint)
        ep.listen(self.factory)
        ((port, _, _, interface),) = self.reactor.tcpServers
        self.assertEqual((port, interface), (16510, "::1"))

    def test_unix(self) -> None:
        """A UNIX endpoint has the given mode and a lock file (wantPID)."""
        ep = unix_endpoint(self.reactor, "/tmp/x/sock", 0o666)
        self.assertIsInstance(ep, UNIXServerEndpoint)
        ep.listen(self.factory)
        ((address, _, _, mode, want_pid),) = self.reactor.unixServers
        self.assertEqual((address, mode, bool(want_pid)), ("/tmp/x/sock", 0o666, True))


class ClientTrackerTests(SynchronousTestCase):
    """L{ClientTracker}: calls in flight and the daemon-wide connection limit."""

    def setUp(self) -> None:
        self.driver = FakeDriver()
        self.clock = Clock()
        self.tracker = ClientTracker(max_clients=2)

    def factory(self, readonly: bool = False) -> RPCServerFactory:
        return RPCServerFactory(self.driver, self.clock, readonly=readonly, secure=True,
                                default_uri="qemu:///system", tracker=self.tracker)

    def connect(self, factory: RPCServerFactory) -> tuple[RPCServerProtocol, StringTransport]:
        addr = IPv4Address("TCP", "127.0.0.1", 40000)
        proto = factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        return proto, transport

    def test_when_idle_without_calls(self) -> None:
        """With nothing in flight, when_idle has already fired."""
        self.successResultOf(self.tracker.when_idle())

    def test_when_idle_fires_after_last_call(self) -> None:
        """when_idle waits for every call in flight, and fires once the last finishes."""
        self.tracker.call_started()
        self.tracker.call_started()
        first = self.tracker.when_idle()
        second = self.tracker.when_idle()
        self.assertIsNot(first, second)
        self.tracker.call_finished()
        self.assertNoResult(first)
        self.tracker.call_finished()
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))
        self.tracker.call_started()
        later = self.tracker.when_idle()
        self.assertNoResult(later)
        self.tracker.call_finished()
        self.successResultOf(later)

    def test_when_idle_through_protocols(self) -> None:
        """Calls held by the driver on two listeners keep the daemon busy until both reply."""
        protos = [self.connect(self.factory()), self.connect(self.factory())]
        for proto, transport in protos:
            proto.dataReceived(call(PROC.AUTH_LIST, 0) + call(PROC.CONNECT_OPEN, 1, None, 0))
            transport.clear()
        (p1, t1), (p2, t2) = protos
        p1.dataReceived(call(PROC.DOMAIN_DEFINE_XML, 2, XML))
        ((header, payload),) = MessageDecoder().feed(t1.value())
        dom = layout_for(header).unpack(payload).dom
        t1.clear()
        self.driver.hold = True
        p1.dataReceived(call(PROC.DOMAIN_CREATE, 10, dom))
        p2.dataReceived(call(PROC.DOMAIN_SUSPEND, 11, dom))
        self.assertEqual(self.tracker.inflight, 2)
        idle = self.tracker.when_idle()
        create, suspend = self.driver.held
        create.callback(None)
        self.assertNoResult(idle)
        suspend.callback(None)
        self.successResultOf(idle)
        self.assertEqual([(h.serial, h.status) for h, _ in MessageDecoder().feed(t1.value())],
                         [(10, OK)])
        self.assertEqual([(h.serial, h.status) for h, _ in MessageDecoder().feed(t2.value())],
                         [(11, OK)])

    def test_dropped_client_call_still_finishes(self) -> None:
        """A call whose client left still counts until it finishes, then when_idle fires."""
        proto, transport = self.connect(self.factory())
        proto.dataReceived(call(PROC.AUTH_LIST, 0) + call(PROC.CONNECT_OPEN, 1, None, 0)
                           + call(PROC.DOMAIN_DEFINE_XML, 2, XML))
        header, payload = MessageDecoder().feed(transport.value())[-1]
        dom = layout_for(header).unpack(payload).dom
        self.driver.hold = True
        proto.dataReceived(call(PROC.DOMAIN_CREATE, 10, dom))
        idle = self.tracker.when_idle()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(idle)
        self.driver.held[0].callback(None)
        self.successResultOf(idle)
        self.assertEqual(self.tracker.inflight, 0)

    def test_limit_shared_by_factories(self) -> None:
        """A connection on listener A counts against listener B: the limit is daemon-wide."""
        a, b = self.factory(), self.factory(readonly=True)
        _, t1 = self.connect(a)
        _, t2 = self.connect(b)
        self.assertFalse(t1.disconnecting or t2.disconnecting)
        self.assertEqual(self.tracker.clients, 2)
        _, t3 = self.connect(a)
        _, t4 = self.connect(b)
        self.assertTrue(t3.disconnecting)
        self.assertTrue(t4.disconnecting)
        self.assertEqual(self.tracker.clients, 2)

    def test_refused_connection_frees_nothing(self) -> None:
        """Losing a refused connection does not free a slot; losing a counted one does."""
        a, b = self.factory(), self.factory()
        p1, _ = self.connect(a)
        self.connect(b)
        p3, _ = self.connect(b)
        p3.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.tracker.clients, 2)
        p1.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.tracker.clients, 1)
        _, t4 = self.connect(b)
        self.assertFalse(t4.disconnecting)
        self.assertEqual(self.tracker.clients, 2)
