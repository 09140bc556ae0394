"""
Tests for L{qemud.daemon.fsutil} and L{qemud.daemon.store}: atomic writes
(crash and full-disk safety), config and status round trips, skipping
unreadable files, autostart links and leftover temporary files.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon import fsutil
from qemud.daemon.fsutil import atomic_write, is_temp_name, remove_stale_temp_files
from qemud.daemon.store import DomainStore, check_name
from qemud.errors import HostSystemError, InvalidArgError

XML_A = "<domain type='kvm'><name>a</name></domain>\n"
XML_B = "<domain type='kvm'><name>a</name><memory>1</memory></domain>\n"


class AtomicWriteTests(SynchronousTestCase):
    """L{atomic_write}."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, "f.xml")

    def test_writes_with_mode(self) -> None:
        """
        The file gets the data and exactly the requested mode (whatever the
        umask), and no temporary file is left.
        """
        old = os.umask(0o077)
        try:
            atomic_write(self.path, b"hello", mode=0o640)
        finally:
            os.umask(old)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"hello")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(os.listdir(self.dir), ["f.xml"])

    def test_replaces(self) -> None:
        """
        Writing again replaces the whole contents (a shorter file is not
        padded with the old tail); the default mode is 0600.
        """
        atomic_write(self.path, b"a long first version")
        atomic_write(self.path, b"short")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"short")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_crash_before_rename(self) -> None:
        """
        A failure between writing the temporary file and renaming it leaves
        the old file intact, removes the temporary file and raises
        L{HostSystemError} naming the path and the errno text.
        """
        atomic_write(self.path, b"old")

        def fail(src: str, dst: str) -> None:
            self.assertTrue(os.path.exists(src))
            with open(src, "rb") as f:
                self.assertEqual(f.read(), b"new")
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        self.patch(os, "replace", fail)
        err = self.assertRaises(HostSystemError, atomic_write, self.path, b"new")
        self.assertIn(self.path, err.message)
        self.assertIn(os.strerror(errno.EIO), err.message)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(self.dir), ["f.xml"])

    def test_interrupt_cleans_up(self) -> None:
        """
        A non-OS exception (e.g. KeyboardInterrupt) during the write still
        removes the temporary file and propagates unchanged.
        """
        def boom(fd: int) -> None:
            raise KeyboardInterrupt()

        self.patch(os, "fsync", boom)
        self.assertRaises(KeyboardInterrupt, atomic_write, self.path, b"x")
        self.assertEqual(os.listdir(self.dir), [])

    def test_missing_directory(self) -> None:
        """
        A path in a missing directory is a L{HostSystemError} naming it.
        """
        path = os.path.join(self.dir, "nope", "f.xml")
        err = self.assertRaises(HostSystemError, atomic_write, path, b"x")
        self.assertIn(path, err.message)
        self.assertIn("No such file or directory", err.message)

    def test_stale_temp_files(self) -> None:
        """
        L{remove_stale_temp_files} deletes only files named like
        L{atomic_write}'s temporary files.
        """
        atomic_write(self.path, b"keep")
        stale = fsutil.temp_name(self.path)
        with open(stale, "w") as f:
            f.write("half")
        other = os.path.join(self.dir, ".hidden")
        with open(other, "w") as f:
            f.write("mine")
        self.assertTrue(is_temp_name(os.path.basename(stale)))
        self.assertEqual(remove_stale_temp_files(self.dir), [stale])
        self.assertEqual(sorted(os.listdir(self.dir)), [".hidden", "f.xml"])
        self.assertEqual(remove_stale_temp_files(os.path.join(self.dir, "missing")), [])


class FullDiskTests(SynchronousTestCase):
    """L{atomic_write} on a real, full filesystem (a tiny tmpfs; needs root)."""

    def setUp(self) -> None:
        self.mnt = os.path.abspath(self.mktemp())
        os.mkdir(self.mnt)
        if os.geteuid() != 0:
            raise self.skipTest("mounting a tmpfs needs root")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", self.mnt],
                              capture_output=True, timeout=30)
        if proc.returncode != 0:
            raise self.skipTest(f"cannot mount a tmpfs: {proc.stderr.decode().strip()}")
        self.addCleanup(subprocess.run, ["umount", self.mnt], capture_output=True, timeout=30)

    def test_enospc_keeps_old_config(self) -> None:
        """
        When the disk fills up mid-write, the old config stays intact, no
        temporary file is left, and the error names the file and ENOSPC.
        """
        store = DomainStore(os.path.join(self.mnt, "qemu"), os.path.join(self.mnt, "run"))
        store.save_config("a", XML_A)
        err = self.assertRaises(HostSystemError, store.save_config, "a", "x" * 200_000)
        path = store.config_path("a")
        self.assertIn(path, err.message)
        self.assertIn(os.strerror(errno.ENOSPC), err.message)
        self.assertEqual(store.load_configs(), ([("a", XML_A)], []))
        self.assertEqual(os.listdir(store.config_dir), ["a.xml"])


class DomainStoreTests(SynchronousTestCase):
    """L{DomainStore}."""

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        self.store = DomainStore(os.path.join(base, "etc", "qemu"),
                                 os.path.join(base, "run", "qemu"))
        self.problems: list[tuple[str, str]] = []


    def test_configs_are_fsynced_status_files_are_not(self) -> None:
        """
        A config must survive a power loss, so its file and directory are
        fsynced; a status file describes QEMU processes that a power loss
        ends too, so it is only replaced atomically (no fsync on the
        reactor's hot path).
        """
        synced: list[int] = []
        real_fsync = os.fsync
        self.patch(fsutil.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
        self.store.save_config("vm1", "<domain/>")
        self.assertEqual(len(synced), 2)
        del synced[:]
        self.store.save_status("vm1", b"{}")
        self.assertEqual(synced, [])
        self.assertEqual(self.store.load_statuses(), [("vm1", b"{}")])
    def report(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    def test_configs_round_trip(self) -> None:
        """
        Saved configs come back sorted by name, replaced ones with the new
        text; the directory is made mode 0700 on first use.
        """
        self.assertEqual(self.store.load_configs(), ([], []))
        self.store.save_config("b", XML_B)
        self.store.save_config("a", XML_B)
        self.store.save_config("a", XML_A)
        self.assertEqual(self.store.load_configs(), ([("a", XML_A), ("b", XML_B)], []))
        self.assertEqual(stat.S_IMODE(os.stat(self.store.config_dir).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.store.config_path("a")).st_mode), 0o600)

    def test_unicode(self) -> None:
        """
        Non-ASCII XML text is stored as UTF-8 and read back unchanged.
        """
        text = "<domain><description>caf\u00e9 \u2603</description></domain>"
        self.store.save_config("u", text)
        self.assertEqual(self.store.load_configs(), ([("u", text)], []))

    def test_remove_config(self) -> None:
        """
        Removing a config deletes it and its autostart link; removing a
        missing one reports C{False}.
        """
        self.store.save_config("a", XML_A)
        self.store.set_autostart("a", True)
        self.assertTrue(self.store.remove_config("a"))
        self.assertFalse(self.store.remove_config("a"))
        self.assertEqual(self.store.load_configs(), ([], []))
        self.assertFalse(os.path.lexists(self.store.autostart_path("a")))

    def test_statuses(self) -> None:
        """
        Status documents are bytes, kept apart from the configs.
        """
        self.store.save_status("a", b"<domstatus pid='1'/>")
        self.store.save_config("c", XML_A)
        self.assertEqual(self.store.load_statuses(), [("a", b"<domstatus pid='1'/>")])
        self.assertEqual([n for n, _ in self.store.load_configs()[0]], ["c"])
        self.assertTrue(self.store.remove_status("a"))
        self.assertFalse(self.store.remove_status("a"))
        self.assertEqual(self.store.load_statuses(), [])

    def test_unreadable_skipped(self) -> None:
        """
        Files that cannot be read (a directory, a dangling link, bad UTF-8,
        empty) are skipped and reported with their path; the good ones load.
        """
        self.store.save_config("good", XML_A)
        cdir = self.store.config_dir
        os.mkdir(os.path.join(cdir, "dir.xml"))
        os.symlink("/nonexistent/x.xml", os.path.join(cdir, "dangling.xml"))
        with open(os.path.join(cdir, "latin1.xml"), "wb") as f:
            f.write(b"<domain>\xe9</domain>")
        open(os.path.join(cdir, "empty.xml"), "w").close()
        with open(os.path.join(cdir, "notes.txt"), "w") as f:
            f.write("ignored: not .xml")
        configs, problems = self.store.load_configs()
        self.assertEqual(configs, [("good", XML_A)])
        reasons = dict(problems)
        self.assertEqual(sorted(reasons), sorted(os.path.join(cdir, n) for n in
                                                 ("dir.xml", "dangling.xml", "latin1.xml",
                                                  "empty.xml")))
        self.assertIn("Is a directory", reasons[os.path.join(cdir, "dir.xml")])
        self.assertIn("No such file", reasons[os.path.join(cdir, "dangling.xml")])
        self.assertIn("UTF-8", reasons[os.path.join(cdir, "latin1.xml")])
        self.assertIn("empty", reasons[os.path.join(cdir, "empty.xml")])

    def test_bad_file_names_skipped(self) -> None:
        """
        A file whose name is not a valid domain name (hidden) is skipped and
        reported, never loaded.
        """
        self.store.save_status("ok", b"s")
        with open(os.path.join(self.store.status_dir, ".hidden.xml"), "wb") as f:
            f.write(b"s")
        self.assertEqual(self.store.load_statuses(self.report), [("ok", b"s")])
        self.assertEqual([p for p, _ in self.problems],
                         [os.path.join(self.store.status_dir, ".hidden.xml")])

    def test_leftover_temp_files_cleaned(self) -> None:
        """
        Temporary files from a crashed write are removed at load and never
        returned as configs or statuses.
        """
        self.store.save_config("a", XML_A)
        self.store.save_status("a", b"s")
        leftovers = [fsutil.temp_name(self.store.config_path("a")),
                     fsutil.temp_name(self.store.status_path("a"))]
        for path in leftovers:
            with open(path, "w") as f:
                f.write("<dom")
        self.assertEqual(self.store.load_configs(), ([("a", XML_A)], []))
        self.assertEqual(self.store.load_statuses(self.report), [("a", b"s")])
        self.assertEqual(self.problems, [])
        for path in leftovers:
            self.assertFalse(os.path.exists(path))

    def test_autostart_links(self) -> None:
        """
        Autostart is a relative symlink C{autostart/NAME.xml -> ../NAME.xml},
        as libvirt keeps it; enabling twice and disabling a missing link are
        harmless.
        """
        self.store.save_config("a", XML_A)
        self.store.save_config("b", XML_A)
        self.assertEqual(self.store.autostart_names(), set())
        self.store.set_autostart("a", True)
        self.store.set_autostart("a", True)
        link = self.store.autostart_path("a")
        self.assertEqual(link, os.path.join(self.store.config_dir, "autostart", "a.xml"))
        self.assertEqual(os.readlink(link), "../a.xml")
        self.assertEqual(self.store.autostart_names(), {"a"})
        self.store.set_autostart("b", True)
        self.store.set_autostart("a", False)
        self.store.set_autostart("a", False)
        self.assertEqual(self.store.autostart_names(), {"b"})
        self.assertEqual(sorted(os.listdir(self.store.autostart_dir)), ["b.xml"])

    def test_autostart_without_config(self) -> None:
        """
        A link whose definition is gone (or a stray file) does not count.
        """
        self.store.save_config("a", XML_A)
        self.store.set_autostart("a", True)
        os.unlink(self.store.config_path("a"))
        with open(os.path.join(self.store.autostart_dir, "stray.xml"), "w") as f:
            f.write(XML_A)
        self.assertEqual(self.store.autostart_names(), set())

    def test_separate_autostart_dir(self) -> None:
        """
        With an autostart folder elsewhere the link still resolves (relative
        path computed between the two folders).
        """
        base = os.path.abspath(self.mktemp())
        store = DomainStore(os.path.join(base, "c"), os.path.join(base, "s"),
                            os.path.join(base, "auto", "x"))
        store.save_config("a", XML_A)
        store.set_autostart("a", True)
        self.assertEqual(os.readlink(store.autostart_path("a")), "../../c/a.xml")
        self.assertEqual(store.autostart_names(), {"a"})

    def test_names_checked(self) -> None:
        """
        Names that are not safe single file names are refused with
        L{InvalidArgError} by every operation, before touching the disk.
        """
        for bad in ("", "a/b", "../x", ".hidden", "nul\0"):
            self.assertRaises(InvalidArgError, check_name, bad)
            self.assertRaises(InvalidArgError, self.store.save_config, bad, XML_A)
            self.assertRaises(InvalidArgError, self.store.save_status, bad, b"")
            self.assertRaises(InvalidArgError, self.store.set_autostart, bad, True)
            self.assertRaises(InvalidArgError, self.store.remove_config, bad)
        self.assertFalse(os.path.exists(self.store.config_dir))
        check_name("ok.name-1_x")

    def test_unwritable_directory(self) -> None:
        """
        A config folder that cannot be created is a L{HostSystemError}
        naming it.
        """
        base = os.path.abspath(self.mktemp())
        with open(base, "w") as f:
            f.write("a file, not a folder")
        store = DomainStore(os.path.join(base, "qemu"), os.path.join(base, "run"))
        err = self.assertRaises(HostSystemError, store.save_config, "a", XML_A)
        self.assertIn(os.path.join(base, "qemu"), err.message)
