"""
Tests for L{qemud.daemon.protocol}: the per-connection server protocol
driven through C{StringTransport} and a C{Clock}, against the fake driver of
L{tests.daemon.test_dispatch} — trace replays, bad input, keepalive,
pipelining, throttling, read-only, events.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon.protocol import RPCServerFactory, RPCServerProtocol
from qemud.rpc import remote
from qemud.rpc.errors import decode_error
from qemud.rpc.framing import CALL, ERROR, MESSAGE, OK, REPLY, Header, MessageDecoder
from qemud.rpc.remote import PROC, PROCEDURES
from tests.daemon.test_dispatch import XML, FakeDriver
from tests.rpc.test_remote import layout_for
from tests.rpc.traces import parse_trace

R = remote.REMOTE_PROGRAM
RT1_XML = XML.replace("</name>", "</name><uuid>8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b</uuid>")


def call(proc: int, serial: int, *args: Any, prog: int = R, vers: int = 1,
         mtype: int = CALL, status: int = OK) -> bytes:
    """
    @return: a packet calling C{proc} with C{args}.
    """
    from qemud.rpc.framing import encode_message
    layout = PROCEDURES[proc].args if prog == R and proc in PROCEDURES else None
    payload = b"" if layout is None or layout is remote.VOID else layout.encode(args)
    return encode_message((prog, vers, proc, mtype, serial, status), payload)


class ProtocolTestBase(SynchronousTestCase):
    """A factory, a clock, and helpers to talk to connections."""

    readonly = False

    def setUp(self) -> None:
        self.driver = FakeDriver()
        self.clock = Clock()
        self.factory = RPCServerFactory(self.driver, self.clock, readonly=self.readonly,
                                        secure=False, default_uri="qemu:///system")
        self.proto, self.transport = self.connect()

    def connect(self) -> tuple[RPCServerProtocol, StringTransport]:
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        proto.makeConnection(transport)
        return proto, transport

    def replies(self, transport: StringTransport | None = None) -> list[tuple[Header, bytes]]:
        t = transport or self.transport
        out = MessageDecoder().feed(t.value())
        t.clear()
        return out

    def send(self, *packets: bytes, proto: RPCServerProtocol | None = None) -> None:
        (proto or self.proto).dataReceived(b"".join(packets))

    def handshake(self, *, keepalive: bool = False) -> None:
        packets = [call(PROC.AUTH_LIST, 0)]
        if keepalive:
            packets.append(call(PROC.CONNECT_SUPPORTS_FEATURE, 1, 10))
        packets.append(call(PROC.CONNECT_OPEN, 2, "qemu:///system", 0))
        self.send(*packets)
        self.assertTrue(all(h.status == OK for h, _ in self.replies()))

    def value(self, reply: tuple[Header, bytes]) -> Any:
        header, payload = reply
        layout = layout_for(header)
        assert layout is not None
        return layout.unpack(payload)

    def error(self, reply: tuple[Header, bytes]) -> Any:
        self.assertEqual(reply[0].status, ERROR)
        return decode_error(reply[1])

    def define(self) -> Any:
        self.send(call(PROC.DOMAIN_DEFINE_XML, 90, XML))
        (reply,) = [r for r in self.replies() if r[0].type == REPLY]
        return self.value(reply).dom


class TraceReplayTests(ProtocolTestBase):
    """Client bytes from real traces get libvirtd's answers."""

    def replay(self, name: str, setup: Any = None) -> list[tuple[Any, Any]]:
        (connection,) = parse_trace(name)
        if setup:
            setup()
        expected = []
        for packet in connection.complete_packets():
            if packet.direction == "C->S":
                self.send(packet.data)
            else:
                ((header, payload),) = MessageDecoder().feed(packet.data)
                if header.type == REPLY:
                    expected.append((header, payload))
        got = [r for r in self.replies() if r[0].type == REPLY]
        self.assertEqual([h for h, _ in got], [h for h, _ in expected])
        return list(zip(got, expected, strict=True))

    def test_list_all_empty_byte_identical(self) -> None:
        """virsh list --all against no domains: every reply equals libvirtd's bytes."""
        for (gh, gp), (_eh, ep) in self.replay("list-all-empty.txt"):
            self.assertEqual(gp, ep, gh)

    def test_version(self) -> None:
        """virsh version: type QEMU and the hypervisor version, as libvirtd answered."""
        for (gh, gp), (_eh, ep) in self.replay("version.txt"):
            self.assertEqual(gp, ep, gh)

    def test_error_no_domain(self) -> None:
        """dominfo nosuchdomain: the remote_error equals libvirtd's, byte for byte."""
        pairs = self.replay("error-no-domain.txt")
        errors = [(g, e) for g, e in pairs if g[0].status == ERROR]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0][0][1], errors[0][1][1])

    def test_event_registration(self) -> None:
        """event --all: 27 registrations get callback ids 0..26 and deregister cleanly."""
        pairs = self.replay("event-all-loop.txt", setup=self._rt1)
        for (gh, gp), (_eh, ep) in pairs:
            if gh.type != REPLY or gh.proc not in (316, 317):
                continue
            self.assertEqual(gh.status, OK)
            self.assertEqual(gp, ep)
        self.assertEqual(self.driver.listeners, [])

    def _rt1(self) -> None:
        self.driver.define_xml(RT1_XML)

    def test_dominfo_fields(self) -> None:
        """dominfo of a defined domain answers every call; fields decode like libvirtd's."""
        self.driver.define_xml(RT1_XML)
        (connection,) = parse_trace("dominfo-inactive.txt")
        for packet in connection.client_bytes():
            self.send(packet)
        by_proc = {h.proc: (h, p) for h, p in self.replies()}
        self.assertEqual(self.value(by_proc[19]).type, "hvm")
        self.assertEqual(self.value(by_proc[16]), (5, 65536, 65536, 1, 0))
        # model "none\0" and doi "0\0", one 4-byte int per char, as libvirtd answered
        self.assertEqual(by_proc[122][1], bytes.fromhex(
            "00000005" "0000006e" "0000006f" "0000006e" "00000065" "00000000"
            "00000002" "00000030" "00000000"))
        self.assertTrue(all(h.status == OK for h, _ in by_proc.values()))


class BadInputTests(ProtocolTestBase):
    """Garbage closes that connection only; protocol errors get error replies."""

    def test_garbage_closes_only_that_client(self) -> None:
        """An invalid length word closes the sender and nothing else."""
        other, other_transport = self.connect()
        self.send(b"\0\0\0\5garbage")
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(other_transport.disconnecting)
        self.send(call(PROC.AUTH_LIST, 0), proto=other)
        self.assertEqual(self.value(self.replies(other_transport)[0]).types, [0])
        self.flushLoggedErrors()

    def test_length_all_ones(self) -> None:
        """A length word of 2**32-1 closes the connection without buffering."""
        self.send(b"\xff\xff\xff\xff")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")

    def test_truncated_frame_waits(self) -> None:
        """Half a packet is neither answered nor fatal; the rest completes it."""
        packet = call(PROC.AUTH_LIST, 0)
        self.send(packet[:10])
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)
        self.send(packet[10:])
        self.assertEqual(len(self.replies()), 1)

    def test_unknown_program(self) -> None:
        """An unknown program is answered with its prog/vers echoed and code 39."""
        self.send(call(7, 3, prog=0x12345678, vers=9))
        ((header, payload),) = self.replies()
        self.assertEqual(header, Header(0x12345678, 9, 7, REPLY, 3, ERROR))
        err = decode_error(payload)
        self.assertEqual((err.code, err.message), (39, "Cannot find program 305419896 version 9"))

    def test_qemu_program_not_supported(self) -> None:
        """qemu-monitor-command gets NO_SUPPORT under the QEMU program's number."""
        self.handshake()
        self.send(call(1, 5, prog=remote.QEMU_PROGRAM))
        ((header, payload),) = self.replies()
        self.assertEqual((header.prog, header.status), (remote.QEMU_PROGRAM, ERROR))
        self.assertEqual(decode_error(payload).code, 3)
        self.assertIn("virDomainQemuMonitorCommand", str(decode_error(payload)))

    def test_unknown_and_unsupported_procedures(self) -> None:
        """Beyond the table: 39 'unknown procedure'; inside: 3 NO_SUPPORT."""
        self.handshake()
        self.send(call(500, 5), call(PROC.DOMAIN_SET_MEMORY, 6))
        unknown, unsupported = self.replies()
        self.assertEqual(str(self.error(unknown)), "unknown procedure: 500")
        err = self.error(unsupported)
        self.assertEqual((err.code, err.level, err.int1, err.int2), (3, 2, -1, -1))
        self.assertEqual(err.str1, "this function is not supported by the connection driver: %s")

    def test_open_twice(self) -> None:
        """A second CONNECT_OPEN: code 1 'connection already open'."""
        self.handshake()
        self.send(call(PROC.CONNECT_OPEN, 3, None, 0))
        err = self.error(self.replies()[0])
        self.assertEqual((err.code, str(err)), (1, "internal error: connection already open"))

    def test_reply_and_message_from_client_dropped(self) -> None:
        """A REPLY or a non-keepalive MESSAGE from the client is not answered."""
        self.handshake()
        self.send(call(PROC.AUTH_LIST, 4, mtype=REPLY), call(PROC.AUTH_LIST, 5, mtype=MESSAGE))
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_call_with_bad_status(self) -> None:
        """A CALL whose status is not OK gets code 39."""
        self.send(call(PROC.AUTH_LIST, 4, status=ERROR))
        err = self.error(self.replies()[0])
        self.assertEqual((err.code, str(err)), (39, "Unexpected message status 1"))

    def test_ten_mib_of_random_data(self) -> None:
        """10 MiB of random bytes: error replies or a closed connection, never a crash."""
        self.handshake()
        data = os.urandom(10 * 1024 * 1024)
        for i in range(0, len(data), 65536):
            self.send(data[i:i + 65536])
        self.assertTrue(self.transport.disconnecting)
        MessageDecoder().feed(self.transport.value())
        self.flushLoggedErrors()

    def test_driver_bug_is_internal_error(self) -> None:
        """An unexpected exception becomes INTERNAL_ERROR and is logged."""
        self.handshake()
        self.driver.hostname = lambda: 1 / 0  # type: ignore[method-assign]
        self.send(call(PROC.CONNECT_GET_HOSTNAME, 3))
        err = self.error(self.replies()[0])
        self.assertEqual(err.code, 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_max_clients(self) -> None:
        """A connection beyond max_clients is closed at once."""
        self.factory.tracker.max_clients = 1
        _, transport = self.connect()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.tracker.clients, 1)
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.tracker.clients, 0)


class KeepaliveTests(ProtocolTestBase):
    """Keepalive (spec §1.11)."""

    def test_ping_answered_always(self) -> None:
        """A client PING gets a PONG with serial 0, even without feature 10."""
        self.send(call(remote.KEEPALIVE_PING, 0, prog=remote.KEEPALIVE_PROGRAM, mtype=MESSAGE))
        ((header, payload),) = self.replies()
        self.assertEqual(header, Header(remote.KEEPALIVE_PROGRAM, 1, 2, MESSAGE, 0, OK))
        self.assertEqual(payload, b"")

    def test_no_ping_without_feature(self) -> None:
        """A client that did not ask for feature 10 is never pinged."""
        self.handshake()
        self.clock.advance(60)
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_ping_after_silence_then_drop(self) -> None:
        """With feature 10: PING every 5 s of silence, drop after 5 unanswered."""
        self.handshake(keepalive=True)
        self.clock.advance(4.9)
        self.assertEqual(self.transport.value(), b"")
        for n in range(5):
            self.clock.advance(5 if n else 0.1)
            ((header, _),) = self.replies()
            self.assertEqual((header.prog, header.proc, header.type),
                             (remote.KEEPALIVE_PROGRAM, remote.KEEPALIVE_PING, MESSAGE))
            self.assertFalse(self.transport.disconnecting)
        self.clock.advance(5)
        self.assertTrue(self.transport.disconnecting)

    def test_pong_keeps_connection(self) -> None:
        """Answering PINGs (or any traffic) keeps the connection alive."""
        self.handshake(keepalive=True)
        pong = call(remote.KEEPALIVE_PONG, 0, prog=remote.KEEPALIVE_PROGRAM, mtype=MESSAGE)
        for _ in range(20):
            self.clock.advance(5)
            self.send(pong)
        self.assertFalse(self.transport.disconnecting)

    def test_timer_stops_on_disconnect(self) -> None:
        """No timer is left behind after the client goes away."""
        self.handshake(keepalive=True)
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PipeliningTests(ProtocolTestBase):
    """Calls run concurrently and are answered as they finish."""

    def test_out_of_order_replies(self) -> None:
        """A slow call does not block a fast one; replies follow completion order."""
        self.handshake()
        dom = self.define()
        self.driver.hold = True
        self.send(call(PROC.DOMAIN_CREATE, 10, dom), call(PROC.DOMAIN_SUSPEND, 11, dom),
                  call(PROC.CONNECT_GET_VERSION, 12))
        self.assertEqual([h.serial for h, _ in self.replies()], [12])
        create, suspend = self.driver.held
        create.callback(None)
        suspend.callback(None)
        self.assertEqual([(h.serial, h.status) for h, _ in self.replies()], [(10, OK), (11, OK)])

    def test_out_of_order_completion(self) -> None:
        """The second call may finish first."""
        self.handshake()
        dom = self.define()
        self.driver.hold = True
        self.send(call(PROC.DOMAIN_CREATE, 10, dom), call(PROC.DOMAIN_CREATE, 11, dom))
        first, second = self.driver.held
        first.callback(None)
        second.callback(None)
        replies = self.replies()
        self.assertEqual([(h.serial, h.status) for h, _ in replies], [(10, OK), (11, ERROR)])
        self.assertEqual(str(self.error(replies[1])),
                         "Requested operation is not valid: domain is already running")

    def test_throttle(self) -> None:
        """Beyond max_client_requests in flight, reading pauses; nothing is dropped."""
        self.factory.max_client_requests = 2
        proto, transport = self.connect()
        self.send(call(PROC.AUTH_LIST, 0), call(PROC.CONNECT_OPEN, 1, None, 0), proto=proto)
        self.send(call(PROC.DOMAIN_DEFINE_XML, 2, XML), proto=proto)
        dom = self.value(self.replies(transport)[-1]).dom
        self.driver.hold = True
        self.send(*(call(PROC.DOMAIN_RESUME, 10 + i, dom) for i in range(4)),
                  call(PROC.CONNECT_GET_VERSION, 20), proto=proto)
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(len(self.driver.held), 2)
        self.assertEqual(transport.value(), b"")
        self.driver.held[0].callback(None)
        self.assertEqual(len(self.driver.held), 3)
        self.assertEqual(transport.producerState, "paused")
        for d in self.driver.held[1:]:
            d.callback(None)
        self.driver.held[3].callback(None)
        serials = [h.serial for h, _ in self.replies(transport)]
        self.assertEqual(sorted(serials), [10, 11, 12, 13, 20])
        self.assertEqual(transport.producerState, "producing")

    def test_reply_after_disconnect_discarded(self) -> None:
        """A call finishing after the client left writes nothing."""
        self.handshake()
        dom = self.define()
        self.driver.hold = True
        self.send(call(PROC.DOMAIN_CREATE, 10, dom))
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.driver.held[0].callback(None)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.driver.domains[dom.uuid].id, 1)


class ReadOnlyListenerTests(ProtocolTestBase):
    """Connections from a read-only listener."""

    readonly = True

    def test_create_denied_with_libvirt_text(self) -> None:
        """DOMAIN_CREATE: code 29, domain 20, libvirtd's exact message."""
        self.handshake()
        dom = remote.NonnullDomain(*self.driver.define_xml(XML))
        self.send(call(PROC.DOMAIN_CREATE, 7, dom))
        err = self.error(self.replies()[0])
        self.assertEqual((err.code, err.domain), (29, 20))
        self.assertEqual(str(err), "operation forbidden: read only access prevents virDomainCreate")

    def test_readonly_attribute_is_settable(self) -> None:
        """A TLS wrapper may clear or set readonly before makeConnection."""
        proto = self.factory.buildProtocol(None)
        self.assertTrue(proto.readonly)
        proto.readonly = False
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(call(PROC.CONNECT_OPEN, 0, None, 0) + call(PROC.DOMAIN_DEFINE_XML,
                                                                      1, XML))
        self.assertTrue(all(h.status == OK for h, _ in self.replies(transport)))


class ReadOnlyFlagTests(ProtocolTestBase):
    """CONNECT_OPEN flag 1 makes a connection read-only."""

    def test_open_flag(self) -> None:
        """After open with flag 1, DEFINE_XML is denied [tcp-readonly-flag-start-denied]."""
        self.send(call(PROC.CONNECT_OPEN, 0, "qemu:///system", 1),
                  call(PROC.DOMAIN_DEFINE_XML, 1, XML))
        err = self.error(self.replies()[1])
        self.assertEqual(err.message,
                         "operation forbidden: read only access prevents virDomainDefineXML")


class EventTests(ProtocolTestBase):
    """Event delivery per connection."""

    def register(self, event_id: int, dom: Any = None, serial: int = 30) -> int:
        self.send(call(PROC.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, serial, event_id, dom))
        return int(self.value(self.replies()[0]).callbackID)

    def test_lifecycle_message(self) -> None:
        """A lifecycle event is a 318 MESSAGE, serial 1, carrying the callback id."""
        self.handshake()
        self.assertEqual(self.driver.listeners, [])
        cb = self.register(0)
        self.assertEqual(len(self.driver.listeners), 1)
        dom = self.define()
        self.replies()
        self.send(call(PROC.DOMAIN_CREATE, 40, dom))
        out = self.replies()
        events = [r for r in out if r[0].type == MESSAGE]
        self.assertEqual(len(events), 1)
        header, _ = events[0]
        self.assertEqual(header, Header(R, 1, 318, MESSAGE, 1, OK))
        msg = self.value(events[0])
        self.assertEqual((msg.callbackID, msg.msg.dom.name, msg.msg.dom.id, msg.msg.event,
                          msg.msg.detail), (cb, "rt1", 1, 2, 0))

    def test_define_event_and_filter(self) -> None:
        """Each matching callback gets its own packet; a domain filter excludes others."""
        self.handshake()
        dom = self.define()
        self.register(0, serial=31)
        self.register(0, dom, serial=32)
        self.register(0, remote.NonnullDomain("other", b"\5" * 16, -1), serial=33)
        self.register(1, serial=34)
        self.send(call(PROC.DOMAIN_DEFINE_XML, 41, XML))
        events = [self.value(r) for r in self.replies() if r[0].type == MESSAGE]
        self.assertEqual(sorted(e.callbackID for e in events), [0, 1])
        self.assertEqual({(e.msg.event, e.msg.detail) for e in events}, {(0, 1)})

    def test_other_event_kinds(self) -> None:
        """Reboot 319, tray 328, device removed 333, device added 354."""
        self.handshake()
        self.driver.define_xml(XML)
        d = next(iter(self.driver.domains.values()))
        for event_id in (1, 10, 15, 19):
            self.register(event_id, serial=50 + event_id)
        self.driver.emit(1, d)
        self.driver.emit(10, d, "ide0-1-0", 1)
        self.driver.emit(15, d, "virtio-disk1")
        self.driver.emit(19, d, "virtio-disk1")
        out = self.replies()
        self.assertEqual([h.proc for h, _ in out], [319, 328, 333, 354])
        self.assertEqual(self.value(out[1]).msg.devAlias, "ide0-1-0")
        self.assertEqual(self.value(out[3]).devAlias, "virtio-disk1")

    def test_unsupported_event_id(self) -> None:
        """Event ids outside 0..26 are refused like libvirtd does."""
        self.handshake()
        self.send(call(PROC.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, 5, 27, None))
        err = self.error(self.replies()[0])
        self.assertEqual((err.code, str(err)), (1, "internal error: unsupported event ID 27"))

    def test_legacy_events(self) -> None:
        """167 and 105 registrations get 107 messages without a callback id."""
        self.handshake()
        self.send(call(PROC.CONNECT_DOMAIN_EVENT_REGISTER_ANY, 5, 0))
        self.replies()
        self.send(call(PROC.CONNECT_DOMAIN_EVENT_REGISTER, 6))
        self.assertEqual(self.error(self.replies()[0]).code, 1)
        self.send(call(PROC.DOMAIN_DEFINE_XML, 7, XML))
        events = [r for r in self.replies() if r[0].type == MESSAGE]
        self.assertEqual([h.proc for h, _ in events], [107])
        self.assertEqual(self.value(events[0]).dom.name, "rt1")
        self.send(call(PROC.CONNECT_DOMAIN_EVENT_DEREGISTER_ANY, 8, 0))
        self.replies()
        self.assertEqual(self.driver.listeners, [])

    def test_eof_drops_callbacks(self) -> None:
        """EOF without CONNECT_CLOSE unsubscribes; other clients keep theirs."""
        self.handshake()
        other, other_transport = self.connect()
        self.send(call(PROC.CONNECT_OPEN, 0, None, 0), proto=other)
        self.register(0)
        other.dataReceived(call(PROC.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, 1, 0, None))
        self.assertEqual(len(self.driver.listeners), 2)
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.driver.listeners), 1)
        self.replies(other_transport)
        self.driver.define_xml(XML)
        self.assertEqual([h.proc for h, _ in self.replies(other_transport)], [318])
        self.assertEqual(self.transport.value(), b"")

    def test_connect_close_drops_callbacks(self) -> None:
        """CONNECT_CLOSE unsubscribes too."""
        self.handshake()
        self.register(0)
        self.send(call(PROC.CONNECT_CLOSE, 9))
        self.assertEqual(self.driver.listeners, [])


class SecureTests(ProtocolTestBase):
    """CONNECT_IS_SECURE follows the listener flag."""

    def test_tcp_is_not_secure(self) -> None:
        """A plain TCP factory answers 0."""
        self.handshake()
        self.send(call(PROC.CONNECT_IS_SECURE, 3))
        self.assertEqual(self.value(self.replies()[0]).secure, 0)
