# -*- test-case-name: tests.qemu.test_guest -*-
"""
One running (or starting) QEMU guest: its process, its monitor, its state.

A L{Guest} is built by the driver for one run of a domain.  It launches QEMU
the libvirt way (L{qemud.qemu.process.QemuProcess}: QMP socket handed over by
fd, output to the log file), negotiates QMP, subscribes to events I{before}
querying anything, does the set-up that needs QMP, and resumes the vCPUs
unless asked to start paused.

State: libvirt's (state, reason) pairs (L{qemud.qemu.states}), changed in one
method only, L{Guest._set_state}, which also emits the lifecycle events.  It
is fed by QMP events and by the process exit.  The sequences emitted:

  - start: (RESUMED, UNPAUSED), (STARTED, BOOTED) → running/booted; started
    paused: (STARTED, BOOTED), (SUSPENDED, PAUSED) → paused/user;
  - suspend: (SUSPENDED, PAUSED) → paused/user; resume: (RESUMED, UNPAUSED)
    → running/unpaused;
  - destroy: (SHUTDOWN, HOST) if QEMU reports the SIGTERM, then
    (STOPPED, DESTROYED) → shutoff/destroyed;
  - the guest powers off: (SHUTDOWN, GUEST) → shutdown/unknown, QEMU is
    told to C{quit}, then (STOPPED, SHUTDOWN) → shutoff/shutdown;
  - QEMU dies without being asked (kill -9, abort): (STOPPED, FAILED) →
    shutoff/crashed, as libvirt reports a monitor EOF;
  - guest panic: (CRASHED, PANICKED), then per C{on_crash};
  - a start that fails: shutoff/failed, and (STOPPED, FAILED) only if
    (STARTED, BOOTED) had been sent (it is sent last, so in practice never).

Other events: C{reboot} on every QMP C{RESET}; C{device-removed} on
C{DEVICE_DELETED}; C{tray-change} on C{DEVICE_TRAY_MOVED}.

QEMU runs with C{-no-shutdown}, so when the guest powers off it stays alive,
paused, and the guest decides per C{on_poweroff} (C{destroy}: quit QEMU;
C{restart}: C{system_reset} + C{cont}; C{preserve}: stay paused, state
paused/shutting_down).  L{Guest.reboot} is libvirt's ACPI reboot: a
C{system_powerdown} with a flag set so that the guest's SHUTDOWN is followed
by C{system_reset} + C{cont} instead of quitting (per C{on_reboot}).

Operations are serialised by a L{DeferredLock}; queries never wait, and
L{Guest.destroy} does not take the lock: it preempts whatever is running.

Liveness is the process exit for our own child and, for a guest re-attached
after a daemon restart (L{Guest.attach}), QMP EOF plus polling C{/proc}
(L{qemud.qemu.process.ReattachedProcess}).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar, cast

from twisted.internet.defer import CancelledError, Deferred, DeferredLock, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.task import deferLater
from twisted.logger import Logger

from qemud.domain.model import CharDev, Disk, Domain, Interface
from qemud.errors import (
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    OperationUnsupportedError,
    QemudError,
)
from qemud.qemu import hotplug
from qemud.qemu.process import (
    QMP_CHILD_FD,
    ProcessExit,
    ProcFS,
    ProcReader,
    QemuProcess,
    ReattachedProcess,
    SupervisedProcess,
    connect_qmp,
    create_qmp_listener,
    read_log_tail,
    remove_socket_file,
)
from qemud.qemu.qmp import (
    ExecInterruptedError,
    GreetingError,
    NegotiationError,
    QMPError,
    QMPEvent,
    QMPProtocol,
)
from qemud.qemu.states import (
    CrashedDetail,
    CrashedReason,
    DomainState,
    EventID,
    LifecycleEvent,
    PausedReason,
    ResumedDetail,
    RunningReason,
    ShutdownDetail,
    ShutdownReason,
    ShutoffReason,
    StartedDetail,
    StoppedDetail,
    SuspendedDetail,
    TrayChangeReason,
    is_active,
)

_T = TypeVar("_T")


async def _raise(error: Exception) -> Any:
    raise error


# --------------------------------------------------------------------------- values


class LaunchRecipe(Protocol):
    """What L{Guest} needs of L{qemud.qemu.argv.Launch}."""

    @property
    def argv(self) -> list[str]: ...

    @property
    def env(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class GuestPaths:
    """
    Where one guest's files are.

    @ivar domain_dir: the domain's own directory (QEMU's working directory and HOME).
    @ivar qmp_path: the QMP socket (in the runtime directory; keep it short:
        UNIX socket paths are limited to 107 bytes).
    @ivar log_path: the log file QEMU's stdout and stderr are appended to.
    """

    domain_dir: str
    qmp_path: str
    log_path: str


@dataclass(frozen=True)
class GuestTimeouts:
    """
    Time limits, in seconds.

    @ivar start: from spawn until the guest is set up (greeting included).
    @ivar kill: between SIGTERM and SIGKILL (procmon's "murder" timer).
    @ivar quit: after QMP C{quit}, before escalating to SIGTERM.
    @ivar command: for each QMP command of an operation.
    @ivar exit_wait: how long a failed start waits for QEMU to exit on its own
        before killing it, so that its exit status can be reported.
    @ivar restore: for a start that restores a saved state (replaces C{start}).
    @ivar detach: how long a device detach waits for the guest to release it.
    @ivar migrate_poll: the interval at which a save or restore polls
        C{query-migrate}.
    """

    start: float = 30.0
    kill: float = 10.0
    quit: float = 5.0
    command: float = 60.0
    exit_wait: float = 1.0
    restore: float = 3600.0
    detach: float = 10.0
    migrate_poll: float = 0.05


@dataclass(frozen=True)
class GuestEvent:
    """
    Something a client may want to hear about.

    @ivar kind: C{lifecycle}, C{reboot}, C{device-removed} or C{tray-change}.
    @ivar event: (lifecycle) the L{LifecycleEvent}.
    @ivar detail: (lifecycle) the event's detail number.
    @ivar alias: (device-removed, tray-change) the device alias.
    @ivar reason: (tray-change) L{TrayChangeReason}.
    """

    kind: str
    event: int = 0
    detail: int = 0
    alias: str | None = None
    reason: int = 0

    @property
    def event_id(self) -> EventID:
        """
        @return: libvirt's event id for this kind of event.
        """
        return {
            "lifecycle": EventID.LIFECYCLE,
            "reboot": EventID.REBOOT,
            "device-removed": EventID.DEVICE_REMOVED,
            "device-added": EventID.DEVICE_ADDED,
            "tray-change": EventID.TRAY_CHANGE,
        }[self.kind]

    @property
    def args(self) -> tuple[Any, ...]:
        """
        @return: the event's arguments as the driver's C{DomainEvent} carries them.
        """
        if self.kind == "lifecycle":
            return (self.event, self.detail)
        if self.kind == "tray-change":
            return (self.alias, self.reason)
        if self.kind in ("device-removed", "device-added"):
            return (self.alias,)
        return ()


@dataclass(frozen=True)
class GuestExit:
    """
    How a guest's run ended.

    @ivar reason: the shutoff reason (shutdown, destroyed, crashed, failed).
    @ivar process: how the QEMU process ended.
    """

    reason: ShutoffReason
    process: ProcessExit


STATUS_VERSION = 1


@dataclass(frozen=True)
class GuestStatus:
    """
    What the daemon must remember about a running guest to re-attach to it
    after a restart (libvirt's status XML).  Pure data; the store writes
    L{to_document} atomically.

    @ivar name: the domain name.
    @ivar live_xml: the running definition (secure=False, inactive=False).
    @ivar pid: QEMU's pid.
    @ivar start_time: QEMU's start time (field 22 of C{/proc/PID/stat}).
    @ivar qmp_path: the QMP socket.
    @ivar log_path: the log file.
    @ivar domain_dir: the domain's directory.
    @ivar started_at: when the guest was started (seconds since the epoch).
    @ivar state: the L{DomainState} when saved.
    @ivar reason: the state reason when saved.
    @ivar domain_id: the domain's id (libvirt's C{id='N'}), C{-1} if unknown.
    """

    name: str
    live_xml: str
    pid: int
    start_time: int
    qmp_path: str
    log_path: str
    domain_dir: str
    started_at: float
    state: int
    reason: int
    domain_id: int = -1

    def to_document(self) -> str:
        """
        @return: a JSON document (deterministic: sorted keys).
        """
        body = dataclasses.asdict(self)
        body["version"] = STATUS_VERSION
        return json.dumps(body, sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_document(cls, text: str) -> GuestStatus:
        """
        @param text: what L{to_document} returned.
        @return: the status.
        @raise ValueError: when the document is malformed or of another version.
        """
        try:
            body = json.loads(text)
        except ValueError as e:
            raise ValueError(f"guest status is not JSON: {e}") from e
        if not isinstance(body, dict) or body.get("version") != STATUS_VERSION:
            raise ValueError("guest status document has an unknown version")
        types: dict[str, tuple[type, ...]] = {
            "name": (str,), "live_xml": (str,), "pid": (int,), "start_time": (int,),
            "qmp_path": (str,), "log_path": (str,), "domain_dir": (str,),
            "started_at": (int, float), "state": (int,), "reason": (int,),
            "domain_id": (int,),
        }
        values: dict[str, Any] = {}
        body.setdefault("domain_id", -1)
        for key, allowed in types.items():
            value = body.get(key)
            if not isinstance(value, allowed) or isinstance(value, bool):
                raise ValueError(f"guest status field '{key}' is missing or invalid")
            values[key] = value
        values["started_at"] = float(values["started_at"])
        return cls(**values)

    def paths(self) -> GuestPaths:
        """
        @return: the guest's paths.
        """
        return GuestPaths(self.domain_dir, self.qmp_path, self.log_path)


def find_unrecorded(procfs: ProcReader, uuid: str, domain_dir: str) -> list[int]:
    """
    Find QEMU processes of a guest whose pid was never recorded (a daemon
    killed between spawning QEMU and writing its status).

    @param uuid: the domain's UUID (on QEMU's command line as C{-uuid}).
    @param domain_dir: the domain's directory, QEMU's C{HOME}: it tells this
        daemon's guests from another daemon's with the same UUID.
    @return: their pids.
    """
    found = []
    for pid in procfs.pids():
        argv = procfs.cmdline(pid)
        if not argv or "-uuid" not in argv:
            continue
        position = argv.index("-uuid")
        if argv[position + 1:position + 2] != [uuid]:
            continue
        environ = procfs.environ(pid)
        if environ is not None and environ.get("HOME") == domain_dir:
            found.append(pid)
    return found


# --------------------------------------------------------------------------- the guest


Listener = Callable[[GuestEvent], None]

_INTERRUPTED = (ExecInterruptedError, GreetingError, NegotiationError, ConnectionError)

_SAVE_FD = "qemud-save"
_RESTORE_FD = "qemud-restore"
_MAX_BANDWIDTH = 1 << 40
"""A save streams as fast as the disk takes it (QEMU's default is 128 MiB/s)."""


class Guest:
    """
    One QEMU guest.

    @ivar live_domain: the running definition (pty paths and the VNC port
        filled in once started).
    @ivar started_at: when the start finished (reactor time), or C{None}.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        domain: Domain,
        paths: GuestPaths,
        build_launch: Callable[[int], LaunchRecipe] | None = None,
        *,
        timeouts: GuestTimeouts | None = None,
        procfs: ProcReader | None = None,
        listener: Callable[[str], int] = create_qmp_listener,
        qmp_child_fd: int = QMP_CHILD_FD,
    ) -> None:
        """
        @param reactor: provides process spawning, UNIX connections and time.
        @param domain: the running definition (aliases assigned).
        @param paths: where the guest's files go.
        @param build_launch: given the descriptor number QEMU will see the
            QMP socket as, returns the L{LaunchRecipe} (e.g.
            C{lambda fd: build_argv(domain, caps, LaunchPaths(fd, dir))}).
            Needed by L{start} only.
        @param timeouts: time limits.
        @param procfs: where process information is read (tests: a fake).
        @param listener: creates the QMP listening socket (tests: a fake).
        @param qmp_child_fd: the QMP descriptor number in QEMU.
        """
        self._reactor = reactor
        self._clock: Any = reactor
        self.live_domain = domain
        self.paths = paths
        self._build_launch = build_launch
        self._timeouts = timeouts or GuestTimeouts()
        self._procfs: ProcReader = procfs if procfs is not None else ProcFS()
        self._listener = listener
        self._qmp_child_fd = qmp_child_fd
        self._lock = DeferredLock()
        self._listeners: list[Listener] = []
        self._exit_waiters: list[Deferred[GuestExit]] = []
        self._exit: GuestExit | None = None

        self._state: tuple[DomainState, int] = (DomainState.SHUTOFF, ShutoffReason.UNKNOWN)
        self._process: SupervisedProcess | None = None
        self._qmp: QMPProtocol | None = None
        self._used = False
        self._setting_up = False  # starting or attaching: events buffered, exit handled there
        self._setup_d: Deferred[Any] | None = None
        self._event_buffer: list[QMPEvent] | None = None
        self._started_emitted = False

        # why QEMU is going away: None (nobody asked), "destroy", "shutdown", "crash"
        self._exit_intent: str | None = None
        self._got_shutdown = False
        self._panicked = False
        self._fake_reboot = False
        self._rebooting = False
        self._pause_reason: int | None = None
        self._resume_reason: int | None = None
        self._timers: list[Any] = []
        self.started_at: float | None = None
        self.log_offset = 0
        # the save running now: its start time (reactor seconds)
        self._job_started: float | None = None
        # device alias -> Deferreds waiting for its DEVICE_DELETED
        self._removal_waiters: dict[str, list[Deferred[None]]] = {}
        # device alias -> back-end commands to run once QEMU reports it deleted
        self._orphan_backends: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    # -- queries (never wait) ---------------------------------------------------------

    @property
    def name(self) -> str:
        """@return: the domain name."""
        return self.live_domain.name

    @property
    def state(self) -> tuple[int, int]:
        """
        @return: libvirt's C{(state, reason)}.
        """
        return (int(self._state[0]), int(self._state[1]))

    @property
    def is_active(self) -> bool:
        """
        @return: whether a QEMU process belongs to this guest (starting, running,
            paused, shutting down).
        """
        return is_active(self._state[0])

    @property
    def pid(self) -> int | None:
        """
        @return: QEMU's pid while the guest is active, else C{None}.
        """
        if self._process is None or not self.is_active:
            return None
        return self._process.pid

    @property
    def start_time(self) -> int | None:
        """
        @return: QEMU's start time from C{/proc} (clock ticks after boot).
        """
        process = self._process
        if isinstance(process, QemuProcess):
            return process.start_time
        if isinstance(process, ReattachedProcess):
            return process.start_time
        return None

    def cpu_time_ns(self) -> int:
        """
        @return: QEMU's CPU time (user + system) in nanoseconds.
        @raise OperationInvalidError: when the guest is not running.
        """
        pid = self.pid
        stat = self._procfs.stat(pid) if pid is not None else None
        if stat is None:
            raise OperationInvalidError("domain is not running")
        return (stat.utime + stat.stime) * 1_000_000_000 // self._procfs.clock_ticks

    def make_status(self, live_xml: str, domain_id: int = -1) -> GuestStatus:
        """
        @param live_xml: the live definition, formatted by the caller
            (C{format_domain_xml(guest.live_domain, inactive=False, secure=False)}).
        @param domain_id: the domain's id, kept in the status.
        @return: the status to persist for re-attaching.
        @raise OperationInvalidError: when the guest is not running.
        """
        pid, start_time = self.pid, self.start_time
        if pid is None or start_time is None:
            raise OperationInvalidError("domain is not running")
        return GuestStatus(
            name=self.name,
            live_xml=live_xml,
            pid=pid,
            start_time=start_time,
            qmp_path=self.paths.qmp_path,
            log_path=self.paths.log_path,
            domain_dir=self.paths.domain_dir,
            started_at=self.started_at if self.started_at is not None else 0.0,
            state=int(self._state[0]),
            reason=int(self._state[1]),
            domain_id=domain_id,
        )

    def read_log_tail(self, max_lines: int = 8) -> str:
        """
        @return: the last lines QEMU wrote to the log during this run.
        """
        return read_log_tail(self.paths.log_path, self.log_offset, max_lines)

    # -- listeners ---------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """
        Hear every L{GuestEvent}.

        @return: a callable that removes the listener.
        """
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def when_exited(self) -> Deferred[GuestExit]:
        """
        @return: a fresh Deferred that fires after the guest's final lifecycle
            event, with how the run ended.
        """
        if self._exit is not None:
            return succeed(self._exit)
        d: Deferred[GuestExit] = Deferred(lambda d: self._forget_exit_waiter(d))
        self._exit_waiters.append(d)
        return d

    def _forget_exit_waiter(self, d: Deferred[GuestExit]) -> None:
        if d in self._exit_waiters:
            self._exit_waiters.remove(d)

    # -- the one place state changes ---------------------------------------------------

    def _set_state(
        self, state: DomainState, reason: int, *events: tuple[LifecycleEvent, int]
    ) -> None:
        old = self._state
        self._state = (state, int(reason))
        if old != self._state:
            self._log.info(
                "guest {domain}: {old} -> {state}/{reason}",
                domain=self.name,
                old=f"{old[0].name.lower()}/{old[1]}",
                state=state.name.lower(),
                reason=int(reason),
            )
        for event, detail in events:
            if event is LifecycleEvent.STARTED:
                self._started_emitted = True
            self._emit(GuestEvent("lifecycle", event=int(event), detail=int(detail)))

    def _emit(self, event: GuestEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self._log.failure("guest event listener failed", domain=self.name)

    # -- start -------------------------------------------------------------------------

    def start(self, paused: bool = False, incoming_fd: int | None = None, *,
              on_spawned: Callable[[], object] | None = None) -> Deferred[None]:
        """
        Launch QEMU and bring the guest up.

        @param paused: leave the vCPUs stopped (state paused/user).
        @param incoming_fd: restore a saved state: a descriptor positioned at
            the start of a migration stream.  The launch recipe must then
            carry C{-incoming defer}; the descriptor is handed to QEMU with
            C{getfd} and loaded with C{migrate-incoming} (the caller closes
            its copy afterwards).  Emitted: (STARTED, RESTORED), then
            (RESUMED, FROM_SNAPSHOT) → running/restored, or (SUSPENDED,
            PAUSED) → paused/user.
        @param on_spawned: called as soon as QEMU runs (state paused,
            starting up; C{pid} known), so that the caller can record it
            before the guest is set up.
        @return: a Deferred that fires once the guest runs (or is paused), or
            fails with L{OperationFailedError} quoting QEMU's log; a failed
            start leaves no process, no socket file and state shutoff/failed.
        """
        return self._locked(lambda: self._start(paused, incoming_fd, on_spawned))

    async def _start(self, paused: bool, incoming_fd: int | None = None,
                     on_spawned: Callable[[], object] | None = None) -> None:
        if self.is_active:
            raise OperationInvalidError("domain is already running")
        if self._used:
            raise OperationInvalidError("a Guest object runs QEMU only once; make a new one")
        if self._build_launch is None:
            raise OperationInvalidError("no launch recipe given for this guest")
        self._used = True
        launch = self._build_launch(self._qmp_child_fd)
        process = QemuProcess(
            self._reactor,
            launch.argv,
            launch.env,
            log_path=self.paths.log_path,
            qmp_path=self.paths.qmp_path,
            qmp_child_fd=self._qmp_child_fd,
            listener=self._listener,
            procfs=self._procfs,
        )
        try:
            process.spawn()
        except QemudError as e:
            self._set_state(DomainState.SHUTOFF, ShutoffReason.FAILED)
            self._finish(GuestExit(ShutoffReason.FAILED, ProcessExit()))
            raise OperationFailedError(f"guest '{self.name}' failed to start: {e.detail}") from e
        self.log_offset = process.log_offset
        self._process = process
        self._setting_up = True
        self._event_buffer = []
        self._set_state(DomainState.PAUSED, PausedReason.STARTING_UP)
        process.when_exited().addCallback(self._process_exited)
        if on_spawned is not None:
            on_spawned()

        setup: Deferred[None] = Deferred.fromCoroutine(
            self._start_session(process, paused, incoming_fd))
        setup.addTimeout(self._timeouts.start if incoming_fd is None else self._timeouts.restore,
                         self._clock)
        self._setup_d = setup
        try:
            await setup
        except Exception as e:
            await self._abort_setup(e, "start")
        finally:
            self._setup_d = None
        self.started_at = self._clock.seconds()
        self._setting_up = False
        if incoming_fd is not None:
            if paused:
                self._set_state(
                    DomainState.PAUSED,
                    PausedReason.USER,
                    (LifecycleEvent.STARTED, StartedDetail.RESTORED),
                    (LifecycleEvent.SUSPENDED, SuspendedDetail.PAUSED),
                )
            else:
                self._set_state(
                    DomainState.RUNNING,
                    RunningReason.RESTORED,
                    (LifecycleEvent.STARTED, StartedDetail.RESTORED),
                    (LifecycleEvent.RESUMED, ResumedDetail.FROM_SNAPSHOT),
                )
        elif paused:
            self._set_state(
                DomainState.PAUSED,
                PausedReason.USER,
                (LifecycleEvent.STARTED, StartedDetail.BOOTED),
                (LifecycleEvent.SUSPENDED, SuspendedDetail.PAUSED),
            )
        else:
            self._set_state(
                DomainState.RUNNING,
                RunningReason.BOOTED,
                (LifecycleEvent.RESUMED, ResumedDetail.UNPAUSED),
                (LifecycleEvent.STARTED, StartedDetail.BOOTED),
            )
        self._replay_events()

    async def _start_session(self, process: QemuProcess, paused: bool,
                             incoming_fd: int | None = None) -> None:
        qmp = await process.connect_qmp()
        self._use_qmp(qmp)
        await qmp.when_ready()
        status = await qmp.execute("query-status")
        expected = ("prelaunch", "paused") if incoming_fd is None else ("inmigrate",)
        if status.get("status") not in expected:
            raise OperationFailedError(
                f"QEMU is in state '{status.get('status')}' right after launch"
            )
        await self._setup_with_qmp(qmp)
        if incoming_fd is not None:
            await self._send_fd(incoming_fd, _RESTORE_FD)
            await qmp.execute("migrate-incoming", {"uri": f"fd:{_RESTORE_FD}"})
            await self._wait_migration("restore")
        if not paused:
            await qmp.execute("cont")

    async def _setup_with_qmp(self, qmp: QMPProtocol) -> None:
        """
        The set-up that needs QMP: VNC password and port, pty paths.
        """
        domain = self.live_domain
        graphics = list(domain.devices.graphics)
        for i, gfx in enumerate(graphics):
            if gfx.type != "vnc":
                continue
            if gfx.passwd is not None:
                await qmp.execute("set_password", {"protocol": "vnc", "password": gfx.passwd})
            if gfx.port < 5900:
                vnc = await qmp.execute("query-vnc")
                service = vnc.get("service") if isinstance(vnc, dict) else None
                if service is not None and str(service).isdigit():
                    graphics[i] = dataclasses.replace(gfx, port=int(service))
        ptys = [c for c in domain.devices.serials + domain.devices.consoles if c.type == "pty"]
        serials, consoles = domain.devices.serials, domain.devices.consoles
        if ptys:
            chardevs = await qmp.execute("query-chardev")
            files = {
                c.get("label"): c.get("filename", "")
                for c in chardevs
                if isinstance(c, dict)
            }

            def fill(dev: CharDev, alias: str, fallback: str | None = None) -> CharDev:
                if dev.type != "pty":
                    return dev
                name = files.get(f"char{alias}") or (files.get(fallback) if fallback else None)
                if isinstance(name, str) and name.startswith("pty:"):
                    return dataclasses.replace(dev, source_path=name[4:])
                return dev

            serials = tuple(
                fill(s, s.alias or f"serial{i}") for i, s in enumerate(serials)
            )
            consoles = tuple(
                fill(c, c.alias or f"console{i}", "charserial0") for i, c in enumerate(consoles)
            )
        self.live_domain = dataclasses.replace(
            domain,
            devices=dataclasses.replace(
                domain.devices, graphics=tuple(graphics), serials=serials, consoles=consoles
            ),
        )

    async def _abort_setup(self, cause: Exception, what: str) -> NoReturn:
        """
        Undo a failed start (or attach): kill QEMU by pid, wait for it (bounded),
        close QMP, remove the socket file, set shutoff/failed; then raise an
        L{OperationFailedError} that quotes QEMU's log.
        """
        process = self._process
        assert process is not None
        self._log.info("guest {domain}: {what} failed: {cause}", domain=self.name, what=what,
                       cause=str(cause))
        if process.exited is None and isinstance(cause, (*_INTERRUPTED, CancelledError)):
            # QMP went away: QEMU is probably exiting; let it, to report its status.
            await self._wait_exit(process, self._timeouts.exit_wait)
        exited_by_itself = process.exited
        if process.exited is None:
            process.signal("KILL")
            await self._wait_exit(process, self._timeouts.kill)
        if process.exited is None:
            self._log.error("guest {domain}: QEMU {pid} survived SIGKILL", domain=self.name,
                            pid=process.pid)
        self._cancel_timers()
        if self._qmp is not None:
            self._qmp.close()
        remove_socket_file(self.paths.qmp_path)
        if isinstance(process, ReattachedProcess):
            process.stop_watching()
        destroyed = self._exit_intent == "destroy"
        reason = ShutoffReason.DESTROYED if destroyed else ShutoffReason.FAILED
        events: list[tuple[LifecycleEvent, int]] = []
        if self._started_emitted:
            events.append(
                (LifecycleEvent.STOPPED,
                 StoppedDetail.DESTROYED if destroyed else StoppedDetail.FAILED)
            )
        self._setting_up = False
        self._event_buffer = None
        self._set_state(DomainState.SHUTOFF, reason, *events)
        self._finish(GuestExit(reason, process.exited or ProcessExit()))

        if destroyed:
            detail = "the guest was destroyed while starting"
        elif exited_by_itself is not None:
            detail = f"QEMU exited while starting ({exited_by_itself.describe()})"
        elif isinstance(cause, DeferredTimeoutError):
            detail = f"QEMU did not come up within {self._timeouts.start:g} s"
        elif isinstance(cause, QemudError):
            detail = cause.detail
        else:
            detail = f"{type(cause).__name__}: {cause}"
        tail = self.read_log_tail()
        message = f"guest '{self.name}' failed to {what}: {detail}"
        if tail:
            message += f"; QEMU said: {tail}"
        raise OperationFailedError(message) from cause

    async def _wait_exit(self, process: SupervisedProcess, timeout: float) -> None:
        d = process.when_exited()
        d.addTimeout(timeout, self._clock)
        try:
            await d
        except (DeferredTimeoutError, CancelledError):
            pass

    # -- re-attach ---------------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        reactor: Any,
        live_domain: Domain,
        status: GuestStatus,
        *,
        timeouts: GuestTimeouts | None = None,
        procfs: ProcReader | None = None,
        poll_interval: float = 1.0,
    ) -> Deferred[Guest]:
        """
        Re-attach to a QEMU left running by a previous daemon.

        The pid must be alive (not a zombie), have the recorded start time, and
        its command line must carry C{guest=NAME}; then QMP is reconnected
        (greeting, capabilities, events subscribed, C{query-status}).

        @param reactor: as for L{Guest}.
        @param live_domain: the running definition, parsed from C{status.live_xml}.
        @param status: what was saved.
        @param poll_interval: how often C{/proc} is checked for the pid.
        @return: a Deferred firing with the L{Guest}, or failing with
            L{OperationFailedError} saying why (the driver then marks the
            domain shutoff/crashed); if the process was ours but QMP could
            not be reconnected, it is killed.
        """
        guest = cls(reactor, live_domain, status.paths(), timeouts=timeouts, procfs=procfs)
        return Deferred.fromCoroutine(guest._attach(status, poll_interval))

    async def _attach(self, status: GuestStatus, poll_interval: float) -> Guest:
        self._used = True
        pid, name = status.pid, self.name
        stat = self._procfs.stat(pid)
        if stat is None or stat.is_zombie:
            raise OperationFailedError(f"QEMU process {pid} of guest '{name}' is gone")
        if stat.start_time != status.start_time:
            raise OperationFailedError(
                f"process {pid} is not the QEMU of guest '{name}' any more "
                f"(start time {stat.start_time}, expected {status.start_time})"
            )
        cmdline = self._procfs.cmdline(pid) or []
        marker = f"guest={name}"
        if not any(arg == marker or arg.startswith(marker + ",") for arg in cmdline):
            raise OperationFailedError(
                f"process {pid} is not the QEMU of guest '{name}' (no '{marker}' in its "
                "command line)"
            )
        process = ReattachedProcess(
            self._clock, pid, status.start_time, procfs=self._procfs, poll_interval=poll_interval
        )
        self._process = process
        self._setting_up = True
        self._event_buffer = []
        self._set_state(DomainState(status.state), status.reason)
        self.started_at = status.started_at
        process.start()
        process.when_exited().addCallback(self._process_exited)

        setup: Deferred[dict[str, Any]] = Deferred.fromCoroutine(self._attach_session())
        setup.addTimeout(self._timeouts.start, self._clock)
        self._setup_d = setup
        try:
            qemu_status = await setup
        except Exception as e:
            await self._abort_setup(e, "re-attach")
        finally:
            self._setup_d = None
        self._setting_up = False
        self._apply_queried_status(qemu_status, DomainState(status.state), status.reason)
        self._replay_events()
        self._log.info("re-attached to guest {domain}, QEMU {pid}", domain=name, pid=pid)
        return self

    async def _attach_session(self) -> dict[str, Any]:
        qmp = await connect_qmp(self._reactor, self.paths.qmp_path)
        self._use_qmp(qmp)
        await qmp.when_ready()
        result = await qmp.execute("query-status")
        return cast(dict[str, Any], result)

    def _apply_queried_status(
        self, qemu: dict[str, Any], saved: DomainState, saved_reason: int
    ) -> None:
        status = qemu.get("status")
        if qemu.get("running") or status == "running":
            if saved is DomainState.RUNNING:
                self._set_state(DomainState.RUNNING, saved_reason)
            else:
                self._set_state(DomainState.RUNNING, RunningReason.UNPAUSED)
        elif status == "shutdown":
            # The guest powered off while we were away; QEMU kept it (-no-shutdown).
            self._set_state(DomainState.RUNNING, RunningReason.UNKNOWN)
            self._on_shutdown_event({"guest": True, "reason": "guest-shutdown"})
        elif status == "guest-panicked":
            self._set_state(DomainState.CRASHED, CrashedReason.PANICKED)
        else:
            reason: int | None = {
                "io-error": PausedReason.IOERROR,
                "watchdog": PausedReason.WATCHDOG,
                "prelaunch": PausedReason.STARTING_UP,
            }.get(str(status))
            if reason is None:
                reason = saved_reason if saved is DomainState.PAUSED else PausedReason.UNKNOWN
            self._set_state(DomainState.PAUSED, reason)

    # -- QMP plumbing ------------------------------------------------------------------

    def _use_qmp(self, qmp: QMPProtocol) -> None:
        self._qmp = qmp
        qmp.subscribe(self._on_qmp_event)
        qmp.when_closed().addCallback(self._on_qmp_closed, qmp)

    def _on_qmp_event(self, event: QMPEvent) -> None:
        if self._event_buffer is not None:
            self._event_buffer.append(event)
            return
        self._handle_event(event)

    def _replay_events(self) -> None:
        buffered, self._event_buffer = self._event_buffer or [], None
        for event in buffered:
            self._handle_event(event)

    def _on_qmp_closed(self, reason: BaseException | None, qmp: QMPProtocol) -> None:
        if qmp is not self._qmp or self._exit is not None:
            return
        process = self._process
        if process is None or process.exited is not None:
            return
        if isinstance(process, ReattachedProcess):
            process.notify_eof()
            if process.exited is not None:
                return
        if reason is None:
            return  # we closed it
        if isinstance(reason, QMPError):
            self._log.error(
                "guest {domain}: QMP failed ({error}); killing QEMU {pid}",
                domain=self.name,
                error=str(reason),
                pid=process.pid,
            )
            self._exit_intent = self._exit_intent or "crash"
            process.signal("KILL")
            return
        # EOF while QEMU lives on: it should be exiting; make sure it does.
        self._arm(self._timeouts.kill, self._kill_now)

    async def _execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        qmp = self._qmp
        if qmp is None:
            raise OperationInvalidError("domain is not running")
        return await qmp.execute(command, args, timeout=self._timeouts.command)

    # -- events from QEMU --------------------------------------------------------------

    def _handle_event(self, event: QMPEvent) -> None:
        if self._exit is not None:
            return
        handler = {
            "STOP": self._on_stop,
            "RESUME": self._on_resume,
            "SHUTDOWN": self._on_shutdown_event,
            "RESET": self._on_reset,
            "POWERDOWN": self._on_powerdown,
            "GUEST_PANICKED": self._on_panic,
            "DEVICE_DELETED": self._on_device_deleted,
            "DEVICE_TRAY_MOVED": self._on_tray_moved,
        }.get(event.name)
        if handler is not None:
            handler(event.data)

    def _on_stop(self, data: dict[str, Any]) -> None:
        if self._rebooting or self._state[0] is not DomainState.RUNNING:
            return
        reason: int
        if self._pause_reason is not None:
            reason = self._pause_reason
        elif self._got_shutdown:
            reason = PausedReason.SHUTTING_DOWN
        else:
            reason = PausedReason.UNKNOWN
        self._set_state(
            DomainState.PAUSED, reason, (LifecycleEvent.SUSPENDED, SuspendedDetail.PAUSED)
        )

    def _on_resume(self, data: dict[str, Any]) -> None:
        if self._rebooting or self._state[0] not in (DomainState.PAUSED, DomainState.CRASHED):
            return
        if self._exit_intent is None:
            self._got_shutdown = False  # revived (reset + resume after preserve)
            self._panicked = False
        self._set_state(
            DomainState.RUNNING,
            self._resume_reason or RunningReason.UNPAUSED,
            (LifecycleEvent.RESUMED, ResumedDetail.UNPAUSED),
        )

    def _on_powerdown(self, data: dict[str, Any]) -> None:
        self._log.info("guest {domain}: ACPI power button pressed", domain=self.name)

    def _on_shutdown_event(self, data: dict[str, Any]) -> None:
        if self._got_shutdown or self._rebooting or self._exit_intent in (
                "crash", "shutdown", "save"):
            return  # repeated, caused by our own quit, or part of a fake reboot
        guest = bool(data.get("guest", False))
        reason = str(data.get("reason", "guest-shutdown" if guest else "host-signal"))
        if reason == "guest-panic" and self._panicked:
            return  # on_crash decided already
        action = self._shutdown_action(reason)
        self._got_shutdown = True
        if action == "restart":
            self._start_fake_reboot(crashed=False)
            return
        detail = ShutdownDetail.GUEST if guest else ShutdownDetail.HOST
        if action == "preserve":
            self._set_state(
                DomainState.PAUSED,
                PausedReason.SHUTTING_DOWN,
                (LifecycleEvent.SHUTDOWN, detail),
            )
            return
        self._set_state(
            DomainState.SHUTDOWN, ShutdownReason.UNKNOWN, (LifecycleEvent.SHUTDOWN, detail)
        )
        if action == "destroy":
            self._exit_intent = self._exit_intent or "shutdown"
            self._quit()

    def _shutdown_action(self, reason: str) -> str:
        """
        @return: C{exit} (QEMU is going away by itself), C{destroy},
            C{restart} or C{preserve}.
        """
        if reason in ("host-signal", "host-qmp-quit", "host-error") or (
            self._exit_intent == "destroy"
        ):
            return "exit"
        domain = self.live_domain
        if self._fake_reboot or reason == "guest-reset":
            policy = domain.on_reboot
        else:
            policy = domain.on_poweroff
        if policy.endswith("restart"):
            return "restart"
        if policy == "preserve":
            return "preserve"
        return "destroy"

    def _on_reset(self, data: dict[str, Any]) -> None:
        self._emit(GuestEvent("reboot"))

    def _on_panic(self, data: dict[str, Any]) -> None:
        if self._panicked:
            return
        self._panicked = True
        self._set_state(
            DomainState.CRASHED,
            CrashedReason.PANICKED,
            (LifecycleEvent.CRASHED, CrashedDetail.PANICKED),
        )
        policy = self.live_domain.on_crash
        if policy.endswith("restart"):
            self._start_fake_reboot(crashed=True)
        elif policy.endswith("destroy"):
            self._exit_intent = self._exit_intent or "crash"
            self._quit()
        # preserve: stay crashed (a resume or reset may revive it)

    def _on_device_deleted(self, data: dict[str, Any]) -> None:
        device = data.get("device")
        if not isinstance(device, str) or not device:
            return
        domain, _removed = hotplug.remove_alias(self.live_domain, device)
        self.live_domain = domain
        orphans = self._orphan_backends.pop(device, None)
        if orphans:
            # the detach gave up waiting; free the back-end now
            d = Deferred.fromCoroutine(self._run_commands(orphans, ignore_errors=True))
            d.addErrback(lambda f: None)
        for waiter in self._removal_waiters.pop(device, []):
            waiter.callback(None)
        self._emit(GuestEvent("device-removed", alias=device))

    def _on_tray_moved(self, data: dict[str, Any]) -> None:
        alias = data.get("id") or data.get("device")
        if not isinstance(alias, str) or not alias:
            return
        opened = bool(data.get("tray-open"))
        domain = self.live_domain
        disks = tuple(
            dataclasses.replace(d, tray="open" if opened else "closed") if d.alias == alias else d
            for d in domain.devices.disks
        )
        self.live_domain = dataclasses.replace(
            domain, devices=dataclasses.replace(domain.devices, disks=disks)
        )
        reason = TrayChangeReason.OPEN if opened else TrayChangeReason.CLOSE
        self._emit(GuestEvent("tray-change", alias=alias, reason=int(reason)))

    def _start_fake_reboot(self, crashed: bool) -> None:
        self._rebooting = True
        d = Deferred.fromCoroutine(self._fake_reboot_now(crashed))
        d.addErrback(lambda f: self._log.failure("guest {domain}: reboot failed", f,
                                                 domain=self.name))

    async def _fake_reboot_now(self, crashed: bool) -> None:
        try:
            await self._execute("system_reset")
            await self._execute("cont")
        except Exception as e:
            self._log.error("guest {domain}: cannot reset after shutdown ({error}); destroying",
                            domain=self.name, error=str(e))
            self._rebooting = False
            if self._exit is None and self._process is not None:
                self._exit_intent = self._exit_intent or "crash"
                self._terminate(kill=True)
            return
        self._rebooting = False
        self._got_shutdown = False
        self._fake_reboot = False
        self._panicked = False
        reason = RunningReason.CRASHED if crashed else RunningReason.BOOTED
        if self._state[0] is DomainState.RUNNING:
            self._set_state(DomainState.RUNNING, reason)
        else:
            self._set_state(
                DomainState.RUNNING, reason, (LifecycleEvent.RESUMED, ResumedDetail.UNPAUSED)
            )

    # -- stopping ----------------------------------------------------------------------

    def _quit(self) -> None:
        """
        Ask QEMU to quit; escalate to SIGTERM (then SIGKILL) if it does not.
        """
        if self._qmp is not None:
            self._qmp.execute("quit").addErrback(lambda f: None)
        self._arm(self._timeouts.quit, lambda: self._terminate(kill=True))

    def _terminate(self, kill: bool) -> bool:
        """
        SIGTERM now, and (if C{kill}) SIGKILL when the murder timer fires.

        @return: whether the signal was delivered (C{False}: already gone).
        """
        process = self._process
        if process is None or process.exited is not None:
            return False
        sent = process.signal("TERM")
        if sent and kill:
            self._arm(self._timeouts.kill, self._kill_now)
        return sent

    def _kill_now(self) -> None:
        process = self._process
        if process is not None and process.exited is None:
            self._log.warn("guest {domain}: QEMU {pid} still alive; SIGKILL",
                           domain=self.name, pid=process.pid)
            process.signal("KILL")

    def _arm(self, delay: float, action: Callable[[], object]) -> None:
        call = self._clock.callLater(delay, action)
        self._timers.append(call)

    def _cancel_timers(self) -> None:
        timers, self._timers = self._timers, []
        for call in timers:
            if call.active():
                call.cancel()

    def _process_exited(self, status: ProcessExit) -> None:
        self._cancel_timers()
        if self._setting_up:
            # start/attach handles it: stop waiting for QMP.
            if self._setup_d is not None:
                self._setup_d.cancel()
            return
        if self._exit is not None:
            return
        if self._exit_intent == "destroy":
            reason, detail = ShutoffReason.DESTROYED, StoppedDetail.DESTROYED
        elif self._exit_intent == "crash":
            reason, detail = ShutoffReason.CRASHED, StoppedDetail.CRASHED
        elif self._exit_intent == "save":
            reason, detail = ShutoffReason.SAVED, StoppedDetail.SAVED
        elif self._exit_intent == "shutdown" or self._got_shutdown:
            reason, detail = ShutoffReason.SHUTDOWN, StoppedDetail.SHUTDOWN
        else:
            # As libvirt's monitor-EOF handler: shut off "crashed", event "failed".
            reason, detail = ShutoffReason.CRASHED, StoppedDetail.FAILED
            self._log.warn(
                "guest {domain}: QEMU ended unexpectedly ({how}); last output: {tail}",
                domain=self.name,
                how=status.describe(),
                tail=self.read_log_tail(3),
            )
        if self._qmp is not None:
            self._qmp.close()
        remove_socket_file(self.paths.qmp_path)
        if isinstance(self._process, ReattachedProcess):
            self._process.stop_watching()
        self._set_state(DomainState.SHUTOFF, reason, (LifecycleEvent.STOPPED, detail))
        self._finish(GuestExit(reason, status))

    def _finish(self, result: GuestExit) -> None:
        self._exit = result
        waiters, self._exit_waiters = self._exit_waiters, []
        for waiter in waiters:
            waiter.callback(result)

    # -- operations --------------------------------------------------------------------

    def _locked(self, op: Callable[[], Coroutine[Any, Any, _T]]) -> Deferred[_T]:
        async def run() -> _T:
            await self._lock.acquire()
            try:
                return await op()
            finally:
                self._lock.release()

        return Deferred.fromCoroutine(run())

    def _require_running(self) -> None:
        if not self.is_active or self._exit is not None or self._process is None:
            raise OperationInvalidError("domain is not running")
        if self._setting_up:
            raise OperationInvalidError("domain is starting up")

    def destroy(self, graceful: bool = False) -> Deferred[None]:
        """
        Stop QEMU now: SIGTERM, then SIGKILL when the murder timer fires
        (C{timeouts.kill}).  Does not wait for other operations: it preempts
        them (they fail, or find the domain not running).

        @param graceful: only SIGTERM; fail if QEMU is still alive after
            C{timeouts.kill} (libvirt's C{VIR_DOMAIN_DESTROY_GRACEFUL}).
        @return: a Deferred that fires once the process is gone and the state
            is shutoff/destroyed.
        """
        return Deferred.fromCoroutine(self._destroy(graceful))

    async def _destroy(self, graceful: bool) -> None:
        process = self._process
        if not self.is_active or self._exit is not None or process is None:
            raise OperationInvalidError("domain is not running")
        previous_intent = self._exit_intent
        self._exit_intent = "destroy"
        done = self.when_exited()
        if graceful:
            self._terminate(kill=False)
            done.addTimeout(self._timeouts.kill, self._clock)
            try:
                await done
            except DeferredTimeoutError:
                self._exit_intent = previous_intent
                raise OperationFailedError(
                    f"failed to terminate process {process.pid} with SIGTERM"
                ) from None
            return
        if not self._terminate(kill=True):
            process.signal("KILL")
        await done

    def shutdown(self) -> Deferred[None]:
        """
        Press the ACPI power button (QMP C{system_powerdown}).

        @return: a Deferred that fires once QEMU took the request, like
            libvirt's C{virDomainShutdown}; the guest then powers off (and the
            state becomes shutoff/shutdown, per C{on_poweroff}) if it listens.
        """

        async def op() -> None:
            self._require_running()
            self._fake_reboot = False
            await self._execute("system_powerdown")

        return self._locked(op)

    def reboot(self) -> Deferred[None]:
        """
        ACPI reboot: C{system_powerdown}, and when the guest has powered off,
        C{system_reset} + C{cont} instead of quitting (per C{on_reboot}).

        @return: a Deferred that fires once QEMU took the request.
        """

        async def op() -> None:
            self._require_running()
            self._fake_reboot = True
            try:
                await self._execute("system_powerdown")
            except Exception:
                self._fake_reboot = False
                raise

        return self._locked(op)

    def reset(self) -> Deferred[None]:
        """
        Hard reset (QMP C{system_reset}); a C{reboot} event follows.
        """

        async def op() -> None:
            self._require_running()
            await self._execute("system_reset")
            if self._state[0] is DomainState.CRASHED:
                self._set_state(DomainState.PAUSED, PausedReason.CRASHED)

        return self._locked(op)

    def suspend(self) -> Deferred[None]:
        """
        Pause the vCPUs (QMP C{stop}); state paused/user.  Suspending a paused
        guest does nothing.
        """

        async def op() -> None:
            self._require_running()
            if self._state[0] is DomainState.PAUSED:
                return
            if self._state[0] is not DomainState.RUNNING:
                raise OperationInvalidError("domain is not running")
            self._pause_reason = PausedReason.USER
            try:
                await self._execute("stop")
            finally:
                self._pause_reason = None
            if self.state[0] == DomainState.RUNNING:
                self._set_state(
                    DomainState.PAUSED,
                    PausedReason.USER,
                    (LifecycleEvent.SUSPENDED, SuspendedDetail.PAUSED),
                )

        return self._locked(op)

    def resume(self) -> Deferred[None]:
        """
        Resume the vCPUs (QMP C{cont}); state running/unpaused.  Resuming a
        running guest does nothing.
        """

        async def op() -> None:
            self._require_running()
            if self._state[0] is DomainState.RUNNING:
                return
            if self._state[0] not in (DomainState.PAUSED, DomainState.CRASHED):
                raise OperationInvalidError("domain is not paused")
            await self._execute("cont")
            if self.state[0] != DomainState.RUNNING:
                self._set_state(
                    DomainState.RUNNING,
                    RunningReason.UNPAUSED,
                    (LifecycleEvent.RESUMED, ResumedDetail.UNPAUSED),
                )

        return self._locked(op)

    # -- save, hot-plug, media change, queries -----------------------------------------

    def query(self, command: str, args: dict[str, Any] | None = None) -> Deferred[Any]:
        """
        Run a read-only QMP command now, without waiting for operations in
        progress (for statistics and job progress).

        @raise OperationInvalidError: (as the Deferred's failure) when the
            guest is not running.
        """
        if not self.is_active or self._exit is not None or self._qmp is None:
            return Deferred.fromCoroutine(_raise(OperationInvalidError("domain is not running")))
        return Deferred.fromCoroutine(self._execute(command, args))

    @property
    def job_started(self) -> float | None:
        """
        @return: when the save in progress started (reactor seconds), or C{None}.
        """
        return self._job_started

    async def _send_fd(self, fd: int, name: str) -> None:
        """
        Hand C{fd} to QEMU over the QMP socket (SCM_RIGHTS) as C{name}
        (QMP C{getfd}).  The caller keeps its copy open until this returns.
        """
        qmp = self._qmp
        if qmp is None:
            raise OperationInvalidError("domain is not running")
        send = getattr(qmp.transport, "sendFileDescriptor", None)
        if send is None:
            raise OperationFailedError("the QMP connection cannot pass file descriptors")
        send(fd)
        await self._execute("getfd", {"fdname": name})

    async def _wait_migration(self, job: str) -> dict[str, Any]:
        """
        Poll C{query-migrate} until the migration (out or in) ends.

        @return: the final C{query-migrate} reply.
        @raise OperationFailedError: the migration failed or was cancelled.
        """
        while True:
            info = await self._execute("query-migrate")
            status = info.get("status") if isinstance(info, dict) else None
            if status == "completed":
                return cast(dict[str, Any], info)
            if status in ("failed", "cancelled"):
                desc = info.get("error-desc") or status
                raise OperationFailedError(f"job '{job}' failed: {desc}")
            await deferLater(self._clock, self._timeouts.migrate_poll, lambda: None)

    def save(self, fd: int, commit: Callable[[], None]) -> Deferred[None]:
        """
        Save the guest's state and stop QEMU, as libvirt's C{virDomainSave}.

        Pauses the vCPUs (state paused/save, (SUSPENDED, PAUSED)) when
        running, streams the state to C{fd} (QMP C{getfd} + C{migrate
        fd:}), polls C{query-migrate} until it completes, calls C{commit}
        (the driver fsyncs and renames the image), then quits QEMU: (STOPPED,
        SAVED) → shutoff/saved.

        On any failure before QEMU is told to quit (QEMU error, disk full,
        C{commit} raising) the migration is cancelled and a guest this
        paused is resumed; the guest keeps running.

        @param fd: where the stream goes (positioned after the image header);
            the caller closes it afterwards.
        @param commit: called once the stream is complete, before QEMU quits.
        """
        return self._locked(lambda: self._save(fd, commit))

    async def _save(self, fd: int, commit: Callable[[], None]) -> None:
        self._require_running()
        state = self._state[0]
        if state not in (DomainState.RUNNING, DomainState.PAUSED):
            raise OperationInvalidError("domain is not running")
        paused_here = migrating = fd_given = False
        self._job_started = self._clock.seconds()
        try:
            if state is DomainState.RUNNING:
                self._pause_reason = PausedReason.SAVE
                try:
                    await self._execute("stop")
                finally:
                    self._pause_reason = None
                paused_here = True
                if self.state[0] == DomainState.RUNNING:
                    self._set_state(DomainState.PAUSED, PausedReason.SAVE,
                                    (LifecycleEvent.SUSPENDED, SuspendedDetail.PAUSED))
            await self._execute("migrate-set-parameters", {"max-bandwidth": _MAX_BANDWIDTH})
            await self._send_fd(fd, _SAVE_FD)
            fd_given = True
            await self._execute("migrate", {"uri": f"fd:{_SAVE_FD}"})
            fd_given, migrating = False, True
            await self._wait_migration("save")
            migrating = False
            commit()
        except BaseException as e:
            self._log.warn("guest {domain}: save failed ({error}); resuming",
                           domain=self.name, error=str(e))
            await self._undo_save(paused_here, migrating, fd_given)
            raise
        finally:
            self._job_started = None
        self._exit_intent = "save"
        done = self.when_exited()
        self._quit()
        await done

    async def _undo_save(self, paused_here: bool, migrating: bool, fd_given: bool) -> None:
        if self._exit is not None or self._qmp is None:
            return
        undo: list[tuple[str, dict[str, Any]]] = []
        if migrating:
            undo.append(("migrate_cancel", {}))
        if fd_given:
            undo.append(("closefd", {"fdname": _SAVE_FD}))
        await self._run_commands(undo, ignore_errors=True)
        if paused_here and self._state[0] is DomainState.PAUSED:
            self._resume_reason = RunningReason.SAVE_CANCELED
            try:
                await self._execute("cont")
            except Exception as e:
                self._log.error("guest {domain}: cannot resume after a failed save: {error}",
                                domain=self.name, error=str(e))
                return
            finally:
                self._resume_reason = None
            if self.state[0] != DomainState.RUNNING:
                self._set_state(DomainState.RUNNING, RunningReason.SAVE_CANCELED,
                                (LifecycleEvent.RESUMED, ResumedDetail.UNPAUSED))

    async def _run_commands(self, commands: list[tuple[str, dict[str, Any]]], *,
                            ignore_errors: bool = False) -> None:
        for command, args in commands:
            try:
                await self._execute(command, args or None)
            except Exception as e:
                if not ignore_errors:
                    raise
                self._log.info("guest {domain}: {command} failed: {error}", domain=self.name,
                               command=command, error=str(e))

    def attach_disk(self, disk: Disk, *, kind: str,
                    has_device: Callable[[str], bool] | None = None) -> Deferred[Disk]:
        """
        Hot-plug a disk: C{blockdev-add} (storage, format) and C{device_add},
        with the boot command line's properties, at a free PCI slot (or the
        address the disk asks for) when it is a virtio disk; undone on
        failure.  A SCSI disk without a SCSI controller brings one.  A
        C{device-added} event follows.

        @param disk: the disk (defaults filled in; its alias is chosen here).
        @param kind: the machine kind.
        @param has_device: C{caps.has_device}.
        @return: the disk as the live definition now shows it.
        """

        async def op() -> Disk:
            self._require_running()
            hotplug.check_attachable(self.live_domain, disk)
            nodes = await self._execute("query-named-block-nodes", {"flat": True})
            plan = hotplug.plan_disk_attach(self.live_domain, disk,
                                            hotplug.next_node_index(nodes or []), kind=kind,
                                            has_device=has_device)
            await self._run_plan(plan)
            assert isinstance(plan.device, Disk)
            return plan.device

        return self._locked(op)

    def attach_interface(self, iface: Interface, *, driver: str,
                         kind: str = "i440fx") -> Deferred[Interface]:
        """
        Hot-plug a NIC: C{netdev_add} and C{device_add} (at a free PCI slot,
        or the address the interface asks for); undone on failure.

        @param iface: the interface (MAC filled in; alias chosen here).
        @param driver: the QEMU device (L{qemud.qemu.argv.nic_driver}).
        @param kind: the machine kind.
        @return: the interface as the live definition now shows it.
        """

        async def op() -> Interface:
            self._require_running()
            hotplug.check_attachable(self.live_domain, iface)
            plan = hotplug.plan_nic_attach(self.live_domain, iface, driver=driver, kind=kind)
            await self._run_plan(plan)
            assert isinstance(plan.device, Interface)
            return plan.device

        return self._locked(op)

    async def _run_plan(self, plan: hotplug.AttachPlan) -> None:
        done: list[hotplug.Step] = []
        try:
            for step in plan.steps:
                await self._execute(step.command, step.args)
                done.append(step)
        except Exception:
            undo = [s.undo for s in reversed(done) if s.undo is not None]
            await self._run_commands(undo, ignore_errors=True)
            if plan.controller is not None and done:
                # The controller went in first and stays (as in libvirt).
                self.live_domain = hotplug.add_controller(self.live_domain, plan.controller)
            raise
        live = self.live_domain
        if plan.controller is not None:
            live = hotplug.add_controller(live, plan.controller)
        self.live_domain = hotplug.add_device(live, plan.device)
        self._emit(GuestEvent("device-added", alias=plan.device.alias))

    def detach_device(self, device: Disk | Interface) -> Deferred[None]:
        """
        Hot-unplug a device: C{device_del}, wait (C{timeouts.detach}) for the
        guest to release it (QMP C{DEVICE_DELETED}, which also removes it from
        the live definition and emits C{device-removed}), then free its
        back-end (C{blockdev-del} / C{netdev_del}).

        @param device: the device of the live definition (alias set).
        @raise OperationTimeoutError: the guest did not release it in time;
            the request stays pending and the back-end is freed if it does later.
        @raise OperationUnsupportedError: a disk QEMU cannot unplug (IDE, floppy).
        """

        async def op() -> None:
            self._require_running()
            alias = device.alias
            if alias is None or hotplug.remove_alias(self.live_domain, alias)[1] is None:
                raise OperationFailedError(f"device '{alias}' is not plugged in")
            backend: list[tuple[str, dict[str, Any]]]
            if isinstance(device, Disk):
                if device.target_bus not in ("virtio", "scsi", "usb"):
                    raise OperationUnsupportedError(
                        f"disk bus '{device.target_bus}' cannot be hotunplugged.")
                blocks = await self._execute("query-block")
                backend = hotplug.disk_backend_removal(
                    hotplug.find_block_node(blocks or [], alias))
            else:
                backend = hotplug.nic_backend_removal(device)
            waiter: Deferred[None] = Deferred()
            waiters = self._removal_waiters.setdefault(alias, [])
            waiters.append(waiter)
            try:
                await self._execute("device_del", {"id": alias})
            except Exception:
                self._forget_waiter(alias, waiter)
                raise
            waiter.addTimeout(self._timeouts.detach, self._clock)
            try:
                await waiter
            except (DeferredTimeoutError, CancelledError):
                self._forget_waiter(alias, waiter)
                self._orphan_backends[alias] = backend
                raise OperationTimeoutError(
                    f"device '{alias}' was not removed in time; the guest did not release it"
                ) from None
            await self._run_commands(backend, ignore_errors=True)

        return self._locked(op)

    def _forget_waiter(self, alias: str, waiter: Deferred[None]) -> None:
        waiters = self._removal_waiters.get(alias, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._removal_waiters.pop(alias, None)

    def change_media(self, new: Disk) -> Deferred[Disk]:
        """
        Change (or eject, C{new.source is None}) the medium of a cdrom or
        floppy: open the tray (forced), remove the medium, add and insert the
        new one, close the tray, free the old nodes.  QEMU's tray events
        become C{tray-change} events.

        @param new: the drive as wanted, same target dev as an existing one.
        @return: the drive as the live definition now shows it.
        """

        async def op() -> Disk:
            self._require_running()
            old = hotplug.find_disk(self.live_domain, new.target_dev)
            if old is None or old.alias is None:
                raise OperationFailedError(f"no target device {new.target_dev}")
            blocks = await self._execute("query-block")
            old_node = hotplug.find_block_node(blocks or [], old.alias)
            index = 0
            if new.source is not None:
                nodes = await self._execute("query-named-block-nodes", {"flat": True})
                index = hotplug.next_node_index(nodes or [])
            commands = hotplug.media_change_steps(old, new, old_node, index)
            cleanup = len(hotplug.disk_backend_removal(old_node))
            await self._run_commands(commands[:len(commands) - cleanup])
            await self._run_commands(commands[len(commands) - cleanup:], ignore_errors=True)
            current = hotplug.find_disk(self.live_domain, new.target_dev) or old
            updated = dataclasses.replace(current, source=new.source,
                                          driver_type=new.driver_type if new.source else None)
            self.live_domain = hotplug.replace_disk(self.live_domain, updated)
            return updated

        return self._locked(op)

    def detach(self) -> None:
        """
        Let go of a running QEMU without stopping it (daemon shutdown with
        guests left running): close QMP, stop polling.  The guest object is
        unusable afterwards; re-attach with L{attach}.
        """
        if isinstance(self._process, ReattachedProcess):
            self._process.stop_watching()
        self._cancel_timers()
        if self._qmp is not None:
            self._qmp.close()
        if self._exit is None:
            self._finish(GuestExit(ShutoffReason.DAEMON, ProcessExit()))
