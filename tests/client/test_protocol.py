"""
Tests for L{qemudclient.protocol}: pipelining, serial matching, keepalive,
connection loss and typed errors, against an in-memory scripted server.
"""

from __future__ import annotations

from qemudclient import _wire
from qemudclient.errors import (
    ConnectionLost,
    KeepaliveTimeout,
    NoDomainError,
    OperationInvalid,
    ProtocolError,
    QemudClientError,
)
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from qemud.rpc import framing, remote
from tests.client.fakeserver import Harness, open_harness


class PipeliningTests(SynchronousTestCase):
    """
    Many calls in flight on one connection, replies matched by serial.
    """

    def test_200_concurrent_calls(self) -> None:
        """
        200 calls are all written before any reply arrives, with distinct
        consecutive serials, and each Deferred gets its own reply.
        """
        h, conn = open_harness(self)
        h.server.hold = True
        first = len(h.server.calls)
        names = [("rt1" if i % 2 == 0 else "rt2") for i in range(200)]
        ds = [conn.lookup_by_name(n) for n in names]
        h.flush()
        self.assertEqual(len(h.server.held), 200)
        self.assertEqual(conn.protocol.pending_count, 200)
        serials = h.server.serials[first:]
        self.assertEqual(serials, list(range(serials[0], serials[0] + 200)))
        for d in ds:
            self.assertNoResult(d)
        h.server.release()
        h.flush()
        self.assertEqual([self.successResultOf(d).name for d in ds], names)
        self.assertEqual(conn.protocol.pending_count, 0)

    def test_out_of_order_replies(self) -> None:
        """
        Replies sent in reverse order still reach the right callers.
        """
        h, conn = open_harness(self)
        h.server.hold = True
        d_host = conn.get_hostname()
        d_ver = conn.get_version()
        d_type = conn.get_type()
        h.flush()
        h.server.release([2, 1, 0])
        h.flush()
        self.assertEqual(
            (self.successResultOf(d_host), self.successResultOf(d_ver),
             self.successResultOf(d_type)),
            ("vm", 7002022, "QEMU"),
        )

    def test_unknown_serial_drops_connection(self) -> None:
        """
        A reply whose serial matches no call is a protocol error: the client
        drops the connection and fails what is pending with L{ConnectionLost}
        whose reason is the L{ProtocolError}.
        """
        h, conn = open_harness(self)
        h.server.hold = True
        pending = conn.get_hostname()
        h.flush()
        bogus = framing.Header(remote.REMOTE_PROGRAM, 1, 59, framing.REPLY, 9999, framing.OK)
        h.server.send(bogus, framing.OK, b"")
        h.flush()
        err = self.failureResultOf(pending, ConnectionLost).value
        self.assertIsInstance(err.reason.value, ProtocolError)
        self.assertIn("9999", err.reason.value.message)
        self.assertTrue(h.server.transport.disconnected)
        self.flushLoggedErrors()

    def test_malformed_length_drops_connection(self) -> None:
        """
        A length word below 28 is a protocol error that drops the connection.
        """
        h, conn = open_harness(self)
        pending = conn.protocol.call(59)
        h.server.transport.write(b"\x00\x00\x00\x05")
        h.flush()
        err = self.failureResultOf(pending, ConnectionLost).value
        self.assertIsInstance(err.reason.value, ProtocolError)
        self.flushLoggedErrors()


class ConnectionLossTests(SynchronousTestCase):
    """
    Losing the connection never leaves a Deferred hanging.
    """

    def test_pending_calls_fail_with_cause(self) -> None:
        """
        Every pending call fails with L{ConnectionLost} carrying the
        transport's reason; L{when_closed} fires with it; later calls fail at
        once.
        """
        h, conn = open_harness(self)
        h.server.hold = True
        ds = [conn.get_hostname() for _ in range(5)]
        closed = conn.when_closed()
        h.flush()
        h.server.transport.loseConnection()
        h.flush()
        for d in ds:
            err = self.failureResultOf(d, ConnectionLost).value
            self.assertIsInstance(err.reason, Failure)
            self.assertTrue(err.reason.check(ConnectionDone))
            self.assertIsInstance(err, QemudClientError)
        self.assertIsInstance(self.successResultOf(closed), ConnectionDone)
        self.failureResultOf(conn.get_hostname(), ConnectionLost)
        self.assertIsInstance(self.successResultOf(conn.when_closed()), ConnectionDone)


class KeepaliveTests(SynchronousTestCase):
    """
    Keepalive: PING after silence, give up after unanswered PINGs, and
    always answer the daemon's PINGs.
    """

    def test_answers_ping(self) -> None:
        """
        A PING from the daemon is answered with a PONG.
        """
        h, conn = open_harness(self)
        h.server.send_keepalive(remote.KEEPALIVE_PING)
        h.flush()
        self.assertEqual(h.server.pongs, 1)

    def test_ping_after_silence(self) -> None:
        """
        After C{interval} seconds without a packet a PING goes out; a PONG
        keeps the connection.
        """
        h, conn = open_harness(self)
        self.assertTrue(conn.keepalive)
        h.clock.advance(4.9)
        h.flush()
        self.assertEqual(h.server.pings, 0)
        h.clock.advance(0.1)
        h.flush()
        self.assertEqual(h.server.pings, 1)
        for _ in range(20):
            h.clock.advance(5)
            h.flush()
        d = conn.get_hostname()
        h.flush()
        self.assertEqual(self.successResultOf(d), "vm")

    def test_traffic_defers_ping(self) -> None:
        """
        Packets from the daemon count as signs of life: no PING while
        replies keep coming.
        """
        h, conn = open_harness(self)
        for _ in range(10):
            h.clock.advance(3)
            conn.get_hostname()
            h.flush()
        self.assertEqual(h.server.pings, 0)

    def test_timeout_drops_connection(self) -> None:
        """
        With PINGs unanswered the connection drops after C{interval * (count
        + 1)} seconds and pending calls fail with L{ConnectionLost} whose
        reason is L{KeepaliveTimeout}.
        """
        h, conn = open_harness(self, keepalive_interval=5, keepalive_count=5)
        h.server.answer_pings = False
        h.server.hold = True
        pending = conn.get_hostname()
        h.flush()
        for _ in range(5):
            h.clock.advance(5)
            h.flush()
        self.assertEqual(h.server.pings, 5)
        self.assertNoResult(pending)
        h.clock.advance(5)
        h.flush()
        err = self.failureResultOf(pending, ConnectionLost).value
        self.assertIsInstance(err.reason.value, KeepaliveTimeout)
        self.flushLoggedErrors()

    def test_disabled_when_server_refuses(self) -> None:
        """
        When the daemon answers 0 to feature 10, the client never PINGs.
        """
        h = Harness()
        h.server.features[10] = 0
        conn = self.successResultOf(h.open())
        self.assertFalse(conn.keepalive)
        h.clock.advance(100)
        h.flush()
        self.assertEqual(h.server.pings, 0)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_disabled_by_caller(self) -> None:
        """
        C{keepalive_interval=0} skips the feature 10 probe entirely.
        """
        h = Harness()
        self.successResultOf(h.open(keepalive_interval=0))
        self.assertEqual(h.server.procs(), [66, 1, 60])
        self.assertEqual(h.server.calls[2][1].feature, 14)
        self.assertEqual(h.clock.getDelayedCalls(), [])


class TypedErrorTests(SynchronousTestCase):
    """
    Error replies raise the class for their libvirt code, message intact.
    """

    def test_no_domain(self) -> None:
        """
        NO_DOMAIN (42) becomes L{NoDomainError} with the daemon's full
        message, code, domain and the other C{remote_error} fields.
        """
        h, conn = open_harness(self)
        d = conn.lookup_by_name("nosuchdomain")
        h.flush()
        err = self.failureResultOf(d, NoDomainError).value
        self.assertEqual(err.code, 42)
        self.assertEqual(err.domain, 10)
        self.assertEqual(
            err.message, "Domain not found: no domain with matching name 'nosuchdomain'"
        )
        self.assertEqual(err.str1, "Domain not found: %s")
        self.assertEqual(err.str2, "no domain with matching name 'nosuchdomain'")
        self.assertEqual((err.level, err.int1, err.int2), (2, -1, -1))
        self.assertTrue(err.remote)

    def test_operation_invalid(self) -> None:
        """
        OPERATION_INVALID (55) becomes L{OperationInvalid}.
        """
        h, conn = open_harness(self)
        dom = self.successResultOf(_flush(h, conn.lookup_by_name("rt2")))
        d = dom.destroy()
        h.flush()
        err = self.failureResultOf(d, OperationInvalid).value
        self.assertEqual(err.message, "Requested operation is not valid: domain is not running")

    def test_undecodable_reply(self) -> None:
        """
        A reply that does not decode as the procedure's return type fails
        the call with L{ProtocolError}.
        """
        h, conn = open_harness(self)
        h.server.handlers[remote.PROC.CONNECT_GET_HOSTNAME] = lambda a: ("vm",)
        h.server.hold = True
        d = conn.call(_wire.CONNECT_GET_HOSTNAME)
        h.flush()
        header, status, _ = h.server.held.pop()
        h.server.send(header, status, b"\x00\x00")
        h.flush()
        self.failureResultOf(d, ProtocolError)


def _flush(h: Harness, d: object) -> object:
    h.flush()
    return d
