"""
Tests for L{qemud.qemu.qmp}: a real L{QMPProtocol} against the scripted
L{FakeQMPServer}, in memory.
"""

from __future__ import annotations

import json

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from qemud.errors import (
    InternalError,
    OperationFailedError,
    OperationTimeoutError,
    QemudError,
)
from qemud.qemu.qmp import (
    MAX_MESSAGE_SIZE,
    BadReplyError,
    DeserializationError,
    ExecInterruptedError,
    ExecuteError,
    GreetingError,
    MessageTooLargeError,
    NegotiationError,
    ProtocolError,
    QMPEvent,
    QMPProtocol,
    QMPTimeoutError,
    Runstate,
    ServerParseError,
    StateError,
)
from qemud.testing import DEFAULT_GREETING, FakeQMPServer, connect_fake_qmp


class _Harness:
    def __init__(self, server: FakeQMPServer | None = None) -> None:
        self.clock = Clock()
        self.client = QMPProtocol(self.clock)
        self.server = server if server is not None else FakeQMPServer()
        self.ready = self.client.when_ready()
        connect_fake_qmp(self.client, self.server, self.clock)


class SessionTests(SynchronousTestCase):
    """Greeting, negotiation and runstate."""

    def test_greeting_then_capabilities_then_running(self) -> None:
        """
        The client answers the greeting with C{qmp_capabilities}, then is
        RUNNING and C{when_ready} fires with the greeting.
        """
        h = _Harness()
        self.assertEqual(self.successResultOf(h.ready), DEFAULT_GREETING)
        self.assertEqual(h.server.commands, ["qmp_capabilities"])
        self.assertEqual(h.client.runstate, Runstate.RUNNING)
        self.assertEqual(self.successResultOf(h.client.when_ready()), DEFAULT_GREETING)

    def test_when_ready_fresh_deferred_per_caller(self) -> None:
        """
        Every C{when_ready} call returns its own Deferred; all fire.
        """
        client = QMPProtocol(Clock())
        first, second = client.when_ready(), client.when_ready()
        self.assertIsNot(first, second)
        connect_fake_qmp(client, FakeQMPServer())
        self.successResultOf(first)
        self.successResultOf(second)

    def test_execute_before_ready_fails_at_once(self) -> None:
        """
        C{execute} before the session is RUNNING fails at once with
        L{StateError}, naming the runstate.
        """
        h = _Harness(FakeQMPServer(greeting=None))
        f = self.failureResultOf(h.client.execute("query-status"), StateError)
        self.assertIn("connecting", str(f.value))
        self.assertIsInstance(f.value, InternalError)

    def test_no_greeting_then_eof(self) -> None:
        """
        If the server closes without a greeting, C{when_ready} fails with
        L{GreetingError}.
        """
        h = _Harness(FakeQMPServer(greeting=None))
        self.assertNoResult(h.ready)
        h.server.disconnect()
        f = self.failureResultOf(h.ready, GreetingError)
        self.assertIn("before the greeting", str(f.value))
        self.assertEqual(h.client.runstate, Runstate.CLOSED)
        self.failureResultOf(h.client.when_ready(), GreetingError)

    def test_bad_greeting(self) -> None:
        """
        A first message that is not a QMP greeting is fatal: L{GreetingError},
        and the connection is dropped.
        """
        h = _Harness(FakeQMPServer(greeting={"hello": 1}))
        self.failureResultOf(h.ready, GreetingError)
        self.assertEqual(h.client.runstate, Runstate.CLOSED)
        self.assertEqual(h.server.received, [])

    def test_greeting_without_capabilities(self) -> None:
        """
        A greeting missing the C{capabilities} list is refused.
        """
        h = _Harness(FakeQMPServer(greeting={"QMP": {"version": {}}}))
        f = self.failureResultOf(h.ready, GreetingError)
        self.assertIn("capabilities", str(f.value))

    def test_capabilities_refused(self) -> None:
        """
        An error reply to C{qmp_capabilities} fails C{when_ready} with
        L{NegotiationError} and drops the connection.
        """
        server = FakeQMPServer(auto_capabilities=False)
        server.expect("qmp_capabilities", error=("CommandNotFound", "nope"))
        h = _Harness(server)
        f = self.failureResultOf(h.ready, NegotiationError)
        self.assertIn("nope", str(f.value))
        self.assertEqual(h.client.runstate, Runstate.CLOSED)

    def test_eof_during_negotiation(self) -> None:
        """
        EOF after the greeting but before the capabilities reply fails
        C{when_ready} with L{NegotiationError}.
        """
        server = FakeQMPServer(auto_capabilities=False)
        server.expect("qmp_capabilities", close=True)
        h = _Harness(server)
        self.failureResultOf(h.ready, NegotiationError)


class ExecuteTests(SynchronousTestCase):
    """Commands, replies and their routing by id."""

    def test_execute_returns_value_and_sends_arguments(self) -> None:
        """
        The reply's C{return} member is the result; arguments are sent as given.
        """
        h = _Harness()
        h.server.expect("human-monitor-command", {"command-line": "info"}, ret="text")
        d = h.client.execute("human-monitor-command", {"command-line": "info"})
        h.server.flush()
        self.assertEqual(self.successResultOf(d), "text")
        h.server.assert_done()

    def test_ids_are_unique(self) -> None:
        """
        Each command carries a distinct generated id.
        """
        h = _Harness()
        for _ in range(3):
            h.server.expect("query-status", ret={"status": "running"})
            h.client.execute("query-status")
        h.server.flush()
        ids = [m["id"] for m in h.server.received]
        self.assertEqual(len(set(ids)), 4)
        self.assertTrue(all(i.startswith("__qmp#") for i in ids))

    def test_out_of_order_replies(self) -> None:
        """
        Replies are routed by id: the second command's reply may come first.
        """
        h = _Harness()
        first = h.server.expect("query-status", hold=True)
        second = h.server.expect("query-name", hold=True)
        d1 = h.client.execute("query-status")
        d2 = h.client.execute("query-name")
        h.server.flush()
        self.assertEqual(sorted(h.client.pending_commands), ["query-name", "query-status"])
        h.server.reply(second, ret={"name": "vm"})
        self.assertEqual(self.successResultOf(d2), {"name": "vm"})
        self.assertNoResult(d1)
        h.server.reply(first, ret={"status": "paused"})
        self.assertEqual(self.successResultOf(d1), {"status": "paused"})

    def test_error_reply(self) -> None:
        """
        An error reply fails the command with L{ExecuteError} carrying QEMU's
        class and description; it is an L{OperationFailedError} whose text
        quotes both the command and the description.
        """
        h = _Harness()
        h.server.expect("cont", error=("GenericError", "Resetting the Virtual Machine is required"))
        d = h.client.execute("cont")
        h.server.flush()
        f = self.failureResultOf(d, ExecuteError)
        self.assertEqual(f.value.error_class, "GenericError")
        self.assertEqual(f.value.command, "cont")
        self.assertIsInstance(f.value, OperationFailedError)
        self.assertEqual(
            str(f.value),
            "operation failed: unable to execute QEMU command 'cont': "
            "Resetting the Virtual Machine is required",
        )
        self.assertEqual(h.client.runstate, Runstate.RUNNING)

    def test_unknown_id_logged_and_dropped(self) -> None:
        """
        A reply with an id nobody waits for is logged and dropped; the session
        goes on and the real reply still arrives.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = _Harness()
        exp = h.server.expect("query-status", hold=True)
        d = h.client.execute("query-status")
        h.server.flush()
        h.server.send_raw(b'{"return": {}, "id": "bogus"}\r\n')
        self.assertNoResult(d)
        self.assertTrue(any(e.get("id") == "bogus" for e in logged))
        h.server.reply(exp, ret={"status": "running"})
        self.assertEqual(self.successResultOf(d), {"status": "running"})

    def test_reply_without_return_or_error(self) -> None:
        """
        A reply with a known id but neither C{return} nor C{error} fails that
        command with L{BadReplyError}.
        """
        h = _Harness()
        h.server.expect("query-status", hold=True)
        d = h.client.execute("query-status")
        h.server.flush()
        msg_id = h.server.received[-1]["id"]
        h.server.send_raw(json.dumps({"id": msg_id, "whatever": 1}).encode() + b"\n")
        self.failureResultOf(d, BadReplyError)

    def test_error_without_id_is_fatal(self) -> None:
        """
        An error with no id while none is expected means the streams lost
        sync: every pending command fails with L{ServerParseError} and the
        connection is dropped.
        """
        h = _Harness()
        h.server.expect("query-status", hold=True)
        d = h.client.execute("query-status")
        closed = h.client.when_closed()
        h.server.flush()
        h.server.send_raw(b'{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n')
        self.failureResultOf(d, ServerParseError)
        self.assertEqual(h.client.runstate, Runstate.CLOSED)
        self.assertIsInstance(self.successResultOf(closed), ServerParseError)
        self.failureResultOf(h.client.execute("query-status"), StateError)

    def test_eof_mid_command(self) -> None:
        """
        EOF while a command waits fails it with L{ExecInterruptedError}
        carrying the reason; C{when_closed} fires with that reason.
        """
        h = _Harness()
        h.server.expect("system_powerdown", hold=True)
        d = h.client.execute("system_powerdown")
        closed = h.client.when_closed()
        h.server.flush()
        h.server.disconnect()
        f = self.failureResultOf(d, ExecInterruptedError)
        self.assertEqual(f.value.command, "system_powerdown")
        self.assertIsInstance(f.value.reason, Failure)
        self.assertIn("system_powerdown", str(f.value))
        self.assertIsInstance(f.value, QemudError)
        self.assertIsInstance(self.successResultOf(closed), ConnectionDone)

    def test_connection_lost_reason_kept(self) -> None:
        """
        An unclean disconnect is reported with its own reason.
        """
        h = _Harness()
        h.server.expect("stop", hold=True)
        d = h.client.execute("stop")
        h.server.flush()
        h.server.disconnect(ConnectionLost("reset by peer"))
        f = self.failureResultOf(d, ExecInterruptedError)
        self.assertIn("reset by peer", str(f.value))

    def test_close_by_us(self) -> None:
        """
        L{QMPProtocol.close} fails pending commands with
        L{ExecInterruptedError}; C{when_closed} fires with C{None}; later
        calls fail with L{StateError}.
        """
        h = _Harness()
        h.server.expect("query-status", hold=True)
        d = h.client.execute("query-status")
        closed = h.client.close()
        h.server.flush()
        self.failureResultOf(d, ExecInterruptedError)
        self.assertIsNone(self.successResultOf(closed))
        self.assertIsNone(self.successResultOf(h.client.when_closed()))
        self.failureResultOf(h.client.execute("cont"), StateError)
        self.failureResultOf(h.client.when_ready(), StateError)

    def test_timeout(self) -> None:
        """
        A command with a timeout fails with L{QMPTimeoutError} (an
        L{OperationTimeoutError}) when the clock passes it; the late reply is
        dropped without disturbing the session.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = _Harness()
        exp = h.server.expect("query-status", hold=True)
        d = h.client.execute("query-status", timeout=5)
        h.server.flush()
        h.clock.advance(4.9)
        self.assertNoResult(d)
        h.clock.advance(0.2)
        f = self.failureResultOf(d, QMPTimeoutError)
        self.assertIsInstance(f.value, OperationTimeoutError)
        self.assertIn("'query-status' within 5 s", str(f.value))
        h.server.reply(exp)
        self.assertFalse([e for e in logged if e.get("log_level").name == "warn"])
        self.assertEqual(h.client.runstate, Runstate.RUNNING)

    def test_cancel(self) -> None:
        """
        Cancelling a command's Deferred fails it with L{CancelledError} and
        forgets it.
        """
        h = _Harness()
        h.server.expect("query-status", hold=True)
        d = h.client.execute("query-status")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(h.client.pending_commands, [])


class EventTests(SynchronousTestCase):
    """Asynchronous events."""

    def test_events_between_commands(self) -> None:
        """
        Events before, between and after command replies reach subscribers in
        order, with their data and timestamp, and don't disturb the replies.
        """
        h = _Harness()
        seen: list[QMPEvent] = []
        h.client.subscribe(seen.append)
        h.server.expect("stop", events_before=[("STOP", {})])
        h.server.expect("cont", events_after=[("RESUME", {})])
        d1 = h.client.execute("stop")
        h.server.flush()
        h.server.send_event("RTC_CHANGE", {"offset": 1})
        d2 = h.client.execute("cont")
        h.server.flush()
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.assertEqual([e.name for e in seen], ["STOP", "RTC_CHANGE", "RESUME"])
        self.assertEqual(seen[1].data, {"offset": 1})
        self.assertEqual(seen[0].data, {})
        self.assertGreater(seen[1].timestamp, seen[0].timestamp)
        self.assertGreater(seen[0].timestamp, 1_600_000_000)

    def test_filter_and_unsubscribe(self) -> None:
        """
        A subscription filtered by name sees only those events; after
        unsubscribing it sees none.
        """
        h = _Harness()
        stops: list[str] = []
        unsubscribe = h.client.subscribe(lambda e: stops.append(e.name), names=["STOP"])
        h.server.send_event("RESUME")
        h.server.send_event("STOP")
        unsubscribe()
        h.server.send_event("STOP")
        self.assertEqual(stops, ["STOP"])

    def test_failing_subscriber_isolated(self) -> None:
        """
        A subscriber that raises is logged; the others still get the event.
        """
        h = _Harness()
        seen: list[str] = []

        def broken(event: QMPEvent) -> None:
            raise RuntimeError("boom")

        h.client.subscribe(broken)
        h.client.subscribe(lambda e: seen.append(e.name))
        h.server.send_event("RESET", {"guest": True})
        self.assertEqual(seen, ["RESET"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class FramingTests(SynchronousTestCase):
    """Malformed and oversized input."""

    def test_garbage_json(self) -> None:
        """
        A line that is not JSON is fatal: pending commands fail with
        L{DeserializationError} and the connection is dropped.
        """
        h = _Harness()
        h.server.expect("query-status", hold=True)
        d = h.client.execute("query-status")
        h.server.flush()
        h.server.send_raw(b"{not json\n")
        f = self.failureResultOf(d, DeserializationError)
        self.assertIsInstance(f.value, ProtocolError)
        self.assertEqual(h.client.runstate, Runstate.CLOSED)

    def test_non_object_json(self) -> None:
        """
        A JSON value that is not an object is fatal.
        """
        h = _Harness()
        closed = h.client.when_closed()
        h.server.send_raw(b"[1, 2]\n")
        self.assertIsInstance(self.successResultOf(closed), DeserializationError)

    def test_unexpected_message_is_fatal(self) -> None:
        """
        A message that is neither reply, error nor event is fatal
        (L{BadReplyError}).
        """
        h = _Harness()
        closed = h.client.when_closed()
        h.server.send_raw(b'{"return": {}}\n')
        self.assertIsInstance(self.successResultOf(closed), BadReplyError)

    def test_message_split_across_reads(self) -> None:
        """
        A message arriving in pieces is reassembled.
        """
        h = _Harness()
        seen: list[QMPEvent] = []
        h.client.subscribe(seen.append)
        h.client.dataReceived(b'{"event": "ST')
        h.client.dataReceived(b'OP", "data": {}}\r\n{"event"')
        h.client.dataReceived(b': "RESUME"}\r\n')
        self.assertEqual([e.name for e in seen], ["STOP", "RESUME"])

    def test_oversized_partial_message(self) -> None:
        """
        More than 10 MiB without a newline is fatal (L{MessageTooLargeError});
        the buffer is dropped and pending commands fail.
        """
        h = _Harness()
        h.server.expect("query-status", hold=True)
        d = h.client.execute("query-status")
        h.server.flush()
        chunk = b"x" * (1024 * 1024)
        for _ in range(10):
            h.client.dataReceived(chunk)
        self.assertNoResult(d)
        h.client.dataReceived(b"x")
        f = self.failureResultOf(d, MessageTooLargeError)
        self.assertIn(str(MAX_MESSAGE_SIZE), str(f.value))
        h.server.flush()
        self.assertEqual(h.client.runstate, Runstate.CLOSED)

    def test_oversized_complete_message(self) -> None:
        """
        A single complete line over the limit is refused as well.
        """
        h = _Harness()
        closed = h.client.when_closed()
        h.client.dataReceived(b'"' + b"y" * MAX_MESSAGE_SIZE + b'"\n')
        h.server.flush()
        self.assertIsInstance(self.successResultOf(closed), MessageTooLargeError)
