# -*- test-case-name: tests.qemu.test_process,tests.qemu.test_guest,tests.qemu.test_qmp -*-
"""
Public test doubles for code that supervises QEMU.

  - L{FakeProcessReactor}: a L{MemoryReactorClock} that also fakes
    C{spawnProcess} (after Twisted procmon's C{DummyProcessReactor}): it
    records argv, environment, working directory, child descriptors and the
    signals sent, and lets a test end a process with an exit code or a signal.
    It carries a L{FakeProcFS} that its processes appear in.
  - L{FakeQMPServer}: a scripted QMP server (after libvirt's
    C{qemumonitortestutils.c}): it sends a greeting, expects an exact sequence
    of commands, answers each with a canned reply (or holds it for the test
    to answer later, in any order), and injects events.
  - L{FakeProcFS}: C{/proc} as a dictionary, with C{kill}.

Nothing here touches a real process, socket or clock; data moves between a
client protocol and a L{FakeQMPServer} only when the test flushes the
L{IOPump} (L{FakeQMPServer.flush}).
"""

from __future__ import annotations

import json
import signal as _signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.address import UNIXAddress
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import ClientFactory, ProcessProtocol, Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim

from qemud.qemu.process import ProcStat

_iosim: Any = iosim
_ProcessDone: Any = ProcessDone
_ProcessTerminated: Any = ProcessTerminated

DEFAULT_GREETING: dict[str, Any] = {
    "QMP": {
        "version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"},
        "capabilities": ["oob"],
    }
}


# --------------------------------------------------------------------------- /proc


@dataclass
class FakeProcEntry:
    """
    One process in a L{FakeProcFS}.

    @ivar on_signal: signal number → what happens: C{"exit"} (the entry
        disappears), C{"zombie"} (it stays, in state Z) or C{"ignore"}.
    """

    stat: ProcStat
    cmdline: list[str]
    environ: dict[str, str] = field(default_factory=dict)
    on_signal: dict[int, str] = field(
        default_factory=lambda: {int(_signal.SIGTERM): "exit", int(_signal.SIGKILL): "exit"}
    )


class FakeProcFS:
    """
    C{/proc} for tests: processes are added and removed by hand (or by
    L{FakeProcessReactor}).

    @ivar signals: every C{(pid, signum)} sent with L{kill}.
    """

    clock_ticks = 100

    def __init__(self) -> None:
        self.entries: dict[int, FakeProcEntry] = {}
        self.signals: list[tuple[int, int]] = []
        self._next_start = 1000

    def add(
        self,
        pid: int,
        cmdline: Sequence[str],
        *,
        start_time: int | None = None,
        state: str = "S",
        utime: int = 0,
        stime: int = 0,
    ) -> FakeProcEntry:
        """
        Make a process appear.

        @return: its entry (change C{stat} with L{dataclasses.replace}).
        """
        if start_time is None:
            self._next_start += 17
            start_time = self._next_start
        comm = (cmdline[0].rsplit("/", 1)[-1] if cmdline else "?")[:15]
        entry = FakeProcEntry(
            ProcStat(pid, comm, state, utime, stime, start_time), list(cmdline)
        )
        self.entries[pid] = entry
        return entry

    def remove(self, pid: int) -> None:
        """Make a process disappear (reaped)."""
        self.entries.pop(pid, None)

    def zombify(self, pid: int) -> None:
        """Turn a process into a zombie."""
        entry = self.entries[pid]
        s = entry.stat
        entry.stat = ProcStat(s.pid, s.comm, "Z", s.utime, s.stime, s.start_time)
        entry.cmdline = []

    def stat(self, pid: int) -> ProcStat | None:
        """@return: the entry's stat, or C{None}."""
        entry = self.entries.get(pid)
        return entry.stat if entry is not None else None

    def cmdline(self, pid: int) -> list[str] | None:
        """@return: the entry's argv, or C{None}."""
        entry = self.entries.get(pid)
        return list(entry.cmdline) if entry is not None else None

    def pids(self) -> list[int]:
        """@return: every pid."""
        return list(self.entries)

    def environ(self, pid: int) -> dict[str, str] | None:
        """@return: the entry's environment, or C{None}."""
        entry = self.entries.get(pid)
        return dict(entry.environ) if entry is not None else None

    def kill(self, pid: int, signum: int) -> None:
        """
        Record a signal and apply the entry's C{on_signal} behaviour.

        @raise ProcessLookupError: if there is no such process.
        """
        entry = self.entries.get(pid)
        if entry is None:
            raise ProcessLookupError(pid)
        self.signals.append((pid, signum))
        if entry.stat.is_zombie:
            return
        action = entry.on_signal.get(signum, "ignore")
        if action == "exit":
            self.remove(pid)
        elif action == "zombie":
            self.zombify(pid)


# --------------------------------------------------------------------------- processes


_SIGNALS = {"TERM": int(_signal.SIGTERM), "KILL": int(_signal.SIGKILL), "INT": int(_signal.SIGINT),
            "HUP": int(_signal.SIGHUP)}


class FakeProcess:
    """
    A process "spawned" by L{FakeProcessReactor}; an L{IProcessTransport}.

    @ivar argv: the argument list it was spawned with.
    @ivar env: its environment.
    @ivar path: its working directory.
    @ivar child_fds: the C{childFDs} mapping.
    @ivar signals: the signal names sent to it, in order.
    @ivar signal_behaviour: signal name → delay in seconds after which the
        process dies of that signal; a signal missing here is ignored.
    """

    def __init__(
        self,
        reactor: FakeProcessReactor,
        proto: ProcessProtocol,
        pid: int,
        argv: list[str],
        env: dict[str, str],
        path: str | None,
        child_fds: dict[int, int | str],
    ) -> None:
        self._reactor = reactor
        self.proto = proto
        self.pid: int | None = pid
        self.original_pid = pid
        self.argv = argv
        self.env = env
        self.path = path
        self.child_fds = child_fds
        self.signals: list[str] = []
        self.signal_behaviour: dict[str, float] = {"TERM": 0.0, "KILL": 0.0}
        self.ended = False

    def signalProcess(self, signal: str | int) -> None:
        """
        Record the signal; schedule death per L{signal_behaviour}.

        @raise ProcessExitedAlready: if the process has ended.
        """
        if self.pid is None:
            raise ProcessExitedAlready()
        name = signal if isinstance(signal, str) else _signal.Signals(signal).name[3:]
        self.signals.append(name)
        delay = self.signal_behaviour.get(name)
        if delay is not None:
            self._reactor.callLater(delay, self.kill_by_signal, _SIGNALS.get(name, 15))

    def exit(self, code: int = 0) -> None:
        """
        End the process with an exit code (C{processExited} then C{processEnded}).
        """
        reason = _ProcessDone(0) if code == 0 else _ProcessTerminated(exitCode=code)
        self._end(_failure(reason))

    def kill_by_signal(self, signum: int) -> None:
        """End the process as killed by C{signum}."""
        self._end(_failure(_ProcessTerminated(exitCode=None, signal=signum)))

    def _end(self, reason: Failure) -> None:
        if self.ended:
            return
        self.ended = True
        self._reactor.procfs.remove(self.original_pid)
        self.pid = None
        self.proto.processExited(reason)
        self.proto.processEnded(reason)

    # unused parts of IProcessTransport
    def closeStdin(self) -> None:
        """Nothing to close."""

    def closeStdout(self) -> None:
        """Nothing to close."""

    def closeStderr(self) -> None:
        """Nothing to close."""

    def closeChildFD(self, descriptor: int) -> None:
        """Nothing to close."""

    def loseConnection(self) -> None:
        """Nothing to close."""

    def write(self, data: bytes) -> None:
        """Discard."""

    def writeToChild(self, childFD: int, data: bytes) -> None:
        """Discard."""


class FakeProcessReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} whose C{spawnProcess} records L{FakeProcess}es.

    @ivar spawned: every process spawned, in order.
    @ivar spawn_exception: raised by the next C{spawnProcess} when set.
    @ivar procfs: the L{FakeProcFS} spawned processes appear in.
    """

    def __init__(self) -> None:
        MemoryReactorClock.__init__(self)  # type: ignore[no-untyped-call]
        self.spawned: list[FakeProcess] = []
        self.spawn_exception: Exception | None = None
        self.procfs = FakeProcFS()
        self._next_pid = 4000

    def spawnProcess(
        self,
        processProtocol: ProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[Any, Any] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> FakeProcess:
        """
        Record a spawn and return the fake process (after calling
        C{makeConnection} on the protocol, as the real reactor does).
        """
        if self.spawn_exception is not None:
            exc, self.spawn_exception = self.spawn_exception, None
            raise exc
        self._next_pid += 1
        argv = [a.decode() if isinstance(a, bytes) else a for a in args]
        proc = FakeProcess(
            self,
            processProtocol,
            self._next_pid,
            argv,
            dict(env or {}),
            path.decode() if isinstance(path, bytes) else path,
            dict(childFDs or {}),
        )
        self.procfs.add(self._next_pid, argv).environ = dict(env or {})
        self.spawned.append(proc)
        cast(Any, processProtocol).makeConnection(proc)
        return proc

    def accept_unix(self, server: Protocol, index: int = -1) -> iosim.IOPump:
        """
        Complete a pending C{connectUNIX} by connecting the client to C{server}
        in memory.

        @param server: the server side, e.g. a L{FakeQMPServer}.
        @param index: which pending connection (default: the latest).
        @return: the pump moving data between them (also given to a
            L{FakeQMPServer} so that its L{FakeQMPServer.flush} works).
        """
        address, factory, _timeout, _check = self.unixClients.pop(index)
        client = factory.buildProtocol(UNIXAddress(address))
        client_io = _iosim.FakeTransport(client, isServer=False)
        server_io = _iosim.FakeTransport(server, isServer=True)
        pump: iosim.IOPump = _iosim.connect(server, server_io, client, client_io, greet=False, clock=self)
        if isinstance(server, FakeQMPServer):
            server.pump = pump
            server.client_io = client_io
        cast(Any, pump).flush()
        return pump

    def refuse_unix(self, reason: Exception, index: int = -1) -> None:
        """
        Fail a pending C{connectUNIX} with C{reason}.
        """
        address, factory, _timeout, _check = self.unixClients.pop(index)
        assert isinstance(factory, ClientFactory)
        wanted = UNIXAddress(address)
        connector = next(c for c in self.connectors if c.getDestination() == wanted)
        factory.clientConnectionFailed(connector, _failure(reason))


# --------------------------------------------------------------------------- QMP


@dataclass
class Expectation:
    """
    One command a L{FakeQMPServer} expects, and its answer.

    @ivar command: the command name.
    @ivar args: the exact arguments expected, or C{None} for "don't check".
    @ivar ret: the C{return} value (when C{error} is C{None}).
    @ivar error: C{(class, desc)} to answer with an error instead.
    @ivar events_before: events sent just before the reply.
    @ivar events_after: events sent just after the reply.
    @ivar hold: don't answer; the test calls L{FakeQMPServer.reply} later.
    @ivar close: close the connection instead of answering.
    @ivar received: the command message, once received.
    """

    command: str
    args: dict[str, Any] | None = None
    ret: Any = field(default_factory=dict)
    error: tuple[str, str] | None = None
    events_before: Sequence[tuple[str, dict[str, Any]]] = ()
    events_after: Sequence[tuple[str, dict[str, Any]]] = ()
    hold: bool = False
    close: bool = False
    received: dict[str, Any] | None = None


class FakeQMPServer(Protocol):
    """
    A scripted QMP server.

    Commands must arrive in the order of the expectations; anything else is
    recorded in L{unexpected} and answered with a C{GenericError}, so the test
    fails on L{assert_done}.  C{qmp_capabilities} is answered automatically
    (unless C{auto_capabilities} is false).

    @ivar received: every command message received, in order.
    @ivar unexpected: command messages that matched no expectation.
    @ivar pump: the L{iosim.IOPump} connecting it, once connected.
    """

    def __init__(
        self,
        greeting: dict[str, Any] | None = DEFAULT_GREETING,
        *,
        auto_capabilities: bool = True,
    ) -> None:
        """
        @param greeting: sent on connection; C{None} sends nothing.
        @param auto_capabilities: answer C{qmp_capabilities} with C{{}}.
        """
        self.greeting = greeting
        self.auto_capabilities = auto_capabilities
        self.expectations: list[Expectation] = []
        self.received: list[dict[str, Any]] = []
        self.unexpected: list[dict[str, Any]] = []
        self.pump: iosim.IOPump | None = None
        self.client_io: iosim.FakeTransport | None = None
        self._buffer = b""
        self._held: dict[int, Expectation] = {}
        self._timestamp = 1_700_000_000.0

    # -- scripting --------------------------------------------------------------------

    def expect(
        self,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        ret: Any = None,
        error: tuple[str, str] | None = None,
        events_before: Iterable[tuple[str, dict[str, Any]]] = (),
        events_after: Iterable[tuple[str, dict[str, Any]]] = (),
        hold: bool = False,
        close: bool = False,
    ) -> Expectation:
        """
        Expect C{command} next (after those already expected).

        @return: the L{Expectation}, usable with L{reply} when C{hold} is set.
        """
        exp = Expectation(
            command,
            args,
            {} if ret is None else ret,
            error,
            tuple(events_before),
            tuple(events_after),
            hold,
            close,
        )
        self.expectations.append(exp)
        return exp

    def reply(self, exp: Expectation, ret: Any = None, error: tuple[str, str] | None = None) -> None:
        """
        Answer a held command now (with the given reply or its canned one), and flush.
        """
        assert exp.received is not None, f"{exp.command} was not received yet"
        for key, held in list(self._held.items()):
            if held is exp:
                del self._held[key]
        if ret is not None or error is not None:
            exp.ret, exp.error = ({} if ret is None else ret), error
        self._answer(exp)
        self.flush()

    def send_event(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Send an event now, and flush."""
        self._write_event(name, data or {})
        self.flush()

    def send_events(self, *events: tuple[str, dict[str, Any]]) -> None:
        """Send several events back to back (they arrive together), and flush."""
        for name, data in events:
            self._write_event(name, data)
        self.flush()

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are, and flush."""
        assert self.transport is not None
        cast(Any, self.transport).write(data)
        self.flush()

    def disconnect(self, reason: Exception | None = None) -> None:
        """
        Close the connection (EOF), and flush.

        @param reason: what the client sees (default C{ConnectionDone}).
        """
        if reason is not None and self.client_io is not None:
            cast(Any, self.client_io).disconnectReason = reason
        assert self.transport is not None
        cast(Any, self.transport).loseConnection()
        self.flush()

    def flush(self) -> None:
        """Move all pending data both ways."""
        if self.pump is not None:
            cast(Any, self.pump).flush()

    def assert_done(self) -> None:
        """
        @raise AssertionError: if an expected command did not come, or an
            unexpected one did.
        """
        left = [e.command for e in self.expectations if e.received is None]
        if left or self.unexpected:
            raise AssertionError(
                f"QMP script not followed: missing {left}, unexpected "
                f"{[m.get('execute') for m in self.unexpected]}"
            )

    @property
    def commands(self) -> list[str]:
        """@return: the names of the commands received, in order."""
        return [str(m.get("execute")) for m in self.received]

    # -- protocol ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        if self.greeting is not None:
            self._write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                self._command_received(json.loads(line))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.transport = None

    def _command_received(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        name = message.get("execute")
        if name == "qmp_capabilities" and self.auto_capabilities:
            self._write({"return": {}, "id": message.get("id")})
            return
        pending = [e for e in self.expectations if e.received is None]
        exp = pending[0] if pending else None
        if exp is None or exp.command != name or (
            exp.args is not None and exp.args != message.get("arguments", {})
        ):
            self.unexpected.append(message)
            wanted = "nothing" if exp is None else f"'{exp.command}' {exp.args or ''}"
            self._write(
                {
                    "error": {
                        "class": "GenericError",
                        "desc": f"unexpected command '{name}' {message.get('arguments', '')}"
                        f" (expected {wanted})",
                    },
                    "id": message.get("id"),
                }
            )
            return
        exp.received = message
        if exp.close:
            assert self.transport is not None
            cast(Any, self.transport).loseConnection()
            return
        if exp.hold:
            self._held[id(exp)] = exp
            return
        self._answer(exp)

    def _answer(self, exp: Expectation) -> None:
        assert exp.received is not None
        for name, data in exp.events_before:
            self._write_event(name, data)
        if exp.error is not None:
            reply: dict[str, Any] = {"error": {"class": exp.error[0], "desc": exp.error[1]}}
        else:
            reply = {"return": exp.ret}
        if "id" in exp.received:
            reply["id"] = exp.received["id"]
        self._write(reply)
        for name, data in exp.events_after:
            self._write_event(name, data)

    def _write_event(self, name: str, data: dict[str, Any]) -> None:
        self._timestamp += 0.25
        seconds = int(self._timestamp)
        message: dict[str, Any] = {
            "event": name,
            "timestamp": {"seconds": seconds,
                          "microseconds": int((self._timestamp - seconds) * 1e6)},
        }
        if data:
            message["data"] = data
        self._write(message)

    def _write(self, message: dict[str, Any]) -> None:
        if self.transport is None:
            return
        cast(Any, self.transport).write(json.dumps(message).encode() + b"\r\n")


def connect_fake_qmp(client: IProtocol, server: FakeQMPServer, clock: Any = None) -> iosim.IOPump:
    """
    Connect a client protocol to a L{FakeQMPServer} in memory (greeting flushed).

    @param client: e.g. a L{qemud.qemu.qmp.QMPProtocol}.
    @param server: the scripted server.
    @param clock: advanced by 0 on every pump (e.g. a L{FakeProcessReactor}).
    @return: the pump (also stored as C{server.pump}).
    """
    client_io = _iosim.FakeTransport(client, isServer=False)
    server_io = _iosim.FakeTransport(server, isServer=True)
    pump: iosim.IOPump = _iosim.connect(server, server_io, client, client_io, greet=False, clock=clock)
    server.pump = pump
    server.client_io = client_io
    cast(Any, pump).flush()
    return pump


def _failure(exc: BaseException) -> Failure:
    """Wrap an exception in a L{Failure} (Twisted's constructor is untyped)."""
    return Failure(exc)  # type: ignore[no-untyped-call]
