# -*- test-case-name: tests.qemu.test_qmp -*-
"""
A Twisted client for QEMU's JSON monitor protocol (QMP).

Modelled on QEMU's own C{qemu.qmp} library: a session waits for the greeting,
negotiates with C{qmp_capabilities} and only then enters L{Runstate.RUNNING},
where L{QMPProtocol.execute} may be used.  Every command carries a generated
id (C{__qmp#00001}) and its reply is routed back by that id, so replies may
arrive in any order.  Events go to every subscriber, in order of arrival.

Errors form one tree rooted at L{QMPError} (itself a L{qemud.errors.QemudError}
so that the RPC layer can report any of them to a client):

  - L{ProtocolError}: the peer (or we) broke the protocol: L{GreetingError},
    L{NegotiationError}, L{DeserializationError}, L{BadReplyError},
    L{ServerParseError}, L{MessageTooLargeError}.  All are fatal: the
    connection is dropped and every pending command fails.
  - L{ExecuteError}: QEMU ran the command and refused it; reported as
    C{operation failed: unable to execute QEMU command 'cont': ...}.
  - L{ExecInterruptedError}: the connection closed before the reply arrived.
  - L{StateError}: the call was made in the wrong L{Runstate}; it fails at once.
  - L{QMPTimeoutError}: no reply within the per-command timeout (an
    L{qemud.errors.OperationTimeoutError}).

No Deferred handed out by this module is ever left unresolved: a disconnect
fails everything pending with the cause.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from qemud.errors import (
    InternalError,
    OperationFailedError,
    OperationTimeoutError,
    QemudError,
)

#: The largest message (or partial message) we buffer, like libvirt and qemu.qmp.
MAX_MESSAGE_SIZE = 10 * 1024 * 1024


# --------------------------------------------------------------------------- errors


class QMPError(QemudError):
    """
    Root of every QMP client error.

    It adds no libvirt error code of its own: the concrete subclasses take
    theirs from the L{qemud.errors} class they also inherit from.
    """


class ProtocolError(QMPError, InternalError):
    """
    The QMP peer (or this client) broke the protocol; the session is over.

    @ivar cause: the lower-level exception, if any.
    """

    def __init__(self, detail: str, cause: BaseException | None = None) -> None:
        super().__init__(f"QMP protocol error: {detail}")
        self.cause = cause


class GreetingError(ProtocolError):
    """The server sent no greeting, or one that is not a QMP greeting."""


class NegotiationError(ProtocolError):
    """C{qmp_capabilities} failed."""


class DeserializationError(ProtocolError):
    """A message is not valid JSON, or not a JSON object."""


class BadReplyError(ProtocolError):
    """A message is well-formed JSON but not a reply, error or event we expect."""


class ServerParseError(ProtocolError):
    """
    The server reported an error with no id while no id-less command was
    pending: it could not parse what we sent, and the stream is out of sync.
    """


class MessageTooLargeError(ProtocolError):
    """A message exceeded L{MAX_MESSAGE_SIZE}."""


class ExecuteError(QMPError, OperationFailedError):
    """
    QEMU received the command and refused it.

    @ivar command: the command name, e.g. C{"cont"}.
    @ivar error_class: QEMU's error class, e.g. C{"GenericError"}.
    @ivar desc: QEMU's human-readable description.
    """

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"unable to execute QEMU command '{command}': {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


class ExecInterruptedError(QMPError, OperationFailedError):
    """
    The connection closed before the reply to a command arrived.

    @ivar command: the command that was waiting.
    @ivar reason: why the connection closed.
    """

    def __init__(self, command: str, reason: Failure | None) -> None:
        why = _describe(reason)
        super().__init__(
            f"QEMU monitor connection closed while waiting for the reply to '{command}': {why}"
        )
        self.command = command
        self.reason = reason


class StateError(QMPError, InternalError):
    """
    A call was made in the wrong runstate (e.g. C{execute} before the
    session is ready, or after it closed).

    @ivar state: the runstate at the time of the call.
    """

    def __init__(self, detail: str, state: Runstate) -> None:
        super().__init__(f"{detail} (QMP session is {state.value})")
        self.state = state


class QMPTimeoutError(QMPError, OperationTimeoutError):
    """
    No reply to a command arrived in time.

    @ivar command: the command.
    @ivar timeout: the timeout in seconds.
    """

    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"no reply from QEMU to '{command}' within {timeout:g} s")
        self.command = command
        self.timeout = timeout


def _reason_value(reason: Failure | None) -> BaseException | None:
    return None if reason is None else reason.value


def _describe(reason: Failure | None) -> str:
    if reason is None:
        return "closed by us"
    value = reason.value
    if isinstance(value, QemudError):
        return value.detail
    return f"{type(value).__name__}: {value}".rstrip(": ")


# --------------------------------------------------------------------------- models


class Runstate(Enum):
    """
    The session's state, as in C{qemu.qmp.protocol.Runstate}.

    IDLE: not connected yet.  CONNECTING: connected, greeting and negotiation
    in progress.  RUNNING: commands may be executed.  DISCONNECTING: we asked
    to close.  CLOSED: the connection is gone for good.
    """

    IDLE = "idle"
    CONNECTING = "connecting"
    RUNNING = "running"
    DISCONNECTING = "disconnecting"
    CLOSED = "closed"


@dataclass(frozen=True)
class QMPEvent:
    """
    An asynchronous event from QEMU.

    @ivar name: the event name, e.g. C{"STOP"}.
    @ivar data: the event's C{data} member (C{{}} when absent).
    @ivar timestamp: QEMU's timestamp in seconds since the epoch (C{0.0} if absent).
    """

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    timestamp: float = 0.0


@dataclass
class _Pending:
    command: str
    deferred: Deferred[Any]


EventCallback = Callable[[QMPEvent], None]


def _validate_greeting(message: dict[str, Any]) -> dict[str, Any]:
    qmp = message.get("QMP")
    if not isinstance(qmp, dict):
        raise GreetingError(f"expected a greeting, got {_abbrev(message)}")
    if not isinstance(qmp.get("version"), dict):
        raise GreetingError("greeting has no 'version' object")
    if not isinstance(qmp.get("capabilities"), list):
        raise GreetingError("greeting has no 'capabilities' list")
    return message


def _abbrev(message: object, limit: int = 200) -> str:
    text = json.dumps(message, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- protocol


class QMPProtocol(Protocol):
    """
    One QMP session.

    @ivar runstate: the current L{Runstate}.
    @ivar greeting: the server's greeting once received, else C{None}.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime | None = None) -> None:
        """
        @param clock: used for per-command timeouts (C{execute(..., timeout=)}).
        """
        self._clock = clock
        self.runstate = Runstate.IDLE
        self.greeting: dict[str, Any] | None = None
        self._buffer = b""
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._abandoned: set[str] = set()
        self._subscribers: list[tuple[EventCallback, frozenset[str] | None]] = []
        self._ready_waiters: list[Deferred[dict[str, Any]]] = []
        self._closed_waiters: list[Deferred[BaseException | None]] = []
        self._fatal: ProtocolError | None = None
        self._ready_failure: Failure | None = None
        self._close_reason: Failure | None = None
        self._was_running = False

    # -- public API -----------------------------------------------------------------

    def when_ready(self) -> Deferred[dict[str, Any]]:
        """
        @return: a fresh Deferred that fires with the greeting once the session
            is RUNNING, or fails with the L{ProtocolError} that ended it before
            that (L{GreetingError} if QEMU closed without a greeting).  After
            the session ended it fails with L{StateError}.
        """
        if self.runstate is Runstate.RUNNING:
            assert self.greeting is not None
            return succeed(self.greeting)
        if self._ready_failure is not None:
            return fail(self._ready_failure)
        if self.runstate in (Runstate.DISCONNECTING, Runstate.CLOSED):
            return fail(StateError("the session has ended", self.runstate))
        d: Deferred[dict[str, Any]] = Deferred()
        self._ready_waiters.append(d)
        return d

    def when_closed(self) -> Deferred[BaseException | None]:
        """
        @return: a fresh Deferred that fires when the connection is gone: with
            C{None} if we closed it (L{close}), else with the exception saying
            why (C{ConnectionDone} for EOF from QEMU, a L{ProtocolError} after
            a fatal protocol error).  (It fires with the exception rather than
            a L{Failure}: a Deferred's result cannot be a L{Failure} without
            taking the errback path.)
        """
        d: Deferred[BaseException | None] = Deferred()
        if self.runstate is Runstate.CLOSED:
            d.callback(_reason_value(self._close_reason))
        else:
            self._closed_waiters.append(d)
        return d

    def subscribe(
        self, callback: EventCallback, names: Collection[str] | None = None
    ) -> Callable[[], None]:
        """
        Deliver events to C{callback}, in order of arrival.

        @param callback: called with each L{QMPEvent}; exceptions it raises are
            logged and do not affect other subscribers or the session.
        @param names: only deliver events with these names (all when C{None}).
        @return: a callable that ends the subscription.
        """
        entry = (callback, frozenset(names) if names is not None else None)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def execute(
        self, command: str, args: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Deferred[Any]:
        """
        Run one QMP command.

        @param command: the command name.
        @param args: its arguments.
        @param timeout: fail with L{QMPTimeoutError} if no reply arrives within
            this many seconds (needs the C{clock} given to the constructor).
            A late reply is then dropped silently.
        @return: a Deferred that fires with the C{return} member of the reply,
            or fails with L{ExecuteError}, L{ExecInterruptedError},
            L{ProtocolError}, L{QMPTimeoutError} or (at once) L{StateError}.
        """
        if self.runstate is not Runstate.RUNNING:
            return fail(StateError(f"cannot execute '{command}'", self.runstate))
        return self._send(command, args, timeout)

    def close(self) -> Deferred[BaseException | None]:
        """
        Close the connection; pending commands fail with L{ExecInterruptedError}.

        @return: L{when_closed}.
        """
        if self.runstate in (Runstate.CONNECTING, Runstate.RUNNING):
            self.runstate = Runstate.DISCONNECTING
            assert self.transport is not None
            cast(Any, self.transport).loseConnection()
        return self.when_closed()

    @property
    def pending_commands(self) -> list[str]:
        """
        @return: the names of the commands still waiting for a reply.
        """
        return [p.command for p in self._pending.values()]

    # -- Twisted protocol -----------------------------------------------------------

    def connectionMade(self) -> None:
        self.runstate = Runstate.CONNECTING

    def dataReceived(self, data: bytes) -> None:
        if self._fatal is not None:
            return
        self._buffer += data
        while self._fatal is None:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            if len(line) > MAX_MESSAGE_SIZE:
                self._protocol_failure(
                    MessageTooLargeError(f"message of {len(line)} bytes exceeds {MAX_MESSAGE_SIZE}")
                )
                return
            if line.strip():
                self._line_received(line)
        if self._fatal is None and len(self._buffer) > MAX_MESSAGE_SIZE:
            size = len(self._buffer)
            self._buffer = b""
            self._protocol_failure(
                MessageTooLargeError(
                    f"more than {MAX_MESSAGE_SIZE} bytes buffered without a complete message ({size})"
                )
            )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        closed_by_us = self.runstate is Runstate.DISCONNECTING and self._fatal is None
        self.runstate = Runstate.CLOSED
        self._buffer = b""
        if self._fatal is not None:
            cause: Failure | None = _failure(self._fatal)
        elif closed_by_us:
            cause = None
        else:
            cause = reason
        self._close_reason = cause
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.deferred.errback(ExecInterruptedError(entry.command, cause))
        if not self._was_running:
            if self.greeting is None:
                error: ProtocolError = GreetingError(
                    f"connection closed before the greeting: {_describe(cause)}"
                )
            else:
                error = NegotiationError(
                    f"connection closed during capabilities negotiation: {_describe(cause)}"
                )
            self._fail_ready(_failure(self._fatal or error))
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(_reason_value(cause))

    # -- internals ------------------------------------------------------------------

    def _send(
        self, command: str, args: dict[str, Any] | None, timeout: float | None
    ) -> Deferred[Any]:
        msg_id = f"__qmp#{next(self._ids):05d}"
        message: dict[str, Any] = {"execute": command}
        if args:
            message["arguments"] = args
        message["id"] = msg_id

        def cancel(_: Deferred[Any]) -> None:
            if self._pending.pop(msg_id, None) is not None:
                self._abandoned.add(msg_id)

        d: Deferred[Any] = Deferred(canceller=cancel)
        self._pending[msg_id] = _Pending(command, d)
        assert self.transport is not None
        cast(Any, self.transport).write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        if timeout is not None:
            if self._clock is None:
                raise ValueError("execute(timeout=...) needs the clock given to QMPProtocol")

            def timed_out(result: object, seconds: float) -> Any:
                raise QMPTimeoutError(command, seconds)

            d.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)
        return d

    def _line_received(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError as e:
            self._protocol_failure(
                DeserializationError(f"cannot parse {line[:200]!r} as JSON: {e}", e)
            )
            return
        if not isinstance(message, dict):
            self._protocol_failure(
                DeserializationError(f"expected a JSON object, got {_abbrev(message)}")
            )
            return
        if self.greeting is None:
            try:
                self.greeting = _validate_greeting(message)
            except GreetingError as e:
                self._protocol_failure(e)
                return
            self._negotiate()
            return
        self._message_received(message)

    def _negotiate(self) -> None:
        d = self._send("qmp_capabilities", None, None)

        def negotiated(_: object) -> None:
            if self.runstate is not Runstate.CONNECTING:
                return
            self.runstate = Runstate.RUNNING
            self._was_running = True
            assert self.greeting is not None
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.callback(self.greeting)

        def refused(f: Failure) -> None:
            if isinstance(f.value, ExecuteError):
                self._protocol_failure(
                    NegotiationError(f"qmp_capabilities refused: {f.value}", f.value)
                )
            # Otherwise the connection is already gone and connectionLost
            # reported it to the ready waiters.

        d.addCallbacks(negotiated, refused)

    def _message_received(self, message: dict[str, Any]) -> None:
        if "event" in message:
            self._event_received(message)
            return
        if "id" in message:
            msg_id = message["id"]
            entry = self._pending.pop(msg_id, None) if isinstance(msg_id, str) else None
            if entry is None:
                if msg_id in self._abandoned:
                    self._abandoned.discard(msg_id)
                    self._log.debug("late reply to abandoned command {id}", id=msg_id)
                else:
                    self._log.warn(
                        "dropping QMP reply with unknown id {id}: {message}",
                        id=msg_id,
                        message=_abbrev(message),
                    )
                return
            if "return" in message:
                entry.deferred.callback(message["return"])
            elif isinstance(message.get("error"), dict):
                error = message["error"]
                entry.deferred.errback(
                    ExecuteError(
                        entry.command,
                        str(error.get("class", "GenericError")),
                        str(error.get("desc", "(no description)")),
                    )
                )
            else:
                entry.deferred.errback(
                    BadReplyError(f"reply to '{entry.command}' has neither return nor error: "
                                  f"{_abbrev(message)}")
                )
            return
        if "error" in message:
            self._protocol_failure(
                ServerParseError(f"error with no id while none was expected: {_abbrev(message)}")
            )
            return
        self._protocol_failure(BadReplyError(f"unexpected message: {_abbrev(message)}"))

    def _event_received(self, message: dict[str, Any]) -> None:
        name = message["event"]
        data = message.get("data", {})
        if not isinstance(name, str) or not isinstance(data, dict):
            self._log.warn("dropping malformed QMP event: {message}", message=_abbrev(message))
            return
        stamp = message.get("timestamp")
        timestamp = 0.0
        if isinstance(stamp, dict):
            try:
                timestamp = float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6
            except (TypeError, ValueError):
                timestamp = 0.0
        event = QMPEvent(name, data, timestamp)
        for callback, names in list(self._subscribers):
            if names is not None and name not in names:
                continue
            try:
                callback(event)
            except Exception:
                self._log.failure("QMP event subscriber failed on {name}", name=name)

    def _protocol_failure(self, error: ProtocolError) -> None:
        """
        A fatal error: remember it, fail everything pending and drop the connection.
        """
        if self._fatal is not None:
            return
        self._log.error("QMP protocol failure: {error}", error=str(error))
        self._fatal = error
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.deferred.errback(error)
        self._fail_ready(_failure(error))
        if self.runstate is not Runstate.CLOSED and self.transport is not None:
            self.runstate = Runstate.DISCONNECTING
            cast(Any, self.transport).loseConnection()

    def _fail_ready(self, failure: Failure) -> None:
        if self._was_running:
            return
        if self._ready_failure is None:
            self._ready_failure = failure
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.errback(failure)


class QMPFactory(Factory):
    """
    Builds L{QMPProtocol}s for one connection attempt.

    @ivar protocol_instance: the protocol built, once C{buildProtocol} ran.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self._clock = clock
        self.protocol_instance: QMPProtocol | None = None

    def buildProtocol(self, addr: object) -> QMPProtocol:
        proto = QMPProtocol(self._clock)
        proto.factory = self
        self.protocol_instance = proto
        return proto


def _failure(exc: BaseException) -> Failure:
    """Wrap an exception in a L{Failure} (Twisted's constructor is untyped)."""
    return Failure(exc)  # type: ignore[no-untyped-call]
