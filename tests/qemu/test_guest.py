"""
Tests for L{qemud.qemu.guest}: the guest state machine driven by a
L{FakeProcessReactor} (processes, clock, /proc) and a scripted
L{FakeQMPServer}; no real process, socket or clock.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.trial.unittest import SynchronousTestCase

from qemud.domain.model import CharDev, Devices, Disk, Domain, Graphics
from qemud.errors import OperationFailedError, OperationInvalidError
from qemud.qemu.argv import Launch
from qemud.qemu.guest import (
    Guest,
    GuestEvent,
    GuestPaths,
    GuestStatus,
    GuestTimeouts,
)
from qemud.qemu.qmp import ExecInterruptedError
from qemud.qemu.states import (
    DomainState,
    PausedReason,
    RunningReason,
    ShutoffReason,
)
from qemud.testing import FakeProcess, FakeProcessReactor, FakeQMPServer

BINARY = "/usr/bin/qemu-system-x86_64"

# libvirt numbers, spelled out so that the expected sequences read like the spec
STARTED_BOOTED = (2, 0)
SUSPENDED_PAUSED = (3, 0)
RESUMED_UNPAUSED = (4, 0)
STOPPED_SHUTDOWN = (5, 0)
STOPPED_DESTROYED = (5, 1)
STOPPED_CRASHED = (5, 2)
STOPPED_FAILED = (5, 5)
STOPPED_FAILED = (5, 5)
SHUTDOWN_GUEST = (6, 1)
SHUTDOWN_HOST = (6, 2)
CRASHED_PANICKED = (8, 0)

RUNNING_BOOTED = (1, 1)
RUNNING_UNPAUSED = (1, 5)
PAUSED_USER = (3, 1)
SHUTOFF_SHUTDOWN = (5, 1)
SHUTOFF_DESTROYED = (5, 2)
SHUTOFF_CRASHED = (5, 3)
SHUTOFF_FAILED = (5, 6)


def make_domain(**changes: Any) -> Domain:
    """A minimal running definition."""
    domain = Domain(
        type="kvm", name="vm1", uuid="8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b", memory_kib=65536
    )
    return dataclasses.replace(domain, **changes)


class Env:
    """
    A guest wired to fakes.

    @ivar fds_given: the descriptors the fake listener handed out.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        domain: Domain | None = None,
        timeouts: GuestTimeouts | None = None,
    ) -> None:
        self.case = case
        self.reactor = FakeProcessReactor()
        base = case.mktemp()
        os.makedirs(base)
        self.paths = GuestPaths(base, os.path.join(base, "qmp.sock"), os.path.join(base, "vm1.log"))
        self.domain = domain or make_domain()
        self.fds_given: list[int] = []
        self.guest = Guest(
            self.reactor,
            self.domain,
            self.paths,
            self.launch,
            timeouts=timeouts,
            procfs=self.reactor.procfs,
            listener=self.listener,
        )
        self.events: list[GuestEvent] = []
        self.guest.add_listener(self.events.append)
        self.server = FakeQMPServer()

    def launch(self, qmp_fd: int) -> Launch:
        return Launch(
            argv=[BINARY, "-name", f"guest={self.domain.name},debug-threads=on", "-S",
                  "-chardev", f"socket,id=charmonitor,fd={qmp_fd},server=on,wait=off"],
            env={"LC_ALL": "C", "HOME": self.paths.domain_dir},
        )

    def listener(self, path: str) -> int:
        with open(path, "w"):
            pass  # stands for the socket file
        fd = os.open(os.devnull, os.O_RDONLY)
        self.fds_given.append(fd)
        return fd

    @property
    def process(self) -> FakeProcess:
        return self.reactor.spawned[-1]

    def lifecycle(self) -> list[tuple[int, int]]:
        return [(e.event, e.detail) for e in self.events if e.kind == "lifecycle"]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def start(self, paused: bool = False, **cont: Any) -> Deferred[None]:
        """Start with the usual QMP script and let it run."""
        d = self.guest.start(paused)
        self.server.expect("query-status", ret={"status": "prelaunch", "running": False})
        if not paused:
            self.server.expect("cont", events_before=[("RESUME", {})], **cont)
        self.reactor.accept_unix(self.server)
        return d

    def started(self, paused: bool = False) -> None:
        """Start successfully and forget the start events."""
        self.case.successResultOf(self.start(paused))
        del self.events[:]

    def write_log(self, text: str) -> None:
        with open(self.paths.log_path, "a") as f:
            f.write(text)


class StartTests(SynchronousTestCase):
    """Launching QEMU and bringing the guest up."""

    def test_start_running(self) -> None:
        """
        Start spawns QEMU with the recipe (HOME the domain directory), stdout and
        stderr on the log, the QMP socket as fd 3; negotiates, queries the
        status, then C{cont}; the guest is running/booted and
        (RESUMED, UNPAUSED), (STARTED, BOOTED) were emitted.
        """
        env = Env(self)
        self.assertIsNone(self.successResultOf(env.start()))
        proc = env.process
        self.assertEqual(proc.argv[0], BINARY)
        self.assertIn("socket,id=charmonitor,fd=3,server=on,wait=off", proc.argv)
        self.assertEqual(proc.env, {"LC_ALL": "C", "HOME": env.paths.domain_dir})
        self.assertIsNone(proc.path)
        self.assertEqual(sorted(proc.child_fds), [0, 1, 2, 3])
        self.assertEqual(proc.child_fds[1], proc.child_fds[2])
        self.assertEqual(proc.child_fds[3], env.fds_given[0])
        self.assertEqual(env.server.commands, ["qmp_capabilities", "query-status", "cont"])
        env.server.assert_done()
        self.assertEqual(env.guest.state, RUNNING_BOOTED)
        self.assertEqual(env.lifecycle(), [RESUMED_UNPAUSED, STARTED_BOOTED])
        self.assertEqual(env.guest.pid, proc.original_pid)
        self.assertIsNotNone(env.guest.start_time)
        self.assertEqual(self.reactor_calls(env), [])

    def reactor_calls(self, env: Env) -> list[Any]:
        return [c for c in env.reactor.getDelayedCalls() if c.active()]

    def test_parent_closes_child_descriptors(self) -> None:
        """
        The daemon closes its copies of the listening socket, the log and
        stdin right after the spawn.
        """
        env = Env(self)
        self.successResultOf(env.start())
        for fd in set(env.process.child_fds.values()):
            assert isinstance(fd, int)
            self.assertRaises(OSError, os.fstat, fd)

    def test_start_paused(self) -> None:
        """
        Started paused: no C{cont}; paused/user with (STARTED, BOOTED),
        (SUSPENDED, PAUSED).
        """
        env = Env(self)
        self.successResultOf(env.start(paused=True))
        self.assertNotIn("cont", env.server.commands)
        self.assertEqual(env.guest.state, PAUSED_USER)
        self.assertEqual(env.lifecycle(), [STARTED_BOOTED, SUSPENDED_PAUSED])

    def test_events_during_start_not_lost(self) -> None:
        """
        Events are subscribed before C{query-status}: one arriving while the
        start is in progress is handled once the state is set.
        """
        env = Env(self)
        d = env.guest.start()
        env.server.expect(
            "query-status",
            ret={"status": "prelaunch", "running": False},
            events_before=[("DEVICE_DELETED", {"device": "net1", "path": "/machine/x"})],
        )
        env.server.expect("cont", events_after=[("RESUME", {})])
        env.reactor.accept_unix(env.server)
        self.successResultOf(d)
        self.assertEqual(env.kinds(), ["lifecycle", "lifecycle", "device-removed"])
        self.assertEqual(env.events[-1].alias, "net1")

    def test_state_while_starting(self) -> None:
        """
        Until QMP is set up the guest is paused/starting_up, with a pid.
        """
        env = Env(self)
        d = env.guest.start()
        self.assertEqual(env.guest.state, (3, PausedReason.STARTING_UP))
        self.assertIsNotNone(env.guest.pid)
        self.assertNoResult(d)
        self.assertEqual(env.events, [])

    def test_spawn_error(self) -> None:
        """
        A binary that cannot be executed fails the start with
        L{OperationFailedError}; no socket file stays; shutoff/failed; no events.
        """
        env = Env(self)
        env.reactor.spawn_exception = FileNotFoundError(2, "No such file or directory")
        f = self.failureResultOf(env.guest.start(), OperationFailedError)
        self.assertIn("cannot execute /usr/bin/qemu-system-x86_64: No such file", str(f.value))
        self.assertFalse(os.path.exists(env.paths.qmp_path))
        self.assertEqual(env.guest.state, SHUTOFF_FAILED)
        self.assertEqual(env.events, [])
        self.assertEqual(self.successResultOf(env.guest.when_exited()).reason,
                         ShutoffReason.FAILED)

    def test_early_exit_quotes_log(self) -> None:
        """
        QEMU exiting before the greeting fails the start with its exit status
        and the last lines of its log (this run's only); nothing is left.
        """
        env = Env(self)
        env.write_log("old run: something\n")
        d = env.guest.start()
        env.write_log("qemu-system-x86_64: -foo: invalid option\n")
        env.process.exit(1)
        f = self.failureResultOf(d, OperationFailedError)
        self.assertEqual(
            str(f.value),
            "operation failed: guest 'vm1' failed to start: QEMU exited while starting "
            "(exit code 1); QEMU said: qemu-system-x86_64: -foo: invalid option",
        )
        self.assertEqual(env.process.signals, [])
        self.assertFalse(os.path.exists(env.paths.qmp_path))
        self.assertEqual(env.guest.state, SHUTOFF_FAILED)
        self.assertEqual(env.events, [])
        self.assertIsNone(env.guest.pid)

    def test_no_greeting_timeout(self) -> None:
        """
        No greeting within the start timeout: QEMU is killed by pid, the start
        fails saying so, and the socket file is removed.
        """
        env = Env(self, timeouts=GuestTimeouts(start=30))
        env.server = FakeQMPServer(greeting=None)
        d = env.guest.start()
        env.reactor.accept_unix(env.server)
        env.reactor.advance(29)
        self.assertNoResult(d)
        env.reactor.advance(1)
        self.assertEqual(env.process.signals, ["KILL"])
        env.reactor.advance(0)
        f = self.failureResultOf(d, OperationFailedError)
        self.assertIn("QEMU did not come up within 30 s", str(f.value))
        self.assertFalse(os.path.exists(env.paths.qmp_path))
        self.assertEqual(env.guest.state, SHUTOFF_FAILED)
        self.assertTrue(env.process.ended)

    def test_command_refused(self) -> None:
        """
        QEMU refusing a start-up command fails the start with QEMU's words and
        the log tail; QEMU is killed.
        """
        env = Env(self)
        d = env.guest.start()
        env.write_log("kvm: something odd\n")
        env.server.expect("query-status", ret={"status": "prelaunch", "running": False})
        env.server.expect("cont", error=("GenericError", "cannot start vCPUs"))
        env.reactor.accept_unix(env.server)
        env.reactor.advance(0)
        f = self.failureResultOf(d, OperationFailedError)
        self.assertIn("unable to execute QEMU command 'cont': cannot start vCPUs", str(f.value))
        self.assertIn("QEMU said: kvm: something odd", str(f.value))
        self.assertEqual(env.process.signals, ["KILL"])
        self.assertEqual(env.guest.state, SHUTOFF_FAILED)

    def test_eof_mid_command_waits_for_exit_status(self) -> None:
        """
        QMP closing in the middle of a start-up command: the start waits
        (briefly) for QEMU's exit and reports its status.
        """
        env = Env(self)
        d = env.start(close=True)
        self.assertNoResult(d)
        env.write_log("qemu: assertion failed\n")
        env.process.kill_by_signal(signal.SIGABRT)
        f = self.failureResultOf(d, OperationFailedError)
        self.assertIn("QEMU exited while starting (killed by SIGABRT)", str(f.value))
        self.assertIn("assertion failed", str(f.value))

    def test_eof_then_no_exit(self) -> None:
        """
        If QEMU closes QMP but does not exit, the start kills it after the
        short wait.
        """
        env = Env(self, timeouts=GuestTimeouts(exit_wait=1))
        d = env.start(close=True)
        env.reactor.advance(1)
        self.assertEqual(env.process.signals, ["KILL"])
        env.reactor.advance(0)
        self.failureResultOf(d, OperationFailedError)

    def test_start_twice(self) -> None:
        """
        Starting a running guest fails with libvirt's wording.
        """
        env = Env(self)
        env.started()
        f = self.failureResultOf(env.guest.start(), OperationInvalidError)
        self.assertEqual(str(f.value), "Requested operation is not valid: domain is already running")

    def test_vnc_password_port_and_ptys(self) -> None:
        """
        Set-up through QMP: the VNC password is set, the autoport is read back
        with C{query-vnc}, pty paths come from C{query-chardev} into the live
        definition.
        """
        domain = make_domain(devices=Devices(
            graphics=(Graphics(port=-1, autoport=True, passwd="s3cret"),),
            serials=(CharDev(type="pty"),),
            consoles=(CharDev(type="pty", target_type="serial"),),
        ))
        env = Env(self, domain)
        d = env.guest.start()
        env.server.expect("query-status", ret={"status": "prelaunch", "running": False})
        env.server.expect("set_password", {"protocol": "vnc", "password": "s3cret"})
        env.server.expect("query-vnc", ret={"enabled": True, "service": "5901", "host": "127.0.0.1"})
        env.server.expect("query-chardev", ret=[
            {"label": "charmonitor", "filename": "unix:", "frontend-open": True},
            {"label": "charserial0", "filename": "pty:/dev/pts/7", "frontend-open": False},
        ])
        env.server.expect("cont")
        env.reactor.accept_unix(env.server)
        self.successResultOf(d)
        env.server.assert_done()
        live = env.guest.live_domain
        self.assertEqual(live.devices.graphics[0].port, 5901)
        self.assertEqual(live.devices.serials[0].source_path, "/dev/pts/7")
        self.assertEqual(live.devices.consoles[0].source_path, "/dev/pts/7")


class OperationTests(SynchronousTestCase):
    """suspend, resume, reset and their serialisation."""

    def test_suspend_resume(self) -> None:
        """
        suspend → paused/user with (SUSPENDED, PAUSED); resume →
        running/unpaused with (RESUMED, UNPAUSED); once each, though QEMU also
        sends STOP/RESUME events.
        """
        env = Env(self)
        env.started()
        env.server.expect("stop", events_before=[("STOP", {})])
        d = env.guest.suspend()
        env.server.flush()
        self.successResultOf(d)
        self.assertEqual(env.guest.state, PAUSED_USER)
        env.server.expect("cont", events_before=[("RESUME", {})])
        d = env.guest.resume()
        env.server.flush()
        self.successResultOf(d)
        self.assertEqual(env.guest.state, RUNNING_UNPAUSED)
        self.assertEqual(env.lifecycle(), [SUSPENDED_PAUSED, RESUMED_UNPAUSED])

    def test_suspend_without_event(self) -> None:
        """
        If the STOP event has not arrived when C{stop} returns, the state is
        set from the reply; a STOP arriving later changes nothing.
        """
        env = Env(self)
        env.started()
        env.server.expect("stop")
        d = env.guest.suspend()
        env.server.flush()
        self.successResultOf(d)
        env.server.send_event("STOP")
        self.assertEqual(env.guest.state, PAUSED_USER)
        self.assertEqual(env.lifecycle(), [SUSPENDED_PAUSED])

    def test_noop_suspend_and_resume(self) -> None:
        """
        Suspending a paused guest and resuming a running one send nothing.
        """
        env = Env(self)
        env.started()
        self.successResultOf(env.guest.resume())
        env.server.expect("stop")
        d = env.guest.suspend()
        env.server.flush()
        self.successResultOf(d)
        self.successResultOf(env.guest.suspend())
        self.assertEqual(env.server.commands[-1], "stop")
        env.server.assert_done()

    def test_stop_from_outside(self) -> None:
        """
        A STOP nobody asked for (e.g. an I/O error) → paused/unknown with
        (SUSPENDED, PAUSED).
        """
        env = Env(self)
        env.started()
        env.server.send_event("STOP")
        self.assertEqual(env.guest.state, (3, PausedReason.UNKNOWN))
        self.assertEqual(env.lifecycle(), [SUSPENDED_PAUSED])

    def test_reset_emits_reboot(self) -> None:
        """
        reset sends C{system_reset}; QEMU's RESET event becomes a C{reboot}
        event; the state does not change.
        """
        env = Env(self)
        env.started()
        env.server.expect("system_reset", events_after=[("RESET", {"guest": False})])
        d = env.guest.reset()
        env.server.flush()
        self.successResultOf(d)
        self.assertEqual(env.kinds(), ["reboot"])
        self.assertEqual(env.guest.state, RUNNING_BOOTED)

    def test_operations_are_serialised(self) -> None:
        """
        A second operation's command is not sent until the first finished.
        """
        env = Env(self)
        env.started()
        stop = env.server.expect("stop", hold=True)
        env.server.expect("cont")
        d1 = env.guest.suspend()
        d2 = env.guest.resume()
        env.server.flush()
        self.assertEqual(env.server.commands[-1], "stop")
        self.assertEqual(env.guest.state, RUNNING_BOOTED)  # queries don't wait
        env.server.reply(stop)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.assertEqual(env.server.commands[-2:], ["stop", "cont"])
        self.assertEqual(env.guest.state, RUNNING_UNPAUSED)

    def test_refused_operation(self) -> None:
        """
        An operation QEMU refuses fails with its description; the state stays.
        """
        env = Env(self)
        env.started()
        env.server.expect("stop", error=("GenericError", "nope"))
        d = env.guest.suspend()
        env.server.flush()
        f = self.failureResultOf(d, OperationFailedError)
        self.assertIn("'stop': nope", str(f.value))
        self.assertEqual(env.guest.state, RUNNING_BOOTED)

    def test_operations_on_shutoff_guest(self) -> None:
        """
        Every operation on a guest that is not running fails with
        OperationInvalidError("domain is not running").
        """
        env = Env(self)
        for op in (env.guest.suspend, env.guest.resume, env.guest.reset,
                   env.guest.shutdown, env.guest.reboot, env.guest.destroy):
            f = self.failureResultOf(op(), OperationInvalidError)
            self.assertEqual(str(f.value), "Requested operation is not valid: domain is not running")
        self.assertRaises(OperationInvalidError, env.guest.cpu_time_ns)

    def test_cpu_time(self) -> None:
        """
        CPU time is utime + stime from /proc, in nanoseconds.
        """
        env = Env(self)
        env.started()
        entry = env.reactor.procfs.entries[env.process.original_pid]
        entry.stat = dataclasses.replace(entry.stat, utime=150, stime=50)
        self.assertEqual(env.guest.cpu_time_ns(), 2_000_000_000)

    def test_device_events(self) -> None:
        """
        DEVICE_DELETED → device-removed; DEVICE_TRAY_MOVED → tray-change, and
        the live disk's tray follows.
        """
        disk = Disk(target_dev="hdc", target_bus="ide", device="cdrom", alias="ide0-1-0")
        env = Env(self, make_domain(devices=Devices(disks=(disk,))))
        env.started()
        env.server.send_event("DEVICE_DELETED", {"device": "net0", "path": "/machine/peripheral/net0"})
        env.server.send_event("DEVICE_DELETED", {"path": "/machine/peripheral-anon/device[0]"})
        env.server.send_event("DEVICE_TRAY_MOVED",
                              {"device": "", "id": "ide0-1-0", "tray-open": True})
        self.assertEqual([(e.kind, e.alias) for e in env.events],
                         [("device-removed", "net0"), ("tray-change", "ide0-1-0")])
        self.assertEqual(env.events[1].args, ("ide0-1-0", 0))
        self.assertEqual(env.events[1].event_id, 10)
        self.assertEqual(env.guest.live_domain.devices.disks[0].tray, "open")


class DestroyTests(SynchronousTestCase):
    """destroy: TERM, the murder timer, preemption."""

    def test_destroy(self) -> None:
        """
        destroy sends SIGTERM; QEMU reports SHUTDOWN (host) and exits; the
        guest ends shutoff/destroyed with (SHUTDOWN, HOST), (STOPPED,
        DESTROYED), the socket file is gone and when_exited fires.
        """
        env = Env(self)
        env.started()
        exited = env.guest.when_exited()
        env.process.signal_behaviour["TERM"] = 0.1
        d = env.guest.destroy()
        self.assertEqual(env.process.signals, ["TERM"])
        env.server.send_event("SHUTDOWN", {"guest": False, "reason": "host-signal"})
        self.assertNoResult(d)
        env.reactor.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(env.guest.state, SHUTOFF_DESTROYED)
        self.assertEqual(env.lifecycle(), [SHUTDOWN_HOST, STOPPED_DESTROYED])
        self.assertFalse(os.path.exists(env.paths.qmp_path))
        result = self.successResultOf(exited)
        self.assertEqual(result.reason, ShutoffReason.DESTROYED)
        self.assertEqual(result.process.signal, signal.SIGTERM)
        self.assertIsNone(env.guest.pid)
        self.assertEqual([c for c in env.reactor.getDelayedCalls() if c.active()], [])

    def test_kill_timer_fires(self) -> None:
        """
        A QEMU that ignores SIGTERM gets SIGKILL when the murder timer fires.
        """
        env = Env(self, timeouts=GuestTimeouts(kill=10))
        env.started()
        del env.process.signal_behaviour["TERM"]
        d = env.guest.destroy()
        env.reactor.advance(9.9)
        self.assertEqual(env.process.signals, ["TERM"])
        self.assertNoResult(d)
        env.reactor.advance(0.1)
        self.assertEqual(env.process.signals, ["TERM", "KILL"])
        env.reactor.advance(0)
        self.successResultOf(d)
        self.assertEqual(env.lifecycle(), [STOPPED_DESTROYED])

    def test_kill_timer_cancelled(self) -> None:
        """
        A QEMU that exits on SIGTERM never gets SIGKILL: the timer is cancelled.
        """
        env = Env(self, timeouts=GuestTimeouts(kill=10))
        env.started()
        d = env.guest.destroy()
        env.reactor.advance(0)
        self.successResultOf(d)
        env.reactor.advance(60)
        self.assertEqual(env.process.signals, ["TERM"])
        self.assertEqual([c for c in env.reactor.getDelayedCalls() if c.active()], [])

    def test_graceful_destroy_times_out(self) -> None:
        """
        destroy(graceful=True) only sends SIGTERM and fails if QEMU is still
        alive after the kill timeout; the guest keeps running.
        """
        env = Env(self, timeouts=GuestTimeouts(kill=10))
        env.started()
        del env.process.signal_behaviour["TERM"]
        d = env.guest.destroy(graceful=True)
        env.reactor.advance(10)
        f = self.failureResultOf(d, OperationFailedError)
        self.assertIn(f"failed to terminate process {env.guest.pid} with SIGTERM", str(f.value))
        self.assertEqual(env.process.signals, ["TERM"])
        self.assertEqual(env.guest.state, RUNNING_BOOTED)

    def test_destroy_preempts_stuck_shutdown(self) -> None:
        """
        destroy does not wait for the lock: a shutdown stuck in
        C{system_powerdown} fails, a queued suspend finds the domain not
        running, and destroy completes.
        """
        env = Env(self)
        env.started()
        env.server.expect("system_powerdown", hold=True)
        shutdown = env.guest.shutdown()
        suspend = env.guest.suspend()
        env.server.flush()
        destroy = env.guest.destroy()
        env.server.disconnect()  # QEMU's QMP goes away as it dies
        env.reactor.advance(0)
        self.successResultOf(destroy)
        self.failureResultOf(shutdown, ExecInterruptedError)
        f = self.failureResultOf(suspend, OperationInvalidError)
        self.assertIn("domain is not running", str(f.value))
        self.assertEqual(env.guest.state, SHUTOFF_DESTROYED)

    def test_destroy_while_starting(self) -> None:
        """
        destroy during start kills QEMU; the start fails; shutoff/destroyed.
        """
        env = Env(self)
        env.server = FakeQMPServer(greeting=None)
        start = env.guest.start()
        env.reactor.accept_unix(env.server)
        destroy = env.guest.destroy()
        env.reactor.advance(0)
        self.successResultOf(destroy)
        f = self.failureResultOf(start, OperationFailedError)
        self.assertIn("destroyed while starting", str(f.value))
        self.assertEqual(env.guest.state, SHUTOFF_DESTROYED)
        self.assertEqual(env.events, [])


class ShutdownTests(SynchronousTestCase):
    """Graceful shutdown, reboot and the on_poweroff/on_reboot/on_crash actions."""

    def _power_off(self, env: Env, reason: str = "guest-shutdown") -> None:
        env.server.send_events(("SHUTDOWN", {"guest": True, "reason": reason}), ("STOP", {}))

    def test_graceful_shutdown(self) -> None:
        """
        shutdown returns once C{system_powerdown} is accepted; when the guest
        powers off, QEMU is told to quit and the guest ends shutoff/shutdown
        with (SHUTDOWN, GUEST), (STOPPED, SHUTDOWN).
        """
        env = Env(self)
        env.started()
        env.server.expect("system_powerdown", events_after=[("POWERDOWN", {})])
        d = env.guest.shutdown()
        env.server.flush()
        self.successResultOf(d)
        self.assertEqual(env.guest.state, RUNNING_BOOTED)
        env.server.expect("quit", events_after=[("SHUTDOWN", {"guest": False,
                                                             "reason": "host-qmp-quit"})])
        self._power_off(env)
        self.assertEqual(env.guest.state, (DomainState.SHUTDOWN, 0))
        env.server.flush()
        env.server.assert_done()
        env.process.exit(0)
        self.assertEqual(env.guest.state, SHUTOFF_SHUTDOWN)
        self.assertEqual(env.lifecycle(), [SHUTDOWN_GUEST, STOPPED_SHUTDOWN])
        self.assertEqual(self.successResultOf(env.guest.when_exited()).reason,
                         ShutoffReason.SHUTDOWN)
        self.assertEqual(env.process.signals, [])

    def test_quit_ignored_escalates(self) -> None:
        """
        If QEMU does not exit after C{quit}, SIGTERM follows after the quit
        timeout and SIGKILL after the kill timeout.
        """
        env = Env(self, timeouts=GuestTimeouts(quit=5, kill=10))
        env.started()
        env.server.expect("quit", hold=True)
        self._power_off(env)
        env.process.signal_behaviour.clear()
        env.reactor.advance(5)
        self.assertEqual(env.process.signals, ["TERM"])
        env.reactor.advance(10)
        self.assertEqual(env.process.signals, ["TERM", "KILL"])
        env.process.kill_by_signal(9)
        self.assertEqual(env.guest.state, SHUTOFF_SHUTDOWN)

    def test_on_poweroff_restart(self) -> None:
        """
        on_poweroff=restart: a guest power-off becomes C{system_reset} +
        C{cont}; a reboot event, no lifecycle event; still running.
        """
        env = Env(self, make_domain(on_poweroff="restart"))
        env.started()
        env.server.expect("system_reset", events_after=[("RESET", {"guest": False})])
        env.server.expect("cont", events_before=[("RESUME", {})])
        self._power_off(env)
        env.server.flush()
        env.server.assert_done()
        self.assertEqual(env.kinds(), ["reboot"])
        self.assertEqual(env.guest.state, RUNNING_BOOTED)

    def test_on_poweroff_preserve(self) -> None:
        """
        on_poweroff=preserve: QEMU stays, paused/shutting_down, after
        (SHUTDOWN, GUEST); nothing is sent.
        """
        env = Env(self, make_domain(on_poweroff="preserve"))
        env.started()
        self._power_off(env)
        self.assertEqual(env.guest.state, (3, PausedReason.SHUTTING_DOWN))
        self.assertEqual(env.lifecycle(), [SHUTDOWN_GUEST])
        self.assertEqual(env.server.commands[-1], "cont")
        self.assertFalse(env.process.ended)

    def test_reboot(self) -> None:
        """
        reboot presses the power button; the guest's power-off is turned into
        reset + cont (a reboot event); a later power-off quits as usual.
        """
        env = Env(self)
        env.started()
        env.server.expect("system_powerdown")
        d = env.guest.reboot()
        env.server.flush()
        self.successResultOf(d)
        env.server.expect("system_reset", events_after=[("RESET", {"guest": False})])
        env.server.expect("cont", events_before=[("RESUME", {})])
        self._power_off(env)
        env.server.flush()
        self.assertEqual(env.kinds(), ["reboot"])
        self.assertEqual(env.guest.state, RUNNING_BOOTED)
        env.server.expect("quit")
        self._power_off(env)
        env.server.flush()
        env.server.assert_done()
        env.process.exit(0)
        self.assertEqual(env.lifecycle(), [SHUTDOWN_GUEST, STOPPED_SHUTDOWN])

    def test_reboot_with_on_reboot_destroy(self) -> None:
        """
        on_reboot=destroy: reboot ends the guest (shutoff/shutdown).
        """
        env = Env(self, make_domain(on_reboot="destroy"))
        env.started()
        env.server.expect("system_powerdown")
        env.guest.reboot()
        env.server.expect("quit")
        env.server.flush()
        self._power_off(env)
        env.server.flush()
        env.server.assert_done()
        env.process.exit(0)
        self.assertEqual(env.guest.state, SHUTOFF_SHUTDOWN)

    def test_guest_reset_with_on_reboot_destroy(self) -> None:
        """
        With C{-action reboot=shutdown}, a guest-initiated reboot arrives as
        SHUTDOWN(guest-reset) and on_reboot=destroy ends the guest.
        """
        env = Env(self, make_domain(on_reboot="destroy"))
        env.started()
        env.server.expect("quit")
        self._power_off(env, reason="guest-reset")
        env.server.flush()
        env.server.assert_done()

    def test_guest_reset_with_on_reboot_restart(self) -> None:
        """
        A guest-initiated reboot with on_reboot=restart only emits a reboot event.
        """
        env = Env(self)
        env.started()
        env.server.send_event("RESET", {"guest": True, "reason": "guest-reset"})
        self.assertEqual(env.kinds(), ["reboot"])
        self.assertEqual(env.guest.state, RUNNING_BOOTED)

    def test_panic_destroy(self) -> None:
        """
        on_crash=destroy: (CRASHED, PANICKED), QEMU quits, (STOPPED, CRASHED),
        shutoff/crashed.
        """
        env = Env(self)
        env.started()
        env.server.expect("quit", events_after=[("SHUTDOWN", {"guest": False,
                                                             "reason": "host-qmp-quit"})])
        env.server.send_event("GUEST_PANICKED", {"action": "pause"})
        env.server.send_event("SHUTDOWN", {"guest": True, "reason": "guest-panic"})
        env.server.assert_done()
        env.process.exit(0)
        self.assertEqual(env.lifecycle(), [CRASHED_PANICKED, STOPPED_CRASHED])
        self.assertEqual(env.guest.state, SHUTOFF_CRASHED)

    def test_panic_restart(self) -> None:
        """
        on_crash=restart: reset + cont; running/crashed after (CRASHED,
        PANICKED), (RESUMED, UNPAUSED).
        """
        env = Env(self, make_domain(on_crash="restart"))
        env.started()
        env.server.expect("system_reset")
        env.server.expect("cont")
        env.server.send_event("GUEST_PANICKED", {"action": "pause"})
        env.server.assert_done()
        self.assertEqual(env.lifecycle(), [CRASHED_PANICKED, RESUMED_UNPAUSED])
        self.assertEqual(env.guest.state, (1, RunningReason.CRASHED))

    def test_panic_preserve(self) -> None:
        """
        on_crash=preserve: crashed/panicked, QEMU kept.
        """
        env = Env(self, make_domain(on_crash="preserve"))
        env.started()
        env.server.send_event("GUEST_PANICKED", {"action": "pause"})
        self.assertEqual(env.guest.state, (6, 1))
        self.assertFalse(env.process.ended)


class CrashTests(SynchronousTestCase):
    """QEMU ending without being asked."""

    def test_killed_from_outside(self) -> None:
        """
        kill -9 of QEMU → shutoff/crashed with (STOPPED, FAILED) as libvirt reports a monitor EOF; socket
        removed; when_exited reports the signal.
        """
        env = Env(self)
        env.started()
        exited = env.guest.when_exited()
        env.server.disconnect()
        env.process.kill_by_signal(9)
        self.assertEqual(env.guest.state, SHUTOFF_CRASHED)
        self.assertEqual(env.lifecycle(), [STOPPED_FAILED])
        self.assertFalse(os.path.exists(env.paths.qmp_path))
        result = self.successResultOf(exited)
        self.assertEqual((result.reason, result.process.signal), (ShutoffReason.CRASHED, 9))
        self.assertEqual([c for c in env.reactor.getDelayedCalls() if c.active()], [])

    def test_exit_on_its_own(self) -> None:
        """
        QEMU exiting with an error while running is a crash.
        """
        env = Env(self)
        env.started()
        env.process.exit(1)
        self.assertEqual(env.guest.state, SHUTOFF_CRASHED)
        self.assertEqual(env.lifecycle(), [STOPPED_FAILED])

    def test_qmp_eof_but_process_lingers(self) -> None:
        """
        QMP EOF while the process stays: it is killed after the kill timeout.
        """
        env = Env(self, timeouts=GuestTimeouts(kill=10))
        env.started()
        env.server.disconnect()
        env.reactor.advance(10)
        self.assertEqual(env.process.signals, ["KILL"])
        env.reactor.advance(0)
        self.assertEqual(env.guest.state, SHUTOFF_CRASHED)

    def test_qmp_protocol_error_kills(self) -> None:
        """
        A QMP protocol error makes the guest unmanageable: QEMU is killed,
        shutoff/crashed.
        """
        env = Env(self)
        env.started()
        env.server.send_raw(b"garbage\n")
        self.assertEqual(env.process.signals, ["KILL"])
        env.reactor.advance(0)
        self.assertEqual(env.guest.state, SHUTOFF_CRASHED)

    def test_guest_powered_off_without_no_shutdown(self) -> None:
        """
        A QEMU that exits by itself after the guest's SHUTDOWN ends in
        shutoff/shutdown, not crashed.
        """
        env = Env(self, make_domain(on_poweroff="preserve"))
        env.started()
        env.server.send_event("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        env.process.exit(0)
        self.assertEqual(env.guest.state, SHUTOFF_SHUTDOWN)
        self.assertEqual(env.lifecycle(), [SHUTDOWN_GUEST, STOPPED_SHUTDOWN])


class AttachTests(SynchronousTestCase):
    """Re-attaching after a daemon restart."""

    def _status(self, env: Env, pid: int = 777, start_time: int = 4242,
                state: tuple[int, int] = RUNNING_BOOTED) -> GuestStatus:
        return GuestStatus(
            name="vm1", live_xml="<domain/>", pid=pid, start_time=start_time,
            qmp_path=env.paths.qmp_path, log_path=env.paths.log_path,
            domain_dir=env.paths.domain_dir, started_at=1.5e9, state=state[0], reason=state[1],
        )

    def _qemu(self, env: Env, pid: int = 777, start_time: int = 4242) -> None:
        env.reactor.procfs.add(pid, [BINARY, "-name", "guest=vm1,debug-threads=on", "-S"],
                               start_time=start_time)

    def test_attach_running(self) -> None:
        """
        A live QEMU with the recorded start time and C{guest=vm1} is
        re-attached: QMP reconnected, state from query-status (the saved
        reason kept), same pid; no events.
        """
        env = Env(self)
        self._qemu(env)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        env.server.expect("query-status", ret={"status": "running", "running": True})
        env.reactor.accept_unix(env.server)
        guest = self.successResultOf(d)
        self.assertEqual(guest.pid, 777)
        self.assertEqual(guest.state, RUNNING_BOOTED)
        self.assertEqual(env.server.commands, ["qmp_capabilities", "query-status"])
        self.assertEqual(guest.make_status("<x/>").start_time, 4242)

    def test_attach_paused(self) -> None:
        """
        A QEMU found paused while the status said running → paused/unknown.
        """
        env = Env(self)
        self._qemu(env)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        env.server.expect("query-status", ret={"status": "paused", "running": False})
        env.reactor.accept_unix(env.server)
        self.assertEqual(self.successResultOf(d).state, (3, 0))

    def test_attached_guest_crash_detected_by_polling(self) -> None:
        """
        A re-attached QEMU is not our child: its death is seen by polling
        /proc; a zombie counts as gone → shutoff/crashed with (STOPPED, FAILED) as libvirt reports a monitor EOF.
        """
        env = Env(self)
        self._qemu(env)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs,
                         poll_interval=1.0)
        env.server.expect("query-status", ret={"status": "running", "running": True})
        env.reactor.accept_unix(env.server)
        guest = self.successResultOf(d)
        events: list[GuestEvent] = []
        guest.add_listener(events.append)
        env.reactor.procfs.zombify(777)
        env.reactor.advance(1.0)
        self.assertEqual(guest.state, SHUTOFF_CRASHED)
        self.assertEqual([(e.event, e.detail) for e in events], [STOPPED_FAILED])
        self.assertFalse(os.path.exists(env.paths.qmp_path))

    def test_attached_guest_destroy(self) -> None:
        """
        destroy of a re-attached QEMU signals the pid; QMP EOF triggers an
        immediate /proc check; shutoff/destroyed.
        """
        env = Env(self)
        self._qemu(env)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        env.server.expect("query-status", ret={"status": "running", "running": True})
        env.reactor.accept_unix(env.server)
        guest = self.successResultOf(d)
        destroy = guest.destroy()
        self.assertEqual(env.reactor.procfs.signals, [(777, signal.SIGTERM)])
        env.server.disconnect()
        self.successResultOf(destroy)
        self.assertEqual(guest.state, SHUTOFF_DESTROYED)

    def test_attach_pid_reused(self) -> None:
        """
        A pid with another start time is someone else: attach fails, and
        nothing is signalled.
        """
        env = Env(self)
        self._qemu(env, start_time=9999)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        f = self.failureResultOf(d, OperationFailedError)
        self.assertIn("start time 9999, expected 4242", str(f.value))
        self.assertEqual(env.reactor.procfs.signals, [])
        self.assertEqual(env.reactor.unixClients, [])

    def test_attach_wrong_command_line(self) -> None:
        """
        A pid whose command line lacks C{guest=NAME} is refused.
        """
        env = Env(self)
        env.reactor.procfs.add(777, ["/usr/bin/qemu-system-x86_64", "-name", "guest=other"],
                               start_time=4242)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        f = self.failureResultOf(d, OperationFailedError)
        self.assertIn("no 'guest=vm1' in its command line", str(f.value))

    def test_attach_gone(self) -> None:
        """
        A pid that no longer exists (or is a zombie) is refused.
        """
        env = Env(self)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        self.assertIn("is gone", str(self.failureResultOf(d, OperationFailedError).value))
        self._qemu(env)
        env.reactor.procfs.zombify(777)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        self.failureResultOf(d, OperationFailedError)

    def test_attach_qmp_refused_kills(self) -> None:
        """
        If QMP cannot be reconnected the QEMU is killed (it would be
        unmanageable) and attach fails.
        """
        env = Env(self)
        self._qemu(env)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        env.reactor.refuse_unix(ConnectionRefusedError())
        env.reactor.advance(1)
        f = self.failureResultOf(d, OperationFailedError)
        self.assertIn("failed to re-attach", str(f.value))
        self.assertEqual(env.reactor.procfs.signals, [(777, signal.SIGKILL)])

    def test_attach_finds_guest_powered_off(self) -> None:
        """
        A QEMU whose guest powered off while the daemon was away
        (status C{shutdown}) is handled per on_poweroff (destroy: quit).
        """
        env = Env(self)
        self._qemu(env)
        d = Guest.attach(env.reactor, env.domain, self._status(env), procfs=env.reactor.procfs)
        env.server.expect("query-status", ret={"status": "shutdown", "running": False})
        env.server.expect("quit")
        env.reactor.accept_unix(env.server)
        guest = self.successResultOf(d)
        env.server.flush()
        env.server.assert_done()
        self.assertEqual(guest.state, (DomainState.SHUTDOWN, 0))


class StatusTests(SynchronousTestCase):
    """The status document."""

    def test_round_trip(self) -> None:
        """
        C{from_document(to_document())} gives the status back.
        """
        status = GuestStatus("vm1", "<domain/>", 12, 34, "/run/q.sock", "/var/log/vm1.log",
                             "/var/lib/vm1", 1.7e9, 1, 5, domain_id=7)
        self.assertEqual(GuestStatus.from_document(status.to_document()), status)
        self.assertEqual(status.to_document(), status.to_document())

    def test_bad_documents(self) -> None:
        """
        Malformed documents raise ValueError.
        """
        good = GuestStatus("vm1", "<d/>", 1, 2, "/q", "/l", "/d", 0.0, 1, 1).to_document()
        for text in ("not json", "[]", good.replace('"version": 1', '"version": 2'),
                     good.replace('"pid": 1', '"pid": "1"')):
            self.assertRaises(ValueError, GuestStatus.from_document, text)

    def test_make_status_needs_running_guest(self) -> None:
        """
        A guest that is not running has no status to save.
        """
        env = Env(self)
        self.assertRaises(OperationInvalidError, env.guest.make_status, "<d/>")
        env.started()
        status = env.guest.make_status("<d/>", domain_id=3)
        self.assertEqual((status.pid, status.state, status.reason, status.domain_id),
                         (env.process.original_pid, 1, 1, 3))
        self.assertEqual(status.qmp_path, env.paths.qmp_path)
