"""
Tests for L{qemud.qemu.process}, with L{FakeProcessReactor} and
L{FakeProcFS}: no real process, socket or clock.
"""

from __future__ import annotations

import os
import signal

from twisted.internet.error import ProcessExitedAlready
from twisted.trial.unittest import SynchronousTestCase

from qemud.errors import OperationFailedError
from qemud.qemu.process import (
    ProcessExit,
    QemuProcess,
    ReattachedProcess,
    parse_proc_stat,
    read_log_tail,
)
from qemud.testing import FakeProcessReactor

STAT = (
    "4321 (qemu-system-x86) S 1 4321 4321 0 -1 4194560 5000 0 0 0 "
    "150 50 0 0 20 0 3 0 987654 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 "
    "17 1 0 0 0 0 0"
)


class ProcStatTests(SynchronousTestCase):
    """Parsing C{/proc/PID/stat}."""

    def test_fields(self) -> None:
        """
        pid, comm, state, utime (14), stime (15) and start time (22) are read.
        """
        stat = parse_proc_stat(STAT)
        self.assertEqual(
            (stat.pid, stat.comm, stat.state, stat.utime, stat.stime, stat.start_time),
            (4321, "qemu-system-x86", "S", 150, 50, 987654),
        )
        self.assertFalse(stat.is_zombie)

    def test_comm_with_spaces_and_parens(self) -> None:
        """
        A command name with spaces and parentheses does not shift the fields.
        """
        text = STAT.replace("(qemu-system-x86)", "(a) b (c)").replace(" S ", " Z ", 1)
        stat = parse_proc_stat(text)
        self.assertEqual((stat.comm, stat.start_time), ("a) b (c", 987654))
        self.assertTrue(stat.is_zombie)

    def test_malformed(self) -> None:
        """
        A truncated line raises ValueError.
        """
        self.assertRaises(ValueError, parse_proc_stat, "12 (x) S 1 2")


class LogTailTests(SynchronousTestCase):
    """Quoting QEMU's log."""

    def test_tail_after_offset(self) -> None:
        """
        Only lines written after the offset are quoted, at most C{max_lines},
        blank lines skipped.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("old line\n")
            offset = f.tell()
            f.write("one\n\ntwo\nthree\n")
        self.assertEqual(read_log_tail(path, offset), "one\ntwo\nthree")
        self.assertEqual(read_log_tail(path, offset, max_lines=2), "two\nthree")
        self.assertEqual(read_log_tail(path + ".missing"), "")


class _Fakes:
    def __init__(self, case: SynchronousTestCase) -> None:
        self.reactor = FakeProcessReactor()
        self.dir = case.mktemp()
        os.makedirs(self.dir)
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.log_path = os.path.join(self.dir, "guest.log")
        self.fds: list[int] = []

    def listener(self, path: str) -> int:
        open(path, "w").close()
        fd = os.open(os.devnull, os.O_RDONLY)
        self.fds.append(fd)
        return fd

    def process(self, **kwargs: object) -> QemuProcess:
        return QemuProcess(
            self.reactor, ["/usr/bin/qemu-system-x86_64", "-S"], {"LC_ALL": "C"},
            log_path=self.log_path, qmp_path=self.qmp_path,
            listener=self.listener, procfs=self.reactor.procfs,
        )


class QemuProcessTests(SynchronousTestCase):
    """Spawning and supervising our own child."""

    def test_spawn(self) -> None:
        """
        QEMU gets /dev/null, the log (appending) on stdout and stderr, and the
        listening socket as fd 3; the daemon's copies are closed; the log
        offset and the /proc start time are recorded.
        """
        fakes = _Fakes(self)
        with open(fakes.log_path, "w") as f:
            f.write("earlier\n")
        proc = fakes.process()
        proc.spawn()
        spawned = fakes.reactor.spawned[0]
        self.assertEqual(spawned.argv, ["/usr/bin/qemu-system-x86_64", "-S"])
        self.assertEqual(spawned.env, {"LC_ALL": "C"})
        # No working directory: Twisted can then posix_spawn instead of fork.
        self.assertIsNone(spawned.path)
        self.assertEqual(spawned.child_fds[3], fakes.fds[0])
        self.assertEqual(spawned.child_fds[1], spawned.child_fds[2])
        for fd in spawned.child_fds.values():
            assert isinstance(fd, int)
            self.assertRaises(OSError, os.fstat, fd)
        self.assertEqual(proc.log_offset, len("earlier\n"))
        self.assertEqual(proc.pid, spawned.original_pid)
        self.assertEqual(proc.start_time,
                         fakes.reactor.procfs.entries[spawned.original_pid].stat.start_time)

    def test_spawn_failure_cleans_up(self) -> None:
        """
        If spawning fails, the socket file is removed, the descriptors are
        closed and L{OperationFailedError} names the binary.
        """
        fakes = _Fakes(self)
        fakes.reactor.spawn_exception = PermissionError(13, "Permission denied")
        proc = fakes.process()
        f = self.assertRaises(OperationFailedError, proc.spawn)
        self.assertIn("cannot execute /usr/bin/qemu-system-x86_64: Permission denied", str(f))
        self.assertFalse(os.path.exists(fakes.qmp_path))
        self.assertRaises(OSError, os.fstat, fakes.fds[0])

    def test_listener_failure(self) -> None:
        """
        If the QMP socket cannot be created nothing is spawned.
        """
        fakes = _Fakes(self)

        def broken(path: str) -> int:
            raise OSError(98, "Address already in use")

        proc = QemuProcess(fakes.reactor, ["/bin/qemu"], {},
                           log_path=fakes.log_path, qmp_path=fakes.qmp_path, listener=broken,
                           procfs=fakes.reactor.procfs)
        f = self.assertRaises(OperationFailedError, proc.spawn)
        self.assertIn("cannot create QMP socket", str(f))
        self.assertEqual(fakes.reactor.spawned, [])

    def test_exit_classification(self) -> None:
        """
        when_exited gives each caller a fresh Deferred with the exit code or
        the signal.
        """
        fakes = _Fakes(self)
        proc = fakes.process()
        proc.spawn()
        first, second = proc.when_exited(), proc.when_exited()
        self.assertIsNot(first, second)
        fakes.reactor.spawned[0].kill_by_signal(signal.SIGKILL)
        status = self.successResultOf(first)
        self.assertEqual(status, ProcessExit(None, 9))
        self.assertEqual(status.describe(), "killed by SIGKILL")
        self.assertEqual(self.successResultOf(second), status)
        self.assertEqual(self.successResultOf(proc.when_exited()), status)

        other = _Fakes(self).process()
        other._reactor = fakes.reactor
        other.spawn()
        fakes.reactor.spawned[-1].exit(3)
        self.assertEqual(self.successResultOf(other.when_exited()).describe(), "exit code 3")

    def test_signal_after_exit(self) -> None:
        """
        Signalling a process that has exited returns False
        (L{ProcessExitedAlready} is caught).
        """
        fakes = _Fakes(self)
        proc = fakes.process()
        proc.spawn()
        self.assertTrue(proc.signal("TERM"))
        self.assertEqual(fakes.reactor.spawned[0].signals, ["TERM"])
        fakes.reactor.spawned[0].exit(0)
        self.assertFalse(proc.signal("KILL"))

    def test_signal_race(self) -> None:
        """
        A process that exited but whose end was not yet reported raises
        L{ProcessExitedAlready} from the transport; C{signal} returns False.
        """
        fakes = _Fakes(self)
        proc = fakes.process()
        proc.spawn()
        fakes.reactor.spawned[0].pid = None
        self.assertRaises(ProcessExitedAlready, fakes.reactor.spawned[0].signalProcess, "KILL")
        self.assertFalse(proc.signal("KILL"))


class ReattachedProcessTests(SynchronousTestCase):
    """Watching a QEMU that is not our child."""

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.procfs = self.reactor.procfs
        self.procfs.add(500, ["/usr/bin/qemu-system-x86_64"], start_time=777)
        self.proc = ReattachedProcess(self.reactor, 500, 777, procfs=self.procfs,
                                      poll_interval=1.0, fast_poll_interval=0.05)
        self.proc.start()

    def test_poll_detects_exit(self) -> None:
        """
        The pid disappearing is noticed on the next poll.
        """
        d = self.proc.when_exited()
        self.reactor.advance(1)
        self.assertNoResult(d)
        self.procfs.remove(500)
        self.reactor.advance(1)
        self.assertEqual(self.successResultOf(d), ProcessExit())
        self.assertIsNone(self.proc.pid)
        self.assertEqual([c for c in self.reactor.getDelayedCalls() if c.active()], [])

    def test_zombie_is_gone(self) -> None:
        """
        A zombie (waiting for PID 1 to reap it) counts as gone.
        """
        d = self.proc.when_exited()
        self.procfs.zombify(500)
        self.reactor.advance(1)
        self.successResultOf(d)

    def test_pid_reuse_is_gone(self) -> None:
        """
        The same pid with another start time is another process: ours is gone,
        and it is never signalled.
        """
        d = self.proc.when_exited()
        self.procfs.remove(500)
        self.procfs.add(500, ["/bin/sh"], start_time=999)
        self.assertFalse(self.proc.signal("KILL"))
        self.assertEqual(self.procfs.signals, [])
        self.successResultOf(d)

    def test_eof_checks_promptly(self) -> None:
        """
        After QMP EOF the process is checked at once and then every 50 ms.
        """
        d = self.proc.when_exited()
        self.proc.notify_eof()
        self.assertNoResult(d)
        self.procfs.zombify(500)
        self.reactor.advance(0.05)
        self.successResultOf(d)

    def test_signal(self) -> None:
        """
        Signals go to the pid while it is ours.
        """
        self.procfs.entries[500].on_signal.clear()
        self.assertTrue(self.proc.signal("TERM"))
        self.assertEqual(self.procfs.signals, [(500, signal.SIGTERM)])
