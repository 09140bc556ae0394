"""
Faults against a real C{twistd -n qemud}: the daemon killed with SIGKILL in
the middle of lifecycle operations, QEMU killed or hung, and a full disk
under the config directory.

Every daemon runs in its own root below C{/tmp} and is cleaned up by PID
together with every QEMU it started (L{DaemonProcess.cleanup}); a stopped
QEMU gets SIGCONT and SIGKILL; the tmpfs is unmounted.  Guests are the
no-OS KVM guest (qboot, ~50 ms to start).

Clients with many idle or half-frame connections are covered by
C{test_bad_input.py} (C{test_thousand_idle_connections},
C{test_half_frames_stall}).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from qemud.domain.xml import parse_domain_xml
from qemud.rpc.errors import RemoteError
from qemud.rpc.remote import PROC
from tests.integration.daemon import (
    VIRSH,
    DaemonProcess,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
    pid_alive,
    require_tools,
    virsh,
    virsh_ok,
    wait_until,
)
from tests.integration.faults import (
    ERR_OPERATION_FAILED,
    ERR_OPERATION_TIMEOUT,
    ERR_SYSTEM_ERROR,
    EVENT_STOPPED,
    STATE_PAUSED,
    STATE_RUNNING,
    STATE_SHUTOFF,
    STOPPED_CRASHED,
    STOPPED_FAILED,
    LogWatcher,
    RPCClient,
    RPCTimeout,
    TmpfsMount,
    config_dir_problems,
    domain_xml,
    log_problems,
    new_uuid,
    qemu_guests_below,
    status_pids,
)
from tests.integration.guests import QBOOT_ROM

pytestmark = pytest.mark.integration

#: The seed of the kill test; set C{QEMUD_FAULT_SEED} to replay another run.
SEED = int(os.environ.get("QEMUD_FAULT_SEED", "20261126"))

#: libvirt's paused reason "starting up".
PAUSED_STARTING_UP = 11

#: libvirt's shutoff reason "crashed" and "destroyed".
SHUTOFF_CRASHED = 3
SHUTOFF_DESTROYED = 2

#: The per-command QMP timeout and the SIGTERM-to-SIGKILL delay given to the
#: daemon of the hung-QEMU test (--qmp-timeout, --kill-timeout).
QMP_COMMAND_TIMEOUT = 3.0
KILL_TIMEOUT = 2.0


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_kvm_guest() -> None:
    """Skip (fail in CI) without /dev/kvm or qboot."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or not os.path.exists(QBOOT_ROM):
        _unavailable("needs /dev/kvm and qboot.rom (apt-get install qemu-system-x86)")


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A fresh daemon (no autostart); killed with its guests at the end."""
    require_kvm_guest()
    d = DaemonProcess("--no-autostart")
    with d:
        yield d


def _kill_and_reap(pids: list[int]) -> None:
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.02)


# --------------------------------------------------------------------------- 1: kill -9


@dataclass
class Model:
    """
    What the client knows for certain: acknowledged operations only.

    @ivar uuids: the fixed UUID of each name of the pool.
    @ivar defined: names with a persistent config.
    @ivar running: name to QEMU pid of the running domains.
    """

    uuids: dict[str, str]
    defined: set[str] = field(default_factory=set)
    running: dict[str, int] = field(default_factory=dict)

    def listed(self, name: str) -> bool:
        """@return: whether the daemon should list C{name}."""
        return name in self.defined or name in self.running


@dataclass
class Observed:
    """One domain as the restarted daemon shows it."""

    listed: bool
    persistent: bool = False
    active: bool = False
    pid: int | None = None


class KillRun:
    """
    Drive define/undefine/start/destroy from a client and SIGKILL the daemon
    at random moments; after each restart check the invariants and collect
    every violation as a finding.
    """

    def __init__(self, daemon: DaemonProcess, rng: random.Random, names: list[str]) -> None:
        self.daemon = daemon
        self.rng = rng
        self.model = Model({n: new_uuid(rng) for n in names})
        self.names = names
        self.findings: list[str] = []
        self.kills = 0
        self.ops = 0
        self.log = LogWatcher(daemon.root)
        self.client = RPCClient(daemon.socket, timeout=30).open()

    # -- operations ------------------------------------------------------------

    def choose(self) -> tuple[str, str]:
        """@return: a random name and an operation valid for it in the model."""
        m = self.model
        name = self.rng.choice(self.names)
        ops = ["define"] * 2
        if name in m.defined:
            ops += ["undefine"]
            if name not in m.running and len(m.running) < 3:
                ops += ["start"] * 4
        if name in m.running:
            ops += ["destroy"] * 3
        return name, self.rng.choice(ops)

    def send(self, name: str, op: str) -> tuple[int, int]:
        """Send the operation; @return: its serial and procedure."""
        c = self.client
        if op == "define":
            return c.send(PROC.DOMAIN_DEFINE_XML, (domain_xml(name, self.model.uuids[name]),)), \
                PROC.DOMAIN_DEFINE_XML
        dom = c.lookup(name)
        proc = {"undefine": PROC.DOMAIN_UNDEFINE, "start": PROC.DOMAIN_CREATE,
                "destroy": PROC.DOMAIN_DESTROY}[op]
        return c.send(proc, (dom,)), proc

    def apply(self, name: str, op: str) -> None:
        """The operation was acknowledged: update the model."""
        m = self.model
        if op == "define":
            m.defined.add(name)
        elif op == "undefine":
            m.defined.discard(name)
        elif op == "start":
            pid = status_pids(self.daemon.status_dir).get(name)
            if pid is None:
                self.findings.append(f"start {name} acknowledged but no status file")
                pid = -1
            m.running[name] = pid
        elif op == "destroy":
            m.running.pop(name, None)

    def step(self, kill: bool) -> None:
        """
        One operation; with C{kill}, SIGKILL the daemon a random delay after
        sending it, restart it and check.
        """
        name, op = self.choose()
        self.ops += 1
        delay = self.rng.choice((0.0, 0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04,
                                 0.07))
        serial, proc = self.send(name, op)
        if not kill:
            try:
                self.client.wait_reply(serial, proc, timeout=30)
            except RemoteError as e:
                self.findings.append(f"op {self.ops} {op} {name}: unexpected error {e}")
                return
            self.apply(name, op)
            return
        if delay:
            time.sleep(delay)
        os.kill(self.daemon.pid, signal.SIGKILL)
        self.kills += 1
        acked = False
        try:
            self.client.wait_reply(serial, proc, timeout=2)
            acked = True
        except RemoteError as e:
            self.findings.append(f"op {self.ops} {op} {name}: unexpected error {e}")
        except (RPCTimeout, ConnectionError, OSError):
            pass
        if acked:
            self.apply(name, op)
        self.client.close()
        self.daemon.stop(signal.SIGKILL)
        before = {n: self._expectations(n) for n in self.names}
        uncertain = None if acked else (name, op)
        self.daemon.start()
        self.client = RPCClient(self.daemon.socket, timeout=30).open()
        self.check(uncertain, before, f"kill {self.kills} (op {self.ops} {op} {name} after "
                                      f"{delay * 1000:g} ms, {'acked' if acked else 'no reply'})")

    def _expectations(self, name: str) -> tuple[bool, bool, int | None]:
        m = self.model
        return (m.listed(name), name in m.defined, m.running.get(name))

    # -- checks ----------------------------------------------------------------

    def observe(self) -> dict[str, Observed]:
        c = self.client
        listed = c.call(PROC.CONNECT_LIST_ALL_DOMAINS, (1, 0)).domains
        names = [d.name for d in listed]
        uuids = [bytes(d.uuid) for d in listed]
        if len(set(names)) != len(names) or len(set(uuids)) != len(uuids):
            self.findings.append(f"duplicate domains listed: {names}")
        pids = status_pids(self.daemon.status_dir)
        out = {n: Observed(False) for n in self.names}
        for dom in listed:
            state, _ = c.state(dom)
            persistent = bool(c.call(PROC.DOMAIN_IS_PERSISTENT, (dom,)).persistent)
            active = state in (STATE_RUNNING, STATE_PAUSED)
            out[dom.name] = Observed(True, persistent, active,
                                     pids.get(dom.name) if active else None)
        return out

    def settled(self) -> bool:
        """
        No domain is still starting up (an interrupted start being stopped)
        and every live QEMU of the root that has a status file is shown
        active with its pid (the others cannot be re-attached: no use waiting).
        """
        c = self.client
        for dom in c.call(PROC.CONNECT_LIST_ALL_DOMAINS, (1, 0)).domains:
            if c.state(dom) == (STATE_PAUSED, PAUSED_STARTING_UP):
                return False
        obs = self.observe()
        saved = status_pids(self.daemon.status_dir)
        for pid, name in qemu_guests_below(self.daemon.root).items():
            if saved.get(name) != pid:
                continue
            o = obs.get(name)
            if o is None or not o.active or o.pid != pid:
                return False
        return True

    def check(self, uncertain: tuple[str, str] | None, before: dict[str, Any],
              what: str) -> None:
        d = self.daemon
        for problem in config_dir_problems(d.config_dir):
            self.findings.append(f"{what}: {problem}")
        first = self.observe()
        try:
            wait_until(self.settled, 5, interval=0.05)
        except TimeoutError:
            pass
        obs = self.observe()
        live = qemu_guests_below(d.root)
        # a guest shown shut off (or missing) at first, and running once re-attached
        for name, o in obs.items():
            if o.active and not first[name].active:
                self.findings.append(
                    f"{what}: {name} (pid {o.pid}) was shown "
                    f"{'shut off' if first[name].listed else 'missing'} right after the "
                    "restart, running only once re-attached")
        orphans = []
        for pid, name in live.items():
            o = obs.get(name)
            if o is None or not o.active or o.pid != pid:
                shown = ("not listed" if o is None or not o.listed else
                         f"listed {'active pid ' + str(o.pid) if o.active else 'shut off'}")
                self.findings.append(
                    f"{what}: orphan QEMU pid {pid} for {name}: the daemon shows it {shown}; "
                    f"status file pid {status_pids(d.status_dir).get(name)}")
                orphans.append(pid)
        if orphans:
            _kill_and_reap(orphans)
            d.known_qemu_pids.update(orphans)
            obs = self.observe()
        for name, pid in status_pids(d.status_dir).items():
            o = obs.get(name)
            if o is None or not o.active or o.pid != pid:
                self.findings.append(f"{what}: stale status file of {name} (pid {pid})")
        for entry in os.listdir(d.status_dir):
            if entry.startswith("."):
                self.findings.append(f"{what}: temp file left in the status dir: {entry}")
        for name in self.names:
            o = obs[name]
            listed, persistent, pid = before[name]
            allowed = [(listed, persistent, pid)]
            if uncertain is not None and uncertain[0] == name:
                allowed += self._outcomes(uncertain[1], name, before[name])
            if not any(self._matches(o, *a) for a in allowed):
                self.findings.append(
                    f"{what}: {name} shown listed={o.listed} persistent={o.persistent} "
                    f"active={o.active} pid={o.pid}; acceptable: "
                    + " or ".join(f"(listed={a[0]} persistent={a[1]} pid={a[2]})"
                                  for a in allowed))
            # the model follows what the daemon shows from now on
            m = self.model
            m.defined.discard(name)
            m.running.pop(name, None)
            if o.persistent:
                m.defined.add(name)
            if o.active:
                m.running[name] = o.pid if o.pid is not None else -1
        for excerpt in self.log.new_problems():
            self.findings.append(f"{what}: unhandled error in the log:\n{excerpt}")

    @staticmethod
    def _outcomes(op: str, name: str,
                  pre: tuple[bool, bool, int | None]) -> list[tuple[bool, bool, Any]]:
        listed, persistent, pid = pre
        if op == "define":
            return [(True, True, pid)]
        if op == "undefine":
            return [(pid is not None, False, pid)]
        if op == "start":
            return [(True, persistent, "any")]
        if op == "destroy":
            return [(persistent, persistent, None)]
        raise AssertionError(op)

    @staticmethod
    def _matches(o: Observed, listed: bool, persistent: bool, pid: Any) -> bool:
        if o.listed != listed:
            return False
        if not listed:
            return True
        if o.persistent != persistent:
            return False
        if pid is None:
            return not o.active
        if pid == "any":
            return o.active and o.pid is not None and pid_alive(o.pid)
        if not pid_alive(pid):
            # the guest died with the daemon: shut off is right
            return not o.active
        return o.active and o.pid == pid


class KillDaemonTests:
    """
    SIGKILL of the daemon during lifecycle operations loses nothing that was
    acknowledged, leaves no torn config and no QEMU the daemon does not know.
    """

    def test_random_kills(self, daemon: DaemonProcess) -> None:
        """
        200 define/undefine/start/destroy operations from one client, with
        the daemon killed by SIGKILL a random delay after sending about one
        operation in five, then restarted: every config parses and no temp
        file is left; the domains listed, their persistence and their
        running state match the acknowledged operations (the one in flight
        at the kill may or may not have happened); running guests are
        re-attached with the same pid; no QEMU runs that the daemon does
        not show as running.
        """
        rng = random.Random(SEED)
        tag = os.path.basename(daemon.root)[-4:]
        run = KillRun(daemon, rng, [f"kf{i}-{tag}" for i in range(5)])
        t0 = time.monotonic()
        try:
            for _ in range(200):
                if time.monotonic() - t0 > 150:
                    break
                run.step(kill=rng.random() < 0.2)
            run.check(None, {n: run._expectations(n) for n in run.names}, "final")
        finally:
            run.client.close()
        elapsed = time.monotonic() - t0
        print(f"\nseed {SEED}: {run.ops} operations, {run.kills} kills, {elapsed:.1f} s, "
              f"{len(run.findings)} findings")
        assert run.ops >= 150, f"only {run.ops} operations in {elapsed:.0f} s"
        assert not run.findings, f"seed {SEED}: {len(run.findings)} findings:\n" + "\n".join(
            run.findings)

    def test_kill_while_qemu_starts(self, daemon: DaemonProcess) -> None:
        """
        The daemon is killed just after it spawned a guest's QEMU (before the
        start was acknowledged): once restarted, that QEMU is either gone or
        shown running with its pid; it is never left running unknown to the
        daemon, where a second start would launch a second QEMU for the
        same guest.
        """
        name = f"ks-{os.path.basename(daemon.root)[-4:]}"
        with RPCClient(daemon.socket).open() as c:
            c.define(domain_xml(name, new_uuid(random.Random(1))))
            dom = c.lookup(name)
            c.send(PROC.DOMAIN_CREATE, (dom,))
            qemu = wait_until(lambda: list(qemu_guests_below(daemon.root)), 10,
                              interval=0.001, message="QEMU spawned")
            os.kill(daemon.pid, signal.SIGKILL)
        daemon.stop(signal.SIGKILL)
        pid = qemu[0]
        daemon.start()
        time.sleep(1.0)
        with RPCClient(daemon.socket).open() as c:
            state = c.state(c.lookup(name))
        known = status_pids(daemon.status_dir).get(name)
        alive = pid_alive(pid)
        second = None
        if alive and state[0] == STATE_SHUTOFF:
            # what a user would do next: start it again
            virsh(daemon.uri, "start", name, timeout=30)
            second = sorted(p for p, n in qemu_guests_below(daemon.root).items() if n == name)
        assert not alive or (state[0] in (STATE_RUNNING, STATE_PAUSED) and known == pid), (
            f"QEMU {pid} of {name} survived the daemon's SIGKILL during start and is unknown "
            f"to the restarted daemon (state {state}, status file pid {known}); "
            f"'virsh start' then gives QEMU processes {second} for the one guest")

    def test_running_guest_shown_running_during_reattach(self, daemon: DaemonProcess) -> None:
        """
        After a SIGKILL and restart, the first client to get in (as soon as
        the socket accepts) sees a guest that is still running as running;
        a start it sends then is refused and never launches a second QEMU
        for the guest.  Up to 5 restarts, stopping at the first violation.
        """
        name = f"ra-{os.path.basename(daemon.root)[-4:]}"
        pid = _start_guest(daemon, name)
        problems: list[str] = []
        for attempt in range(5):
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.stop(signal.SIGKILL)
            seen: list[Any] = []

            def first_client(seen: list[Any]) -> None:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        c = RPCClient(daemon.socket, timeout=10)
                    except OSError:
                        time.sleep(0.001)
                        continue
                    with c:
                        c.open()
                        dom = c.lookup(name)
                        seen.append(c.state(dom))
                        if seen[0][0] == STATE_SHUTOFF:
                            try:
                                seen.append(c.call(PROC.DOMAIN_CREATE, (dom,)))
                            except RemoteError as e:
                                seen.append(e)
                    return

            racer = threading.Thread(target=first_client, args=(seen,), daemon=True)
            racer.start()
            daemon.start()
            racer.join(timeout=30)
            time.sleep(0.5)
            qemus = sorted(p for p, n in qemu_guests_below(daemon.root).items() if n == name)
            daemon.known_qemu_pids.update(qemus)
            if not seen or seen[0][0] != STATE_RUNNING or qemus != [pid]:
                problems.append(
                    f"restart {attempt + 1}: first client saw state {seen[:1]} "
                    f"(start answered {seen[1:]!r}); QEMU processes of {name}: {qemus} "
                    f"(was {pid}); status file pid {status_pids(daemon.status_dir).get(name)}")
                break
        assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- 2: QEMU faults


def _start_guest(daemon: DaemonProcess, name: str) -> int:
    daemon.define(domain_xml(name, new_uuid(random.Random(name))), name)
    virsh_ok(daemon.uri, "start", name)
    pid = status_pids(daemon.status_dir)[name]
    daemon.known_qemu_pids.add(pid)
    return pid


class QemuFaultTests:
    """
    A QEMU that dies or hangs is handled: crash detected and announced,
    hung monitor commands time out, the daemon stays responsive, destroy
    works.
    """

    def test_qemu_killed(self, daemon: DaemonProcess) -> None:
        """
        SIGKILL to a guest's QEMU: the domain becomes shut off (crashed) and
        a subscribed client gets a STOPPED lifecycle event (detail FAILED as
        libvirtd sends, or CRASHED).
        """
        name = "crash-" + os.path.basename(daemon.root)[-4:]
        pid = _start_guest(daemon, name)
        with RPCClient(daemon.socket, timeout=10).open() as c:
            c.subscribe_lifecycle()
            os.kill(pid, signal.SIGKILL)
            body = c.wait_event(
                lambda proc, b: proc == PROC.DOMAIN_EVENT_CALLBACK_LIFECYCLE
                and not isinstance(b, bytes) and b.msg.dom.name == name
                and b.msg.event == EVENT_STOPPED, timeout=15)
            # libvirtd sends STOPPED/FAILED on an unexpected monitor EOF
            # (qemuProcessHandleMonitorEOF); STOPPED/CRASHED is accepted too.
            assert body.msg.detail in (STOPPED_FAILED, STOPPED_CRASHED), body
            assert c.state(c.lookup(name)) == (STATE_SHUTOFF, SHUTOFF_CRASHED)
        assert not os.path.exists(os.path.join(daemon.status_dir, name + ".xml"))
        assert daemon.domstate(name) == "shut off (crashed)"
        assert not log_problems(daemon.root), log_problems(daemon.root)

    @pytest.fixture
    def quick_daemon(self) -> Iterator[DaemonProcess]:
        """A daemon with short QMP and kill timeouts."""
        require_kvm_guest()
        d = DaemonProcess("--no-autostart", "--qmp-timeout", str(QMP_COMMAND_TIMEOUT),
                          "--kill-timeout", str(KILL_TIMEOUT))
        with d:
            yield d

    def test_qemu_hung(self, quick_daemon: DaemonProcess) -> None:
        """
        QEMU stopped with SIGSTOP (QMP does not answer): suspend and reset
        each fail with OPERATION_TIMEOUT ("Timed out during operation:
        ...") after the per-command QMP timeout (--qmp-timeout), other
        clients are served meanwhile (getVersion answers fast), and destroy
        still works (SIGTERM is not acted on by a stopped process: SIGKILL
        after --kill-timeout).
        """
        daemon = quick_daemon
        name = "hung-" + os.path.basename(daemon.root)[-4:]
        pid = _start_guest(daemon, name)
        try:
            os.kill(pid, signal.SIGSTOP)
            latencies: list[float] = []
            errors: list[str] = []
            stop = threading.Event()

            def poll_version() -> None:
                with RPCClient(daemon.socket, timeout=5).open() as other:
                    while not stop.is_set():
                        t0 = time.monotonic()
                        try:
                            other.get_version()
                        except Exception as e:
                            errors.append(repr(e))
                            return
                        latencies.append(time.monotonic() - t0)
                        stop.wait(0.2)

            poller = threading.Thread(target=poll_version, daemon=True)
            poller.start()
            # (resume of a running guest succeeds without asking QEMU, as in libvirt)
            ops = [("suspend", PROC.DOMAIN_SUSPEND), ("reset", PROC.DOMAIN_RESET)]
            with RPCClient(daemon.socket, timeout=QMP_COMMAND_TIMEOUT + 30).open() as c:
                dom = c.lookup(name)
                for what, proc in ops:
                    args = (dom, 0) if proc == PROC.DOMAIN_RESET else (dom,)
                    t0 = time.monotonic()
                    with pytest.raises(RemoteError) as info:
                        c.call(proc, args)
                    took = time.monotonic() - t0
                    err = info.value
                    assert err.code == ERR_OPERATION_TIMEOUT, (what, err.code, err.message)
                    assert err.message is not None
                    assert err.message.startswith("Timed out during operation: "), err.message
                    assert QMP_COMMAND_TIMEOUT - 0.5 < took < QMP_COMMAND_TIMEOUT + 15, (what, took)
                stop.set()
                poller.join(timeout=10)
                assert not errors, errors
                assert latencies and max(latencies) < 2.0, (
                    f"getVersion latency up to {max(latencies or [0]):.2f} s while QEMU hung")
                t0 = time.monotonic()
                c.call(PROC.DOMAIN_DESTROY, (dom,), timeout=KILL_TIMEOUT + 20)
                assert time.monotonic() - t0 < KILL_TIMEOUT + 10
                assert c.state(dom) == (STATE_SHUTOFF, SHUTOFF_DESTROYED)
            wait_until(lambda: not pid_alive(pid), 10, message="QEMU gone")
            assert not log_problems(daemon.root), log_problems(daemon.root)
        finally:
            _kill_and_reap([pid])


# --------------------------------------------------------------------------- 3: disk full


class DiskFullTests:
    """
    A config that does not fit on the disk is refused cleanly.
    """

    @pytest.fixture
    def full_daemon(self) -> Iterator[tuple[DaemonProcess, TmpfsMount]]:
        """
        A daemon whose config directory is a 256 KiB tmpfs.
        """
        require_kvm_guest()
        require_tools(VIRSH)
        root = tempfile.mkdtemp(prefix="qd", dir="/tmp")
        fs = TmpfsMount(os.path.join(root, "etc", "qemud", "qemu"), "256k")
        try:
            fs.mount()
        except OSError as e:
            shutil.rmtree(root, ignore_errors=True)
            _unavailable(f"cannot mount a tmpfs: {e}")
        d = DaemonProcess("--no-autostart", root=root)
        try:
            d.start()
            yield d, fs
        finally:
            try:
                if d.alive():
                    d.stop(signal.SIGKILL)
            finally:
                fs.unmount()
                d.cleanup()

    def test_define_on_full_disk(self, full_daemon: tuple[DaemonProcess, TmpfsMount]) -> None:
        """
        With the config file system almost full: defining a domain whose
        config does not fit fails with SYSTEM_ERROR or OPERATION_FAILED
        naming the file and "No space left on device", and the domain is
        not registered; redefining an existing domain with a config that
        does not fit fails the same way and leaves its old config intact
        (on disk and in the daemon); no temp file is left; the daemon keeps
        working (a small define still succeeds).
        """
        daemon, fs = full_daemon
        uid = new_uuid(random.Random(3))
        keep = domain_xml("keep", uid)
        with RPCClient(daemon.socket, timeout=15).open() as c:
            c.define(keep)
            path = os.path.join(daemon.config_dir, "keep.xml")
            with open(path, "rb") as f:
                old = f.read()
            old_dump = virsh_ok(daemon.uri, "dumpxml", "--inactive", "keep")
            fs.fill(leave=4096)
            assert fs.free_bytes() <= 8192, fs.free_bytes()
            big = "x" * 64 * 1024
            for name, xml in (("big", domain_xml("big", new_uuid(random.Random(4)))),
                              ("keep", keep)):
                xml = xml.replace("</name>", f"</name>\n  <description>{big}</description>")
                with pytest.raises(RemoteError) as info:
                    c.define(xml)
                err = info.value
                assert err.code in (ERR_SYSTEM_ERROR, ERR_OPERATION_FAILED), (err.code,
                                                                             err.message)
                assert "No space left on device" in (err.message or ""), err.message
                assert os.path.join(daemon.config_dir, name + ".xml") in (err.message or ""), \
                    err.message
            names = set(c.list_all())
            assert names == {"keep"}, names
            with open(path, "rb") as f:
                assert f.read() == old
            assert parse_domain_xml(old.decode()).name == "keep"
            assert virsh_ok(daemon.uri, "dumpxml", "--inactive", "keep") == old_dump
            left = sorted(set(os.listdir(daemon.config_dir)) - {"autostart"})
            assert left == ["filler.bin", "keep.xml"], left
            # still working: a config that fits is written
            c.define(domain_xml("small", new_uuid(random.Random(5))))
            assert set(c.list_all()) == {"keep", "small"}
            out = virsh_ok(daemon.uri, "list", "--all", "--name")
            assert set(out.split()) == {"keep", "small"}
        assert daemon.alive()
        assert not log_problems(daemon.root), log_problems(daemon.root)
