# -*- test-case-name: tests.client.test_protocol -*-
"""
The RPC engine of the client: one L{RPCClientProtocol} per connection.

Every call goes through L{RPCClientProtocol.call}: it takes the next serial,
writes the packet at once (calls are pipelined, many may be in flight) and
returns a L{Deferred} that the reply with the same C{(prog, vers, serial)}
fires, in whatever order replies come.  An error reply fails it with the
L{QemudClientError} subclass for the daemon's error code.

Asynchronous packets: keepalive PINGs are always answered with a PONG;
REMOTE program MESSAGEs (domain events) go to the event sink.  A reply
nobody waits for is a protocol error that drops the connection, as in
libvirt's C{virnetclient.c}.  When the connection goes, for whatever
reason, every pending call fails with L{ConnectionLost} carrying the cause,
and every L{RPCClientProtocol.when_closed} Deferred fires with the cause.

Keepalive (only once the daemon said yes to feature 10): after
C{interval} seconds without any packet from the daemon, send a PING; after
C{count} PINGs without any packet in between, drop the connection with
L{KeepaliveTimeout}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from qemud.rpc import errors as rpc_errors
from qemud.rpc import framing, remote
from qemudclient.errors import (
    ConnectionLost,
    KeepaliveTimeout,
    ProtocolError,
    QemudClientError,
    make_remote_error,
)

#: C{(proc, payload)} of a REMOTE program MESSAGE (a domain event).
EventSink = Callable[[int, bytes], None]


class RPCClientProtocol(Protocol):
    """
    Calls out, replies and events in, for one connection.

    @ivar reactor: provides C{callLater} and C{seconds} (keepalive).
    """

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._next_serial = 0
        self._pending: dict[int, tuple[int, int, Deferred[bytes]]] = {}
        self._decoder = framing.MessageDecoder()
        self._lost: Failure | None = None
        self._closed_waiters: list[Deferred[BaseException]] = []
        self._connected_waiters: list[Deferred[RPCClientProtocol]] = []
        self._connected = False
        self._event_sink: EventSink | None = None
        self._ka_interval = 0.0
        self._ka_count = 0
        self._ka_unanswered = 0
        self._ka_call: Any = None
        self._last_rx = 0.0
        self._closing = False

    # -- public API ---------------------------------------------------------

    @property
    def pending_count(self) -> int:
        """
        @return: how many calls wait for a reply.
        """
        return len(self._pending)

    @property
    def closing(self) -> bool:
        """
        @return: whether L{disconnect} was called (the close was wanted).
        """
        return self._closing

    def set_event_sink(self, sink: EventSink | None) -> None:
        """
        @param sink: called with C{(proc, payload)} for each REMOTE MESSAGE.
        """
        self._event_sink = sink

    def call(self, proc: int, payload: bytes = b"", prog: int = remote.REMOTE_PROGRAM) -> Deferred[bytes]:
        """
        Send a call now and wait for its reply.

        @param proc: the procedure number.
        @param payload: the XDR-encoded argument struct.
        @param prog: the program (REMOTE unless stated).
        @return: fires with the reply payload (the encoded return struct);
            fails with a L{QemudClientError} subclass for an error reply and
            with L{ConnectionLost} when the connection goes first.
        """
        if self._lost is not None:
            return _failed(ConnectionLost(self._lost))
        serial = self._next_serial
        self._next_serial = (serial + 1) & 0xFFFFFFFF
        d: Deferred[bytes] = Deferred()
        self._pending[serial] = (prog, proc, d)
        self._send(
            framing.Header(
                prog=prog,
                vers=remote.PROTOCOL_VERSION,
                proc=proc,
                type=framing.CALL,
                serial=serial,
                status=framing.OK,
            ),
            payload,
        )
        return d

    def start_keepalive(self, interval: float, count: int) -> None:
        """
        Start pinging the daemon when it is silent (call only after the
        daemon agreed to feature 10).

        @param interval: seconds of silence before a PING.
        @param count: unanswered PINGs before the connection is dropped.
        """
        if interval <= 0 or self._lost is not None:
            return
        self._ka_interval = interval
        self._ka_count = count
        self._last_rx = self.reactor.seconds()
        self._schedule_keepalive(interval)

    @property
    def lost_reason(self) -> Failure | None:
        """
        @return: why the connection went, or C{None} while it is up.
        """
        return self._lost

    def when_closed(self) -> Deferred[BaseException]:
        """
        @return: a new Deferred that fires once the connection is gone, with
            the exception that says why (e.g. C{ConnectionDone}).
        """
        d: Deferred[BaseException] = Deferred()
        if self._lost is not None:
            d.callback(_cause(self._lost))
        else:
            self._closed_waiters.append(d)
        return d

    def when_connected(self) -> Deferred[RPCClientProtocol]:
        """
        @return: a new Deferred that fires with this protocol once connected.
        """
        d: Deferred[RPCClientProtocol] = Deferred()
        if self._connected:
            d.callback(self)
        else:
            self._connected_waiters.append(d)
        return d

    def disconnect(self) -> None:
        """
        Close the connection (pending calls fail with L{ConnectionLost}).
        """
        self._closing = True
        transport: Any = self.transport
        if transport is not None and self._lost is None:
            transport.loseConnection()

    # -- Twisted ------------------------------------------------------------

    def connectionMade(self) -> None:
        self._connected = True
        waiters, self._connected_waiters = self._connected_waiters, []
        for d in waiters:
            d.callback(self)

    def dataReceived(self, data: bytes) -> None:
        if self._lost is not None:
            return
        if self._ka_interval:
            self._last_rx = self.reactor.seconds()
            self._ka_unanswered = 0
        try:
            messages = self._decoder.feed(data)
        except Exception as e:
            self._abort(ProtocolError(f"malformed packet from the daemon: {e}"))
            return
        for header, payload in messages:
            if self._lost is not None:
                return
            try:
                self._dispatch(header, payload)
            except QemudClientError as e:
                self._abort(e)
                return

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        if self._ka_call is not None and self._ka_call.active():
            self._ka_call.cancel()
        self._ka_call = None
        pending, self._pending = self._pending, {}
        for _prog, _proc, d in pending.values():
            d.errback(ConnectionLost(reason))
        waiters, self._closed_waiters = self._closed_waiters, []
        for w in waiters:
            w.callback(_cause(reason))

    # -- internals ----------------------------------------------------------

    def _send(self, header: framing.Header, payload: bytes) -> None:
        transport: Any = self.transport
        transport.write(framing.encode_message(header, payload))

    def _abort(self, error: QemudClientError) -> None:
        """
        Drop the connection at once because of C{error}; the error is the
        reason every pending call sees.
        """
        self.log.error("dropping the connection: {error}", error=error)
        transport: Any = self.transport
        self.connectionLost(Failure(error))  # type: ignore[no-untyped-call]
        if transport is not None:
            abort = getattr(transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                transport.loseConnection()

    def _dispatch(self, header: framing.Header, payload: bytes) -> None:
        mtype = header.type
        if header.prog == remote.KEEPALIVE_PROGRAM:
            if mtype == framing.MESSAGE and header.proc == remote.KEEPALIVE_PING:
                self._send_keepalive(remote.KEEPALIVE_PONG)
            return
        if mtype in (framing.REPLY, framing.REPLY_WITH_FDS):
            entry = self._pending.get(header.serial)
            if entry is None or entry[0] != header.prog:
                raise ProtocolError(
                    f"reply for serial {header.serial} (procedure {header.proc}) "
                    "matches no call in flight"
                )
            del self._pending[header.serial]
            d = entry[2]
            if header.status == framing.OK:
                d.callback(payload)
            elif header.status == framing.ERROR:
                d.errback(decode_error(payload))
            else:
                d.errback(ProtocolError(f"unexpected reply status {header.status}"))
            return
        if mtype == framing.MESSAGE and header.prog == remote.REMOTE_PROGRAM:
            if self._event_sink is not None:
                self._event_sink(header.proc, payload)
            return
        self.log.warn(
            "ignoring packet type {type} prog {prog:#x} proc {proc}",
            type=mtype,
            prog=header.prog,
            proc=header.proc,
        )

    def _send_keepalive(self, proc: int) -> None:
        self._send(
            framing.Header(
                prog=remote.KEEPALIVE_PROGRAM,
                vers=remote.PROTOCOL_VERSION,
                proc=proc,
                type=framing.MESSAGE,
                serial=0,
                status=framing.OK,
            ),
            b"",
        )

    def _schedule_keepalive(self, delay: float) -> None:
        self._ka_call = self.reactor.callLater(delay, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._ka_call = None
        if self._lost is not None:
            return
        idle = self.reactor.seconds() - self._last_rx
        if idle < self._ka_interval:
            self._schedule_keepalive(self._ka_interval - idle)
            return
        if self._ka_unanswered >= self._ka_count:
            self._abort(
                KeepaliveTimeout(
                    f"connection closed due to keepalive timeout: no answer to "
                    f"{self._ka_unanswered} PINGs in {idle:.0f} s"
                )
            )
            return
        self._ka_unanswered += 1
        self._send_keepalive(remote.KEEPALIVE_PING)
        self._schedule_keepalive(self._ka_interval)


def decode_error(payload: bytes) -> QemudClientError:
    """
    @param payload: an encoded C{remote_error}.
    @return: the matching L{QemudClientError} with every field kept; a
        L{ProtocolError} when the payload does not decode.
    """
    try:
        err = rpc_errors.decode_error(payload)
    except Exception as e:
        return ProtocolError(f"undecodable error reply: {e}")
    return make_remote_error(err)


class RPCClientFactory(Factory):
    """
    Builds one L{RPCClientProtocol} per connection.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def buildProtocol(self, addr: IAddress | None) -> RPCClientProtocol:
        return RPCClientProtocol(self.reactor)


def _cause(reason: Failure) -> BaseException:
    value = reason.value
    return value if value is not None else Exception(reason.getErrorMessage())


def _failed(error: Exception) -> Deferred[bytes]:
    d: Deferred[bytes] = Deferred()
    d.errback(error)
    return d
