"""
Guests outlive the daemon: stop it (SIGTERM or SIGKILL), start it again,
and it re-attaches to the QEMUs still running; a guest whose QEMU dies
under a running daemon is reported as crashed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.daemon import (
    VIRSH,
    DaemonProcess,
    clean_env,
    daemon_fixture,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
    event_lines,
    pid_alive,
    qemu_pid_of,
    require_tools,
    virsh,
    virsh_ok,
    wait_until,
)
from tests.integration.guests import noos_guest_domain_xml

GUESTS = 5


@pytest.fixture
def daemon(request: Any) -> Iterator[DaemonProcess]:
    """A daemon of its own for each test."""
    require_tools(VIRSH)
    yield from daemon_fixture(request)


def start_guests(daemon: DaemonProcess, count: int = GUESTS,
                 prefix: str = "rs") -> dict[str, tuple[int, int]]:
    """
    Define and start C{count} no-OS guests.

    @return: name → (domain id, QEMU pid).
    """
    guests = {}
    for i in range(count):
        name = f"{prefix}{i}"
        daemon.define(noos_guest_domain_xml(name), name)
        virsh_ok(daemon.uri, "start", name)
        domid = int(virsh_ok(daemon.uri, "domid", name).strip())
        pid = qemu_pid_of(daemon.root, name)
        assert pid is not None, f"no QEMU process found for {name}"
        guests[name] = (domid, pid)
    daemon.remember_qemus()
    return guests


def running_table(daemon: DaemonProcess) -> dict[str, tuple[int, str]]:
    """@return: name → (id, state) from C{virsh list}."""
    rows = {}
    for line in virsh_ok(daemon.uri, "list").splitlines()[2:]:
        parts = line.split(None, 2)
        if len(parts) == 3:
            rows[parts[1]] = (int(parts[0]), parts[2].strip())
    return rows


def check_reattached(daemon: DaemonProcess, guests: dict[str, tuple[int, int]]) -> None:
    """
    Every guest runs under the same pid and is listed running with the
    same id; a destroy works on one of them.
    """
    table = running_table(daemon)
    for name, (domid, pid) in guests.items():
        assert pid_alive(pid), f"{name}: QEMU {pid} died"
        assert table.get(name) == (domid, "running"), (name, table)
        assert daemon.domstate(name, reason=False) == "running"
    first = sorted(guests)[0]
    virsh_ok(daemon.uri, "suspend", first)
    assert daemon.domstate(first) == "paused (user)"
    virsh_ok(daemon.uri, "resume", first)
    assert virsh_ok(daemon.uri, "destroy", first) == f"Domain '{first}' destroyed\n\n"
    assert daemon.domstate(first) == "shut off (destroyed)"
    wait_until(lambda: not pid_alive(guests[first][1]), 10, message="QEMU exit after destroy")


class DaemonRestartTests:
    """
    Stop and start the daemon under running guests.
    """

    def test_sigterm_exit_code_and_reattach(self, daemon: DaemonProcess) -> None:
        """
        SIGTERM: the daemon exits 0 within a few seconds; the 5 guests keep
        running under the same pids; a new daemon lists them running with
        the same ids, and destroy works after the re-attach.
        """
        guests = start_guests(daemon)
        started = time.monotonic()
        code = daemon.stop(signal.SIGTERM, timeout=15)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"SIGTERM took {elapsed:.1f} s"
        for name, (_, pid) in guests.items():
            assert pid_alive(pid), f"{name}: QEMU {pid} died with the daemon"
        daemon.start()
        check_reattached(daemon, guests)
        assert code == 0, f"daemon exit code after SIGTERM: {code}"

    def test_sigkill_then_restart(self, daemon: DaemonProcess) -> None:
        """
        SIGKILL of the daemon: the guests survive; the next daemon
        re-attaches to them (same ids and pids) and can destroy them.
        """
        guests = start_guests(daemon, prefix="rk")
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        for name, (_, pid) in guests.items():
            assert pid_alive(pid), f"{name}: QEMU {pid} died with the daemon"
        daemon.start()
        check_reattached(daemon, guests)

    def test_two_restarts(self, daemon: DaemonProcess) -> None:
        """
        A re-attached guest survives a second restart too, and new guests
        get ids above the old ones.
        """
        guests = start_guests(daemon, count=2, prefix="r2")
        daemon.restart()
        daemon.restart(signal.SIGKILL)
        table = running_table(daemon)
        for name, (domid, pid) in guests.items():
            assert table.get(name) == (domid, "running") and pid_alive(pid)
        new = start_guests(daemon, count=1, prefix="r2new")
        assert min(d for d, _ in new.values()) > max(d for d, _ in guests.values())

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
    def test_event_client_during_stop(self, daemon: DaemonProcess, sig: int) -> None:
        """
        A C{virsh event --all --loop} connected while the daemon stops ends
        by itself (bounded), the guests survive, and a new virsh sees them
        running after the restart.
        """
        guests = start_guests(daemon, count=2, prefix="re")
        out_path = os.path.join(daemon.root, "events.out")
        with open(out_path, "w") as out:
            proc = subprocess.Popen(
                ["stdbuf", "-oL", VIRSH, "-c", daemon.uri, "event", "--all", "--loop"],
                stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        try:
            def registered() -> bool:
                virsh_ok(daemon.uri, "suspend", "re0")
                virsh_ok(daemon.uri, "resume", "re0")
                return any("Suspended" in line for line in event_lines(out_path))

            wait_until(registered, 10, interval=0.2, message="event registration")
            daemon.stop(sig)
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                raise AssertionError("virsh event hangs after the daemon stopped") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        with open(out_path) as f:
            text = f.read()
        assert rc >= 0, f"virsh event died of signal {-rc}: {text}"
        for name, (_, pid) in guests.items():
            assert pid_alive(pid), f"{name}: QEMU {pid} died"
        daemon.start()
        table = running_table(daemon)
        for name, (domid, _) in guests.items():
            assert table.get(name) == (domid, "running"), table


class GuestCrashTests:
    """
    A QEMU killed behind the daemon's back.
    """

    def test_kill_9_qemu(self, daemon: DaemonProcess) -> None:
        """
        kill -9 of a guest's QEMU: domstate --reason "shut off (crashed)",
        a STOPPED event (detail FAILED, virsh "Stopped Failed") reaches an
        event client, and the guest can be started again.
        """
        guests = start_guests(daemon, count=1, prefix="cr")
        name, (_, pid) = next(iter(guests.items()))
        out_path = os.path.join(daemon.root, "events.out")
        with open(out_path, "w") as out:
            proc = subprocess.Popen(
                ["stdbuf", "-oL", VIRSH, "-c", daemon.uri, "event", "--all", "--loop",
                 "--timeout", "20"],
                stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        try:
            def registered() -> bool:
                virsh_ok(daemon.uri, "suspend", name)
                virsh_ok(daemon.uri, "resume", name)
                return any("Suspended" in line for line in event_lines(out_path))

            wait_until(registered, 10, interval=0.2, message="event registration")
            os.kill(pid, signal.SIGKILL)
            daemon.wait_state(name, "shut off (crashed)", 20)
            stopped = wait_until(
                lambda: [x for x in event_lines(out_path)
                         if f"domain '{name}': Stopped" in x], 10, message="STOPPED event")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        assert stopped[-1].endswith("Stopped Failed"), stopped
        assert name not in running_table(daemon)
        assert daemon.alive()
        virsh_ok(daemon.uri, "start", name)
        assert daemon.domstate(name) == "running (booted)"
        virsh_ok(daemon.uri, "destroy", name)
        proc_ = virsh(daemon.uri, "list", "--all")
        assert proc_.returncode == 0
