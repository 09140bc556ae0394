"""
Tests for L{qemud.daemon.paths}: the system, session and rooted layouts of
the README's "Running the daemon" table, and the directories (and modes)
L{DaemonPaths.create_dirs} makes.
"""

from __future__ import annotations

import os
import stat
import uuid

from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon.paths import DaemonPaths

UUID = "8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"

#: sun_path is 108 bytes including the terminating NUL.
SUN_PATH_MAX = 108


class SystemLayoutTests(SynchronousTestCase):
    """The system layout (root's default), as documented in the README."""

    def test_system_paths(self) -> None:
        """Every path of the system layout is libvirt's, with qemud in place of libvirt."""
        p = DaemonPaths.system()
        self.assertEqual(p, DaemonPaths(
            config_dir="/etc/qemud/qemu",
            autostart_dir="/etc/qemud/qemu/autostart",
            status_dir="/run/qemud/qemu",
            run_dir="/run/qemud",
            socket="/run/qemud/qemud-sock",
            socket_ro="/run/qemud/qemud-sock-ro",
            log_dir="/var/log/qemud/qemu",
            lib_dir="/var/lib/qemud",
            save_dir="/var/lib/qemud/save",
            cache_dir="/var/cache/qemud",
        ))

    def test_per_domain_files(self) -> None:
        """Logs, managed-save images and home directories are named after the domain."""
        p = DaemonPaths.system()
        self.assertEqual(p.log_file("vm1"), "/var/log/qemud/qemu/vm1.log")
        self.assertEqual(p.managed_save_file("vm1"), "/var/lib/qemud/save/vm1.save")
        self.assertEqual(p.domain_dir("vm1"), "/var/lib/qemud/domain-vm1")
        self.assertEqual(p.qmp_socket(UUID), f"/run/qemud/qmp/{UUID}.sock")

    def test_qmp_socket_short_for_longest_name(self) -> None:
        """
        A domain name may be 255 bytes, far over sun_path's 108; the QMP
        socket is named by UUID so its path stays short, and does not
        contain the name.
        """
        name = "n" * 255
        for p in (DaemonPaths.system(),
                  DaemonPaths.session({"HOME": "/home/someone", "XDG_RUNTIME_DIR": "/run/user/1000"}),
                  DaemonPaths.system("/tmp/qdabcdefgh")):
            path = p.qmp_socket(str(uuid.uuid4()))
            self.assertLess(len(os.fsencode(path)), SUN_PATH_MAX, path)
            self.assertNotIn(name, path)
            self.assertLess(len(os.fsencode(p.socket)), SUN_PATH_MAX)


class RootedLayoutTests(SynchronousTestCase):
    """C{--root DIR}: the system layout below DIR."""

    def test_every_path_below_root(self) -> None:
        """Each path is the system path with DIR in front."""
        root = "/tmp/qdroot"
        rooted = DaemonPaths.system(root)
        plain = DaemonPaths.system()
        for field in ("config_dir", "autostart_dir", "status_dir", "run_dir", "socket",
                      "socket_ro", "log_dir", "lib_dir", "save_dir"):
            value = getattr(rooted, field)
            self.assertEqual(value, root + getattr(plain, field), field)
        self.assertEqual(rooted.socket, "/tmp/qdroot/run/qemud/qemud-sock")
        self.assertEqual(rooted.config_dir, "/tmp/qdroot/etc/qemud/qemu")
        self.assertEqual(rooted.log_dir, "/tmp/qdroot/var/log/qemud/qemu")


class SessionLayoutTests(SynchronousTestCase):
    """The per-user layout from the XDG base directories."""

    def test_with_xdg_variables(self) -> None:
        """
        XDG_RUNTIME_DIR, XDG_CONFIG_HOME, XDG_STATE_HOME and XDG_CACHE_HOME
        are honoured.
        """
        p = DaemonPaths.session({"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000",
                                 "XDG_CONFIG_HOME": "/cfg", "XDG_STATE_HOME": "/state",
                                 "XDG_CACHE_HOME": "/cache"})
        self.assertEqual(p, DaemonPaths(
            config_dir="/cfg/qemud/qemu",
            autostart_dir="/cfg/qemud/qemu/autostart",
            status_dir="/run/user/1000/qemud/qemu",
            run_dir="/run/user/1000/qemud",
            socket="/run/user/1000/qemud/qemud-sock",
            socket_ro=None,
            log_dir="/state/qemud/log",
            lib_dir="/state/qemud/lib",
            save_dir="/state/qemud/lib/save",
            cache_dir="/cache/qemud",
        ))

    def test_without_xdg_variables(self) -> None:
        """
        Without XDG variables: ~/.config, ~/.local/state, and the socket at
        ~/.qemud.d/sock (no runtime directory).
        """
        p = DaemonPaths.session({"HOME": "/home/u"})
        self.assertEqual(p.config_dir, "/home/u/.config/qemud/qemu")
        self.assertEqual(p.log_dir, "/home/u/.local/state/qemud/log")
        self.assertEqual(p.lib_dir, "/home/u/.local/state/qemud/lib")
        self.assertEqual(p.run_dir, "/home/u/.qemud.d")
        self.assertEqual(p.socket, "/home/u/.qemud.d/sock")
        self.assertEqual(p.status_dir, "/home/u/.qemud.d/qemu")
        self.assertIsNone(p.socket_ro)

    def test_empty_variables_are_unset(self) -> None:
        """An empty XDG variable counts as unset, as the XDG spec says."""
        p = DaemonPaths.session({"HOME": "/home/u", "XDG_RUNTIME_DIR": "",
                                 "XDG_CONFIG_HOME": "", "XDG_STATE_HOME": ""})
        self.assertEqual(p, DaemonPaths.session({"HOME": "/home/u"}))

    def test_no_read_only_socket(self) -> None:
        """A session daemon has no read-only socket, whatever the environment."""
        self.assertIsNone(DaemonPaths.session({"HOME": "/h", "XDG_RUNTIME_DIR": "/r"}).socket_ro)


class CreateDirsTests(SynchronousTestCase):
    """L{DaemonPaths.create_dirs}: what is created, with which modes."""

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.paths = DaemonPaths.system(self.root)

    def with_umask(self, mask: int) -> None:
        old = os.umask(mask)
        self.addCleanup(os.umask, old)

    def mode(self, path: str) -> int:
        return stat.S_IMODE(os.stat(path).st_mode)

    def private_dirs(self) -> list[str]:
        p = self.paths
        return [p.config_dir, p.autostart_dir, p.status_dir, p.log_dir, p.lib_dir,
                p.save_dir, os.path.join(p.run_dir, "qmp")]

    def test_creates_every_directory(self) -> None:
        """Every directory of the layout exists afterwards; running it again is harmless."""
        self.with_umask(0o022)
        self.paths.create_dirs()
        self.paths.create_dirs()
        for path in self.private_dirs() + [self.paths.run_dir]:
            self.assertTrue(os.path.isdir(path), path)

    def test_modes(self) -> None:
        """Private directories are 0700; the socket directory is 0755 so clients reach it."""
        self.with_umask(0o022)
        self.paths.create_dirs()
        for path in self.private_dirs():
            self.assertEqual(self.mode(path), 0o700, path)
        self.assertEqual(self.mode(self.paths.run_dir), 0o755)

    def test_socket_dir_mode_independent_of_umask(self) -> None:
        """
        twistd without C{-n} sets umask 0077; the socket directory must still
        be 0755, or other users cannot reach the 0666 read-only socket.
        """
        self.with_umask(0o077)
        self.paths.create_dirs()
        for path in self.private_dirs():
            self.assertEqual(self.mode(path), 0o700, path)
        self.assertEqual(self.mode(self.paths.run_dir), 0o755)
