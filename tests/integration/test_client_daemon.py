"""
The client library and C{qemuctl} against a real C{twistd -n qemud}.

Each test class starts its own daemon (C{--root} a short directory under
C{/tmp}) as a subprocess, waits for its socket, and kills it by PID at the
end.  The CLI tests run a no-OS KVM guest (qboot, 64 MiB, no disks).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from qemudclient.connection import connect
from qemudclient.errors import NoDomainError, OperationDenied
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.guests import QBOOT_ROM, ProcessReaper, noos_guest_domain_xml

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
QEMUCTL = [sys.executable, "-m", "qemudclient.cli"]


def free_port() -> int:
    """
    @return: a TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Daemon:
    """
    One C{twistd -n qemud --root DIR} subprocess.

    @ivar root: the daemon's root directory.
    @ivar socket: its read-write UNIX socket.
    @ivar socket_ro: its read-only UNIX socket.
    @ivar tcp_port: its loopback TCP port.
    @ivar tls_port: its TLS port, or C{None}.
    """

    def __init__(self, reaper: ProcessReaper, pki_dir: str | None = None) -> None:
        self.root = tempfile.mkdtemp(prefix="qc", dir="/tmp")
        run = os.path.join(self.root, "run", "qemud")
        self.socket = os.path.join(run, "qemud-sock")
        self.socket_ro = os.path.join(run, "qemud-sock-ro")
        self.tcp_port = free_port()
        self.tls_port = free_port() if pki_dir else None
        argv = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "qemud", "--root", self.root,
                "--listen-tcp", f"127.0.0.1:{self.tcp_port}", "--no-autostart"]
        if pki_dir:
            argv += ["--listen-tls", f"127.0.0.1:{self.tls_port}", "--pki-dir", pki_dir]
        self.log = open(os.path.join(self.root, "daemon.log"), "wb")
        self.proc = reaper.spawn(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                 cwd=self.root)
        deadline = time.monotonic() + 30
        while not (os.path.exists(self.socket) and self._tcp_ready()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"qemud did not start:\n{self.output()}")
            time.sleep(0.05)

    def _tcp_ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.tcp_port), timeout=1).close()
        except OSError:
            return False
        return True

    def output(self) -> str:
        """
        @return: what the daemon logged so far.
        """
        with open(os.path.join(self.root, "daemon.log"), errors="replace") as f:
            return f.read()

    def unix_uri(self, readonly: bool = False) -> str:
        """
        @return: a libvirt-style URI for the (read-only) UNIX socket.
        """
        return f"qemu+unix:///system?socket={self.socket_ro if readonly else self.socket}"

    def cleanup(self) -> None:
        """
        Remove the root directory (the process is killed by the reaper).
        """
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


class _DaemonTestCase(TestCase):
    """
    Start a daemon per test; kill it by PID afterwards.
    """

    pki_dir: str | None = None
    timeout = 120

    def setUp(self) -> None:
        if not os.path.exists("/dev/kvm") or not os.path.exists(QBOOT_ROM):
            if os.environ.get("CI"):
                raise AssertionError("/dev/kvm or qboot.rom missing")
            raise SkipTest("needs /dev/kvm and qboot.rom (apt-get install qemu-system-x86)")
        reaper = ProcessReaper()
        self.addCleanup(reaper.kill_all)
        self.daemon = Daemon(reaper, self.pki_dir)
        self.addCleanup(self.daemon.cleanup)
        self.reaper = reaper


class LibraryTests(_DaemonTestCase):
    """
    The Deferred API over UNIX and TCP.
    """

    async def _basic(self, uri: str) -> None:
        conn = await connect(uri, reactor)
        try:
            self.assertTrue(conn.keepalive)
            self.assertIsInstance(await conn.get_hostname(), str)
            info = await conn.node_info()
            self.assertGreater(info.cpus, 0)
            self.assertEqual(await conn.list_domains(), [])
            with self.assertRaises(NoDomainError) as cm:
                await conn.lookup_by_name("nosuchdomain")
            self.assertIn("nosuchdomain", cm.exception.message)
        finally:
            await conn.close()

    async def test_unix(self) -> None:
        """
        Handshake, queries and a typed error over the UNIX socket.
        """
        await self._basic(self.daemon.unix_uri())

    async def test_tcp(self) -> None:
        """
        The same over loopback TCP.
        """
        await self._basic(f"qemu+tcp://127.0.0.1:{self.daemon.tcp_port}/system")

    async def test_200_concurrent_calls(self) -> None:
        """
        200 calls in flight at once on one connection all get their own
        answers.
        """
        conn = await connect(self.daemon.unix_uri(), reactor)
        try:
            dom = await conn.define_xml(noos_guest_domain_xml("conc1"))
            ds = [conn.lookup_by_uuid(dom.uuid) if i % 2 else conn.get_hostname()
                  for i in range(200)]
            results = await gatherResults(ds)
            self.assertEqual(len(results), 200)
            for i, r in enumerate(results):
                if i % 2:
                    self.assertEqual(r.name, "conc1")
                else:
                    self.assertIsInstance(r, str)
            await dom.undefine()
        finally:
            await conn.close()

    async def test_readonly_socket(self) -> None:
        """
        The read-only socket lets us look but not touch: the daemon refuses a
        define with OPERATION_DENIED even when the client did not ask for a
        read-only connection.
        """
        conn = await connect(self.daemon.unix_uri(readonly=True), reactor)
        try:
            self.assertEqual(await conn.list_domains(), [])
            with self.assertRaises(OperationDenied):
                await conn.define_xml(noos_guest_domain_xml("ro1"))
        finally:
            await conn.close()

    async def test_events(self) -> None:
        """
        Lifecycle events reach a subscriber and an async iterator.
        """
        conn = await connect(self.daemon.unix_uri(), reactor)
        try:
            seen: list[tuple[str, int, int]] = []
            sub = await conn.subscribe(
                0, lambda e: seen.append((e.domain.name, e.detail["event"], e.detail["detail"])))
            stream = conn.events(0)
            await stream.when_registered()
            dom = await conn.define_xml(noos_guest_domain_xml("ev1"))
            event = await stream.__anext__()
            self.assertEqual((event.domain.name, event.detail), ("ev1", {"event": 0, "detail": 0}))
            await dom.undefine()
            event = await stream.__anext__()
            self.assertEqual(event.detail["event"], 1)
            await stream.close()
            await sub.cancel()
            self.assertEqual(seen, [("ev1", 0, 0), ("ev1", 1, 0)])
        finally:
            await conn.close()


class TLSTests(_DaemonTestCase):
    """
    The library over TLS with a test PKI (client certificate, 0x01 byte).
    """

    def setUp(self) -> None:
        try:
            from tests.integration.pki import shared_test_pki
        except ImportError as e:  # pragma: no cover - the PKI helper is missing
            raise SkipTest(f"no test PKI helper: {e}") from e
        self.pki = shared_test_pki()
        self.pki_dir = self.pki.server_dir
        super().setUp()

    async def test_tls(self) -> None:
        """
        Connect over TLS with the good client certificate and make calls.
        """
        uri = (f"qemu+tls://localhost:{self.daemon.tls_port}/system"
               f"?pkipath={self.pki.client_dir}")
        conn = await connect(uri, reactor)
        try:
            self.assertEqual(await conn.list_domains(), [])
            self.assertIsInstance(await conn.get_hostname(), str)
        finally:
            await conn.close()

    def test_tls_cli_refused_without_cert(self) -> None:
        """
        Without a client certificate the CLI fails cleanly with exit 1.
        """
        uri = (f"qemu+tls://localhost:{self.daemon.tls_port}/system"
               f"?pkipath={self.pki.anonymous_client_dir}")
        proc = subprocess.run([*QEMUCTL, "-c", uri, "list"], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertTrue(proc.stderr.startswith("error: "), proc.stderr)


class CLITests(_DaemonTestCase):
    """
    C{qemuctl} end to end on a no-OS KVM guest.
    """

    def qemuctl(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*QEMUCTL, "-c", self.daemon.unix_uri(), *args],
                              capture_output=True, text=True, timeout=60)
        if ok:
            self.assertEqual(proc.returncode, 0,
                             f"qemuctl {args}: {proc.stderr}\n{self.daemon.output()[-3000:]}")
        return proc

    def read_events(self, proc: subprocess.Popen[str], count: int, timeout: float) -> list[Any]:
        """
        @return: up to C{count} JSON events read from C{proc}'s stdout within
            C{timeout} seconds (raw reads: select() cannot see lines already
            in a buffered reader).
        """
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        events: list[Any] = []
        pending = b""
        deadline = time.monotonic() + timeout
        while len(events) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            events.extend(json.loads(line) for line in lines if line.strip())
        return events

    def test_lifecycle(self) -> None:
        """
        define, start, list, dominfo, domstate --reason, dumpxml, suspend,
        resume, destroy, undefine, in text and JSON; C{events --json} sees
        the lifecycle events.
        """
        xml = os.path.join(self.daemon.root, "g1.xml")
        with open(xml, "w") as f:
            f.write(noos_guest_domain_xml("g1"))
        events = self.reaper.spawn(
            [*QEMUCTL, "-c", self.daemon.unix_uri(), "events", "--json", "--loop",
             "--timeout", "90"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # type: ignore[call-overload]
        time.sleep(1.0)  # let it register before the first event

        self.assertEqual(self.qemuctl("define", xml).stdout, f"Domain 'g1' defined from {xml}\n\n")
        out = self.qemuctl("list", "--all").stdout
        self.assertIn(" -    g1     shut off", out)
        self.assertEqual(self.qemuctl("domstate", "--reason", "g1").stdout,
                         "shut off (unknown)\n\n")

        self.assertEqual(self.qemuctl("start", "g1").stdout, "Domain 'g1' started\n\n")
        listing = json.loads(self.qemuctl("list", "--json").stdout)
        self.assertEqual([(d["name"], d["state"]) for d in listing], [("g1", "running")])
        dom_id = listing[0]["id"]
        self.assertIsInstance(dom_id, int)
        self.assertEqual(self.qemuctl("domstate", "--reason", "g1").stdout,
                         "running (booted)\n\n")
        info = self.qemuctl("dominfo", "g1").stdout
        self.assertIn(f"Id:             {dom_id}\n", info)
        self.assertIn("State:          running\n", info)
        self.assertIn("Max memory:     65536 KiB\n", info)
        doc = json.loads(self.qemuctl("dominfo", "--json", "g1").stdout)
        self.assertEqual((doc["name"], doc["state"], doc["max_memory_kib"], doc["persistent"]),
                         ("g1", "running", 65536, True))
        dumped = self.qemuctl("dumpxml", "g1").stdout
        self.assertIn("<name>g1</name>", dumped)
        self.assertIn(f"id='{dom_id}'", dumped)
        self.assertEqual(self.qemuctl("domid", "g1").stdout, f"{dom_id}\n\n")
        self.assertEqual(str(uuid.UUID(self.qemuctl("domuuid", "g1").stdout.strip())),
                         doc["uuid"])

        self.assertEqual(self.qemuctl("suspend", "g1").stdout, "Domain 'g1' suspended\n\n")
        self.assertEqual(json.loads(self.qemuctl("domstate", "--json", "g1").stdout),
                         {"state": "paused", "state_code": 3, "reason": "user", "reason_code": 1})
        self.assertEqual(self.qemuctl("resume", "g1").stdout, "Domain 'g1' resumed\n\n")
        self.assertEqual(self.qemuctl("domstate", "g1").stdout, "running\n\n")
        self.assertEqual(self.qemuctl("destroy", "g1").stdout, "Domain 'g1' destroyed\n\n")
        self.assertEqual(self.qemuctl("domstate", "--reason", "g1").stdout,
                         "shut off (destroyed)\n\n")
        bad = self.qemuctl("destroy", "g1", ok=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("error: Requested operation is not valid", bad.stderr)
        self.assertEqual(self.qemuctl("undefine", "g1").stdout,
                         "Domain 'g1' has been undefined\n\n")
        missing = self.qemuctl("dominfo", "g1", ok=False)
        self.assertEqual(missing.returncode, 1)
        self.assertEqual(missing.stderr.splitlines()[0], "error: failed to get domain 'g1'")

        got = self.read_events(events, 6, timeout=30)
        kinds = [(e["type"], e["domain"]["name"]) for e in got]
        for expected in ("Defined", "Started", "Suspended", "Resumed", "Stopped", "Undefined"):
            self.assertIn((expected, "g1"), kinds, got)
        self.assertEqual(got[0]["event"], "lifecycle")
