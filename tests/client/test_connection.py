"""
Tests for L{qemudclient.connection}: the handshake, the Domain API,
read-only refusal, events and closing, against an in-memory scripted server.
"""

from __future__ import annotations

from typing import Any

from qemudclient.connection import Connection, Domain
from qemudclient.errors import ConnectionLost, NoSupport, OperationDenied
from qemudclient.model import DomainEvent, DomainInfo, NodeInfo
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from qemud.rpc import remote
from tests.client.fakeserver import UUID1, Harness, open_harness

P = remote.PROC


def run(h: Harness, d: Deferred[Any]) -> Deferred[Any]:
    h.flush()
    return d


class HandshakeTests(SynchronousTestCase):
    """
    The connection is opened the way virsh opens it.
    """

    def test_sequence(self) -> None:
        """
        AUTH_LIST, SUPPORTS_FEATURE(10), CONNECT_OPEN with libvirt's
        stripped name and flags 0, then SUPPORTS_FEATURE(14).
        """
        h, conn = open_harness(self, uri="qemud+tcp://127.0.0.1:5000/system?x=1")
        self.assertEqual(h.server.procs(), [66, 60, 1, 60])
        self.assertEqual(h.server.calls[1][1].feature, 10)
        self.assertEqual(tuple(h.server.calls[2][1]), ("qemu:///system", 0))
        self.assertEqual(h.server.calls[3][1].feature, 14)
        self.assertTrue(conn.callback_events)
        self.assertEqual(conn.uri, "qemud+tcp://127.0.0.1:5000/system?x=1")

    def test_readonly_flag(self) -> None:
        """
        A read-only connection opens with flags 1.
        """
        h, conn = open_harness(self, readonly=True)
        self.assertEqual(tuple(h.server.calls[2][1]), ("qemu:///system", 1))

    def test_readonly_refused_locally(self) -> None:
        """
        A state-changing call on a read-only connection fails with
        L{OperationDenied} without being sent; queries still work.
        """
        h, conn = open_harness(self, readonly=True)
        dom = self.successResultOf(run(h, conn.lookup_by_name("rt2")))
        before = len(h.server.calls)
        err = self.failureResultOf(run(h, dom.start()), OperationDenied).value
        self.assertEqual(err.message, "operation forbidden: read only access prevents virDomainCreate")
        self.assertEqual(err.code, 29)
        self.assertEqual(len(h.server.calls), before)
        self.assertEqual(self.successResultOf(run(h, dom.state())), (5, 0))

    def test_auth_not_supported_tolerated(self) -> None:
        """
        A daemon that answers AUTH_LIST with NO_SUPPORT is treated as "no
        authentication".
        """
        from qemud.errors import NoSupportError

        h = Harness()

        def refuse(a: Any) -> None:
            raise NoSupportError("virConnectAuthList")

        h.server.handlers[P.AUTH_LIST] = refuse
        conn = self.successResultOf(h.open())
        self.assertIsInstance(conn, Connection)

    def test_failed_open_disconnects(self) -> None:
        """
        When CONNECT_OPEN fails, the error reaches the caller and the
        transport is closed.
        """
        from qemud.errors import InternalError

        h = Harness()

        def refuse(a: Any) -> None:
            raise InternalError("connection already open")

        h.server.handlers[P.CONNECT_OPEN] = refuse
        d = h.open()
        h.flush()
        self.assertEqual(
            self.failureResultOf(d).value.message, "internal error: connection already open"
        )
        self.assertTrue(h.client.transport.disconnected)


class QueryTests(SynchronousTestCase):
    """
    Connection and domain queries decode their replies.
    """

    def test_connection_queries(self) -> None:
        """
        Version, hostname, capabilities and node info.
        """
        h, conn = open_harness(self)
        self.assertEqual(self.successResultOf(run(h, conn.get_lib_version())), 9000000)
        self.assertEqual(self.successResultOf(run(h, conn.capabilities())), "<capabilities/>")
        self.assertEqual(
            self.successResultOf(run(h, conn.node_info())),
            NodeInfo("x86_64", 4942028, 2, 2596, 1, 1, 2, 1),
        )

    def test_lookups(self) -> None:
        """
        Lookups by name, UUID (bytes or text) and id return the same domain.
        """
        h, conn = open_harness(self)
        by_name = self.successResultOf(run(h, conn.lookup_by_name("rt1")))
        by_uuid = self.successResultOf(run(h, conn.lookup_by_uuid(UUID1)))
        by_text = self.successResultOf(
            run(h, conn.lookup_by_uuid("8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b")))
        by_id = self.successResultOf(run(h, conn.lookup_by_id(1)))
        for d in (by_name, by_uuid, by_text, by_id):
            self.assertEqual((d.name, d.uuid, d.id), ("rt1", UUID1, 1))

    def test_domain_queries(self) -> None:
        """
        info, state, XML flags, persistence and autostart.
        """
        h, conn = open_harness(self)
        dom: Domain = self.successResultOf(run(h, conn.lookup_by_name("rt1")))
        self.assertEqual(
            self.successResultOf(run(h, dom.info())), DomainInfo(1, 65536, 65536, 1, 2_000_000_000)
        )
        self.assertEqual(self.successResultOf(run(h, dom.state())), (1, 1))
        self.assertIn("flags 3", self.successResultOf(run(h, dom.xml_desc(True, True))))
        self.assertIn("flags 0", self.successResultOf(run(h, dom.xml_desc())))
        self.assertTrue(self.successResultOf(run(h, dom.is_active())))
        self.assertTrue(self.successResultOf(run(h, dom.is_persistent())))
        self.assertFalse(self.successResultOf(run(h, dom.has_managed_save())))
        self.successResultOf(run(h, dom.set_autostart(True)))
        self.assertTrue(self.successResultOf(run(h, dom.autostart())))

    def test_list_flags(self) -> None:
        """
        C{list_domains} passes need_results=1 and the flags.
        """
        h, conn = open_harness(self)
        doms = self.successResultOf(run(h, conn.list_domains(2)))
        self.assertEqual([d.name for d in doms], ["rt2"])
        self.assertEqual(tuple(h.server.calls[-1][1]), (1, 2))

    def test_start_learns_id(self) -> None:
        """
        C{start} calls DOMAIN_CREATE, then looks the domain up by UUID to
        learn its new id, as virsh does.
        """
        h, conn = open_harness(self)
        dom = self.successResultOf(run(h, conn.lookup_by_name("rt2")))
        self.assertEqual(dom.id, -1)
        self.successResultOf(run(h, dom.start()))
        self.assertEqual(h.server.procs()[-2:], [P.DOMAIN_CREATE, P.DOMAIN_LOOKUP_BY_UUID])
        self.assertEqual(dom.id, 7)

    def test_second_tier_procedures(self) -> None:
        """
        save/restore/managed save/device calls/job info use the procedure
        numbers of libvirt-rpc.md 3.2; a daemon without them answers
        NO_SUPPORT, which raises L{NoSupport}.
        """
        from qemud.errors import NoSupportError

        h, conn = open_harness(self)
        dom = self.successResultOf(run(h, conn.lookup_by_name("rt1")))
        seen: list[int] = []
        for proc in (55, 54, 182, 8, 160, 13, 161, 174, 163):
            def refuse(a: Any, proc: int = proc) -> None:
                seen.append(proc)
                raise NoSupportError(remote.PROCEDURES[proc].api_name)

            h.server.handlers[proc] = refuse
        calls = [dom.save("/x"), conn.restore("/x"), dom.managed_save(),
                 dom.attach_device("<disk/>"), dom.attach_device("<disk/>", 2),
                 dom.detach_device("<disk/>"), dom.detach_device("<disk/>", 1),
                 dom.update_device("<disk/>"), dom.job_info()]
        h.flush()
        for d in calls:
            self.failureResultOf(d, NoSupport)
        self.assertEqual(seen, [55, 54, 182, 8, 160, 13, 161, 174, 163])
        self.assertEqual(tuple(h.server.calls[-5][1])[1:], ("<disk/>", 2))


class EventTests(SynchronousTestCase):
    """
    Events reach subscribers and async iterators.
    """

    def test_subscribe(self) -> None:
        """
        C{subscribe} registers with 316 and delivers decoded lifecycle events
        for its callback ID; C{cancel} deregisters with 317 and stops them.
        """
        h, conn = open_harness(self)
        got: list[DomainEvent] = []
        sub = self.successResultOf(run(h, conn.subscribe(0, got.append)))
        self.assertEqual(tuple(h.server.calls[-1][1]), (0, None))
        h.clock.advance(12.5)
        dom = self.successResultOf(run(h, conn.lookup_by_name("rt2")))
        self.successResultOf(run(h, dom.start()))
        self.assertEqual(len(got), 1)
        ev = got[0]
        self.assertEqual((ev.event_id, ev.name, ev.domain.name, ev.domain.id),
                         (0, "lifecycle", "rt2", 7))
        self.assertEqual(ev.detail, {"event": 2, "detail": 0})
        self.assertEqual(ev.timestamp, 12.5)
        self.successResultOf(run(h, sub.cancel()))
        self.assertEqual(h.server.procs()[-1], P.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY)
        self.successResultOf(run(h, dom.destroy()))
        self.assertEqual(len(got), 1)

    def test_domain_filter_sent(self) -> None:
        """
        A domain filter is sent as the optional C{dom} of 316.
        """
        h, conn = open_harness(self)
        dom = self.successResultOf(run(h, conn.lookup_by_name("rt1")))
        self.successResultOf(run(h, conn.subscribe(1, lambda e: None, dom)))
        self.assertEqual(tuple(h.server.calls[-1][1]), (1, ("rt1", UUID1, 1)))

    def test_other_events_decoded(self) -> None:
        """
        Reboot, device-added and tray-change messages decode to their fields.
        """
        h, conn = open_harness(self)
        got: list[DomainEvent] = []
        for eid in (1, 19, 10):
            self.successResultOf(run(h, conn.subscribe(eid, got.append)))
        d = h.server.domains[0]
        h.server.emit(1, d)
        h.server.emit(19, d, "virtio-disk1")
        h.server.emit(10, d, "ide0-1-0", 0)
        h.flush()
        self.assertEqual(
            [(e.name, e.detail) for e in got],
            [("reboot", {}), ("device-added", {"dev_alias": "virtio-disk1"}),
             ("tray-change", {"dev_alias": "ide0-1-0", "reason": 0})],
        )

    def test_async_iterator(self) -> None:
        """
        C{async for} over C{events()} yields events in order, queued between
        steps, and ends when the connection is closed on purpose.
        """
        h, conn = open_harness(self)
        seen: list[tuple[int, int]] = []

        async def consume() -> None:
            async for ev in conn.events(0):
                seen.append((ev.detail["event"], ev.detail["detail"]))

        done = ensureDeferred(consume())
        h.flush()
        self.assertEqual(h.server.procs()[-1], P.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY)
        d = h.server.domains[1]
        h.server.emit(0, d, 2, 0)
        h.server.emit(0, d, 3, 0)
        h.flush()
        h.server.emit(0, d, 5, 1)
        h.flush()
        self.assertEqual(seen, [(2, 0), (3, 0), (5, 1)])
        self.assertNoResult(done)
        closing = conn.close()
        h.flush()
        self.successResultOf(closing)
        self.successResultOf(done)
        self.assertEqual(h.server.procs()[-1], P.CONNECT_CLOSE)

    def test_async_iterator_lost(self) -> None:
        """
        The iterator raises L{ConnectionLost} when the connection drops.
        """
        h, conn = open_harness(self)

        async def consume() -> None:
            async for _ in conn.events(0):
                pass

        done = ensureDeferred(consume())
        h.flush()
        h.server.transport.loseConnection()
        h.flush()
        self.failureResultOf(done, ConnectionLost)

    def test_async_iterator_close(self) -> None:
        """
        C{close()} on the stream deregisters and ends the iteration.
        """
        h, conn = open_harness(self)
        stream = conn.events(0)
        got: list[int] = []

        async def consume() -> None:
            async for ev in stream:
                got.append(ev.event_id)
                await stream.close()

        done = ensureDeferred(consume())
        h.flush()
        h.server.emit(0, h.server.domains[0], 4, 0)
        h.flush()
        self.successResultOf(done)
        self.assertEqual(got, [0])
        self.assertEqual(h.server.callbacks, {})

    def test_async_iterator_buffers_early_events(self) -> None:
        """
        C{events()} registers at once: events sent before the first step are
        queued, not lost.
        """
        h, conn = open_harness(self)
        stream = conn.events(0)
        h.flush()
        self.successResultOf(stream.when_registered())
        h.server.emit(0, h.server.domains[0], 0, 0)
        h.flush()
        first = ensureDeferred(stream.__anext__())
        self.assertEqual(self.successResultOf(first).detail, {"event": 0, "detail": 0})

    def test_async_iterator_refused(self) -> None:
        """
        When the daemon refuses the registration, iterating raises its error.
        """
        h = Harness()
        h.server.features[14] = 0
        conn = self.successResultOf(h.open())
        stream = conn.events(0)
        self.failureResultOf(stream.when_registered(), NoSupport)
        self.failureResultOf(ensureDeferred(stream.__anext__()), NoSupport)

    def test_without_callback_events(self) -> None:
        """
        A daemon without feature 14 makes C{subscribe} fail with L{NoSupport}.
        """
        h = Harness()
        h.server.features[14] = 0
        conn = self.successResultOf(h.open())
        self.failureResultOf(conn.subscribe(0, lambda e: None), NoSupport)


class CloseTests(SynchronousTestCase):
    """
    Closing a connection.
    """

    def test_close(self) -> None:
        """
        C{close} sends CONNECT_CLOSE, then disconnects; L{when_closed}
        fires.
        """
        h, conn = open_harness(self)
        closed = conn.when_closed()
        d = conn.close()
        h.flush()
        self.successResultOf(d)
        self.successResultOf(closed)
        self.assertEqual(h.server.procs()[-1], P.CONNECT_CLOSE)
        self.assertTrue(h.client.transport.disconnected)
        self.assertEqual(h.clock.getDelayedCalls(), [])
        self.successResultOf(conn.close())
