"""
The session daemon run by an unprivileged user (C{nobody}), as a user who
installed qemud with pip would run it: it serves the real virsh, starts a
guest (under TCG: C{/dev/kvm} may be closed to the user) whose QEMU runs as
that user, describes the host (CPUID read without C{/dev/cpu}), and stops.

The test is run as root, which it needs to become C{nobody} (C{runuser});
everything it starts is killed by PID at the end.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.integration.daemon import (
    REPO,
    SYSTEM_PYTHON,
    VIRSH,
    qemu_pids_below,
    require_tools,
    terminate,
    virsh_ok,
    wait_until,
)
from tests.integration.guests import noos_guest_domain_xml

USER = "nobody"
RUNUSER = "/usr/sbin/runuser"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")


def _runs_as_user(argv: list[str], env: dict[str, str]) -> bool:
    """@return: whether C{argv} exits 0 when run as L{USER}."""
    proc = subprocess.run([RUNUSER, "-p", "-u", USER, "--", *argv], env=env, cwd="/",
                          capture_output=True, timeout=60)
    return proc.returncode == 0


def _user_python(env: dict[str, str]) -> tuple[str, list[str]]:
    """
    An interpreter L{USER} can run with qemud's dependencies: this venv's
    own when the user can reach it; else Debian's C{python3} (the same
    3.x) given the venv's site-packages (a venv made by an interpreter
    under C{/root} cannot be run by others).

    @return: (interpreter, extra C{PYTHONPATH} entries).
    """
    probe = ["-c", "import twisted, xmltodict, OpenSSL"]
    if _runs_as_user([sys.executable, *probe], env):
        return sys.executable, []
    site = sysconfig.get_paths()["purelib"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                            capture_output=True, text=True, timeout=30).stdout.strip()
    if system == version and _runs_as_user(
            [SYSTEM_PYTHON, *probe], {**env, "PYTHONPATH": site}):
        return SYSTEM_PYTHON, [site]
    pytest.fail(f"no interpreter with qemud's dependencies that {USER} can run")


class UserDaemon:
    """
    C{twistd -n qemud --session} as L{USER}, its home and runtime directory
    in a fresh folder below C{/tmp} owned by that user.
    """

    def __init__(self) -> None:
        entry = pwd.getpwnam(USER)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.home = tempfile.mkdtemp(prefix="qdu", dir="/tmp")
        os.chmod(self.home, 0o700)
        os.chown(self.home, self.uid, self.gid)
        self.runtime = os.path.join(self.home, "run")
        self.socket = os.path.join(self.runtime, "qemud", "qemud-sock")
        self.uri = f"qemu+unix:///session?socket={self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """@return: the user's environment: home, runtime dir, C locale."""
        return {"HOME": self.home, "XDG_RUNTIME_DIR": self.runtime, "LC_ALL": "C",
                "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}

    def start(self) -> None:
        """Start the daemon as the user; wait (30 s at most) for its socket."""
        env = self.env()
        os.makedirs(self.runtime, mode=0o700)
        os.chown(self.runtime, self.uid, self.gid)
        python, site = _user_python(env)
        env["PYTHONPATH"] = os.pathsep.join([REPO, os.path.join(REPO, "clients"), *site])
        self.proc = proc = subprocess.Popen(
            [RUNUSER, "-p", "-u", USER, "--", python, "-c",
             "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             f"--logfile={self.home}/qemud.log", "qemud", "--session"],
            env=env, cwd=self.home, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        wait_until(lambda: os.path.exists(self.socket) or proc.poll() is not None, 30,
                   message="the user's daemon socket")
        assert proc.poll() is None, f"daemon exited:\n{self.log()}"

    def log(self) -> str:
        """@return: the end of the daemon's log."""
        try:
            with open(os.path.join(self.home, "qemud.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Kill by PID the daemon (through runuser) and its QEMUs; remove the folder."""
        terminate(self.proc)
        for pid in qemu_pids_below(self.home):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def user_daemon() -> Iterator[UserDaemon]:
    """A session daemon running as L{USER}, cleaned up afterwards."""
    require_tools(VIRSH, RUNUSER)
    daemon = UserDaemon()
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()


def _uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def test_session_daemon_as_user(user_daemon: UserDaemon) -> None:
    """
    As C{nobody}, the session daemon writes only below the user's home,
    starts a guest whose QEMU runs as C{nobody}, lists it running, reports
    the host's CPU model (CPUID read by the instruction, in a child
    process) and the C{dac} label of the user, and destroys the guest.
    """
    xml = noos_guest_domain_xml("mine", domain_type="qemu")
    path = os.path.join(user_daemon.home, "mine.xml")
    with open(path, "w") as f:
        f.write(xml)
    virsh_ok(user_daemon.uri, "define", path)
    virsh_ok(user_daemon.uri, "start", "mine")
    assert "running" in virsh_ok(user_daemon.uri, "domstate", "mine")
    pids = qemu_pids_below(user_daemon.home)
    assert len(pids) == 1, pids
    assert _uid_of(pids.pop()) == user_daemon.uid
    assert user_daemon.proc is not None
    runuser = user_daemon.proc.pid
    with open(f"/proc/{runuser}/task/{runuser}/children") as f:
        daemon_pids = [int(p) for p in f.read().split()]  # runuser's child: the daemon
    assert [_uid_of(p) for p in daemon_pids] == [user_daemon.uid]
    caps = ET.fromstring(virsh_ok(user_daemon.uri, "capabilities", timeout=60))
    if os.path.exists("/usr/share/libvirt/cpu_map"):
        assert caps.findtext("host/cpu/model"), "no CPU model decoded as the user"
    labels = {b.get("type"): b.text for b in caps.iter("baselabel")}
    assert labels.get("qemu") == f"+{user_daemon.uid}:+{user_daemon.gid}"
    config = os.path.join(user_daemon.home, ".config", "qemud", "qemu", "mine.xml")
    assert os.stat(config).st_uid == user_daemon.uid
    virsh_ok(user_daemon.uri, "destroy", "mine")
    assert "shut off" in virsh_ok(user_daemon.uri, "domstate", "mine")
