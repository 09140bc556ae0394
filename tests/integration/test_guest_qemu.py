"""
L{qemud.qemu.guest.Guest} against real QEMU.

These tests run on the real (global) reactor through
L{twisted.trial.unittest.TestCase}: each test method is a coroutine, which
trial turns into a Deferred and runs the reactor for (pytest runs such test
cases through its unittest support; pytest-twisted is not needed).  Every
wait is bounded (the class C{timeout}, plus explicit deadlines), and every
QEMU a test started is killed by PID at clean-up if it is still there.

Temporary directories are made under C{/tmp} rather than with C{mktemp()}:
the QMP socket path must stay under the 107-byte limit of UNIX sockets.

Two guests (see C{shared/docs/test-guest.md}): the no-OS KVM guest (qboot)
for lifecycle tests, and the tiny Linux guest under TCG where the guest OS
must act (ACPI power-off, reboot).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from qemud.domain.model import Domain
from qemud.domain.xml import parse_domain_xml
from qemud.errors import OperationFailedError
from qemud.qemu.argv import Launch, LaunchPaths, build_argv
from qemud.qemu.caps import CapsCache, QemuCaps, check_kvm_usable
from qemud.qemu.guest import Guest, GuestEvent, GuestPaths
from qemud.qemu.process import ProcFS, create_qmp_listener
from qemud.qemu.states import DomainState, ShutoffReason
from tests.integration.guests import (
    QBOOT_ROM,
    linux_guest_domain_xml,
    noos_guest_domain_xml,
    read_serial,
)

reactor: Any = _global_reactor

QEMU = shutil.which("qemu-system-x86_64")
_CAPS: dict[str, QemuCaps] = {}


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        raise AssertionError(message)
    raise SkipTest(message)


def _caps() -> QemuCaps:
    if QEMU is None:
        _unavailable("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
    assert QEMU is not None
    if QEMU not in _CAPS:
        _CAPS[QEMU] = CapsCache().get(QEMU)
    return _CAPS[QEMU]


def qemu_pids_for(name: str) -> list[int]:
    """
    @return: pids of live (non-zombie) processes whose command line carries
        C{guest=NAME}.
    """
    procfs = ProcFS()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        cmdline = procfs.cmdline(int(entry)) or []
        st = procfs.stat(int(entry))
        if st is None or st.is_zombie:
            continue
        if any(a == f"guest={name}" or a.startswith(f"guest={name},") for a in cmdline):
            found.append(int(entry))
    return found


async def poll_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """
    Check C{predicate} every 50 ms until it holds, for at most C{timeout} s.

    @raise AssertionError: on timeout.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(reactor, 0.05, lambda: None)


async def bounded(d: Deferred[Any], timeout: float) -> Any:
    """
    @return: C{d}'s result, failing with a timeout error after C{timeout} s.
    """
    d.addTimeout(timeout, reactor)
    return await d


class _GuestTestCase(TestCase):
    """Temporary directory, guest construction and clean-up."""

    timeout = 120

    def setUp(self) -> None:
        self.caps = _caps()
        self.dir = tempfile.mkdtemp(prefix="qg", dir="/tmp")
        self.names: list[str] = []
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.addCleanup(self._kill_leftovers)

    def _kill_leftovers(self) -> None:
        for name in self.names:
            for pid in qemu_pids_for(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def make_guest(
        self,
        domain: Domain,
        extra_args: list[str] | None = None,
        sub: str | None = None,
    ) -> tuple[Guest, list[GuestEvent]]:
        self.names.append(domain.name)
        home = os.path.join(self.dir, sub or domain.name)
        os.makedirs(home, exist_ok=True)
        paths = GuestPaths(home, os.path.join(home, "qmp.sock"),
                           os.path.join(self.dir, f"{domain.name}.log"))

        def launch(fd: int) -> Launch:
            recipe = build_argv(domain, self.caps, LaunchPaths(fd, home))
            return Launch(recipe.argv + (extra_args or []), recipe.env)

        guest = Guest(reactor, domain, paths, launch)
        events: list[GuestEvent] = []
        guest.add_listener(events.append)
        return guest, events


def lifecycle(events: list[GuestEvent]) -> list[tuple[int, int]]:
    """@return: the (event, detail) pairs of the lifecycle events."""
    return [(e.event, e.detail) for e in events if e.kind == "lifecycle"]


class NoOSGuestTests(_GuestTestCase):
    """The no-OS KVM guest (qboot): lifecycle without a guest OS."""

    timeout = 90

    def setUp(self) -> None:
        super().setUp()
        problem = check_kvm_usable()
        if problem is not None:
            _unavailable(f"KVM not usable: {problem}")
        if not os.path.exists(QBOOT_ROM):
            _unavailable(f"{QBOOT_ROM} missing: apt-get install qemu-system-data")

    def domain(self, name: str) -> Domain:
        return parse_domain_xml(noos_guest_domain_xml(name))

    async def test_lifecycle(self) -> None:
        """
        start → running/booted; suspend → paused/user; resume →
        running/unpaused; reset → reboot event; destroy → shutoff/destroyed,
        with libvirt's event sequence; the process and socket are gone.
        """
        guest, events = self.make_guest(self.domain("qg-life"))
        await bounded(guest.start(), 30)
        self.assertEqual(guest.state, (1, 1))
        pid = guest.pid
        assert pid is not None
        self.assertEqual(qemu_pids_for("qg-life"), [pid])
        self.assertGreaterEqual(guest.cpu_time_ns(), 0)
        await bounded(guest.suspend(), 10)
        self.assertEqual(guest.state, (3, 1))
        await bounded(guest.resume(), 10)
        self.assertEqual(guest.state, (1, 5))
        await bounded(guest.reset(), 10)
        await poll_until(lambda: any(e.kind == "reboot" for e in events), 10, "reboot event")
        await bounded(guest.destroy(), 20)
        self.assertEqual(guest.state, (5, 2))
        self.assertEqual(
            lifecycle(events), [(4, 0), (2, 0), (3, 0), (4, 0), (6, 2), (5, 1)]
        )
        self.assertFalse(os.path.exists(guest.paths.qmp_path))
        self.assertEqual(qemu_pids_for("qg-life"), [])

    async def test_start_paused(self) -> None:
        """
        Started paused, the guest is paused/user and QEMU reports paused.
        """
        guest, events = self.make_guest(self.domain("qg-paused"))
        await bounded(guest.start(paused=True), 30)
        self.assertEqual(guest.state, (3, 1))
        self.assertEqual(lifecycle(events), [(2, 0), (3, 0)])
        await bounded(guest.destroy(), 20)

    async def test_kill_9_is_a_crash(self) -> None:
        """
        QEMU killed from outside with SIGKILL → shutoff/crashed with
        (STOPPED, FAILED), as libvirt reports a monitor EOF; the socket file
        is removed.
        """
        guest, events = self.make_guest(self.domain("qg-crash"))
        await bounded(guest.start(), 30)
        exited = guest.when_exited()
        assert guest.pid is not None
        os.kill(guest.pid, signal.SIGKILL)
        result = await bounded(exited, 20)
        self.assertEqual(result.reason, ShutoffReason.CRASHED)
        self.assertEqual(result.process.signal, signal.SIGKILL)
        self.assertEqual(guest.state, (5, 3))
        self.assertEqual(lifecycle(events)[-1], (5, 5))
        self.assertFalse(os.path.exists(guest.paths.qmp_path))

    async def test_bad_argument(self) -> None:
        """
        QEMU refusing an argument fails the start with QEMU's own message from
        its log; no process, no socket file; shutoff/failed, no events.
        """
        guest, events = self.make_guest(self.domain("qg-bad"), ["-bogus-option"])
        try:
            await bounded(guest.start(), 30)
        except OperationFailedError as e:
            message = str(e)
        else:
            self.fail("start succeeded")
        self.assertIn("QEMU exited while starting (exit code 1)", message)
        self.assertIn("-bogus-option: invalid option", message)
        self.assertEqual(guest.state, (5, 6))
        self.assertEqual(events, [])
        self.assertFalse(os.path.exists(guest.paths.qmp_path))
        self.assertEqual(qemu_pids_for("qg-bad"), [])

    async def test_reattach(self) -> None:
        """
        A second Guest attaches, from the status, to a QEMU the first one left
        running: same pid, running; it can then destroy it.
        """
        domain = self.domain("qg-attach")
        first, _ = self.make_guest(domain)
        await bounded(first.start(), 30)
        status = first.make_status("<domain/>")
        first.detach()
        second = await bounded(Guest.attach(reactor, domain, status), 30)
        self.assertEqual(second.pid, status.pid)
        self.assertEqual(second.state, (1, 1))
        await bounded(second.suspend(), 10)
        self.assertEqual(second.state, (3, 1))
        await bounded(second.destroy(), 20)
        self.assertEqual(second.state, (5, 2))
        self.assertEqual(qemu_pids_for("qg-attach"), [])

    async def test_reattach_refuses_dead_pid(self) -> None:
        """
        Re-attaching to a QEMU that is gone fails with a clear error.
        """
        domain = self.domain("qg-gone")
        first, _ = self.make_guest(domain)
        await bounded(first.start(), 30)
        status = first.make_status("<domain/>")
        await bounded(first.destroy(), 20)
        try:
            await bounded(Guest.attach(reactor, domain, status), 10)
        except OperationFailedError as e:
            self.assertIn(f"QEMU process {status.pid} of guest 'qg-gone' is gone", str(e))
        else:
            self.fail("attach succeeded")

    async def test_cycles_leak_nothing(self) -> None:
        """
        20 start/destroy cycles leave no descriptor open in the daemon and no
        QEMU process behind.
        """
        domain = self.domain("qg-cycle")
        guest, _ = self.make_guest(domain, sub="warm")
        await bounded(guest.start(), 30)  # warm-up: lets the reactor make its own fds
        await bounded(guest.destroy(), 20)
        before = sorted(os.listdir("/proc/self/fd"))
        for i in range(20):
            guest, _ = self.make_guest(domain, sub=f"c{i}")
            await bounded(guest.start(), 30)
            await bounded(guest.destroy(), 20)
            self.assertEqual(guest.state, (5, 2))
        after = sorted(os.listdir("/proc/self/fd"))
        self.assertEqual(before, after)
        self.assertEqual(qemu_pids_for("qg-cycle"), [])

    def test_qmp_listener(self) -> None:
        """
        The QMP socket the daemon creates is a listening UNIX socket with mode 0600.
        """
        path = os.path.join(self.dir, "l.sock")
        fd = create_qmp_listener(path)
        try:
            mode = os.stat(path).st_mode
            self.assertTrue(stat.S_ISSOCK(mode))
            self.assertEqual(stat.S_IMODE(mode), 0o600)
        finally:
            os.close(fd)


class LinuxGuestTests(_GuestTestCase):
    """The tiny Linux guest under TCG: the guest OS acts on ACPI."""

    timeout = 240

    def setUp(self) -> None:
        super().setUp()
        from tests.guestimage import GuestImageError, ensure_image

        try:
            self.image = ensure_image()
        except GuestImageError as e:
            _unavailable(f"cannot build the test guest: {e}")

    def domain(self, name: str) -> tuple[Domain, str]:
        serial = os.path.join(self.dir, f"{name}.serial")
        return parse_domain_xml(linux_guest_domain_xml(name, self.image, serial_log=serial)), serial

    async def _ready(self, serial: str, count: int = 1) -> None:
        await poll_until(lambda: read_serial(serial).count("GUEST-READY") >= count, 150,
                         f"GUEST-READY #{count} on the serial console")

    async def test_graceful_shutdown(self) -> None:
        """
        shutdown() presses the power button; the guest powers off and the
        guest ends shutoff/shutdown with (SHUTDOWN, GUEST), (STOPPED, SHUTDOWN).
        """
        domain, serial = self.domain("qg-linux-off")
        guest, events = self.make_guest(domain)
        await bounded(guest.start(), 60)
        await self._ready(serial)
        exited = guest.when_exited()
        await bounded(guest.shutdown(), 10)
        result = await bounded(exited, 60)
        self.assertEqual(result.reason, ShutoffReason.SHUTDOWN)
        self.assertEqual(guest.state, (5, 1))
        self.assertEqual(lifecycle(events)[-2:], [(6, 1), (5, 0)])
        self.assertIn("GUEST-POWEROFF", read_serial(serial))
        self.assertEqual(qemu_pids_for("qg-linux-off"), [])

    async def test_reboot(self) -> None:
        """
        reboot(): the guest powers off, QEMU is reset and resumed (a reboot
        event), the guest boots again and prints GUEST-READY a second time.
        """
        domain, serial = self.domain("qg-linux-reboot")
        guest, events = self.make_guest(domain)
        await bounded(guest.start(), 60)
        await self._ready(serial)
        pid = guest.pid
        await bounded(guest.reboot(), 10)
        await poll_until(lambda: any(e.kind == "reboot" for e in events), 60, "reboot event")
        await self._ready(serial, count=2)
        self.assertEqual(guest.state[0], DomainState.RUNNING)
        self.assertEqual(guest.pid, pid)
        await bounded(guest.destroy(), 20)
