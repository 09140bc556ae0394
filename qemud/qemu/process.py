# -*- test-case-name: tests.qemu.test_process -*-
"""
A supervised QEMU process.

L{QemuProcess} launches QEMU the libvirt way: the daemon creates the QMP
listening socket itself (bound, listening, mode 0600) and hands it to QEMU as
a file descriptor, so connecting to it can never race QEMU's start-up: our
connect lands in the socket's backlog and QEMU accepts it once it is up.
QEMU's stdout and stderr go straight to the guest's log file (opened with
C{O_APPEND}), so they survive a daemon restart.  Every descriptor the daemon
opened for the child is closed in the daemon right after the spawn.

L{ReattachedProcess} watches a QEMU that is no longer our child (after a
daemon restart): it polls C{/proc/PID/stat} on the injected clock, counts a
zombie as gone, and checks the process start time (field 22) so that a
recycled pid is never mistaken for the guest, nor signalled.

Both offer the same small interface, L{SupervisedProcess}: C{pid},
C{signal(name)}, C{when_exited()} and C{exited}.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import socket
import stat as _stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from qemud.errors import OperationFailedError
from qemud.qemu.qmp import QMPFactory, QMPProtocol

#: The descriptor number QEMU sees the QMP listening socket as.
QMP_CHILD_FD = 3

#: How much of the log file tail we read at most when quoting it.
LOG_TAIL_BYTES = 64 * 1024


# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class ProcStat:
    """
    The fields of C{/proc/PID/stat} we use.

    @ivar pid: the process id.
    @ivar comm: the command name (without the parentheses).
    @ivar state: the one-letter state (C{R}, C{S}, C{Z}, ...).
    @ivar utime: user CPU time in clock ticks (field 14).
    @ivar stime: system CPU time in clock ticks (field 15).
    @ivar start_time: start time in clock ticks after boot (field 22).
    """

    pid: int
    comm: str
    state: str
    utime: int
    stime: int
    start_time: int

    @property
    def is_zombie(self) -> bool:
        """
        @return: whether the process has exited and waits to be reaped.
        """
        return self.state in ("Z", "X", "x")


def parse_proc_stat(text: str) -> ProcStat:
    """
    Parse the contents of C{/proc/PID/stat}.

    The command name is in parentheses and may itself contain spaces and
    parentheses, so the fields are counted from the last C{)}.

    @param text: the file's contents.
    @return: the parsed fields.
    @raise ValueError: when the text is not in that format.
    """
    head, sep, tail = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = tail.split()
    if not sep or len(fields) < 20:
        raise ValueError(f"malformed /proc stat line: {text[:100]!r}")
    # fields[0] is field 3 (state); field N is fields[N - 3]
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        state=fields[0],
        utime=int(fields[11]),
        stime=int(fields[12]),
        start_time=int(fields[19]),
    )


class ProcFS:
    """
    Reads process information from C{/proc}; tests use
    L{qemud.testing.FakeProcFS} instead.

    @ivar clock_ticks: C{SC_CLK_TCK}, the unit of the time fields.
    """

    def __init__(self, root: str = "/proc") -> None:
        self._root = root
        self.clock_ticks = os.sysconf("SC_CLK_TCK")

    def stat(self, pid: int) -> ProcStat | None:
        """
        @return: the process's stat fields, or C{None} if there is no such process.
        """
        try:
            with open(os.path.join(self._root, str(pid), "stat")) as f:
                return parse_proc_stat(f.read())
        except (FileNotFoundError, ProcessLookupError):
            return None
        except OSError as e:
            if e.errno in (errno.ESRCH, errno.ENOENT):
                return None
            raise

    def cmdline(self, pid: int) -> list[str] | None:
        """
        @return: the process's argv (empty for a zombie), or C{None} if gone.
        """
        try:
            with open(os.path.join(self._root, str(pid), "cmdline"), "rb") as f:
                raw = f.read()
        except (FileNotFoundError, ProcessLookupError):
            return None
        return [part.decode("utf-8", "replace") for part in raw.split(b"\0")[:-1]]

    def pids(self) -> list[int]:
        """
        @return: the pid of every process.
        """
        return [int(entry) for entry in os.listdir(self._root) if entry.isdigit()]

    def environ(self, pid: int) -> dict[str, str] | None:
        """
        @return: the process's environment, or C{None} if gone or not ours.
        """
        try:
            with open(os.path.join(self._root, str(pid), "environ"), "rb") as f:
                raw = f.read()
        except OSError:
            return None
        pairs = (item.decode("utf-8", "replace").partition("=") for item in raw.split(b"\0"))
        return {key: value for key, _, value in pairs if key}

    def kill(self, pid: int, signum: int) -> None:
        """
        Send a signal (C{os.kill}).

        @raise ProcessLookupError: if there is no such process.
        """
        os.kill(pid, signum)


class ProcReader(Protocol):
    """What the supervisors need from L{ProcFS}."""

    clock_ticks: int

    def stat(self, pid: int) -> ProcStat | None: ...

    def cmdline(self, pid: int) -> list[str] | None: ...

    def kill(self, pid: int, signum: int) -> None: ...

    def pids(self) -> list[int]: ...

    def environ(self, pid: int) -> dict[str, str] | None: ...


# --------------------------------------------------------------------------- exit status


@dataclass(frozen=True)
class ProcessExit:
    """
    How a process ended.

    @ivar exit_code: its exit status, if it exited (and we could know it).
    @ivar signal: the signal that killed it, if any.
    """

    exit_code: int | None = None
    signal: int | None = None

    def describe(self) -> str:
        """
        @return: e.g. C{"exit code 1"}, C{"killed by SIGKILL"}, C{"exited"}.
        """
        if self.signal is not None:
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        return "exited"


class SupervisedProcess(Protocol):
    """The interface shared by L{QemuProcess} and L{ReattachedProcess}."""

    @property
    def pid(self) -> int | None: ...

    @property
    def exited(self) -> ProcessExit | None: ...

    def signal(self, name: str) -> bool: ...

    def when_exited(self) -> Deferred[ProcessExit]: ...


def _signum(name: str) -> int:
    return int(getattr(_signal, "SIG" + name))


class _ExitNotifier:
    def __init__(self) -> None:
        self.exited: ProcessExit | None = None
        self._waiters: list[Deferred[ProcessExit]] = []

    def when_exited(self) -> Deferred[ProcessExit]:
        if self.exited is not None:
            return succeed(self.exited)
        d: Deferred[ProcessExit] = Deferred()
        self._waiters.append(d)
        return d

    def fire(self, status: ProcessExit) -> None:
        if self.exited is not None:
            return
        self.exited = status
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(status)


# --------------------------------------------------------------------------- sockets and logs


def create_qmp_listener(path: str) -> int:
    """
    Create the QMP listening socket that QEMU will inherit.

    A stale file at C{path} is removed first.  The socket is created with
    mode 0600 (the umask is narrowed around C{bind}, so it is never
    reachable by others, not even briefly).

    @param path: where to bind it.
    @return: the listening socket's file descriptor; the caller owns it.
    @raise OSError: if it cannot be created.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(4)
    except BaseException:
        sock.close()
        raise
    return sock.detach()


def remove_socket_file(path: str) -> None:
    """
    Remove the QMP socket file if it is there (and is not a directory).
    """
    try:
        if not _stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def read_log_tail(path: str, offset: int = 0, max_lines: int = 8) -> str:
    """
    The last lines QEMU wrote to its log.

    @param path: the log file.
    @param offset: ignore everything before this byte offset (the log's size
        when the current QEMU was started), so older runs are not quoted.
    @param max_lines: how many lines at most.
    @return: the lines, joined by newlines, stripped; C{""} if none.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(offset, size - LOG_TAIL_BYTES)
            f.seek(start)
            data = f.read()
    except OSError:
        return ""
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return "\n".join(lines[-max_lines:])


# --------------------------------------------------------------------------- our child


class QemuProcess(ProcessProtocol):
    """
    A QEMU process started and supervised by this daemon.

    @ivar argv: the command line.
    @ivar env: the environment.
    @ivar qmp_path: the QMP socket path.
    @ivar log_path: the guest's log file.
    @ivar log_offset: the log's size when QEMU was spawned.
    @ivar start_time: the process start time from C{/proc} (clock ticks after
        boot), recorded for re-attaching after a daemon restart.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        log_path: str,
        qmp_path: str,
        qmp_child_fd: int = QMP_CHILD_FD,
        listener: Callable[[str], int] = create_qmp_listener,
        procfs: ProcReader | None = None,
    ) -> None:
        """
        @param reactor: provides L{IReactorProcess}, L{IReactorUNIX} and L{IReactorTime}.
        @param argv: the command line, C{argv[0]} being the binary.
        @param env: the complete environment for QEMU.
        @param log_path: the file QEMU's stdout and stderr are appended to.
        @param qmp_path: where to create the QMP socket.
        @param qmp_child_fd: the descriptor number QEMU expects it at
            (C{-chardev socket,fd=N,server=on,wait=off}).
        @param listener: creates the listening socket (tests pass a fake).
        @param procfs: where to read process information.
        """
        self._reactor = reactor
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.qmp_path = qmp_path
        self.qmp_child_fd = qmp_child_fd
        self._listener = listener
        self._procfs: ProcReader = procfs if procfs is not None else ProcFS()
        self._notifier = _ExitNotifier()
        self._pid: int | None = None
        self.log_offset = 0
        self.start_time: int | None = None

    # -- SupervisedProcess ----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """
        @return: QEMU's pid once spawned.
        """
        return self._pid

    @property
    def exited(self) -> ProcessExit | None:
        """
        @return: how the process ended, or C{None} while it runs.
        """
        return self._notifier.exited

    def when_exited(self) -> Deferred[ProcessExit]:
        """
        @return: a fresh Deferred that fires with the L{ProcessExit} once the
            process has ended (at once if it already has).
        """
        return self._notifier.when_exited()

    def signal(self, name: str) -> bool:
        """
        Send a signal, e.g. C{"TERM"} or C{"KILL"}.

        @return: C{False} if the process had already exited.
        """
        if self.transport is None or self._notifier.exited is not None:
            return False
        try:
            cast(Any, self.transport).signalProcess(name)
        except ProcessExitedAlready:
            return False
        except OSError as e:
            if e.errno == errno.ESRCH:
                return False
            raise
        self._log.debug("sent SIG{signal} to QEMU {pid}", signal=name, pid=self._pid)
        return True

    # -- launching -------------------------------------------------------------------

    def spawn(self) -> None:
        """
        Create the QMP socket, open the log and start QEMU.

        The descriptors handed to QEMU are closed in the daemon before this
        returns, whatever happens.

        @raise OperationFailedError: if the socket, the log or the process
            cannot be created; nothing is left behind.
        """
        opened: list[int] = []
        try:
            try:
                listen_fd = self._listener(self.qmp_path)
            except OSError as e:
                raise OperationFailedError(
                    f"cannot create QMP socket {self.qmp_path}: {e.strerror or e}"
                ) from e
            opened.append(listen_fd)
            try:
                log_fd = os.open(
                    self.log_path,
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
            except OSError as e:
                raise OperationFailedError(
                    f"cannot open log file {self.log_path}: {e.strerror or e}"
                ) from e
            opened.append(log_fd)
            self.log_offset = os.fstat(log_fd).st_size
            null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            opened.append(null_fd)
            child_fds: dict[int, int | str] = {
                0: null_fd,
                1: log_fd,
                2: log_fd,
                self.qmp_child_fd: listen_fd,
            }
            # No path=: with the daemon's own working directory Twisted uses
            # posix_spawn instead of forking the whole daemon (argv paths are
            # absolute; HOME is the domain's directory).
            try:
                transport = cast(Any, self._reactor).spawnProcess(
                    self,
                    self.argv[0],
                    self.argv,
                    env=self.env,
                    childFDs=child_fds,
                )
            except Exception as e:
                raise OperationFailedError(
                    f"cannot execute {self.argv[0]}: {getattr(e, 'strerror', None) or e}"
                ) from e
            self._pid = transport.pid
        except BaseException:
            remove_socket_file(self.qmp_path)
            raise
        finally:
            for fd in opened:
                os.close(fd)
        if self._pid is not None:
            stat = self._procfs.stat(self._pid)
            self.start_time = stat.start_time if stat is not None else None
        self._log.info("started QEMU {pid}: {argv}", pid=self._pid, argv=" ".join(self.argv))

    def connect_qmp(self) -> Deferred[QMPProtocol]:
        """
        Connect to the QMP socket (our connect queues in its backlog until QEMU
        accepts).

        @return: a Deferred firing with the connected L{QMPProtocol}.
        """
        return connect_qmp(self._reactor, self.qmp_path)

    def read_log_tail(self, max_lines: int = 8) -> str:
        """
        @return: the last lines this QEMU wrote to the log.
        """
        return read_log_tail(self.log_path, self.log_offset, max_lines)

    # -- ProcessProtocol --------------------------------------------------------------

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, ProcessTerminated):
            status = ProcessExit(
                exit_code=value.exitCode if value.signal is None else None,
                signal=value.signal,
            )
        else:
            status = ProcessExit(exit_code=getattr(value, "exitCode", 0) or 0)
        self._log.info("QEMU {pid} ended: {how}", pid=self._pid, how=status.describe())
        self._notifier.fire(status)


def connect_qmp(reactor: Any, path: str) -> Deferred[QMPProtocol]:
    """
    Connect a L{QMPProtocol} to a UNIX socket.

    @param reactor: an L{IReactorUNIX} and L{IReactorTime} provider.
    @param path: the socket.
    @return: a Deferred firing with the connected protocol.
    """
    factory = QMPFactory(cast(IReactorTime, reactor))
    endpoint: Any = cast(Any, UNIXClientEndpoint)(reactor, path, timeout=10)
    return cast("Deferred[QMPProtocol]", endpoint.connect(factory))


# --------------------------------------------------------------------------- not our child


class ReattachedProcess:
    """
    A QEMU that is not our child (the daemon restarted): liveness comes from
    polling C{/proc}, plus a prompt re-check whenever QMP reports EOF.

    @ivar start_time: the start time it must have (field 22 of C{/proc/PID/stat}).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        pid: int,
        start_time: int,
        *,
        procfs: ProcReader | None = None,
        poll_interval: float = 1.0,
        fast_poll_interval: float = 0.05,
    ) -> None:
        """
        @param clock: drives the polling.
        @param pid: the process id.
        @param start_time: the recorded start time; a process with this pid
            but another start time is someone else.
        @param procfs: where to read process information and send signals.
        @param poll_interval: how often to check while all seems well.
        @param fast_poll_interval: how often to check after L{notify_eof}.
        """
        self._clock = clock
        self._pid = pid
        self.start_time = start_time
        self._procfs: ProcReader = procfs if procfs is not None else ProcFS()
        self._poll_interval = poll_interval
        self._fast_poll_interval = fast_poll_interval
        self._notifier = _ExitNotifier()
        self._loop: LoopingCall | None = None

    @property
    def pid(self) -> int | None:
        """
        @return: the pid, or C{None} once it is gone.
        """
        return None if self._notifier.exited is not None else self._pid

    @property
    def exited(self) -> ProcessExit | None:
        """
        @return: C{ProcessExit()} (status unknowable: not our child) once gone.
        """
        return self._notifier.exited

    def when_exited(self) -> Deferred[ProcessExit]:
        """
        @return: a fresh Deferred that fires once the process is gone.
        """
        return self._notifier.when_exited()

    def is_alive(self) -> bool:
        """
        @return: whether our process still exists (not a zombie, same start time).
        """
        stat = self._procfs.stat(self._pid)
        return stat is not None and not stat.is_zombie and stat.start_time == self.start_time

    def start(self) -> None:
        """
        Begin watching.
        """
        self._schedule(self._poll_interval)

    def notify_eof(self) -> None:
        """
        QMP reported EOF: the process is probably on its way out; check now
        and then often.
        """
        if self._notifier.exited is None:
            self._check()
            if self._notifier.exited is None:
                self._schedule(self._fast_poll_interval)

    def signal(self, name: str) -> bool:
        """
        Send a signal, unless the pid no longer belongs to our process.

        @return: C{False} if the process is gone.
        """
        if not self.is_alive():
            self._check()
            return False
        try:
            self._procfs.kill(self._pid, _signum(name))
        except ProcessLookupError:
            self._check()
            return False
        return True

    def stop_watching(self) -> None:
        """
        Stop polling (the process keeps running).
        """
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _schedule(self, interval: float) -> None:
        self.stop_watching()
        loop = LoopingCall(self._check)
        loop.clock = self._clock
        self._loop = loop
        loop.start(interval, now=False)

    def _check(self) -> None:
        if self._notifier.exited is not None:
            return
        if not self.is_alive():
            self.stop_watching()
            self._log.info("re-attached QEMU {pid} is gone", pid=self._pid)
            self._notifier.fire(ProcessExit())
