"""
Shared helpers for the benchmark scripts (not a benchmark itself).

 - L{Daemon}: a real C{twistd -n qemud --root ROOT} subprocess; start, wait
   for its socket, stop with a signal, CPU time and RSS from C{/proc};
 - L{cleanup}: kill by PID the daemon and every QEMU below a root (status
   files first, then a C{/proc} scan), remove the root;
 - L{Client}: a libvirt-python client (C{/usr/bin/python3 _lvclient.py})
   with a start barrier: it connects, says READY, and works after L{Client.go};
 - small statistics and formatting helpers.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
VENV_PYTHON = os.path.join(REPO, ".venv", "bin", "python")
SYSTEM_PYTHON = "/usr/bin/python3"
LVCLIENT = os.path.join(BENCH_DIR, "_lvclient.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")

if REPO not in sys.path:
    sys.path.insert(0, REPO)


def venv_python() -> str:
    """
    @return: the daemon's interpreter (the repo's venv, else this one).
    """
    return VENV_PYTHON if os.access(VENV_PYTHON, os.X_OK) else sys.executable


def make_root() -> str:
    """
    @return: a fresh private root below /tmp (short: UNIX socket paths < 108 bytes).
    """
    return tempfile.mkdtemp(prefix="qb", dir="/tmp")


def uri_for(root: str) -> str:
    return f"qemu+unix:///system?socket={root}/run/qemud/qemud-sock"


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   host: {os.cpu_count()} CPUs, load average {loadavg()} "
          f"(figures are noisy when the load is high)")


def proc_cpu_seconds(pid: int) -> float:
    """
    @return: utime + stime of C{pid} in seconds (0 when gone).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    """
    @return: VmRSS of C{pid} in KiB (0 when gone).
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def status_pids(root: str) -> dict[str, int]:
    """
    @return: domain name -> QEMU pid, from the status files below C{root}.
    """
    pids = {}
    for path in glob.glob(os.path.join(root, "run", "qemud", "qemu", "*.xml")):
        try:
            with open(path) as f:
                doc = json.load(f)
            pids[doc["name"]] = int(doc["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return pids


def qemu_pids_below(root: str) -> set[int]:
    """
    @return: pids of C{qemu-system-*} processes whose command line mentions C{root}.
    """
    found = set()
    needle = root.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"qemu-system" in cmdline.split(b"\0", 1)[0] and needle in cmdline:
            found.add(int(entry))
    return found


def kill_and_wait(pids: set[int], timeout: float = 10.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)


class Daemon:
    """
    A C{twistd -n qemud --root ROOT} subprocess.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.socket = os.path.join(root, "run", "qemud", "qemud-sock")
        self.uri = uri_for(root)
        self.proc: subprocess.Popen[bytes] | None = None
        self.old_pids: list[int] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        """
        Start the daemon (do not wait).
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([REPO, os.path.join(REPO, "clients")])
        env["LC_ALL"] = "C"
        # Like an installed daemon, load bytecode instead of compiling every
        # module at each start (written beside the sources on the first start).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        argv = [venv_python(), "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", f"--logfile={self.root}/qemud.log", "qemud",
                "--root", self.root]
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers(self) -> bool:
        """
        @return: whether the rw socket accepts a connection.
        """
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def wait_socket(self, timeout: float = 30.0) -> float:
        """
        @return: seconds waited until the socket accepted a connection.
        """
        t0 = time.monotonic()
        while not self.answers():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}; see "
                                   f"{self.root}/qemud.log")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("daemon socket did not answer")
            time.sleep(0.002)
        return time.monotonic() - t0

    def start(self) -> float:
        self.spawn()
        return self.wait_socket()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """
        Signal the daemon and reap it (SIGKILL after C{timeout}).
        """
        if self.proc is None:
            return
        try:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.old_pids.append(self.proc.pid)
        self.proc = None

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)


def cleanup(root: str, daemon: Daemon | None = None, clients: list[Client] = ()) -> int:
    """
    Kill clients, the daemon and every QEMU below C{root} by pid; remove C{root}.

    @return: how many QEMU processes were still alive (and were killed).
    """
    for client in clients:
        client.kill()
    if daemon is not None and daemon.proc is not None:
        daemon.proc.kill()
        daemon.proc.wait(10)
        daemon.proc = None
    pids = set(status_pids(root).values()) | qemu_pids_below(root)
    alive = {p for p in pids if pid_alive(p)}
    kill_and_wait(alive)
    shutil.rmtree(root, ignore_errors=True)
    return len(alive)


class Client:
    """
    One libvirt-python client process running C{_lvclient.py MODE ARGS}.

    It connects, prints READY, waits for L{go}, does its work, and prints
    one JSON line (L{result}).
    """

    def __init__(self, uri: str, mode: str, *args: Any) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("LIBVIRT_") and k != "PYTHONPATH"}
        env["LC_ALL"] = "C"
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, LVCLIENT, mode, uri, *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            self.proc.wait(timeout)
            raise RuntimeError(f"client failed before READY: {line!r}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 600.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.proc.wait(timeout)
        if not line:
            raise RuntimeError(f"client exited {self.proc.returncode} without a result")
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_clients(clients: list[Client]) -> list[dict[str, Any]]:
    """
    Wait until every client is READY, start them all, and collect their results.
    """
    for c in clients:
        c.wait_ready()
    for c in clients:
        c.go()
    return [c.result() for c in clients]


def pct(values: list[float], q: float) -> float:
    """
    @return: the C{q}-th percentile (0..100), nearest rank.
    """
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool, text: str) -> str:
    return f"VERDICT: {'PASS' if ok else 'FAIL'} - {text}"


def noos_xml_template(memory_mib: int = 64) -> str:
    """
    @return: the no-OS KVM guest's XML with C{@NAME@} where the name goes.
    """
    from tests.integration.guests import noos_guest_domain_xml

    return noos_guest_domain_xml("@NAME@", memory_mib=memory_mib)


def write_template(root: str, memory_mib: int = 64) -> str:
    path = os.path.join(root, "template.xml")
    with open(path, "w") as f:
        f.write(noos_xml_template(memory_mib))
    return path
