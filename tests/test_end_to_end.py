"""
End to end with no real I/O (style §4.7): the project's client
(L{qemudclient.connection.Connection} on an L{RPCClientProtocol}) talks to
the real L{RPCServerFactory} and dispatcher over L{iosim}; behind them the
real L{DomainDriver} runs guests on a L{FakeProcessReactor} whose QEMUs are
scripted L{FakeQMPServer}s and whose C{/proc} is a L{FakeProcFS}.
"""

from __future__ import annotations

from typing import Any

from qemudclient.connection import Connection, open_connection
from qemudclient.errors import OperationDenied, OperationInvalid
from qemudclient.model import DomainEvent
from qemudclient.protocol import RPCClientProtocol
from qemudclient.uri import parse_uri
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon.protocol import RPCServerFactory
from qemud.rpc import remote
from tests.daemon.fakedriver import UUID1, UUID2, DriverEnv, domain_xml

LIST_ACTIVE = 1
LIST_INACTIVE = 2


class Daemon:
    """
    The daemon's RPC side over a L{DriverEnv}, and the clients connected
    to it in memory.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.case = case
        self.env = DriverEnv(case)
        self.factory = RPCServerFactory(self.env.driver, self.env.reactor, secure=True,
                                        default_uri="qemu:///system")
        self.pumps: list[Any] = []

    def connect(self, readonly: bool = False) -> Connection:
        """
        Connect a new client and run virsh's handshake.

        @return: the open connection.
        """
        client, _server, pump = iosim.connectedServerAndClient(
            lambda: self.factory.buildProtocol(None),
            lambda: RPCClientProtocol(self.env.reactor),
            greet=False,
        )
        self.pumps.append(pump)
        pump.flush()
        d = ensureDeferred(open_connection(
            client, parse_uri("qemu:///system", readonly=readonly), readonly,
            keepalive_interval=0))
        return self.run(d)  # type: ignore[no-any-return]

    def settle(self) -> None:
        """
        Move every byte in flight, RPC and QMP, until nothing moves.
        """
        for _ in range(100):
            moved = False
            for pump in self.pumps:
                moved = bool(pump.flush()) or moved
            for server in self.env.servers.values():
                if server.pump is not None:
                    moved = bool(server.pump.flush()) or moved
            if not moved:
                return
        raise AssertionError("the system did not settle")

    def run(self, d: Deferred[Any]) -> Any:
        """
        Settle, then @return: C{d}'s result (it must have one).
        """
        self.settle()
        return self.case.successResultOf(d)

    def start_vm(self, dom: Any, name: str) -> Deferred[None]:
        """
        Call C{start} on the client and let QEMU come up (it appears once
        the call reached the daemon).
        """
        d: Deferred[None] = dom.start()
        self.settle()
        self.env.accept(name)
        return d


def lifecycle(events: list[DomainEvent]) -> list[tuple[str, int, int, int]]:
    """@return: (name, id, event, detail) for each lifecycle event."""
    return [(e.domain.name, e.domain.id, e.detail["event"], e.detail["detail"])
            for e in events if e.event_id == 0]


class EndToEndTests(SynchronousTestCase):
    """A client driving the daemon through a whole domain life."""

    def test_domain_life(self) -> None:
        """
        define → start → list (running) → suspend → resume → shutdown (the
        guest powers off, QEMU exits) → list (shut off, reason shutdown) →
        undefine, all through the client; a subscribed client hears every
        lifecycle event, in order, with the domain's id at the time.
        """
        daemon = Daemon(self)
        env = daemon.env
        conn = daemon.connect()
        events: list[DomainEvent] = []
        daemon.run(conn.subscribe(0, events.append))

        dom = daemon.run(conn.define_xml(domain_xml()))
        self.assertEqual((dom.name, dom.uuid_string, dom.id), ("vm1", UUID1, -1))
        self.assertEqual(daemon.run(dom.state()), (5, 0))

        daemon.run(daemon.start_vm(dom, "vm1"))
        self.assertEqual(dom.id, 1)
        running = daemon.run(conn.list_domains(LIST_ACTIVE))
        self.assertEqual([(d.name, d.id) for d in running], [("vm1", 1)])
        self.assertEqual(daemon.run(conn.list_domains(LIST_INACTIVE)), [])
        self.assertEqual(daemon.run(dom.state()), (1, 1))
        self.assertIn("id='1'", daemon.run(dom.xml_desc()))
        self.assertEqual(daemon.run(conn.lookup_by_id(1)).name, "vm1")

        qemu = env.servers["vm1"]
        qemu.expect("stop", events_before=[("STOP", {})])
        daemon.run(dom.suspend())
        self.assertEqual(daemon.run(dom.state()), (3, 1))
        qemu.expect("cont", events_before=[("RESUME", {})])
        daemon.run(dom.resume())
        self.assertEqual(daemon.run(dom.state()), (1, 5))

        qemu.expect("system_powerdown", events_after=[("POWERDOWN", {})])
        qemu.expect("quit")
        daemon.run(dom.shutdown())
        self.assertEqual(daemon.run(dom.state()), (1, 5))
        qemu.send_event("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        daemon.settle()
        qemu.assert_done()
        self.assertEqual(daemon.run(dom.state()), (4, 0))
        env.process().exit(0)
        daemon.settle()

        self.assertEqual(daemon.run(conn.list_domains(LIST_ACTIVE)), [])
        inactive = daemon.run(conn.list_domains(LIST_INACTIVE))
        self.assertEqual([(d.name, d.id) for d in inactive], [("vm1", -1)])
        dom = inactive[0]
        self.assertEqual(daemon.run(dom.state()), (5, 1))
        self.assertFalse(daemon.run(dom.is_active()))

        daemon.run(dom.undefine())
        self.assertEqual(daemon.run(conn.list_domains(0)), [])
        self.assertEqual(env.driver.list_domains(), [])

        self.assertEqual(lifecycle(events), [
            ("vm1", -1, 0, 0),  # defined, added
            ("vm1", 1, 4, 0),   # resumed, unpaused
            ("vm1", 1, 2, 0),   # started, booted
            ("vm1", 1, 3, 0),   # suspended, paused
            ("vm1", 1, 4, 0),   # resumed, unpaused
            ("vm1", 1, 6, 1),   # shutdown, finished after guest request
            ("vm1", -1, 5, 0),  # stopped, shutdown
            ("vm1", -1, 1, 0),  # undefined, removed
        ])
        self.assertEqual({e.callback_id for e in events}, {0})
        self.assertEqual(env.reactor.spawned[0].signals, [])

    def test_wrong_state_over_the_wire(self) -> None:
        """
        Suspending a shut-off domain fails at the client with
        L{OperationInvalid}, code 55, libvirt's text.
        """
        daemon = Daemon(self)
        conn = daemon.connect()
        dom = daemon.run(conn.define_xml(domain_xml()))
        d = dom.suspend()
        daemon.settle()
        err = self.failureResultOf(d, OperationInvalid).value
        self.assertEqual(err.code, 55)
        self.assertEqual(err.message, "Requested operation is not valid: domain is not running")

    def test_second_client_hears_events(self) -> None:
        """
        A second client subscribed to lifecycle events hears what the first
        client's define, start and destroy did; an unsubscribed client hears
        nothing.
        """
        daemon = Daemon(self)
        actor = daemon.connect()
        watcher = daemon.connect()
        heard: list[DomainEvent] = []
        daemon.run(watcher.subscribe(0, heard.append))
        actor_packets: list[int] = []
        actor.protocol.set_event_sink(lambda proc, payload: actor_packets.append(proc))

        dom = daemon.run(actor.define_xml(domain_xml()))
        daemon.run(daemon.start_vm(dom, "vm1"))
        daemon.run(dom.destroy())
        daemon.env.reactor.advance(0)
        daemon.settle()

        self.assertEqual(lifecycle(heard), [
            ("vm1", -1, 0, 0),
            ("vm1", 1, 4, 0),
            ("vm1", 1, 2, 0),
            ("vm1", -1, 5, 1),  # stopped, destroyed
        ])
        self.assertEqual(actor_packets, [])

    def test_readonly_refused_create(self) -> None:
        """
        A read-only connection may look but not start: the client refuses
        C{create} locally, and the daemon refuses it too (code 29) when it
        is sent anyway; nothing is spawned.
        """
        daemon = Daemon(self)
        rw = daemon.connect()
        daemon.run(rw.define_xml(domain_xml()))
        ro = daemon.connect(readonly=True)
        dom = daemon.run(ro.lookup_by_name("vm1"))
        self.assertEqual(daemon.run(dom.state()), (5, 0))

        d = dom.start()
        daemon.settle()
        err = self.failureResultOf(d, OperationDenied).value
        self.assertEqual(err.code, 29)

        payload = remote.PROCEDURES[remote.PROC.DOMAIN_CREATE].args.encode(  # type: ignore[union-attr]
            ((dom.name, dom.uuid, dom.id),))
        d = ro.protocol.call(remote.PROC.DOMAIN_CREATE, payload)
        daemon.settle()
        err = self.failureResultOf(d, OperationDenied).value
        self.assertEqual(err.code, 29)
        self.assertEqual(err.message,
                         "operation forbidden: read only access prevents virDomainCreate")
        self.assertEqual(daemon.env.reactor.spawned, [])
        self.assertEqual(daemon.run(dom.state()), (5, 0))

    def test_pipelined_calls_complete_out_of_order(self) -> None:
        """
        Two calls sent back to back on one connection: the first waits on
        a QMP reply that is held, the second completes first; the first
        completes once QEMU answers.
        """
        daemon = Daemon(self)
        env = daemon.env
        conn = daemon.connect()
        first = daemon.run(conn.define_xml(domain_xml("vm1", UUID1)))
        second = daemon.run(conn.define_xml(domain_xml("vm2", UUID2)))
        daemon.run(daemon.start_vm(first, "vm1"))
        daemon.run(daemon.start_vm(second, "vm2"))

        held = env.servers["vm1"].expect("stop", hold=True)
        env.servers["vm2"].expect("stop")
        done: list[str] = []
        d1 = first.suspend().addCallback(lambda _: done.append("vm1"))
        d2 = second.suspend().addCallback(lambda _: done.append("vm2"))
        state = conn.lookup_by_name("vm1")
        daemon.settle()
        self.assertNoResult(d1)
        self.successResultOf(d2)
        self.assertEqual(daemon.run(state).id, 1)
        self.assertEqual(done, ["vm2"])

        env.servers["vm1"].reply(held)
        daemon.settle()
        self.successResultOf(d1)
        self.assertEqual(done, ["vm2", "vm1"])
        self.assertEqual(daemon.run(first.state()), (3, 1))

    def test_qmp_error_reaches_client(self) -> None:
        """
        QEMU refusing a command fails the client's call with the daemon's
        error; the domain keeps running.
        """
        daemon = Daemon(self)
        conn = daemon.connect()
        dom = daemon.run(conn.define_xml(domain_xml()))
        daemon.run(daemon.start_vm(dom, "vm1"))
        daemon.env.servers["vm1"].expect("system_reset",
                                         error=("GenericError", "reset refused"))
        d = dom.reset()
        daemon.settle()
        err = self.failureResultOf(d).value
        self.assertIn("reset refused", str(err))
        self.assertEqual(daemon.run(dom.state()), (1, 1))

