# -*- test-case-name: tests.client.test_connection -*-
"""
The client API: L{connect}, L{Connection} and L{Domain}.

Every method returns a L{Deferred} (so it can be C{await}ed) and goes
through L{Connection.call}, which encodes the arguments with the procedure's
XDR type from L{qemud.rpc.remote}, sends them on the pipelined
L{RPCClientProtocol} and decodes the reply.

A read-only connection refuses every state-changing call locally, without
sending it, as libvirt's client library does (the daemon would refuse it
too).
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from qemud.rpc.xdr import WireError
from qemudclient import _wire
from qemudclient.errors import (
    AuthFailed,
    ConnectFailed,
    ConnectionLost,
    NoSupport,
    OperationDenied,
    ProtocolError,
    QemudClientError,
    error_class,
)
from qemudclient.model import DomainEvent, DomainInfo, DomainRef, JobInfo, NodeInfo
from qemudclient.protocol import RPCClientFactory, RPCClientProtocol
from qemudclient.transport import endpoint_for
from qemudclient.uri import ParsedURI, parse_uri

T = TypeVar("T")

# virConnectListAllDomainsFlags / CREATE / XML flags used here
LIST_ACTIVE = 1
LIST_INACTIVE = 2
XML_SECURE = 1
XML_INACTIVE = 2
START_PAUSED = 1
OPEN_READONLY = 1

# VIR_DRV_FEATURE_*
FEATURE_PROGRAM_KEEPALIVE = 10
FEATURE_REMOTE_EVENT_CALLBACK = 14

AUTH_NONE = 0


def _deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    return ensureDeferred(coro)


class Subscription:
    """
    One event registration (C{CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY}).

    @ivar callback_id: the daemon's ID for it.
    @ivar event_id: libvirt's event ID.
    """

    def __init__(self, conn: Connection, callback_id: int, event_id: int) -> None:
        self._conn = conn
        self.callback_id = callback_id
        self.event_id = event_id
        self.active = True

    def cancel(self) -> Deferred[None]:
        """
        Stop the events (C{..._DEREGISTER_ANY}); local delivery stops at once.

        @return: fires once the daemon confirmed.
        """
        if not self.active:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        self.active = False
        self._conn._callbacks.pop(self.callback_id, None)
        return self._conn._void(_wire.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY,
                                (self.callback_id,))


class EventStream:
    """
    Events as an asynchronous iterator::

        async for event in conn.events(0):
            ...

    The registration is sent at once, when the stream is made, and events
    are queued from then on, so none is lost between C{events()} and the
    first step.  Iteration ends when L{close} is called or the connection is
    closed on purpose, and raises L{ConnectionLost} when it drops.
    """

    def __init__(self, conn: Connection, event_id: int, domain: Domain | None) -> None:
        self._conn = conn
        self._queue: list[DomainEvent] = []
        self._waiter: Deferred[None] | None = None
        self._sub: Subscription | None = None
        self._done: BaseException | None = None
        self._error: Failure | None = None
        self._registration_waiters: list[Deferred[Subscription]] = []
        conn.subscribe(event_id, self._push, domain).addCallbacks(
            self._got_subscription, self._subscription_failed
        )
        conn.when_closed().addCallback(self._closed)

    def _got_subscription(self, sub: Subscription) -> None:
        self._sub = sub
        waiters, self._registration_waiters = self._registration_waiters, []
        for d in waiters:
            d.callback(sub)

    def _subscription_failed(self, failure: Failure) -> None:
        self._error = failure
        if self._done is None:
            self._done = failure.value
        waiters, self._registration_waiters = self._registration_waiters, []
        for d in waiters:
            d.errback(failure)
        self._wake()

    def when_registered(self) -> Deferred[Subscription]:
        """
        @return: a new Deferred that fires with the L{Subscription} once the
            daemon registered the stream, or fails if it refused.
        """
        d: Deferred[Subscription] = Deferred()
        if self._sub is not None:
            d.callback(self._sub)
        elif self._error is not None:
            d.errback(self._error)
        else:
            self._registration_waiters.append(d)
        return d

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> DomainEvent:
        if self._sub is None and self._error is None:
            await self.when_registered()
        while not self._queue:
            if self._done is not None:
                raise self._done
            self._waiter = Deferred()
            await self._waiter
        return self._queue.pop(0)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    def _push(self, event: DomainEvent) -> None:
        self._queue.append(event)
        self._wake()

    def _closed(self, _: BaseException) -> None:
        reason = self._conn.protocol.lost_reason
        if self._done is None:
            if self._conn.closing or reason is None:
                self._done = StopAsyncIteration()
            else:
                self._done = ConnectionLost(reason)
        self._wake()

    async def close(self) -> None:
        """
        Deregister and end the iteration.
        """
        if self._done is None:
            self._done = StopAsyncIteration()
        self._wake()
        if self._sub is None and self._error is None:
            try:
                await self.when_registered()
            except QemudClientError:
                return
        if self._sub is not None:
            await self._sub.cancel()

    aclose = close


class Connection:
    """
    An open connection to a daemon.

    @ivar protocol: the RPC protocol underneath.
    @ivar parsed: the URI, parsed.
    @ivar readonly: whether this connection may only look.
    @ivar keepalive: whether the daemon agreed to keepalive.
    @ivar callback_events: whether the daemon supports callback events
        (feature 14).
    """

    log = Logger()

    def __init__(self, protocol: RPCClientProtocol, parsed: ParsedURI, readonly: bool) -> None:
        self.protocol = protocol
        self.parsed = parsed
        self.readonly = readonly
        self.keepalive = False
        self.callback_events = False
        self._callbacks: dict[int, Callable[[DomainEvent], None]] = {}
        protocol.set_event_sink(self._event_received)

    # -- plumbing -----------------------------------------------------------

    @property
    def uri(self) -> str:
        """
        @return: the URI this connection was opened with.
        """
        return self.parsed.uri

    @property
    def closing(self) -> bool:
        """
        @return: whether L{close} was called.
        """
        return self.protocol.closing

    def call(self, proc: _wire.Procedure, args: Any = None) -> Deferred[Any]:
        """
        Call a procedure.

        @param proc: its description (number, argument and return types).
        @param args: the argument struct's field values, in order.
        @return: fires with the decoded return value (C{None} for void).
        @raise OperationDenied: (as a failed Deferred) for a state-changing
            procedure on a read-only connection.
        """
        if self.readonly and not proc.readonly_ok:
            return _fail(
                OperationDenied(f"operation forbidden: read only access prevents {proc.api_name}")
            )
        assert proc.args is not None and proc.ret is not None
        try:
            payload = proc.args.encode(args)
        except WireError as e:
            return _fail(error_class(8)(f"invalid argument: {e}"))
        d = self.protocol.call(proc.number, payload)

        def decode(reply: bytes) -> Any:
            assert proc.ret is not None
            try:
                return proc.ret.unpack(reply)
            except WireError as e:
                raise ProtocolError(f"undecodable reply to procedure {proc.number}: {e}") from e

        return d.addCallback(decode)

    def _void(self, proc: _wire.Procedure, args: Any = None) -> Deferred[None]:
        return self.call(proc, args).addCallback(lambda _: None)

    def _value(self, proc: _wire.Procedure, args: Any = None, index: int = 0) -> Deferred[Any]:
        return self.call(proc, args).addCallback(lambda r: r[index])

    def _domain(self, ref: Any) -> Domain:
        return Domain(self, DomainRef(ref[0], bytes(ref[1]), ref[2]))

    def _dom_call(self, proc: _wire.Procedure, args: Any = None) -> Deferred[Domain]:
        return self.call(proc, args).addCallback(lambda r: self._domain(r[0]))

    async def _handshake(self, keepalive_interval: float, keepalive_count: int) -> None:
        try:
            auth = await self.call(_wire.AUTH_LIST)
            types = list(auth[0])
        except NoSupport:
            types = []
        if types and AUTH_NONE not in types:
            raise AuthFailed(
                f"authentication failed: unsupported authentication types {types}"
            )
        if keepalive_interval > 0:
            self.keepalive = await self._supports(FEATURE_PROGRAM_KEEPALIVE)
        await self._void(
            _wire.CONNECT_OPEN, (self.parsed.name, OPEN_READONLY if self.readonly else 0)
        )
        self.callback_events = await self._supports(FEATURE_REMOTE_EVENT_CALLBACK)
        if self.keepalive:
            self.protocol.start_keepalive(keepalive_interval, keepalive_count)

    async def _supports(self, feature: int) -> bool:
        try:
            return bool(await self._value(_wire.CONNECT_SUPPORTS_FEATURE, (feature,)))
        except QemudClientError as e:
            if isinstance(e, ConnectionLost):
                raise
            return False

    def _event_received(self, proc: int, payload: bytes) -> None:
        decoder = _wire.EVENTS.get(proc)
        if decoder is None:
            self.log.debug("ignoring event procedure {proc}", proc=proc)
            return
        try:
            callback_id, event_id, ref, detail = decoder(payload)
        except WireError as e:
            self.log.warn("undecodable event {proc}: {error}", proc=proc, error=e)
            return
        callback = self._callbacks.get(callback_id)
        if callback is None:
            return
        event = DomainEvent(
            event_id=event_id,
            domain=DomainRef(ref[0], bytes(ref[1]), ref[2]),
            detail=detail,
            timestamp=self.protocol.reactor.seconds(),
            callback_id=callback_id,
        )
        try:
            callback(event)
        except Exception:
            self.log.failure("event callback failed")

    # -- connection ---------------------------------------------------------

    def get_type(self) -> Deferred[str]:
        """
        @return: the hypervisor type (C{"QEMU"}).
        """
        return self._value(_wire.CONNECT_GET_TYPE)

    def get_version(self) -> Deferred[int]:
        """
        @return: the hypervisor version, C{major * 1000000 + minor * 1000 + micro}.
        """
        return self._value(_wire.CONNECT_GET_VERSION)

    def get_lib_version(self) -> Deferred[int]:
        """
        @return: the daemon's library version, encoded like L{get_version}.
        """
        return self._value(_wire.CONNECT_GET_LIB_VERSION)

    def get_hostname(self) -> Deferred[str]:
        """
        @return: the daemon host's name.
        """
        return self._value(_wire.CONNECT_GET_HOSTNAME)

    def get_uri(self) -> Deferred[str]:
        """
        @return: the daemon's canonical URI for this connection.
        """
        return self._value(_wire.CONNECT_GET_URI)

    def node_info(self) -> Deferred[NodeInfo]:
        """
        @return: the host's CPUs and memory.
        """

        def convert(r: Any) -> NodeInfo:
            model = bytes(r[0]).split(b"\0", 1)[0].decode("utf-8", "replace")
            return NodeInfo(model, r[1], r[2], r[3], r[4], r[5], r[6], r[7])

        return self.call(_wire.NODE_GET_INFO).addCallback(convert)

    def capabilities(self) -> Deferred[str]:
        """
        @return: the capabilities XML.
        """
        return self._value(_wire.CONNECT_GET_CAPABILITIES)

    def list_domains(self, flags: int = 0) -> Deferred[list[Domain]]:
        """
        @param flags: C{virConnectListAllDomainsFlags}; 0 = all.
        @return: the matching domains.
        """
        return self.call(_wire.CONNECT_LIST_ALL_DOMAINS, (1, flags)).addCallback(
            lambda r: [self._domain(ref) for ref in r[0]]
        )

    def lookup_by_name(self, name: str) -> Deferred[Domain]:
        """
        @raise NoDomainError: when there is no such domain.
        """
        return self._dom_call(_wire.DOMAIN_LOOKUP_BY_NAME, (name,))

    def lookup_by_uuid(self, uuid: bytes | str | _uuid.UUID) -> Deferred[Domain]:
        """
        @param uuid: 16 raw bytes, a UUID string or a L{uuid.UUID}.
        @raise NoDomainError: when there is no such domain.
        """
        return self._dom_call(_wire.DOMAIN_LOOKUP_BY_UUID, (_uuid_bytes(uuid),))

    def lookup_by_id(self, domain_id: int) -> Deferred[Domain]:
        """
        @raise NoDomainError: when no running domain has that id.
        """
        return self._dom_call(_wire.DOMAIN_LOOKUP_BY_ID, (domain_id,))

    def define_xml(self, xml: str) -> Deferred[Domain]:
        """
        Define (or update) a persistent domain.
        """
        return self._dom_call(_wire.DOMAIN_DEFINE_XML, (xml,))

    def create_xml(self, xml: str, flags: int = 0) -> Deferred[Domain]:
        """
        Create and start a transient domain.

        @param flags: 1 = start paused.
        """
        return self._dom_call(_wire.DOMAIN_CREATE_XML, (xml, flags))

    def restore(self, path: str) -> Deferred[None]:
        """
        Restore a domain from a file written by L{Domain.save}.
        """
        return self._void(_wire.DOMAIN_RESTORE, (path,))

    def subscribe(
        self,
        event_id: int,
        callback: Callable[[DomainEvent], None],
        domain: Domain | None = None,
    ) -> Deferred[Subscription]:
        """
        Register for events.

        @param event_id: libvirt's event ID (0 lifecycle, 1 reboot, ...).
        @param callback: called with each L{DomainEvent}.
        @param domain: only this domain's events; all domains when C{None}.
        @return: fires with the L{Subscription} once the daemon registered it.
        """
        return _deferred(self._subscribe(event_id, callback, domain))

    async def _subscribe(
        self,
        event_id: int,
        callback: Callable[[DomainEvent], None],
        domain: Domain | None,
    ) -> Subscription:
        if not self.callback_events:
            raise NoSupport(
                "this function is not supported by the connection driver: "
                "daemon lacks callback events (feature 14)"
            )
        dom = None if domain is None else domain._wire_ref()
        callback_id = await self._value(
            _wire.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, (event_id, dom)
        )
        # Registered before any later packet is processed: no event is lost.
        self._callbacks[callback_id] = callback
        return Subscription(self, callback_id, event_id)

    def events(self, event_id: int = 0, domain: Domain | None = None) -> EventStream:
        """
        @return: an asynchronous iterator over events of C{event_id}.
        """
        return EventStream(self, event_id, domain)

    def when_closed(self) -> Deferred[BaseException]:
        """
        @return: a new Deferred that fires once the connection is gone, with
            the exception that says why.
        """
        return self.protocol.when_closed()

    def close(self) -> Deferred[None]:
        """
        Send C{CONNECT_CLOSE}, then disconnect.

        @return: fires once the connection is gone.
        """
        return _deferred(self._close())

    async def _close(self) -> None:
        closed = self.protocol.when_closed()
        if closed.called:
            return
        try:
            await self._void(_wire.CONNECT_CLOSE)
        except QemudClientError as e:
            self.log.debug("CONNECT_CLOSE failed: {error}", error=e)
        self.protocol.disconnect()
        await closed


class Domain:
    """
    A domain on a connection: its name, UUID and id as of the lookup.

    @ivar ref: the domain's C{(name, uuid, id)}.
    """

    def __init__(self, conn: Connection, ref: DomainRef) -> None:
        self._conn = conn
        self.ref = ref

    def __repr__(self) -> str:
        return f"<Domain {self.ref.name!r} id={self.ref.id} uuid={self.ref.uuid_string}>"

    @property
    def name(self) -> str:
        """
        @return: the domain's name.
        """
        return self.ref.name

    @property
    def uuid(self) -> bytes:
        """
        @return: the 16 raw UUID bytes.
        """
        return self.ref.uuid

    @property
    def uuid_string(self) -> str:
        """
        @return: the UUID as text.
        """
        return self.ref.uuid_string

    @property
    def id(self) -> int:
        """
        @return: the id while running, -1 otherwise (as of the last lookup or
            start).
        """
        return self.ref.id

    def _wire_ref(self) -> tuple[str, bytes, int]:
        return (self.ref.name, self.ref.uuid, self.ref.id)

    def _void(self, proc: _wire.Procedure, *args: Any) -> Deferred[None]:
        return self._conn._void(proc, (self._wire_ref(), *args))

    def _value(self, proc: _wire.Procedure, *args: Any) -> Deferred[Any]:
        return self._conn._value(proc, (self._wire_ref(), *args))

    def start(self, flags: int = 0) -> Deferred[None]:
        """
        Start the domain, then look it up by UUID to learn its id (as virsh).

        @param flags: 1 = start paused.
        """
        return _deferred(self._start(flags))

    async def _start(self, flags: int) -> None:
        if flags:
            reply = await self._conn.call(_wire.DOMAIN_CREATE_WITH_FLAGS, (self._wire_ref(), flags))
            ref = reply[0]
        else:
            await self._void(_wire.DOMAIN_CREATE)
            ref = (await self._conn.lookup_by_uuid(self.uuid))._wire_ref()
        self.ref = DomainRef(ref[0], bytes(ref[1]), ref[2])

    def destroy(self) -> Deferred[None]:
        """
        Stop the domain at once.
        """
        return self._void(_wire.DOMAIN_DESTROY)

    def shutdown(self) -> Deferred[None]:
        """
        Ask the guest to shut down (ACPI power button).
        """
        return self._void(_wire.DOMAIN_SHUTDOWN)

    def reboot(self, flags: int = 0) -> Deferred[None]:
        """
        Ask the guest to reboot.
        """
        return self._void(_wire.DOMAIN_REBOOT, flags)

    def reset(self) -> Deferred[None]:
        """
        Reset the guest (like the reset button).
        """
        return self._void(_wire.DOMAIN_RESET, 0)

    def suspend(self) -> Deferred[None]:
        """
        Pause the guest's CPUs.
        """
        return self._void(_wire.DOMAIN_SUSPEND)

    def resume(self) -> Deferred[None]:
        """
        Resume a paused guest.
        """
        return self._void(_wire.DOMAIN_RESUME)

    def undefine(self, flags: int = 0) -> Deferred[None]:
        """
        Remove the persistent configuration.

        @param flags: 1 = also remove the managed-save image.
        """
        return self._void(_wire.DOMAIN_UNDEFINE_FLAGS, flags)

    def xml_desc(self, inactive: bool = False, secure: bool = False) -> Deferred[str]:
        """
        @param inactive: the persistent configuration, not the live one.
        @param secure: include secrets.
        @return: the domain XML.
        """
        flags = (XML_INACTIVE if inactive else 0) | (XML_SECURE if secure else 0)
        return self._value(_wire.DOMAIN_GET_XML_DESC, flags)

    def info(self) -> Deferred[DomainInfo]:
        """
        @return: state, memory, vCPUs and CPU time.
        """
        return self._conn.call(_wire.DOMAIN_GET_INFO, (self._wire_ref(),)).addCallback(
            lambda r: DomainInfo(r[0], r[1], r[2], r[3], r[4])
        )

    def state(self) -> Deferred[tuple[int, int]]:
        """
        @return: C{(state, reason)}, libvirt's numbers.
        """
        return self._conn.call(_wire.DOMAIN_GET_STATE, (self._wire_ref(), 0)).addCallback(
            lambda r: (r[0], r[1])
        )

    def os_type(self) -> Deferred[str]:
        """
        @return: the guest OS type (C{"hvm"}).
        """
        return self._value(_wire.DOMAIN_GET_OS_TYPE)

    def is_active(self) -> Deferred[bool]:
        """
        @return: whether the domain runs.
        """
        return self._value(_wire.DOMAIN_IS_ACTIVE).addCallback(bool)

    def is_persistent(self) -> Deferred[bool]:
        """
        @return: whether the domain has a persistent configuration.
        """
        return self._value(_wire.DOMAIN_IS_PERSISTENT).addCallback(bool)

    def autostart(self) -> Deferred[bool]:
        """
        @return: whether the domain starts with the daemon.
        """
        return self._value(_wire.DOMAIN_GET_AUTOSTART).addCallback(bool)

    def set_autostart(self, enabled: bool) -> Deferred[None]:
        """
        Mark or unmark the domain for autostart.
        """
        return self._void(_wire.DOMAIN_SET_AUTOSTART, 1 if enabled else 0)

    def has_managed_save(self) -> Deferred[bool]:
        """
        @return: whether a managed-save image exists.
        """
        return self._value(_wire.DOMAIN_HAS_MANAGED_SAVE_IMAGE, 0).addCallback(bool)

    def save(self, path: str) -> Deferred[None]:
        """
        Save the running domain's state to C{path} and stop it.
        """
        return self._void(_wire.DOMAIN_SAVE, path)

    def managed_save(self, flags: int = 0) -> Deferred[None]:
        """
        Save the state to the daemon's own image, restored by the next start.
        """
        return self._void(_wire.DOMAIN_MANAGED_SAVE, flags)

    def attach_device(self, xml: str, flags: int | None = None) -> Deferred[None]:
        """
        Hot-plug a device.

        @param flags: 0 current, 1 live, 2 config; C{None} for the plain call.
        """
        if flags is None:
            return self._void(_wire.DOMAIN_ATTACH_DEVICE, xml)
        return self._void(_wire.DOMAIN_ATTACH_DEVICE_FLAGS, xml, flags)

    def detach_device(self, xml: str, flags: int | None = None) -> Deferred[None]:
        """
        Hot-unplug a device.

        @param flags: as for L{attach_device}.
        """
        if flags is None:
            return self._void(_wire.DOMAIN_DETACH_DEVICE, xml)
        return self._void(_wire.DOMAIN_DETACH_DEVICE_FLAGS, xml, flags)

    def update_device(self, xml: str, flags: int | None = 0) -> Deferred[None]:
        """
        Change a device (e.g. the medium in a CD-ROM).
        """
        return self._void(_wire.DOMAIN_UPDATE_DEVICE_FLAGS, xml, flags or 0)

    def job_info(self) -> Deferred[JobInfo]:
        """
        @return: the progress of the current long operation.
        """
        return self._conn.call(_wire.DOMAIN_GET_JOB_INFO, (self._wire_ref(),)).addCallback(
            lambda r: JobInfo(*r)
        )


def connect(
    uri: str,
    reactor: Any = None,
    *,
    readonly: bool = False,
    keepalive_interval: float = 5,
    keepalive_count: int = 5,
) -> Deferred[Connection]:
    """
    Connect to a daemon and open the connection the way virsh does:
    C{AUTH_LIST}, C{SUPPORTS_FEATURE(10)} (when keepalive is wanted),
    C{CONNECT_OPEN}, C{SUPPORTS_FEATURE(14)}.

    @param uri: e.g. C{"qemud:///session"}, C{"qemu+tcp://host/system"}.
    @param reactor: the reactor (default: the global one).
    @param readonly: open read-only (C{-ro} socket for C{qemud:///system}).
    @param keepalive_interval: seconds of silence before a PING; 0 disables
        keepalive.
    @param keepalive_count: unanswered PINGs before the connection drops.
    @return: fires with the open L{Connection}.
    """
    if reactor is None:
        from twisted.internet import reactor as _global_reactor

        reactor = _global_reactor
    return _deferred(_connect(uri, reactor, readonly, keepalive_interval, keepalive_count))


async def _connect(
    uri: str, reactor: Any, readonly: bool, keepalive_interval: float, keepalive_count: int
) -> Connection:
    parsed = parse_uri(uri, readonly=readonly)
    endpoint = endpoint_for(parsed, reactor)
    try:
        protocol = await endpoint.connect(RPCClientFactory(reactor))
    except QemudClientError:
        raise
    except Exception as e:
        where = parsed.socket if parsed.transport == "unix" else f"{parsed.host}:{parsed.port}"
        raise ConnectFailed(str(where), Failure(e)) from e  # type: ignore[no-untyped-call]
    return await open_connection(protocol, parsed, readonly, keepalive_interval, keepalive_count)


async def open_connection(
    protocol: RPCClientProtocol,
    parsed: ParsedURI,
    readonly: bool = False,
    keepalive_interval: float = 5,
    keepalive_count: int = 5,
) -> Connection:
    """
    Run the handshake on an already connected protocol.

    @return: the open L{Connection}; on failure the transport is closed.
    """
    conn = Connection(protocol, parsed, readonly)
    try:
        await conn._handshake(keepalive_interval, keepalive_count)
    except BaseException:
        protocol.disconnect()
        raise
    return conn


def _uuid_bytes(value: bytes | str | _uuid.UUID) -> bytes:
    if isinstance(value, _uuid.UUID):
        return value.bytes
    if isinstance(value, str):
        return _uuid.UUID(value).bytes
    return value


def _fail(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d
