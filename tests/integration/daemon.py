"""
Run a real C{twistd -n qemud --root DIR} for integration tests, and drive it
with the real C{virsh}.

 - L{DaemonProcess}: start the daemon in a private root below C{/tmp} (UNIX
   socket paths must stay under 108 bytes), wait (bounded) for its sockets,
   stop it with a signal (bounded; SIGKILL after a timeout), restart it, and
   clean up: kill by PID the daemon and every QEMU it started (guests outlive
   a daemon stop by design), then remove the root.
 - L{virsh}: run C{/usr/bin/virsh -c URI ...} with C{LC_ALL=C} and no
   C{LIBVIRT_DEFAULT_URI}, bounded.
 - L{free_tcp_port}, L{wait_until}, L{qemu_pids_below}, L{terminate}.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pytest

#: The real virsh (Debian package libvirt-clients).
VIRSH = "/usr/bin/virsh"

#: The libvirt-python interpreter (Debian package python3-libvirt).
SYSTEM_PYTHON = "/usr/bin/python3"

#: Where the libvirt-python client scripts live.
CLIENTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients")

_TWISTD = ("import sys; from twisted.scripts.twistd import run; "
           "sys.argv[0] = 'twistd'; run()")

T = TypeVar("T")

#: Daemons started and not yet cleaned up (their logs are printed when a
#: test fails, by the L{daemon_logs_on_failure} fixture).
ACTIVE: list[DaemonProcess] = []


def require_tools(*paths: str) -> None:
    """
    Skip (fail in CI) when one of the given programs is missing.

    @param paths: absolute paths of required programs.
    """
    packages = {VIRSH: "libvirt-clients", SYSTEM_PYTHON: "python3"}
    for path in paths:
        if not os.access(path, os.X_OK):
            message = f"{path} not found: apt-get install {packages.get(path, path)}"
            if os.environ.get("CI"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)


def require_libvirt_python() -> None:
    """
    Skip (fail in CI) unless C{/usr/bin/python3} can import C{libvirt}.
    """
    require_tools(SYSTEM_PYTHON)
    proc = subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True,
                          timeout=30, env=clean_env())
    if proc.returncode != 0:
        message = "python3-libvirt missing: apt-get install python3-libvirt"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


#: The checkout this file belongs to, and its client package folder.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SOURCE_PATHS = [REPO, os.path.join(REPO, "clients")]


def daemon_env() -> dict[str, str]:
    """
    @return: the daemon's environment: ours, with the source tree first on
        C{PYTHONPATH} (so the working tree runs, not an installed copy).
    """
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in _SOURCE_PATHS]
    env["PYTHONPATH"] = os.pathsep.join(_SOURCE_PATHS + rest)
    env["LC_ALL"] = "C"
    return env


def clean_env(**extra: str) -> dict[str, str]:
    """
    @param extra: variables to add.
    @return: an environment for libvirt clients: C{LC_ALL=C}, no
        C{LIBVIRT_DEFAULT_URI}, no venv C{PYTHONPATH}.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LIBVIRT_") and k not in ("PYTHONPATH", "VIRSH_DEFAULT_CONNECT_URI")}
    env["LC_ALL"] = "C"
    env.update(extra)
    return env


def virsh(uri: str, *args: str, timeout: float = 30, readonly: bool = False,
          input: str | None = None) -> subprocess.CompletedProcess[str]:
    """
    Run the real virsh against C{uri}.

    @param uri: the connection URI.
    @param args: the virsh command and its arguments.
    @param timeout: seconds before the run counts as hung (TimeoutExpired).
    @param readonly: pass C{-r}.
    @return: the completed process (text stdout/stderr).
    """
    argv = [VIRSH, "-c", uri]
    if readonly:
        argv.append("-r")
    argv.extend(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=clean_env(), input=input)


def virsh_ok(uri: str, *args: str, timeout: float = 30) -> str:
    """
    Run virsh and insist it succeeds.

    @return: its stdout.
    @raise AssertionError: on a non-zero exit, with both streams.
    """
    proc = virsh(uri, *args, timeout=timeout)
    assert proc.returncode == 0, (
        f"virsh {' '.join(args)} exited {proc.returncode}\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.stdout


def free_tcp_port() -> int:
    """
    @return: a TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05,
               message: str = "condition") -> T:
    """
    Poll C{predicate} until it returns something true, bounded.

    @return: the first true value.
    @raise TimeoutError: after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout} s")
        time.sleep(interval)


def terminate(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
              timeout: float = 15.0) -> None:
    """
    Send C{sig} to a child still running and reap it; SIGKILL it after
    C{timeout} seconds.
    """
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def pid_alive(pid: int) -> bool:
    """
    @return: whether a process with this pid exists and is not a zombie.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _read_proc(pid: int, what: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def qemu_pids_below(root: str) -> set[int]:
    """
    Find QEMU processes that belong to a daemon root, by scanning /proc for
    C{qemu-system-*} processes whose command line or environment mentions
    the root path (their C{HOME}, log and socket paths live there).

    @param root: the daemon's root directory.
    @return: their pids.
    """
    needle = root.encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        cmdline = _read_proc(pid, "cmdline")
        argv0 = cmdline.split(b"\0", 1)[0]
        if b"qemu-system" not in os.path.basename(argv0):
            continue
        if needle in cmdline or needle in _read_proc(pid, "environ"):
            found.add(pid)
    return found


def qemu_pid_of(root: str, name: str) -> int | None:
    """
    @return: the pid of the QEMU running domain C{name} under C{root}
        (from C{-name guest=NAME}), or C{None}.
    """
    for pid in qemu_pids_below(root):
        args = _read_proc(pid, "cmdline").split(b"\0")
        for i, arg in enumerate(args[:-1]):
            if arg == b"-name":
                value = args[i + 1].decode(errors="replace")
                first = value.split(",", 1)[0]
                if first in (name, "guest=" + name):
                    return pid
    return None


def _status_pids(status_dir: str) -> set[int]:
    pids = set()
    try:
        names = os.listdir(status_dir)
    except OSError:
        return pids
    for entry in names:
        if not entry.endswith(".xml"):
            continue
        try:
            with open(os.path.join(status_dir, entry), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        try:
            pid = json.loads(text).get("pid")
        except ValueError:
            continue
        if isinstance(pid, int):
            pids.add(pid)
    return pids


def kill_pids(pids: Iterable[int], grace: float = 3.0) -> None:
    """
    TERM each process, then KILL the ones still alive after C{grace} s.

    @param pids: the processes; each must be one this test started or one
        that its daemon started.
    """
    pids = [p for p in pids if p > 1 and p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)


def socket_accepts(path: str) -> bool:
    """
    @return: whether a UNIX stream socket at C{path} accepts a connection.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def tcp_accepts(host: str, port: int) -> bool:
    """
    @return: whether C{host:port} accepts a TCP connection.
    """
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class DaemonProcess:
    """
    One C{twistd -n qemud --root ROOT} process.

    Use as a context manager, or call L{start} and L{cleanup}.

    @ivar root: the daemon's root directory (below /tmp).
    @ivar socket: the read-write UNIX socket.
    @ivar socket_ro: the read-only UNIX socket (C{None} in session mode).
    @ivar session: whether the daemon runs with C{--session}.
    @ivar tcp_ports: the ports given with C{--listen-tcp 127.0.0.1:PORT}.
    @ivar proc: the running daemon, or C{None}.
    @ivar known_qemu_pids: every QEMU pid ever seen belonging to this root.
    """

    def __init__(self, *extra: str, session: bool = False, tcp_port: int | None = None,
                 root: str | None = None, start_timeout: float = 20.0) -> None:
        """
        @param extra: more options for C{qemud} (after C{--root}).
        @param session: run with C{--session} (no read-only socket).
        @param tcp_port: also listen with plain TCP on 127.0.0.1:PORT.
        @param root: an existing root to reuse; a fresh one otherwise.
        @param start_timeout: seconds allowed for the sockets to appear.
        """
        self.root = root or tempfile.mkdtemp(prefix="qd", dir="/tmp")
        self.session = session
        self.extra = list(extra)
        self.tcp_ports: list[int] = []
        if tcp_port is not None:
            self.tcp_ports.append(tcp_port)
        self.start_timeout = start_timeout
        run = os.path.join(self.root, "run", "qemud")
        self.socket = os.path.join(run, "qemud-sock")
        self.socket_ro: str | None = None if session else os.path.join(run, "qemud-sock-ro")
        self.status_dir = os.path.join(run, "qemu")
        self.config_dir = os.path.join(self.root, "etc", "qemud", "qemu")
        self.log_dir = os.path.join(self.root, "var", "log", "qemud", "qemu")
        self.log_path = os.path.join(self.root, "qemud.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.known_qemu_pids: set[int] = set()
        self._stdout: Any = None
        ACTIVE.append(self)

    # -- addresses ---------------------------------------------------------

    @property
    def uri(self) -> str:
        """The read-write URI for virsh (system or session)."""
        kind = "session" if self.session else "system"
        return f"qemu+unix:///{kind}?socket={self.socket}"

    @property
    def ro_uri(self) -> str:
        """The URI of the read-only socket."""
        assert self.socket_ro is not None, "no read-only socket in session mode"
        return f"qemu+unix:///system?socket={self.socket_ro}"

    def tcp_uri(self, port: int | None = None) -> str:
        """
        @param port: the TCP port (default: the first C{--listen-tcp} one).
        @return: C{qemu+tcp://127.0.0.1:PORT/system}.
        """
        if port is None:
            port = self.tcp_ports[0]
        kind = "session" if self.session else "system"
        return f"qemu+tcp://127.0.0.1:{port}/{kind}"

    def guest_log(self, name: str) -> str:
        """@return: the path of a guest's QEMU log."""
        return os.path.join(self.log_dir, name + ".log")

    # -- process -----------------------------------------------------------

    def argv(self) -> list[str]:
        """@return: the daemon's command line."""
        argv = [sys.executable, "-c", _TWISTD, "--nodaemon", "--pidfile=",
                f"--logfile={self.log_path}", "qemud", "--root", self.root]
        argv.append("--session" if self.session else "--system")
        for port in self.tcp_ports:
            argv.append(f"--listen-tcp=127.0.0.1:{port}")
        return argv + self.extra

    def start(self) -> DaemonProcess:
        """
        Start the daemon and wait (bounded) until its sockets accept.

        @return: C{self}.
        @raise RuntimeError: when it exits or does not listen in time.
        """
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._stdout = open(os.path.join(self.root, "twistd.out"), "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._stdout, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.root,
                                     env=daemon_env())
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qemud exited with {self.proc.returncode} at start:\n"
                                   f"{self.log_tail()}")
            ready = socket_accepts(self.socket)
            if ready and self.socket_ro is not None:
                ready = socket_accepts(self.socket_ro)
            if ready:
                ready = all(tcp_accepts("127.0.0.1", p) for p in self.tcp_ports)
            if ready:
                return self
            if time.monotonic() >= deadline:
                raise RuntimeError(f"qemud did not listen within {self.start_timeout} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        """The daemon's pid."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """@return: whether the daemon process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """
        Send C{sig} and wait for the daemon to exit; SIGKILL it after
        C{timeout} seconds (the test then fails on the exit code).

        @return: the exit code (negative: killed by that signal).
        """
        assert self.proc is not None
        self.remember_qemus()
        terminate(self.proc, sig, timeout)
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
        return self.proc.returncode

    def restart(self, sig: int = signal.SIGTERM) -> int:
        """
        Stop the daemon with C{sig}, then start it again on the same root.

        @return: the exit code of the stopped daemon.
        """
        code = self.stop(sig)
        self.start()
        return code

    def remember_qemus(self) -> set[int]:
        """
        Record the QEMU pids currently belonging to this root (status files
        and /proc), so cleanup can kill them.

        @return: the live ones.
        """
        found = qemu_pids_below(self.root)
        for pid in _status_pids(self.status_dir):
            if pid_alive(pid) and b"qemu" in _read_proc(pid, "cmdline").split(b"\0", 1)[0]:
                found.add(pid)
        self.known_qemu_pids |= found
        return found

    def cleanup(self) -> None:
        """
        Kill the daemon and every QEMU of this root by PID, and remove the
        root.
        """
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.stop(signal.SIGKILL, timeout=10)
        finally:
            self.remember_qemus()
            kill_pids({p for p in self.known_qemu_pids if pid_alive(p)})
            shutil.rmtree(self.root, ignore_errors=True)
            if self in ACTIVE:
                ACTIVE.remove(self)

    def __enter__(self) -> DaemonProcess:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.print_log_tail()
        self.cleanup()

    # -- logs --------------------------------------------------------------

    def log_text(self) -> str:
        """@return: the daemon's log (and its stdout/stderr) so far."""
        parts = []
        for path in (self.log_path, os.path.join(self.root, "twistd.out")):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    parts.append(f.read())
            except OSError:
                pass
        return "".join(parts)

    def log_tail(self, lines: int = 60) -> str:
        """@return: the last lines of L{log_text}."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def print_log_tail(self, lines: int = 60) -> None:
        """Print the end of the daemon log (pytest shows it on failure)."""
        sys.stdout.write(f"\n----- qemud log tail ({self.root}) -----\n{self.log_tail(lines)}\n")

    # -- helpers -----------------------------------------------------------

    def define(self, xml: str, name: str) -> str:
        """
        Write C{xml} to a file below the root and C{virsh define} it.

        @return: the file's path.
        """
        path = os.path.join(self.root, name + ".xml")
        with open(path, "w") as f:
            f.write(xml)
        virsh_ok(self.uri, "define", path)
        return path

    def domstate(self, name: str, reason: bool = True) -> str:
        """@return: C{virsh domstate [--reason] NAME}, stripped."""
        args = ["domstate", "--reason", name] if reason else ["domstate", name]
        return virsh_ok(self.uri, *args).strip()

    def wait_state(self, name: str, expected: str, timeout: float = 30.0) -> str:
        """
        Poll C{domstate --reason} until it equals C{expected} (bounded).
        """
        last = [""]

        def check() -> bool:
            proc = virsh(self.uri, "domstate", "--reason", name)
            last[0] = proc.stdout.strip() or proc.stderr.strip()
            return last[0] == expected

        try:
            wait_until(check, timeout, interval=0.2, message=f"domstate {expected!r}")
        except TimeoutError:
            raise AssertionError(f"{name}: state {last[0]!r}, expected {expected!r} "
                                 f"within {timeout} s") from None
        return last[0]


def failed_count(request: Any) -> int:
    """
    @param request: pytest's C{request} fixture.
    @return: how many tests of this session have failed so far; compare the
        value before and after C{yield} in a fixture to know whether the
        test that used it failed.
    """
    return int(request.session.testsfailed)


@pytest.fixture(autouse=True)
def daemon_logs_on_failure(request: Any) -> Any:
    """
    Autouse fixture (import it into a test module): when a test fails,
    print the log tail of every daemon still running.
    """
    before = failed_count(request)
    yield
    if failed_count(request) > before:
        for daemon in list(ACTIVE):
            daemon.print_log_tail()


def daemon_fixture(request: Any, *args: Any, **kwargs: Any) -> Any:
    """
    A generator for pytest fixtures: start a L{DaemonProcess}, yield it,
    print its log tail if the test failed, clean up.
    """
    before = failed_count(request)
    daemon = DaemonProcess(*args, **kwargs)
    with daemon:
        yield daemon
        if request.scope == "function" and failed_count(request) > before:
            daemon.print_log_tail()


def trace_output(name: str) -> str:
    """
    The exact output libvirtd's virsh printed for a wire trace.

    @param name: a file of C{shared/wire-traces/}, e.g. C{"dominfo-running.txt"}.
    @return: the text after C{# virsh output:} (or C{# script output:}),
        with the C{#   } prefix removed, one line per line.
    """
    from tests.shared import require_shared

    path = os.path.join(require_shared("wire-traces"), name)
    lines: list[str] = []
    inside = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line in ("# virsh output:", "# script output:"):
                inside = True
                continue
            if inside:
                if not line.startswith("#   ") and line != "#":
                    if line.startswith("# ") and not line.startswith("#  "):
                        break
                lines.append(line[4:])
    return "\n".join(lines) + "\n"


def event_lines(path: str) -> list[str]:
    """
    @param path: a file that C{virsh event} writes to.
    @return: its C{event ...} lines, without timestamps.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        idx = line.find("event '")
        if idx >= 0:
            found.append(line[idx:])
    return found
