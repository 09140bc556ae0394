"""
A tiny scripted libvirt RPC server for the client's unit tests, built on
L{qemud.rpc} (not the real daemon), connected to the client in memory with
L{twisted.test.iosim}.

It answers the handshake, keeps a few canned domains in a dict, records
every call, can hold replies back (to answer them later in any order), and
can send events and keepalive packets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from qemudclient.connection import Connection, open_connection
from qemudclient.protocol import RPCClientProtocol
from qemudclient.uri import parse_uri
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim

from qemud.errors import NoDomainError, OperationInvalidError, QemudError
from qemud.rpc import framing, remote
from qemud.rpc.errors import encode_error

UUID1 = uuid.UUID("8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b").bytes
UUID2 = uuid.UUID("11111111-2222-3333-4444-555555555555").bytes


class FakeDomain:
    """A canned domain: name, uuid, id, state, reason."""

    def __init__(self, name: str, uuid: bytes, id: int = -1, state: int = 5,
                 reason: int = 0) -> None:
        self.name = name
        self.uuid = uuid
        self.id = id
        self.state = state
        self.reason = reason
        self.autostart = 0

    def ref(self) -> tuple[str, bytes, int]:
        return (self.name, self.uuid, self.id)


class ScriptedServer(Protocol):
    """
    The server side.

    @ivar calls: C{(proc, decoded args)} for every call received.
    @ivar hold: when true, replies are queued in L{held} instead of sent.
    @ivar hold_procs: procedures whose replies are always queued in L{held}.
    @ivar answer_pings: whether to answer keepalive PINGs.
    """

    def __init__(self) -> None:
        self.decoder = framing.MessageDecoder()
        self.calls: list[tuple[int, Any]] = []
        self.serials: list[int] = []
        self.hold = False
        self.hold_procs: set[int] = set()
        self.held: list[tuple[framing.Header, int, bytes]] = []
        self.answer_pings = True
        self.pings = 0
        self.pongs = 0
        self.features = {10: 1, 14: 1}
        self.domains = [
            FakeDomain("rt1", UUID1, 1, 1, 1),
            FakeDomain("rt2", UUID2),
        ]
        self.next_callback = 0
        self.callbacks: dict[int, int] = {}
        self.handlers: dict[int, Callable[[Any], Any]] = {
            remote.PROC.AUTH_LIST: lambda a: ([remote.AUTH_NONE],),
            remote.PROC.CONNECT_SUPPORTS_FEATURE: lambda a: (self.features.get(a.feature, 0),),
            remote.PROC.CONNECT_OPEN: lambda a: None,
            remote.PROC.CONNECT_CLOSE: lambda a: None,
            remote.PROC.CONNECT_GET_TYPE: lambda a: ("QEMU",),
            remote.PROC.CONNECT_GET_VERSION: lambda a: (7002022,),
            remote.PROC.CONNECT_GET_LIB_VERSION: lambda a: (9000000,),
            remote.PROC.CONNECT_GET_HOSTNAME: lambda a: ("vm",),
            remote.PROC.CONNECT_GET_CAPABILITIES: lambda a: ("<capabilities/>",),
            remote.PROC.NODE_GET_INFO: lambda a: (
                b"x86_64".ljust(32, b"\0"), 4942028, 2, 2596, 1, 1, 2, 1),
            remote.PROC.CONNECT_LIST_ALL_DOMAINS: self._list,
            remote.PROC.DOMAIN_LOOKUP_BY_NAME: lambda a: (self._find(name=a.name).ref(),),
            remote.PROC.DOMAIN_LOOKUP_BY_UUID: lambda a: (self._find(uuid=a.uuid).ref(),),
            remote.PROC.DOMAIN_LOOKUP_BY_ID: lambda a: (self._find(id=a.id).ref(),),
            remote.PROC.DOMAIN_GET_STATE: lambda a: (self._dom(a).state, self._dom(a).reason),
            remote.PROC.DOMAIN_GET_INFO: self._info,
            remote.PROC.DOMAIN_GET_OS_TYPE: lambda a: ("hvm",),
            remote.PROC.DOMAIN_IS_PERSISTENT: lambda a: (1,),
            remote.PROC.DOMAIN_IS_ACTIVE: lambda a: (int(self._dom(a).id >= 0),),
            remote.PROC.DOMAIN_GET_AUTOSTART: lambda a: (self._dom(a).autostart,),
            remote.PROC.DOMAIN_SET_AUTOSTART: self._set_autostart,
            remote.PROC.DOMAIN_HAS_MANAGED_SAVE_IMAGE: lambda a: (0,),
            remote.PROC.DOMAIN_GET_XML_DESC: lambda a: (
                f"<domain type='kvm'><name>{self._dom(a).name}</name>"
                f"<!-- flags {a.flags} --></domain>\n",),
            remote.PROC.DOMAIN_CREATE: self._create,
            remote.PROC.DOMAIN_SUSPEND: self._suspend,
            remote.PROC.DOMAIN_DESTROY: self._destroy,
            remote.PROC.DOMAIN_DEFINE_XML: self._define,
            remote.PROC.DOMAIN_UNDEFINE_FLAGS: self._undefine,
            remote.PROC.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: self._register,
            remote.PROC.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: self._deregister,
        }

    # -- canned behaviour ---------------------------------------------------

    def _find(self, **kw: Any) -> FakeDomain:
        for d in self.domains:
            if all(getattr(d, k) == v for k, v in kw.items()):
                return d
        what = ", ".join(f"{k} {v!r}" for k, v in kw.items())
        raise NoDomainError(f"no domain with matching {what}")

    def _dom(self, a: Any) -> FakeDomain:
        return self._find(uuid=a.dom.uuid)

    def _list(self, a: Any) -> Any:
        doms = [d for d in self.domains
                if a.flags == 0 or (a.flags & 1 and d.id >= 0) or (a.flags & 2 and d.id < 0)]
        return ([d.ref() for d in doms], len(doms))

    def _info(self, a: Any) -> Any:
        d = self._find(uuid=a.dom.uuid)
        return (d.state, 65536, 65536, 1, 2_000_000_000 if d.id >= 0 else 0)

    def _set_autostart(self, a: Any) -> None:
        self._find(uuid=a.dom.uuid).autostart = a.autostart

    def _create(self, a: Any) -> None:
        d = self._find(uuid=a.dom.uuid)
        if d.id >= 0:
            raise OperationInvalidError("domain is already running")
        d.id, d.state, d.reason = 7, 1, 1
        self.emit(0, d, 2, 0)

    def _suspend(self, a: Any) -> None:
        d = self._find(uuid=a.dom.uuid)
        d.state, d.reason = 3, 1

    def _destroy(self, a: Any) -> None:
        d = self._find(uuid=a.dom.uuid)
        if d.id < 0:
            raise OperationInvalidError("domain is not running")
        d.id, d.state, d.reason = -1, 5, 2
        self.emit(0, d, 5, 1)

    def _define(self, a: Any) -> Any:
        name = a.xml.split("<name>")[1].split("</name>")[0]
        d = FakeDomain(name, uuid.uuid5(uuid.NAMESPACE_DNS, name).bytes)
        self.domains.append(d)
        self.emit(0, d, 0, 0)
        return (d.ref(),)

    def _undefine(self, a: Any) -> None:
        d = self._find(uuid=a.dom.uuid)
        self.domains.remove(d)
        self.emit(0, d, 1, 0)

    def _register(self, a: Any) -> Any:
        cid = self.next_callback
        self.next_callback += 1
        self.callbacks[cid] = a.eventID
        return (cid,)

    def _deregister(self, a: Any) -> None:
        del self.callbacks[a.callbackID]

    # -- wire ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        for header, payload in self.decoder.feed(data):
            if header.prog == remote.KEEPALIVE_PROGRAM:
                if header.proc == remote.KEEPALIVE_PING:
                    self.pings += 1
                    if self.answer_pings:
                        self.send_keepalive(remote.KEEPALIVE_PONG)
                else:
                    self.pongs += 1
                continue
            proc = remote.PROCEDURES[header.proc]
            assert proc.args is not None and proc.ret is not None, proc.name
            args = proc.args.unpack(payload)
            self.calls.append((header.proc, args))
            self.serials.append(header.serial)
            try:
                ret = self.handlers[header.proc](args)
                status, body = framing.OK, proc.ret.encode(ret)
            except QemudError as e:
                status, body = framing.ERROR, encode_error(e)
            reply = header._replace(type=framing.REPLY)
            if self.hold or header.proc in self.hold_procs:
                self.held.append((reply, status, body))
            else:
                self.send(reply, status, body)

    def send(self, header: framing.Header, status: int, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(framing.encode_message(header._replace(status=status), body))

    def release(self, order: list[int] | None = None) -> None:
        """Send the held replies, in the given order of indexes (default: as held)."""
        held, self.held = self.held, []
        for i in order if order is not None else range(len(held)):
            self.send(*held[i])

    def send_keepalive(self, proc: int) -> None:
        header = framing.Header(remote.KEEPALIVE_PROGRAM, 1, proc, framing.MESSAGE, 0, framing.OK)
        self.send(header, framing.OK, b"")

    def emit(self, event_id: int, d: FakeDomain, *fields: Any) -> None:
        """Send an event to every callback registered for C{event_id}."""
        proc = remote.CALLBACK_EVENT_PROCS[event_id]
        layout = remote.MESSAGES[proc]
        for cid, eid in sorted(self.callbacks.items()):
            if eid != event_id:
                continue
            if proc in (318, 319, 328, 333):
                body = layout.encode((cid, (d.ref(), *fields)))
            else:
                body = layout.encode((cid, d.ref(), *fields))
            header = framing.Header(remote.REMOTE_PROGRAM, 1, proc, framing.MESSAGE, 1, framing.OK)
            self.send(header, framing.OK, body)

    def procs(self) -> list[int]:
        """@return: the procedure numbers called, in order."""
        return [p for p, _ in self.calls]


class Harness:
    """
    A client protocol and a L{ScriptedServer} joined in memory, with a clock.
    """

    def __init__(self, server: ScriptedServer | None = None) -> None:
        self.clock = Clock()
        server_instance = server or ScriptedServer()
        self.client, self.server, self.pump = iosim.connectedServerAndClient(
            lambda: server_instance, lambda: RPCClientProtocol(self.clock), greet=False
        )
        self.pump.flush()

    def flush(self) -> None:
        """Deliver everything in flight, both ways."""
        self.pump.flush()

    def open(self, uri: str = "qemu+tcp://127.0.0.1/system", readonly: bool = False,
             keepalive_interval: float = 5, keepalive_count: int = 5) -> Any:
        """Run the handshake; @return: the Deferred of the L{Connection}."""
        from twisted.internet.defer import ensureDeferred

        d = ensureDeferred(open_connection(
            self.client, parse_uri(uri, readonly=readonly), readonly,
            keepalive_interval, keepalive_count))
        self.flush()
        return d


def open_harness(case: Any, **kw: Any) -> tuple[Harness, Connection]:
    """Build a harness and run the handshake; @return: it and the connection."""
    h = Harness()
    conn = case.successResultOf(h.open(**kw))
    return h, conn
