"""
Tests for L{qemudclient.transport}: endpoints per URI and the TLS
confirmation byte.
"""

from __future__ import annotations

from typing import Any

from qemudclient.errors import AuthFailed, QemudClientError
from qemudclient.transport import ConfirmedEndpoint, endpoint_for
from qemudclient.uri import parse_uri
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase


class Recorder(Protocol):
    """Records what it is given."""

    def __init__(self) -> None:
        self.data = b""
        self.made = False
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        self.lost = reason


class FakeEndpoint:
    """Connects the factory's protocol to a L{StringTransport} at once."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.protocol: Any = None

    def connect(self, factory: Any) -> Deferred[Any]:
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        return succeed(self.protocol)


class ConfirmedEndpointTests(SynchronousTestCase):
    """
    The RPC protocol starts only after the server's C{0x01}.
    """

    def setUp(self) -> None:
        self.inner = FakeEndpoint()
        self.rec = Recorder()
        self.d = ConfirmedEndpoint(self.inner).connect(Factory.forProtocol(lambda: self.rec))

    def test_confirmed(self) -> None:
        """
        After C{0x01} the wrapped protocol is connected, the Deferred fires
        with it, and bytes after the confirmation reach it.
        """
        self.assertNoResult(self.d)
        self.assertFalse(self.rec.made)
        self.inner.protocol.dataReceived(b"\x01\x00\x00")
        self.assertIs(self.successResultOf(self.d), self.rec)
        self.assertTrue(self.rec.made)
        self.assertEqual(self.rec.data, b"\x00\x00")
        self.inner.protocol.dataReceived(b"more")
        self.assertEqual(self.rec.data, b"\x00\x00more")
        self.inner.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.rec.lost)

    def test_refused(self) -> None:
        """
        Any other byte fails the connect with libvirt's message and closes.
        """
        self.inner.protocol.dataReceived(b"\x00")
        err = self.failureResultOf(self.d, AuthFailed).value
        self.assertEqual(err.message, "server verification (of our certificate or IP address) failed")
        self.assertTrue(self.inner.transport.disconnecting)
        self.assertFalse(self.rec.made)

    def test_eof(self) -> None:
        """
        EOF before the byte fails the connect: unable to read the confirmation.
        """
        self.inner.protocol.connectionLost(Failure(ConnectionDone()))
        err = self.failureResultOf(self.d, AuthFailed).value
        self.assertTrue(err.message.startswith("Unable to read TLS confirmation"))
        self.assertIsNone(self.rec.lost)


class EndpointForTests(SynchronousTestCase):
    """
    L{endpoint_for} picks the transport from the URI.
    """

    def test_unix_and_tcp(self) -> None:
        """
        UNIX URIs get a UNIX endpoint, TCP URIs a hostname endpoint.
        """
        reactor = MemoryReactorClock()
        self.assertIsInstance(
            endpoint_for(parse_uri("qemu+unix:///system?socket=/tmp/s"), reactor),
            UNIXClientEndpoint)
        self.assertIsInstance(
            endpoint_for(parse_uri("qemud+tcp://127.0.0.1/"), reactor), HostnameEndpoint)

    def test_tls_missing_files(self) -> None:
        """
        TLS with a PKI directory lacking the files fails with a client error
        naming the file, not a daemon exception.
        """
        reactor = MemoryReactorClock()
        pki = self.mktemp()
        with self.assertRaises(QemudClientError) as cm:
            endpoint_for(parse_uri(f"qemu+tls://localhost/system?pkipath={pki}"), reactor)
        self.assertIn(pki, cm.exception.message)
