"""
Tests for L{qemud.daemon.dispatch}: every handler against an in-memory fake
driver, and the access checks in libvirtd's order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon.dispatch import LIB_VERSION, Dispatcher
from qemud.errors import (
    InternalError,
    InvalidArgError,
    NoDomainError,
    NoSupportError,
    OperationDeniedError,
    OperationInvalidError,
    QemudError,
    RPCError,
)
from qemud.rpc import remote
from qemud.rpc.remote import PROC, PROCEDURES

# -- the fake driver --------------------------------------------------------


class DomainRef(NamedTuple):
    """libvirt's {name, uuid, id}."""

    name: str
    uuid: bytes
    id: int


@dataclass(frozen=True)
class DomainInfo:
    """virDomainInfo, as the driver reports it."""

    state: int
    max_mem_kib: int
    memory_kib: int
    vcpus: int
    cpu_time_ns: int


@dataclass(frozen=True)
class NodeInfo:
    """virNodeInfo, as the driver reports it."""

    model: str
    memory_kib: int
    cpus: int
    mhz: int
    nodes: int
    sockets: int
    cores: int
    threads: int


@dataclass(frozen=True)
class DomainEvent:
    """A driver event."""

    event_id: int
    ref: DomainRef
    args: tuple[Any, ...]


class _Dom:
    def __init__(self, name: str, xml: str, persistent: bool) -> None:
        self.name = name
        m = re.search(r"<uuid>([0-9a-f-]{36})</uuid>", xml)
        self.uuid = (bytes.fromhex(m.group(1).replace("-", "")) if m
                     else hashlib.md5(name.encode()).digest())
        self.xml = xml
        self.persistent = persistent
        self.state, self.reason, self.id = 5, 0, -1
        self.autostart = False

    def ref(self) -> DomainRef:
        return DomainRef(self.name, self.uuid, self.id)


class FakeDriver:
    """
    An in-memory C{DomainDriver} with libvirt's semantics for the calls the
    dispatcher makes.  With C{hold} set, asynchronous operations wait until
    the test fires the Deferreds collected in C{held}.
    """

    def __init__(self) -> None:
        self.domains: dict[bytes, _Dom] = {}
        self.listeners: list[Callable[[Any], None]] = []
        self.hold = False
        self.held: list[Deferred[Any]] = []
        self.next_id = 1
        self.version = 7002022

    # events
    def add_event_listener(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def remove_event_listener(self, listener: Callable[[Any], None]) -> None:
        self.listeners.remove(listener)

    def emit(self, event_id: int, dom: _Dom, *args: Any) -> None:
        for listener in list(self.listeners):
            listener(DomainEvent(event_id, dom.ref(), args))

    # host
    def hostname(self) -> str:
        return "vm"

    def hypervisor_version(self) -> int:
        return self.version

    def node_info(self) -> NodeInfo:
        return NodeInfo("x86_64", 4942028, 2, 2596, 1, 1, 2, 1)

    def capabilities_xml(self) -> Deferred[str]:
        return succeed("<capabilities/>")

    def node_free_memory(self) -> int:
        return 1 << 30

    # lookup
    def _get(self, uuid: bytes) -> _Dom:
        try:
            return self.domains[uuid]
        except KeyError:
            raise NoDomainError(f"no domain with matching uuid '{uuid.hex()}'") from None

    def list_domains(self, flags: int) -> list[DomainRef]:
        out = []
        for d in self.domains.values():
            active = d.id != -1
            if flags & 3 and not ((flags & 1 and active) or (flags & 2 and not active)):
                continue
            out.append(d.ref())
        return out

    def lookup_by_name(self, name: str) -> DomainRef:
        for d in self.domains.values():
            if d.name == name:
                return d.ref()
        raise NoDomainError(f"no domain with matching name '{name}'")

    def lookup_by_uuid(self, uuid: bytes) -> DomainRef:
        return self._get(uuid).ref()

    def lookup_by_id(self, id: int) -> DomainRef:
        for d in self.domains.values():
            if d.id == id:
                return d.ref()
        raise NoDomainError(f"no domain with matching id {id}")

    # config
    def define_xml(self, xml: str) -> DomainRef:
        m = re.search(r"<name>([^<]+)</name>", xml)
        if m is None:
            from qemud.errors import DomainConfigError
            raise DomainConfigError("missing domain name")
        existing = next((d for d in self.domains.values() if d.name == m.group(1)), None)
        if existing is not None:
            existing.xml, existing.persistent = xml, True
            self.emit(0, existing, 0, 1)
            return existing.ref()
        d = _Dom(m.group(1), xml, True)
        self.domains[d.uuid] = d
        self.emit(0, d, 0, 0)
        return d.ref()

    def undefine(self, uuid: bytes, flags: int) -> None:
        d = self._get(uuid)
        if not d.persistent:
            raise OperationInvalidError("cannot undefine transient domain")
        if d.id == -1:
            del self.domains[uuid]
        else:
            d.persistent = False
        self.emit(0, d, 1, 0)

    def get_xml_desc(self, uuid: bytes, flags: int) -> str:
        d = self._get(uuid)
        return d.xml if d.id == -1 or flags & 2 else d.xml.replace("<domain", f"<domain id='{d.id}'")

    def get_info(self, uuid: bytes) -> DomainInfo:
        d = self._get(uuid)
        return DomainInfo(d.state, 65536, 65536, 1, 0 if d.id == -1 else 123)

    def get_state(self, uuid: bytes) -> tuple[int, int]:
        d = self._get(uuid)
        return d.state, d.reason

    def is_active(self, uuid: bytes) -> bool:
        return self._get(uuid).id != -1

    def is_persistent(self, uuid: bytes) -> bool:
        return self._get(uuid).persistent

    def get_autostart(self, uuid: bytes) -> bool:
        return self._get(uuid).autostart

    def set_autostart(self, uuid: bytes, autostart: bool) -> None:
        d = self._get(uuid)
        if not d.persistent:
            raise OperationInvalidError("cannot set autostart for transient domain")
        d.autostart = autostart

    def has_managed_save(self, uuid: bytes) -> bool:
        self._get(uuid)
        return False

    def get_os_type(self, uuid: bytes) -> str:
        self._get(uuid)
        return "hvm"

    def get_max_vcpus(self, uuid: bytes) -> int:
        self._get(uuid)
        return 2

    def get_vcpus(self, uuid: bytes, flags: int = 0) -> int:
        self._get(uuid)
        return 2 if flags & 4 else 1

    # lifecycle (asynchronous)
    def _async(self, op: Callable[[], Any]) -> Deferred[Any]:
        if self.hold:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: op())
            self.held.append(d)
            return d
        try:
            return succeed(op())
        except QemudError as e:
            return fail(e)

    def _running(self, uuid: bytes) -> _Dom:
        d = self._get(uuid)
        if d.id == -1:
            raise OperationInvalidError("domain is not running")
        return d

    def _start(self, d: _Dom, flags: int) -> DomainRef:
        if d.id != -1:
            raise OperationInvalidError("domain is already running")
        d.id, self.next_id = self.next_id, self.next_id + 1
        d.state, d.reason = (3, 11) if flags & 1 else (1, 1)
        self.emit(0, d, 2, 0)
        return d.ref()

    def create(self, uuid: bytes, flags: int) -> Deferred[Any]:
        return self._async(lambda: self._start(self._get(uuid), flags))

    def create_xml(self, xml: str, flags: int) -> Deferred[Any]:
        def op() -> DomainRef:
            ref = self.define_xml(xml)
            d = self.domains[ref.uuid]
            d.persistent = False
            return self._start(d, flags)
        return self._async(op)

    def _stop(self, d: _Dom, reason: int, detail: int) -> None:
        d.id, d.state, d.reason = -1, 5, reason
        self.emit(0, d, 5, detail)
        if not d.persistent:
            del self.domains[d.uuid]

    def destroy(self, uuid: bytes, flags: int) -> Deferred[Any]:
        return self._async(lambda: self._stop(self._running(uuid), 2, 1))

    def shutdown(self, uuid: bytes, flags: int) -> Deferred[Any]:
        return self._async(lambda: self._stop(self._running(uuid), 1, 0))

    def reboot(self, uuid: bytes, flags: int) -> Deferred[Any]:
        return self._async(lambda: self.emit(1, self._running(uuid)))

    def reset(self, uuid: bytes) -> Deferred[Any]:
        return self._async(lambda: self._running(uuid) and None)

    def _set_state(self, uuid: bytes, state: int, reason: int, event: int) -> None:
        d = self._running(uuid)
        d.state, d.reason = state, reason
        self.emit(0, d, event, 0)

    def suspend(self, uuid: bytes) -> Deferred[Any]:
        return self._async(lambda: self._set_state(uuid, 3, 1, 3))

    def resume(self, uuid: bytes) -> Deferred[Any]:
        return self._async(lambda: self._set_state(uuid, 1, 5, 4))


XML = "<domain type='kvm'><name>rt1</name></domain>"


class Client:
    """A minimal L{ClientContext} recording what handlers ask for."""

    def __init__(self, *, readonly: bool = False, is_open: bool = True) -> None:
        self.readonly = readonly
        self.is_open = is_open
        self.uri: str | None = None
        self.close_callback = False
        self.keepalive = False
        self.callbacks: dict[int, tuple[int, bytes | None]] = {}
        self.legacy: set[int] = set()
        self.closed = False

    def enable_keepalive(self) -> None:
        self.keepalive = True

    def connection_closed(self) -> None:
        self.closed = True

    def register_callback(self, event_id: int, uuid: bytes | None) -> int:
        cid = len(self.callbacks)
        self.callbacks[cid] = (event_id, uuid)
        return cid

    def deregister_callback(self, callback_id: int) -> None:
        if self.callbacks.pop(callback_id, None) is None:
            raise InternalError(f"domain event callback {callback_id} not registered")

    def register_legacy(self, event_id: int) -> None:
        self.legacy.add(event_id)

    def deregister_legacy(self, event_id: int) -> None:
        self.legacy.discard(event_id)


class DispatcherTestBase(SynchronousTestCase):
    """Helpers: call a procedure and decode its reply."""

    def setUp(self) -> None:
        self.driver = FakeDriver()
        self.dispatcher = Dispatcher(self.driver, secure=True, default_uri="qemu:///system")
        self.client = Client()

    def call(self, number: int, *args: Any, client: Client | None = None) -> Any:
        proc = PROCEDURES[number]
        assert proc.args is not None and proc.ret is not None
        payload = proc.args.encode(args if proc.args is not remote.VOID else None)
        result = self.dispatcher.call(client or self.client, number, payload)
        if isinstance(result, Deferred):
            out: list[Any] = []
            result.addBoth(out.append)
            self.assertEqual(len(out), 1, f"procedure {number} did not finish")
            if isinstance(out[0], Failure):
                out[0].raiseException()
            result = out[0]
        return proc.ret.unpack(result)

    def fails(self, exc_type: type[QemudError], number: int, *args: Any,
              client: Client | None = None) -> QemudError:
        try:
            value = self.call(number, *args, client=client)
        except QemudError as e:
            self.assertIsInstance(e, exc_type)
            return e
        else:
            self.fail(f"procedure {number} returned {value!r}")

    def define(self, xml: str = XML) -> Any:
        return self.call(PROC.DOMAIN_DEFINE_XML, xml).dom


class AccessTests(DispatcherTestBase):
    """Unknown numbers, not-open, read-only, not supported — in libvirtd's order."""

    def test_unknown_procedure_beyond_table(self) -> None:
        """Numbers outside 1..443 are RPC errors naming the number."""
        for number in (0, -1, 444, 100000):
            with self.assertRaises(RPCError) as cm:
                self.dispatcher.call(self.client, number, b"")
            self.assertEqual(cm.exception.message, f"unknown procedure: {number}")
            self.assertEqual(cm.exception.code, 39)

    def test_not_implemented_is_no_support(self) -> None:
        """A procedure in libvirt's table without a handler is NO_SUPPORT with its API name."""
        with self.assertRaises(NoSupportError) as cm:
            self.dispatcher.call(self.client, PROC.DOMAIN_SET_MEMORY, b"")
        self.assertEqual(cm.exception.message,
                         "this function is not supported by the connection driver: "
                         "virDomainSetMemory")

    def test_missing_driver_method_is_no_support(self) -> None:
        """Second-tier procedures answer NO_SUPPORT while the driver lacks the method."""
        e = self.fails(NoSupportError, PROC.DOMAIN_SAVE, (self.define()), "/tmp/x")
        self.assertEqual(e.detail, "virDomainSave")
        self.assertNotIn(PROC.DOMAIN_MANAGED_SAVE, self.dispatcher.entries)

    def test_call_before_open(self) -> None:
        """Only the handshake works before CONNECT_OPEN."""
        client = Client(is_open=False)
        e = self.fails(InternalError, PROC.CONNECT_GET_HOSTNAME, client=client)
        self.assertEqual(e.message, "internal error: connection not open")
        self.assertEqual(self.call(PROC.AUTH_LIST, client=client).types, [0])
        self.assertEqual(self.call(PROC.CONNECT_SUPPORTS_FEATURE, 10, client=client).supported, 1)
        self.assertRaises(InternalError, self.dispatcher.call, client, PROC.DOMAIN_SET_MEMORY, b"")

    def test_read_only_denies_mutating(self) -> None:
        """A read-only connection gets OPERATION_DENIED with libvirt's text."""
        dom = self.define()
        ro = Client(readonly=True)
        e = self.fails(OperationDeniedError, PROC.DOMAIN_CREATE, dom, client=ro)
        self.assertEqual(e.message, "operation forbidden: read only access prevents virDomainCreate")
        self.assertEqual((e.code, e.domain), (29, 20))
        self.assertEqual(self.driver.domains[dom.uuid].id, -1)

    def test_read_only_denial_precedes_no_support(self) -> None:
        """An unimplemented mutating call on a read-only connection is denied, not unsupported."""
        e = self.fails(OperationDeniedError, PROC.DOMAIN_SAVE, self.define(), "/x",
                       client=Client(readonly=True))
        self.assertEqual(e.detail, "read only access prevents virDomainSave")

    def test_read_only_allows_queries(self) -> None:
        """Lookups, state and plain XML work read-only."""
        dom = self.define()
        ro = Client(readonly=True)
        self.assertEqual(self.call(PROC.DOMAIN_LOOKUP_BY_NAME, "rt1", client=ro).dom, dom)
        self.assertEqual(self.call(PROC.DOMAIN_GET_STATE, dom, 0, client=ro), (5, 0))
        self.assertEqual(self.call(PROC.DOMAIN_GET_XML_DESC, dom, 2, client=ro).xml, XML)

    def test_read_only_secure_xml_denied(self) -> None:
        """GET_XML_DESC with SECURE or MIGRATABLE is denied read-only."""
        dom = self.define()
        for flags in (1, 8, 9):
            e = self.fails(OperationDeniedError, PROC.DOMAIN_GET_XML_DESC, dom, flags,
                           client=Client(readonly=True))
            self.assertEqual(e.detail, "read only access prevents virDomainGetXMLDesc")
        self.assertEqual(self.call(PROC.DOMAIN_GET_XML_DESC, dom, 1).xml, XML)

    def test_undecodable_arguments(self) -> None:
        """Arguments that do not decode are an RPC error, not a crash."""
        with self.assertRaises(RPCError) as cm:
            self.dispatcher.call(self.client, PROC.DOMAIN_LOOKUP_BY_NAME, b"\0\0\0\xff")
        self.assertEqual(cm.exception.message, "Unable to decode message payload")


class HandshakeTests(DispatcherTestBase):
    """Connection-level procedures."""

    def test_open(self) -> None:
        """CONNECT_OPEN marks the client open and remembers its URI."""
        client = Client(is_open=False)
        self.call(PROC.CONNECT_OPEN, "qemu:///session", 0, client=client)
        self.assertTrue(client.is_open)
        self.assertFalse(client.readonly)
        self.assertEqual(self.call(PROC.CONNECT_GET_URI, client=client).uri, "qemu:///session")

    def test_open_twice(self) -> None:
        """A second CONNECT_OPEN fails with code 1 'connection already open'."""
        e = self.fails(InternalError, PROC.CONNECT_OPEN, "qemu:///system", 0)
        self.assertEqual((e.code, e.message), (1, "internal error: connection already open"))

    def test_open_read_only_flag(self) -> None:
        """Flag 1 makes the connection read-only."""
        client = Client(is_open=False)
        self.call(PROC.CONNECT_OPEN, None, 1, client=client)
        self.assertTrue(client.readonly)

    def test_default_uri(self) -> None:
        """An absent, empty or 'qemu:///' name reports the daemon's default URI."""
        for name in (None, "", "qemu:///"):
            client = Client(is_open=False)
            self.call(PROC.CONNECT_OPEN, name, 0, client=client)
            self.assertEqual(self.call(PROC.CONNECT_GET_URI, client=client).uri,
                             "qemu:///system")

    def test_close(self) -> None:
        """CONNECT_CLOSE drops registrations and closes the connection state."""
        self.call(PROC.CONNECT_CLOSE)
        self.assertTrue(self.client.closed)
        self.assertFalse(self.client.is_open)

    def test_features(self) -> None:
        """Features 10, 14, 15 are supported (10 starts keepalive); 8 and unknown are not."""
        answers = {f: self.call(PROC.CONNECT_SUPPORTS_FEATURE, f).supported
                   for f in (8, 10, 14, 15, 99)}
        self.assertEqual(answers, {8: 0, 10: 1, 14: 1, 15: 1, 99: 0})
        self.assertTrue(self.client.keepalive)

    def test_close_callback(self) -> None:
        """360/361 record the close callback."""
        self.call(PROC.CONNECT_REGISTER_CLOSE_CALLBACK)
        self.assertTrue(self.client.close_callback)
        self.call(PROC.CONNECT_UNREGISTER_CLOSE_CALLBACK)
        self.assertFalse(self.client.close_callback)

    def test_host_queries(self) -> None:
        """Type, versions, hostname, capabilities, free memory, is-secure."""
        self.assertEqual(self.call(PROC.CONNECT_GET_TYPE).type, "QEMU")
        self.assertEqual(self.call(PROC.CONNECT_GET_VERSION).hv_ver, 7002022)
        self.assertEqual(self.call(PROC.CONNECT_GET_LIB_VERSION).lib_ver, LIB_VERSION)
        self.assertEqual(self.call(PROC.CONNECT_GET_HOSTNAME).hostname, "vm")
        self.assertEqual(self.call(PROC.CONNECT_GET_CAPABILITIES).capabilities,
                         "<capabilities/>")
        self.assertEqual(self.call(PROC.NODE_GET_FREE_MEMORY).freeMem, 1 << 30)
        self.assertEqual(self.call(PROC.CONNECT_IS_SECURE).secure, 1)
        tcp = Dispatcher(self.driver, secure=False, default_uri="qemu:///system")
        self.assertEqual(tcp.call(self.client, PROC.CONNECT_IS_SECURE, b""), b"\0\0\0\0")

    def test_node_info(self) -> None:
        """NODE_GET_INFO pads the model to 32 chars."""
        info = self.call(PROC.NODE_GET_INFO)
        self.assertEqual(info.model, b"x86_64" + b"\0" * 26)
        self.assertEqual((info.memory, info.cpus, info.mhz, info.threads), (4942028, 2, 2596, 1))

    def test_security_model_none(self) -> None:
        """
        NODE_GET_SECURITY_MODEL answers model "none" and DOI "0" with their
        NULs, as libvirtd without a security driver does.
        """
        self.assertEqual(self.call(PROC.NODE_GET_SECURITY_MODEL), (b"none\0", b"0\0"))


class DomainTests(DispatcherTestBase):
    """Listing, lookup, define, lifecycle and queries."""

    def test_lookup_missing(self) -> None:
        """Lookups of unknown domains are NO_DOMAIN with libvirt's text."""
        e = self.fails(NoDomainError, PROC.DOMAIN_LOOKUP_BY_NAME, "nosuchdomain")
        self.assertEqual(e.message,
                         "Domain not found: no domain with matching name 'nosuchdomain'")
        self.fails(NoDomainError, PROC.DOMAIN_LOOKUP_BY_ID, 7)
        self.fails(NoDomainError, PROC.DOMAIN_LOOKUP_BY_UUID, b"\1" * 16)

    def test_define_start_lookup(self) -> None:
        """Define, start; the new id is visible by UUID and by id."""
        dom = self.define()
        self.assertEqual((dom.name, dom.id), ("rt1", -1))
        self.assertEqual(self.call(PROC.DOMAIN_CREATE, dom), None)
        by_uuid = self.call(PROC.DOMAIN_LOOKUP_BY_UUID, dom.uuid).dom
        self.assertEqual(by_uuid.id, 1)
        self.assertEqual(self.call(PROC.DOMAIN_LOOKUP_BY_ID, 1).dom, by_uuid)
        self.assertEqual(self.call(PROC.DOMAIN_GET_STATE, dom, 0), (1, 1))
        self.assertEqual(self.call(PROC.DOMAIN_IS_ACTIVE, dom).active, 1)

    def test_define_xml_flags(self) -> None:
        """350 accepts VALIDATE and refuses unknown flags with INVALID_ARG."""
        self.assertEqual(self.call(PROC.DOMAIN_DEFINE_XML_FLAGS, XML, 1).dom.name, "rt1")
        e = self.fails(InvalidArgError, PROC.DOMAIN_DEFINE_XML_FLAGS, XML, 4)
        self.assertIn("unsupported flags (0x4)", e.message)

    def test_wrong_state(self) -> None:
        """Starting twice is OPERATION_INVALID from the driver's Deferred."""
        dom = self.define()
        self.call(PROC.DOMAIN_CREATE, dom)
        d = self.dispatcher.call(self.client, PROC.DOMAIN_CREATE,
                                 remote.DomainArgs.encode((dom,)))
        self.assertEqual(self.failureResultOf(d, OperationInvalidError).value.message,
                         "Requested operation is not valid: domain is already running")

    def test_create_with_flags_returns_domain(self) -> None:
        """196 returns the domain with its new id."""
        dom = self.define()
        self.assertEqual(self.call(PROC.DOMAIN_CREATE_WITH_FLAGS, dom, 0).dom.id, 1)

    def test_create_xml_transient(self) -> None:
        """CREATE_XML starts a transient domain."""
        dom = self.call(PROC.DOMAIN_CREATE_XML, XML, 0).dom
        self.assertEqual(dom.id, 1)
        self.assertEqual(self.call(PROC.DOMAIN_IS_PERSISTENT, dom).persistent, 0)
        self.call(PROC.DOMAIN_DESTROY, dom)
        self.assertEqual(self.call(PROC.CONNECT_LIST_ALL_DOMAINS, 1, 0), ([], 0))

    def test_lifecycle(self) -> None:
        """suspend, resume, reboot, reset, shutdown, destroy_flags reach the driver."""
        dom = self.define()
        self.call(PROC.DOMAIN_CREATE, dom)
        self.call(PROC.DOMAIN_SUSPEND, dom)
        self.assertEqual(self.call(PROC.DOMAIN_GET_STATE, dom, 0), (3, 1))
        self.call(PROC.DOMAIN_RESUME, dom)
        self.assertEqual(self.call(PROC.DOMAIN_GET_STATE, dom, 0), (1, 5))
        self.call(PROC.DOMAIN_REBOOT, dom, 0)
        self.call(PROC.DOMAIN_RESET, dom, 0)
        self.fails(InvalidArgError, PROC.DOMAIN_RESET, dom, 1)
        self.call(PROC.DOMAIN_SHUTDOWN, dom)
        self.assertEqual(self.call(PROC.DOMAIN_GET_STATE, dom, 0), (5, 1))
        self.call(PROC.DOMAIN_CREATE, dom)
        self.call(PROC.DOMAIN_DESTROY_FLAGS, dom, 0)
        self.assertEqual(self.call(PROC.DOMAIN_GET_STATE, dom, 0), (5, 2))
        self.call(PROC.DOMAIN_CREATE, dom)
        self.call(PROC.DOMAIN_SHUTDOWN_FLAGS, dom, 1)
        self.fails(OperationInvalidError, PROC.DOMAIN_DESTROY, dom)

    def test_undefine(self) -> None:
        """35 and 231 undefine; the domain is then gone."""
        dom = self.define()
        self.call(PROC.DOMAIN_UNDEFINE_FLAGS, dom, 0)
        self.fails(NoDomainError, PROC.DOMAIN_LOOKUP_BY_UUID, dom.uuid)
        dom = self.define()
        self.call(PROC.DOMAIN_UNDEFINE, dom)
        self.assertEqual(self.call(PROC.CONNECT_LIST_ALL_DOMAINS, 1, 0).ret, 0)

    def test_list_all(self) -> None:
        """273 filters by flags and honours need_results."""
        a = self.define()
        b = self.define(XML.replace("rt1", "rt2"))
        self.call(PROC.DOMAIN_CREATE, a)
        a = self.call(PROC.DOMAIN_LOOKUP_BY_UUID, a.uuid).dom
        self.assertEqual(self.call(PROC.CONNECT_LIST_ALL_DOMAINS, 1, 3), ([a, b], 2))
        self.assertEqual(self.call(PROC.CONNECT_LIST_ALL_DOMAINS, 1, 1), ([a], 1))
        self.assertEqual(self.call(PROC.CONNECT_LIST_ALL_DOMAINS, 0, 0), ([], 2))

    def test_legacy_listing(self) -> None:
        """51/37 count and list active ids, 25/21 inactive names."""
        a = self.define()
        self.define(XML.replace("rt1", "rt2"))
        self.call(PROC.DOMAIN_CREATE, a)
        self.assertEqual(self.call(PROC.CONNECT_NUM_OF_DOMAINS).num, 1)
        self.assertEqual(self.call(PROC.CONNECT_LIST_DOMAINS, 10).ids, [1])
        self.assertEqual(self.call(PROC.CONNECT_LIST_DOMAINS, 0).ids, [])
        self.assertEqual(self.call(PROC.CONNECT_NUM_OF_DEFINED_DOMAINS).num, 1)
        self.assertEqual(self.call(PROC.CONNECT_LIST_DEFINED_DOMAINS, 10).names, ["rt2"])
        self.fails(RPCError, PROC.CONNECT_LIST_DOMAINS, 16385)

    def test_queries(self) -> None:
        """Info, OS type, XML, autostart, persistence."""
        dom = self.define()
        self.assertEqual(self.call(PROC.DOMAIN_GET_INFO, dom), (5, 65536, 65536, 1, 0))
        self.assertEqual(self.call(PROC.DOMAIN_GET_OS_TYPE, dom).type, "hvm")
        self.assertEqual(self.call(PROC.DOMAIN_GET_XML_DESC, dom, 0).xml, XML)
        self.assertEqual(self.call(PROC.DOMAIN_GET_AUTOSTART, dom).autostart, 0)
        self.call(PROC.DOMAIN_SET_AUTOSTART, dom, 1)
        self.assertEqual(self.call(PROC.DOMAIN_GET_AUTOSTART, dom).autostart, 1)
        self.assertEqual(self.call(PROC.DOMAIN_IS_PERSISTENT, dom).persistent, 1)
        self.fails(InvalidArgError, PROC.DOMAIN_GET_STATE, dom, 1)

    def test_cheap_extras(self) -> None:
        """183, 187, 426, 202, 121, 18, 200 answer for a known domain only."""
        dom = self.define()
        self.assertEqual(self.call(PROC.DOMAIN_HAS_MANAGED_SAVE_IMAGE, dom, 0).result, 0)
        self.assertEqual(self.call(PROC.DOMAIN_SNAPSHOT_NUM, dom, 0).num, 0)
        self.assertEqual(self.call(PROC.DOMAIN_GET_MESSAGES, dom, 0).msgs, [])
        self.assertEqual(self.call(PROC.DOMAIN_IS_UPDATED, dom).updated, 0)
        self.assertEqual(self.call(PROC.DOMAIN_GET_SECURITY_LABEL, dom), (b"\0", 0))
        self.assertEqual(self.call(PROC.DOMAIN_GET_MAX_VCPUS, dom).num, 2)
        self.assertEqual(self.call(PROC.DOMAIN_GET_VCPUS_FLAGS, dom, 0).num, 1)
        ghost = remote.NonnullDomain("ghost", b"\7" * 16, -1)
        for number in (PROC.DOMAIN_SNAPSHOT_NUM, PROC.DOMAIN_HAS_MANAGED_SAVE_IMAGE,
                       PROC.DOMAIN_GET_MESSAGES):
            self.fails(NoDomainError, number, ghost, 0)

    def test_second_tier_when_driver_has_it(self) -> None:
        """Save/restore/device calls reach driver methods of the same name."""
        calls: list[tuple[Any, ...]] = []
        self.driver.save = lambda *a: calls.append(("save",) + a)  # type: ignore[attr-defined]
        self.driver.restore = lambda *a: calls.append(("restore",) + a)  # type: ignore[attr-defined]
        self.driver.attach_device = (  # type: ignore[attr-defined]
            lambda *a: calls.append(("attach",) + a))
        dispatcher = Dispatcher(self.driver, secure=True, default_uri="qemu:///system")
        dom = self.define()
        dispatcher.call(self.client, PROC.DOMAIN_SAVE, remote.SaveArgs.encode((dom, "/f")))
        dispatcher.call(self.client, PROC.DOMAIN_RESTORE_FLAGS,
                        remote.RestoreFlagsArgs.encode(("/f", None, 4)))
        dispatcher.call(self.client, PROC.DOMAIN_ATTACH_DEVICE,
                        remote.DomainXMLArgs.encode((dom, "<disk/>")))
        self.assertEqual(calls, [("save", dom.uuid, "/f", None, 0), ("restore", "/f", None, 4),
                                 ("attach", dom.uuid, "<disk/>", 1)])


class EventRegistrationTests(DispatcherTestBase):
    """Event procedures delegate to the connection."""

    def test_callback_register(self) -> None:
        """316 returns the connection's callback id; 317 removes it."""
        dom = self.define()
        self.assertEqual(self.call(PROC.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, 0, None)
                         .callbackID, 0)
        self.assertEqual(self.call(PROC.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, 0, dom)
                         .callbackID, 1)
        self.assertEqual(self.client.callbacks, {0: (0, None), 1: (0, dom.uuid)})
        self.call(PROC.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY, 0)
        self.fails(InternalError, PROC.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY, 0)

    def test_legacy_register(self) -> None:
        """167/168 and 105/106 register legacy event ids."""
        self.call(PROC.CONNECT_DOMAIN_EVENT_REGISTER_ANY, 1)
        self.assertEqual(self.call(PROC.CONNECT_DOMAIN_EVENT_REGISTER).cb_registered, 1)
        self.assertEqual(self.client.legacy, {0, 1})
        self.call(PROC.CONNECT_DOMAIN_EVENT_DEREGISTER_ANY, 1)
        self.assertEqual(self.call(PROC.CONNECT_DOMAIN_EVENT_DEREGISTER).cb_registered, 0)
        self.assertEqual(self.client.legacy, set())
