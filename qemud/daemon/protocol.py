# -*- test-case-name: tests.daemon.test_protocol -*-
"""
The server side of libvirt's remote protocol: one L{RPCServerProtocol} per
client connection, built by L{RPCServerFactory}.

Per connection it keeps the framing state, the open/read-only/URI state,
the event callback tables and the keepalive timer; calls go to the shared
L{Dispatcher}.  Calls are dispatched as they arrive and answered as they
finish, possibly out of order; at most C{max_client_requests} may be in
flight, beyond which the protocol stops reading from its transport until
some finish.  A framing error closes that connection only.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from qemud.daemon.dispatch import Dispatcher
from qemud.errors import InternalError, NoSupportError, QemudError, RPCError
from qemud.rpc import remote
from qemud.rpc.errors import encode_error
from qemud.rpc.framing import (
    CALL,
    CALL_WITH_FDS,
    ERROR,
    MESSAGE,
    OK,
    REPLY,
    REPLY_WITH_FDS,
    Header,
    MessageDecoder,
    WireError,
    encode_message,
)

__all__ = ["RPCServerProtocol", "RPCServerFactory"]

_PING = encode_message(
    (remote.KEEPALIVE_PROGRAM, 1, remote.KEEPALIVE_PING, MESSAGE, 0, OK), b"")
_PONG = encode_message(
    (remote.KEEPALIVE_PROGRAM, 1, remote.KEEPALIVE_PONG, MESSAGE, 0, OK), b"")

# event id -> (callback-mode proc, encoder), (legacy proc, encoder)
_Msg = Any


def _lifecycle(dom: Any, args: tuple[Any, ...]) -> Any:
    return remote.LifecycleMsg(dom, args[0], args[1])


def _reboot(dom: Any, args: tuple[Any, ...]) -> Any:
    return remote.RebootMsg(dom)


def _tray(dom: Any, args: tuple[Any, ...]) -> Any:
    return remote.TrayChangeMsg(dom, args[0], args[1])


def _removed(dom: Any, args: tuple[Any, ...]) -> Any:
    return remote.DeviceRemovedMsg(dom, args[0])


_NESTED_EVENTS = {
    remote.EVENT_ID_LIFECYCLE: (318, remote.CallbackLifecycleMsg, 107, remote.LifecycleMsg,
                                _lifecycle),
    remote.EVENT_ID_REBOOT: (319, remote.CallbackRebootMsg, 169, remote.RebootMsg, _reboot),
    remote.EVENT_ID_TRAY_CHANGE: (328, remote.CallbackTrayChangeMsg, 268, remote.TrayChangeMsg,
                                  _tray),
    remote.EVENT_ID_DEVICE_REMOVED: (333, remote.CallbackDeviceRemovedMsg, 311,
                                     remote.DeviceRemovedMsg, _removed),
}


class RPCServerProtocol(Protocol):
    """
    One client connection speaking libvirt's remote protocol.

    @ivar factory: the factory that built it (driver, reactor, limits).
    @ivar readonly: whether mutating procedures are refused; set from the
        listener, by C{CONNECT_OPEN} flag 1, or by a TLS wrapper before
        C{makeConnection}.
    @ivar is_open: whether C{CONNECT_OPEN} succeeded.
    @ivar uri: the URI given at open.
    @ivar close_callback: whether the client registered a close callback.
    """

    log = Logger()

    def __init__(self, factory: RPCServerFactory) -> None:
        self.factory = factory
        self.readonly = factory.readonly
        self.is_open = False
        self.uri: str | None = None
        self.close_callback = False
        self._dispatcher = factory.dispatcher
        self._clock: Any = factory.reactor
        self._max_requests = factory.max_client_requests
        self._decoder = MessageDecoder()
        self._connected = False
        self._counted = False
        self._inflight = 0
        self._queue: deque[tuple[Header, bytes]] = deque()
        self._paused = False
        self._draining = False
        self._callbacks: dict[int, tuple[int, bytes | None]] = {}
        self._next_callback = 0
        self._legacy: set[int] = set()
        self._subscribed = False
        self._keepalive = False
        self._ka_call: Any = None
        self._ka_unanswered = 0
        self._last_rx = 0.0

    # -- connection lifecycle ------------------------------------------------

    def connectionMade(self) -> None:
        """Count the client, or close at once when the daemon is full."""
        tracker = self.factory.tracker
        if tracker.clients >= tracker.max_clients:
            self.log.warn("Too many clients ({clients}), closing new connection from {peer}",
                          clients=tracker.clients, peer=self._peer())
            self._transport.loseConnection()
            return
        tracker.connected(self)
        self._counted = True
        self._connected = True
        self._last_rx = self._clock.seconds()
        self.log.debug("Client connected: {peer}", peer=self._peer())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget the client: events, timers, pending calls' replies."""
        was_connected = self._connected
        self._connected = False
        self._queue.clear()
        if self._ka_call is not None and self._ka_call.active():
            self._ka_call.cancel()
        self._ka_call = None
        self._callbacks.clear()
        self._legacy.clear()
        self._update_subscription()
        if self._counted:
            self.factory.tracker.disconnected(self)
            self._counted = False
        if was_connected:
            self.log.debug("Client disconnected: {peer} ({reason})", peer=self._peer(),
                           reason=reason.getErrorMessage())

    @property
    def _transport(self) -> Any:
        return self.transport

    def _peer(self) -> str:
        try:
            return str(self._transport.getPeer())
        except Exception:
            return "?"

    def _write(self, data: bytes) -> None:
        if self._connected:
            self._transport.write(data)

    def _drop(self) -> None:
        if self._connected:
            self._connected = False
            self._queue.clear()
            self._transport.loseConnection()

    # -- input ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Decode packets and handle each in turn."""
        if not self._connected:
            return
        try:
            messages = self._decoder.feed(data)
        except WireError as e:
            self.log.warn("Closing connection from {peer}: {error}", peer=self._peer(),
                          error=str(e))
            self._drop()
            return
        if self._keepalive:
            self._last_rx = self._clock.seconds()
            self._ka_unanswered = 0
        for header, payload in messages:
            if not self._connected:
                return
            mtype = header.type
            if mtype == CALL:
                if self._queue or self._inflight >= self._max_requests:
                    self._queue.append((header, payload))
                else:
                    self._dispatch(header, payload)
            elif mtype == MESSAGE:
                self._message(header)
            elif mtype == CALL_WITH_FDS:
                self._send_error(header, RPCError("file descriptor passing is not supported"))
            elif mtype in (REPLY, REPLY_WITH_FDS):
                self.log.debug("Dropping {type} from client {peer} (proc {proc})",
                               type=mtype, peer=self._peer(), proc=header.proc)
            else:
                self.log.debug("Ignoring message type {type} from client {peer}",
                               type=mtype, peer=self._peer())

    def _message(self, header: Header) -> None:
        if header.prog == remote.KEEPALIVE_PROGRAM and header.vers == 1:
            if header.proc == remote.KEEPALIVE_PING:
                self._write(_PONG)
            return
        self.log.debug("Dropping MESSAGE prog={prog:#x} proc={proc} from client",
                       prog=header.prog, proc=header.proc)

    # -- calls ---------------------------------------------------------------

    def _dispatch(self, header: Header, payload: bytes) -> None:
        self.factory.tracker.call_received()
        prog, vers, proc = header.prog, header.vers, header.proc
        if prog != remote.REMOTE_PROGRAM or vers != remote.PROTOCOL_VERSION:
            self._send_error(header, self._foreign_program(prog, vers, proc))
            return
        if header.status != OK:
            self._send_error(header, RPCError(f"Unexpected message status {header.status}"))
            return
        try:
            result = self._dispatcher.call(self, proc, payload)
        except QemudError as e:
            self._send_error(header, e)
            return
        except Exception:
            self._send_error(header, self._internal(Failure(), header))  # type: ignore[no-untyped-call]
            return
        if isinstance(result, Deferred):
            self._inflight += 1
            self.factory.tracker.call_started()
            if self._inflight >= self._max_requests and not self._paused:
                self._paused = True
                self._transport.pauseProducing()
            result.addCallbacks(self._reply_ok, self._reply_failed, callbackArgs=(header,),
                                errbackArgs=(header,))
            result.addBoth(self._call_done)
        else:
            self._write(encode_message((prog, vers, proc, REPLY, header.serial, OK), result))

    def _foreign_program(self, prog: int, vers: int, proc: int) -> QemudError:
        if vers == 1 and prog in (remote.QEMU_PROGRAM, remote.LXC_PROGRAM):
            table = (remote.QEMU_PROCEDURES if prog == remote.QEMU_PROGRAM
                     else remote.LXC_PROCEDURES)
            entry = table.get(proc)
            if entry is None:
                return RPCError(f"unknown procedure: {proc}")
            return NoSupportError(entry.api_name)
        return RPCError(f"Cannot find program {prog} version {vers}")

    def _internal(self, failure: Failure, header: Header) -> QemudError:
        self.log.failure("Unexpected failure in procedure {proc} (serial {serial})",
                         failure, proc=header.proc, serial=header.serial)
        return InternalError(f"unexpected failure: {failure.getErrorMessage()}")

    def _reply_ok(self, payload: bytes, header: Header) -> None:
        self._write(encode_message(
            (header.prog, header.vers, header.proc, REPLY, header.serial, OK), payload))

    def _reply_failed(self, failure: Failure, header: Header) -> None:
        error = failure.value
        if not isinstance(error, QemudError):
            error = self._internal(failure, header)
        self._send_error(header, error)

    def _send_error(self, header: Header, error: QemudError) -> None:
        self._write(encode_message(
            (header.prog, header.vers, header.proc, REPLY, header.serial, ERROR),
            encode_error(error)))

    def _call_done(self, _: object) -> None:
        self._inflight -= 1
        self.factory.tracker.call_finished()
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue and self._inflight < self._max_requests and self._connected:
                header, payload = self._queue.popleft()
                self._dispatch(header, payload)
        finally:
            self._draining = False
        if (self._paused and self._connected and not self._queue
                and self._inflight < self._max_requests):
            self._paused = False
            self._transport.resumeProducing()

    # -- keepalive -----------------------------------------------------------

    def enable_keepalive(self) -> None:
        """
        The client probed C{VIR_DRV_FEATURE_PROGRAM_KEEPALIVE}: from now on
        send it a PING after C{keepalive_interval} seconds of silence and
        close the connection after C{keepalive_count} unanswered PINGs.
        """
        if self._keepalive or not self._connected:
            return
        self._keepalive = True
        self._last_rx = self._clock.seconds()
        self._ka_call = self._clock.callLater(self.factory.keepalive_interval, self._ka_tick)

    def _ka_tick(self) -> None:
        self._ka_call = None
        if not self._connected:
            return
        interval = self.factory.keepalive_interval
        idle = self._clock.seconds() - self._last_rx
        if idle >= interval:
            if self._ka_unanswered >= self.factory.keepalive_count:
                self.log.info("Client {peer} did not answer {count} keepalive pings, closing",
                              peer=self._peer(), count=self._ka_unanswered)
                self._drop()
                return
            self._ka_unanswered += 1
            self._write(_PING)
            delay = interval
        else:
            delay = interval - idle
        self._ka_call = self._clock.callLater(delay, self._ka_tick)

    # -- events --------------------------------------------------------------

    def register_callback(self, event_id: int, uuid: bytes | None) -> int:
        """
        C{CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY}.

        @param event_id: libvirt's event id.
        @param uuid: only events of this domain, or C{None} for all.
        @return: the new callback id (per connection, from 0).
        @raise InternalError: for an unknown event id.
        """
        self._check_event_id(event_id)
        callback_id = self._next_callback
        self._next_callback += 1
        self._callbacks[callback_id] = (event_id, uuid)
        self._update_subscription()
        return callback_id

    def deregister_callback(self, callback_id: int) -> None:
        """
        C{CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY}.

        @param callback_id: an id returned by L{register_callback}.
        @raise InternalError: if it is not registered.
        """
        if self._callbacks.pop(callback_id, None) is None:
            raise InternalError(f"domain event callback {callback_id} not registered")
        self._update_subscription()

    def register_legacy(self, event_id: int) -> None:
        """
        Legacy C{CONNECT_DOMAIN_EVENT_REGISTER(_ANY)}.

        @param event_id: libvirt's event id.
        @raise InternalError: for an unknown or already registered id.
        """
        self._check_event_id(event_id)
        if event_id in self._legacy:
            raise InternalError(f"domain event {event_id} already registered")
        self._legacy.add(event_id)
        self._update_subscription()

    def deregister_legacy(self, event_id: int) -> None:
        """
        Legacy C{CONNECT_DOMAIN_EVENT_DEREGISTER(_ANY)}.

        @param event_id: libvirt's event id.
        @raise InternalError: if it is not registered.
        """
        self._check_event_id(event_id)
        if event_id not in self._legacy:
            raise InternalError(f"domain event {event_id} not registered")
        self._legacy.discard(event_id)
        self._update_subscription()

    def connection_closed(self) -> None:
        """C{CONNECT_CLOSE}: drop every event registration."""
        self._callbacks.clear()
        self._legacy.clear()
        self._update_subscription()

    @staticmethod
    def _check_event_id(event_id: int) -> None:
        if event_id < 0 or event_id >= remote.EVENT_ID_LAST:
            raise InternalError(f"unsupported event ID {event_id}")

    def _update_subscription(self) -> None:
        want = bool(self._callbacks or self._legacy) and self._connected
        if want and not self._subscribed:
            self.factory.driver.add_event_listener(self.domain_event)
            self._subscribed = True
        elif not want and self._subscribed:
            self.factory.driver.remove_event_listener(self.domain_event)
            self._subscribed = False

    def domain_event(self, event: Any) -> None:
        """
        Relay one driver C{DomainEvent} to this client: one MESSAGE per
        matching callback, plus the legacy message if registered.

        @param event: has C{event_id}, C{ref} (name, uuid, id) and C{args}.
        """
        if not self._connected:
            return
        event_id = event.event_id
        ref = event.ref
        dom = remote.NonnullDomain(ref.name, ref.uuid, ref.id)
        args = tuple(event.args)
        packets: list[bytes] = []
        nested = _NESTED_EVENTS.get(event_id)
        try:
            for callback_id, (cb_event, cb_uuid) in self._callbacks.items():
                if cb_event != event_id or (cb_uuid is not None and cb_uuid != ref.uuid):
                    continue
                if nested is not None:
                    proc, outer, _, _, inner = nested
                    body = outer.encode((callback_id, inner(dom, args)))
                elif event_id == remote.EVENT_ID_DEVICE_ADDED:
                    proc = 354
                    body = remote.CallbackDeviceAddedMsg.encode((callback_id, dom, args[0]))
                else:
                    continue
                packets.append(self._event_packet(proc, body))
            if event_id in self._legacy and nested is not None:
                _, _, proc, msg, inner = nested
                packets.append(self._event_packet(proc, msg.encode(inner(dom, args))))
        except (WireError, IndexError) as e:
            self.log.error("Cannot encode event {event!r}: {error}", event=event, error=str(e))
            return
        for packet in packets:
            self._write(packet)

    @staticmethod
    def _event_packet(proc: int, body: bytes) -> bytes:
        return encode_message((remote.REMOTE_PROGRAM, 1, proc, MESSAGE, 1, OK), body)


class ClientTracker:
    """
    Connections and calls in flight across every listener of a daemon.

    @ivar max_clients: connections beyond this many are closed at once.
    @ivar clients: connections currently open.
    @ivar inflight: calls whose reply has not been sent yet.
    @ivar last_active_at: when the latest call arrived or was answered, by
        C{clock} (a daemon stopping waits until clients have gone quiet).
    """

    def __init__(self, max_clients: int = 5000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """
        @param clock: the time source of C{last_active_at} (the reactor's
            C{seconds}).
        """
        self.max_clients = max_clients
        self.inflight = 0
        self.last_active_at = -math.inf
        self._clock = clock
        self._idle: list[Deferred[None]] = []
        self._open: set[RPCServerProtocol] = set()
        self._all_gone: list[Deferred[None]] = []

    @property
    def clients(self) -> int:
        """
        @return: how many connections are open.
        """
        return len(self._open)

    def connected(self, protocol: RPCServerProtocol) -> None:
        """A client was admitted."""
        self._open.add(protocol)

    def disconnected(self, protocol: RPCServerProtocol) -> None:
        """An admitted client is gone."""
        self._open.discard(protocol)
        if not self._open:
            waiters, self._all_gone = self._all_gone, []
            for waiter in waiters:
                waiter.callback(None)

    def close_all(self) -> Deferred[None]:
        """
        Close every connection gracefully (replies already written are sent
        first).

        @return: a Deferred firing once every connection is gone.
        """
        if not self._open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._all_gone.append(d)
        for protocol in list(self._open):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        return d

    def call_received(self) -> None:
        """A call arrived (answered at once or later)."""
        self.last_active_at = self._clock()

    def call_started(self) -> None:
        """A call is being processed."""
        self.inflight += 1

    def call_finished(self) -> None:
        """A call's reply has been sent (or dropped with its client)."""
        self.inflight -= 1
        self.last_active_at = self._clock()
        if self.inflight == 0:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                waiter.callback(None)

    def when_idle(self) -> Deferred[None]:
        """
        @return: a fresh Deferred firing once no call is in flight.
        """
        if self.inflight == 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d


class RPCServerFactory(Factory):
    """
    Builds L{RPCServerProtocol}s for one listener.

    @ivar driver: the C{DomainDriver}.
    @ivar reactor: provides C{callLater} and C{seconds} (keepalive).
    @ivar readonly: whether every connection from this listener is read-only.
    @ivar secure: what C{CONNECT_IS_SECURE} answers (UNIX, TLS: C{True}).
    @ivar max_client_requests: calls in flight per client before reading stops.
    @ivar tracker: counts connections and calls in flight, shared by every
        listener of one daemon so that limits are daemon-wide.
    @ivar keepalive_interval: seconds of silence before a PING.
    @ivar keepalive_count: unanswered PINGs before the connection is closed.
    @ivar dispatcher: the procedure table bound to C{driver}.
    """

    protocol = RPCServerProtocol

    def __init__(self, driver: Any, reactor: IReactorTime, *, readonly: bool = False,
                 secure: bool, max_client_requests: int = 64, max_clients: int = 5000,
                 default_uri: str, keepalive_interval: float = 5.0,
                 keepalive_count: int = 5, tracker: ClientTracker | None = None) -> None:
        """
        @param max_clients: the connection limit of a private tracker, used
            when no shared C{tracker} is given.
        """
        self.driver = driver
        self.reactor = reactor
        self.readonly = readonly
        self.secure = secure
        self.max_client_requests = max_client_requests
        self.default_uri = default_uri
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        self.tracker = tracker if tracker is not None else ClientTracker(max_clients, reactor.seconds)
        self.dispatcher = Dispatcher(driver, secure=secure, default_uri=default_uri)

    def buildProtocol(self, addr: Any) -> RPCServerProtocol:
        """
        @param addr: the peer's address (unused).
        @return: a new protocol for one connection.
        """
        return RPCServerProtocol(self)
