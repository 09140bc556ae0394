"""
The documented C{twistd qemud} options and signals against a real daemon
(L{DaemonProcess}) and the real virsh: fd and child hygiene over many guest
starts, C{--max-clients} (daemon-wide), C{--listen} endpoint strings,
C{--listen-tcp} on IPv6, SIGHUP reloading configs, SIGTERM draining calls
in flight, autostart and C{--no-autostart}.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from qemud.rpc.framing import OK, REPLY, MessageDecoder
from qemud.rpc.remote import PROC
from tests.daemon.test_protocol import call
from tests.integration.daemon import (
    VIRSH,
    DaemonProcess,
    clean_env,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
    free_tcp_port,
    kill_pids,
    pid_alive,
    qemu_pid_of,
    require_tools,
    socket_accepts,
    virsh,
    virsh_ok,
    wait_until,
)
from tests.integration.guests import QBOOT_ROM, noos_guest_domain_xml


def require_kvm_guest() -> None:
    """Skip (fail in CI) unless the no-OS KVM guest can run here."""
    from qemud.qemu.caps import check_kvm_usable

    problem = check_kvm_usable()
    if problem is None and not os.path.exists(QBOOT_ROM):
        problem = f"{QBOOT_ROM} missing: apt-get install qemu-system-data"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"KVM guest unavailable: {problem}", pytrace=False)
        pytest.skip(f"KVM guest unavailable: {problem}")


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons a test makes; each is cleaned up (killed by PID) at the end."""
    require_tools(VIRSH)
    made: list[DaemonProcess] = []
    try:
        yield made
    finally:
        for daemon in made:
            daemon.cleanup()


def start_daemon(made: list[DaemonProcess], *extra: str, **kw: Any) -> DaemonProcess:
    """Start a L{DaemonProcess} and remember it for clean-up."""
    daemon = DaemonProcess(*extra, **kw)
    made.append(daemon)
    return daemon.start()


def open_fds(pid: int) -> dict[int, str]:
    """@return: fd number → what it points at, for process C{pid}."""
    fds = {}
    base = f"/proc/{pid}/fd"
    for entry in os.listdir(base):
        try:
            fds[int(entry)] = os.readlink(os.path.join(base, entry))
        except OSError:
            pass
    return fds


def zombie_children(pid: int) -> list[int]:
    """@return: the zombie processes whose parent is C{pid}."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(entry))
    return found


class RawClient:
    """A bare libvirt-protocol connection (UNIX or TCP) with a bounded timeout."""

    def __init__(self, address: str | tuple[str, int], timeout: float = 10.0) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.serial = 0

    def auth_list(self) -> bool:
        """Send AUTH_LIST; @return: whether an OK reply came back."""
        self.serial += 1
        self.sock.sendall(call(PROC.AUTH_LIST, self.serial))
        decoder = MessageDecoder()
        while True:
            data = self.sock.recv(65536)
            if not data:
                return False
            for header, _ in decoder.feed(data):
                if header.type == REPLY and header.serial == self.serial:
                    return header.status == OK

    def closed_by_peer(self) -> bool:
        """@return: whether the daemon closed the connection (EOF within the timeout)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def hold(clients: list[RawClient], address: str | tuple[str, int]) -> RawClient:
    """
    Open a connection that the daemon serves, and keep it in C{clients}.

    L{DaemonProcess.start} probes the sockets with short connections that
    count as clients until the daemon sees them close, so a connection
    refused right after start-up is retried (bounded).
    """
    def attempt() -> RawClient | None:
        client = RawClient(address)
        if client.auth_list():
            return client
        client.close()
        return None

    client = wait_until(attempt, 10, interval=0.05, message=f"a served connection on {address}")
    clients.append(client)
    return client


@pytest.fixture
def raw_clients() -> Iterator[list[RawClient]]:
    """Raw connections a test opens; all closed at the end."""
    made: list[RawClient] = []
    try:
        yield made
    finally:
        for client in made:
            client.close()


class FdHygieneTests:
    """Starting and destroying guests leaks neither fds nor zombie children."""

    CYCLES = 20

    def test_start_destroy_cycles(self, daemons: list[DaemonProcess]) -> None:
        """
        After 20 start/destroy cycles of a no-OS guest, the daemon has as
        many open fds as after the first cycle (the warm-up), and no zombie
        children (the daemon reaps its own QEMUs).
        """
        require_kvm_guest()
        daemon = start_daemon(daemons)
        daemon.define(noos_guest_domain_xml("fd1"), "fd1")
        baseline: dict[int, str] = {}
        for cycle in range(1, self.CYCLES + 1):
            virsh_ok(daemon.uri, "start", "fd1")
            daemon.remember_qemus()
            virsh_ok(daemon.uri, "destroy", "fd1")
            if cycle == 1:
                baseline = wait_for_settled_fds(daemon.pid)
        try:
            wait_until(lambda: len(open_fds(daemon.pid)) <= len(baseline), 10,
                       message="fd count back to the warm-up baseline")
        except TimeoutError:
            now = open_fds(daemon.pid)
            extra = {fd: target for fd, target in now.items() if baseline.get(fd) != target}
            raise AssertionError(f"{len(baseline)} fds after cycle 1, {len(now)} after cycle "
                                 f"{self.CYCLES}; new or changed: {extra}") from None
        try:
            wait_until(lambda: not zombie_children(daemon.pid), 5,
                       message="no zombie children of the daemon")
        except TimeoutError:
            raise AssertionError(
                f"zombie children of the daemon: {zombie_children(daemon.pid)}") from None
        assert daemon.alive()


def wait_for_settled_fds(pid: int, timeout: float = 5.0) -> dict[int, str]:
    """
    @return: the process's fds once their number stayed the same for a few
        polls (a destroyed guest's QMP socket and pipes close asynchronously).
    """
    history: list[int] = []

    def settled() -> bool:
        history.append(len(open_fds(pid)))
        return len(history) >= 5 and len(set(history[-5:])) == 1

    wait_until(settled, timeout, interval=0.05, message="fd count settled")
    return open_fds(pid)


class MaxClientsTests:
    """C{--max-clients N}: more connections are closed at once, daemon-wide."""

    def test_fourth_connection_closed(self, daemons: list[DaemonProcess],
                                      raw_clients: list[RawClient]) -> None:
        """
        With --max-clients 3 and three connections held open (and served),
        a fourth sees EOF at once and virsh fails; after one is closed, virsh
        works again.
        """
        daemon = start_daemon(daemons, "--max-clients", "3", session=True)
        for _ in range(3):
            hold(raw_clients, daemon.socket)
        fourth = RawClient(daemon.socket, timeout=5)
        raw_clients.append(fourth)
        assert fourth.closed_by_peer(), "the fourth connection was not closed"
        proc = virsh(daemon.uri, "list", "--all")
        assert proc.returncode != 0, proc.stdout
        for client in raw_clients[:3]:
            assert client.auth_list(), "a held connection was dropped"
        raw_clients[0].close()
        wait_until(lambda: virsh(daemon.uri, "list", "--all").returncode == 0, 10,
                   interval=0.1, message="virsh works after a connection closed")
        assert daemon.alive()

    def test_limit_spans_listeners(self, daemons: list[DaemonProcess],
                                   raw_clients: list[RawClient]) -> None:
        """
        With a UNIX and a TCP listener, connections on both count against
        one --max-clients 3: two UNIX and one TCP fill it, and a fourth on
        either listener is closed.
        """
        port = free_tcp_port()
        daemon = start_daemon(daemons, "--max-clients", "3", session=True, tcp_port=port)
        held = [hold(raw_clients, daemon.socket), hold(raw_clients, daemon.socket),
                hold(raw_clients, ("127.0.0.1", port))]
        for address in (("127.0.0.1", port), daemon.socket):
            extra = RawClient(address, timeout=5)
            raw_clients.append(extra)
            assert extra.closed_by_peer(), f"a fourth connection on {address} was accepted"
        held[2].close()
        wait_until(lambda: virsh(daemon.uri, "list", "--all").returncode == 0, 10,
                   interval=0.1, message="virsh works after the TCP client left")
        held[0].close()
        wait_until(lambda: virsh(daemon.tcp_uri(), "list", "--all").returncode == 0, 10,
                   interval=0.1, message="virsh over TCP works after a UNIX client left")


class ListenOptionTests:
    """C{--listen ENDPOINT} and C{--listen-tcp [::1]:PORT}."""

    def test_listen_unix_endpoint_string(self, daemons: list[DaemonProcess]) -> None:
        """A Twisted endpoint string unix:PATH is a read-write listener virsh can use."""
        path = f"/tmp/qdl{uuid.uuid4().hex[:8]}.sock"
        try:
            daemon = start_daemon(daemons, "--listen", f"unix:{path}")
            wait_until(lambda: socket_accepts(path), 10, message=f"{path} accepting")
            uri = f"qemu+unix:///system?socket={path}"
            virsh_ok(uri, "list", "--all")
            daemon.define(noos_guest_domain_xml("lst1"), "lst1")
            assert "lst1" in virsh_ok(uri, "list", "--all")
            virsh_ok(uri, "undefine", "lst1")
        finally:
            for leftover in (path, path + ".lock"):
                if os.path.lexists(leftover):
                    os.unlink(leftover)

    def test_listen_tcp_ipv6(self, daemons: list[DaemonProcess]) -> None:
        """--listen-tcp [::1]:PORT accepts virsh on qemu+tcp://[::1]:PORT/system."""
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", 0))
                port = s.getsockname()[1]
        except OSError as e:
            pytest.skip(f"no IPv6 loopback here: {e}")
        daemon = start_daemon(daemons, f"--listen-tcp=[::1]:{port}")

        def accepts() -> bool:
            try:
                with socket.create_connection(("::1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(accepts, 10, message=f"[::1]:{port} accepting")
        daemon.define(noos_guest_domain_xml("v6g"), "v6g")
        out = virsh_ok(f"qemu+tcp://[::1]:{port}/system", "list", "--all")
        assert "v6g" in out


class SighupTests:
    """SIGHUP re-reads the config directory."""

    def hup_until_listed(self, daemon: DaemonProcess, name: str) -> None:
        daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_until(lambda: name in virsh_ok(daemon.uri, "list", "--all").split(), 10,
                   interval=0.1, message=f"{name} listed after SIGHUP")

    def test_new_config_picked_up(self, daemons: list[DaemonProcess]) -> None:
        """
        A domain XML dropped into the config directory appears in virsh list
        after SIGHUP; a corrupt file there is skipped (logged), the daemon
        keeps working and a later good file is still picked up.
        """
        daemon = start_daemon(daemons)
        with open(os.path.join(daemon.config_dir, "hup1.xml"), "w") as f:
            f.write(noos_guest_domain_xml("hup1"))
        self.hup_until_listed(daemon, "hup1")
        with open(os.path.join(daemon.config_dir, "bad.xml"), "w") as f:
            f.write("<domain type='kvm'><name>bad</name><memory>oops")
        with open(os.path.join(daemon.config_dir, "hup2.xml"), "w") as f:
            f.write(noos_guest_domain_xml("hup2"))
        self.hup_until_listed(daemon, "hup2")
        assert daemon.alive()
        listed = virsh_ok(daemon.uri, "list", "--all").split()
        assert "bad" not in listed
        skipped = [line for line in daemon.log_text().splitlines() if "skipping config" in line]
        assert any("bad" in line for line in skipped), skipped
        virsh_ok(daemon.uri, "dominfo", "hup1")

    def test_hup_twice_no_duplicates(self, daemons: list[DaemonProcess]) -> None:
        """A second SIGHUP does not list a known domain twice."""
        daemon = start_daemon(daemons)
        with open(os.path.join(daemon.config_dir, "hup3.xml"), "w") as f:
            f.write(noos_guest_domain_xml("hup3"))
        self.hup_until_listed(daemon, "hup3")
        daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        with open(os.path.join(daemon.config_dir, "hup4.xml"), "w") as f:
            f.write(noos_guest_domain_xml("hup4"))
        self.hup_until_listed(daemon, "hup4")
        assert virsh_ok(daemon.uri, "list", "--all", "--name").split().count("hup3") == 1


class SigtermDrainTests:
    """SIGTERM with a call in flight: the reply is sent, then the daemon exits 0."""

    ATTEMPTS = 5

    def test_start_in_flight(self, daemons: list[DaemonProcess]) -> None:
        """
        SIGTERM while virsh start is being served (its QEMU exists, the
        reply is not sent yet): virsh gets its reply ("started"), the daemon
        exits 0 and the guest keeps running.
        """
        require_kvm_guest()
        for attempt in range(self.ATTEMPTS):
            daemon = start_daemon(daemons)
            name = f"term{attempt}"
            daemon.define(noos_guest_domain_xml(name), name)
            starter = subprocess.Popen([VIRSH, "-c", daemon.uri, "start", name],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=clean_env())
            try:
                in_flight = sigterm_when_spawned(daemon, name, starter)
                out, err = starter.communicate(timeout=60)
            finally:
                if starter.poll() is None:
                    starter.kill()
                    starter.wait(10)
            if not in_flight:
                daemon.stop()
                continue
            # Let it exit by itself: a second SIGTERM (as stop() would send)
            # races with the shutdown.
            assert daemon.proc is not None
            try:
                code = daemon.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                code = daemon.stop(signal.SIGKILL)
                raise AssertionError("the daemon did not exit within 45 s of SIGTERM") from None
            daemon.stop()
            problems = []
            if starter.returncode != 0 or "started" not in out:
                problems.append(f"virsh start exited {starter.returncode}: "
                                f"stdout {out.strip()!r}, stderr {err.strip()!r}")
            if code != 0:
                problems.append(f"the daemon exited {code}")
            assert not problems, "; ".join(problems)
            pid = qemu_pid_of(daemon.root, name)
            assert pid is not None and pid_alive(pid), "the guest died with the daemon"
            return
        pytest.skip(f"virsh start finished before SIGTERM in {self.ATTEMPTS} attempts")


def sigterm_when_spawned(daemon: DaemonProcess, name: str,
                         starter: subprocess.Popen[str]) -> bool:
    """
    Wait (bounded) until the QEMU of C{name} exists while C{starter} still
    waits for its reply, and SIGTERM the daemon then.

    @return: whether the SIGTERM was sent with the call in flight.
    """
    def spawned_or_done() -> bool:
        return qemu_pid_of(daemon.root, name) is not None or starter.poll() is not None

    wait_until(spawned_or_done, 30, interval=0.002, message="QEMU spawned")
    if starter.poll() is not None:
        return False
    os.kill(daemon.pid, signal.SIGTERM)
    return True


class AutostartTests:
    """Autostart guests start with the daemon unless --no-autostart."""

    def wait_ready(self, daemon: DaemonProcess, times: int) -> None:
        """Wait for the manager's 'qemud ready' line number C{times} (after autostart)."""
        wait_until(lambda: daemon.log_text().count("qemud ready") >= times, 30,
                   interval=0.1, message=f"'qemud ready' #{times}")

    def state(self, daemon: DaemonProcess, name: str) -> str:
        return virsh_ok(daemon.uri, "domstate", name).strip()

    def test_autostart_and_no_autostart(self, daemons: list[DaemonProcess]) -> None:
        """
        virsh autostart g; restart the daemon: g runs.  Stop the daemon,
        kill g's QEMU by PID: the next daemon starts g again.  Stop, kill
        again, restart with --no-autostart: g stays shut off.
        """
        require_kvm_guest()
        daemon = start_daemon(daemons)
        daemon.define(noos_guest_domain_xml("auto1"), "auto1")
        daemon.define(noos_guest_domain_xml("manual1"), "manual1")
        virsh_ok(daemon.uri, "autostart", "auto1")
        assert "Autostart:      enable" in virsh_ok(daemon.uri, "dominfo", "auto1")
        assert self.state(daemon, "auto1") == "shut off"

        assert daemon.restart() == 0
        self.wait_ready(daemon, 2)
        assert self.state(daemon, "auto1") == "running"
        assert self.state(daemon, "manual1") == "shut off"
        first = qemu_pid_of(daemon.root, "auto1")
        assert first is not None

        assert daemon.stop() == 0
        kill_pids([first])
        assert not pid_alive(first)
        daemon.start()
        self.wait_ready(daemon, 3)
        assert self.state(daemon, "auto1") == "running"
        second = qemu_pid_of(daemon.root, "auto1")
        assert second is not None and second != first

        assert daemon.stop() == 0
        kill_pids([second])
        daemon.extra.append("--no-autostart")
        daemon.start()
        self.wait_ready(daemon, 4)
        assert self.state(daemon, "auto1") == "shut off"
        assert qemu_pid_of(daemon.root, "auto1") is None
        assert "Autostart:      enable" in virsh_ok(daemon.uri, "dominfo", "auto1")
