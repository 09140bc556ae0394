"""
A real L{DomainDriver} wired to fakes, for the driver's unit tests and the
end-to-end tests: processes, clock and C{/proc} from a
L{FakeProcessReactor}, one scripted L{FakeQMPServer} per guest, a recorded
capability set instead of probing QEMU, a VNC allocator that never binds a
socket, and a real store in a temporary directory.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon.driver import DomainDriver, DomainEvent, DomainRef
from qemud.daemon.node import NodeFacts
from qemud.daemon.paths import DaemonPaths
from qemud.daemon.store import DomainStore
from qemud.qemu.caps import QemuCaps
from qemud.qemu.guest import Guest
from qemud.qemu.vnc import VncPortAllocator
from qemud.testing import FakeProcess, FakeProcessReactor, FakeQMPServer

EMULATOR = "/usr/bin/qemu-system-x86_64"
CAPS_FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "data", "caps", "qemu-7.2-x86_64.json")

UUID1 = "8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"
UUID2 = "11111111-2222-3333-4444-555555555555"
UUID3 = "0f0e0d0c-0b0a-4908-8706-050403020100"

RUNNING_PRELAUNCH = {"status": "prelaunch", "running": False}


def domain_xml(name: str = "vm1", uuid: str = UUID1, *, memory_kib: int = 65536,
               vnc: str = "", extra: str = "") -> str:
    """
    @param vnc: a C{<graphics>} element (or nothing).
    @return: a minimal domain definition with a fixed emulator.
    """
    return (
        f"<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid>"
        f"<memory unit='KiB'>{memory_kib}</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<devices><emulator>{EMULATOR}</emulator>{vnc}{extra}</devices></domain>"
    )


def raw(uuid: str) -> bytes:
    """@return: the 16 bytes of a textual UUID."""
    return uuidlib.UUID(uuid).bytes


class FixtureCaps:
    """
    Stands in for L{qemud.qemu.caps.CapsCache}: every binary has the
    capabilities recorded from QEMU 7.2 on x86_64.

    @ivar asked: the binaries asked about.
    """

    def __init__(self) -> None:
        with open(CAPS_FIXTURE) as f:
            self._caps = QemuCaps.from_json(f.read())
        self.asked: list[str] = []

    def get(self, binary: str) -> QemuCaps:
        """@return: the fixture's capabilities."""
        self.asked.append(binary)
        return self._caps


class DriverEnv:
    """
    A L{DomainDriver} on fakes, with its events recorded.

    @ivar reactor: the L{FakeProcessReactor}.
    @ivar paths: the daemon layout below a temporary directory.
    @ivar events: every L{DomainEvent} the driver emitted.
    @ivar servers: domain name → the L{FakeQMPServer} of its latest start.
    @ivar vnc: the VNC port allocator (no socket is ever bound).
    """

    def __init__(self, case: SynchronousTestCase, *, root: str | None = None,
                 reactor: FakeProcessReactor | None = None,
                 guest_attach: Any = None) -> None:
        self.case = case
        self.root = os.path.abspath(root or case.mktemp())
        self.reactor = reactor or FakeProcessReactor()
        self.paths = DaemonPaths.system(self.root)
        self.paths.create_dirs()
        self.store = DomainStore(self.paths.config_dir, self.paths.status_dir,
                                 self.paths.autostart_dir)
        self.caps = FixtureCaps()
        self.threads: list[tuple[Any, Deferred[None]]] = []
        self.vnc = VncPortAllocator(probe=lambda listen, port: True)
        fake_root = os.path.join(self.root, "host")
        self.driver = DomainDriver(
            self.reactor, self.paths, self.store, self.caps,  # type: ignore[arg-type]
            NodeFacts(os.path.join(fake_root, "proc"), os.path.join(fake_root, "sys"),
                      os.path.join(fake_root, "etc"), dev=os.path.join(fake_root, "dev"),
                      cpu_map_dir=os.path.join(fake_root, "cpu_map"),
                      gethostname=lambda: "testhost", cpuid=lambda: None, tsc=lambda: None,
                      msr=lambda index: None, run=lambda argv, timeout: None,
                      ids=lambda: (1000, 1000)),
            self.vnc,
            guest_factory=partial(Guest, procfs=self.reactor.procfs, listener=self.listener),
            guest_attach=guest_attach or partial(Guest.attach, procfs=self.reactor.procfs),
            procfs=self.reactor.procfs,
            in_thread=self._in_thread,
        )
        self.events: list[DomainEvent] = []
        self.driver.add_event_listener(self.events.append)
        self.servers: dict[str, FakeQMPServer] = {}

    def _in_thread(self, work: Any) -> Deferred[None]:
        """
        The driver's thread runner: C{work} waits in L{threads} until
        L{run_threads}.
        """
        d: Deferred[None] = Deferred()
        self.threads.append((work, d))
        return d

    def run_threads(self) -> None:
        """Run the work handed to threads so far, as the thread pool would."""
        pending, self.threads = self.threads, []
        for work, d in pending:
            d.callback(work())

    # -- fakes --------------------------------------------------------------

    def listener(self, path: str) -> int:
        """The QMP listening socket: a placeholder file and a descriptor on /dev/null."""
        with open(path, "w"):
            pass
        return os.open(os.devnull, os.O_RDONLY)

    def process(self, index: int = -1) -> FakeProcess:
        """@return: a spawned process (the latest by default)."""
        return self.reactor.spawned[index]

    # -- events -------------------------------------------------------------

    def lifecycle(self, name: str | None = None) -> list[tuple[int, int]]:
        """@return: the lifecycle events' (event, detail), of one domain or all."""
        return [tuple(e.args) for e in self.events  # type: ignore[misc]
                if e.event_id == 0 and (name is None or e.ref.name == name)]

    def clear(self) -> None:
        """Forget the events seen so far."""
        del self.events[:]

    # -- scripted operations ------------------------------------------------

    def define(self, name: str = "vm1", uuid: str = UUID1, **kw: Any) -> DomainRef:
        """Define a domain from L{domain_xml}."""
        return self.driver.define_xml(domain_xml(name, uuid, **kw))

    def start(self, ref: DomainRef, *, paused: bool = False, setup: tuple[str, ...] = (),
              server: FakeQMPServer | None = None) -> Deferred[DomainRef]:
        """
        Start a defined domain, answering QEMU's start-up script.

        @param setup: commands expected between C{query-status} and C{cont}
            (e.g. C{set_password}).
        @return: the Deferred of L{DomainDriver.create}.
        """
        d = self.driver.create(ref.uuid, 1 if paused else 0)
        self.accept(ref.name, paused=paused, setup=setup, server=server)
        return d

    def accept(self, name: str, *, paused: bool = False, setup: tuple[str, ...] = (),
               server: FakeQMPServer | None = None) -> FakeQMPServer:
        """
        Let the latest spawned QEMU's monitor answer the start-up script.

        @return: its server, kept in L{servers}.
        """
        server = server or FakeQMPServer()
        server.expect("query-status", ret=RUNNING_PRELAUNCH)
        for command in setup:
            server.expect(command)
        if not paused:
            server.expect("cont", events_before=[("RESUME", {})])
        self.servers[name] = server
        self.reactor.accept_unix(server)
        return server

    def started(self, name: str = "vm1", uuid: str = UUID1, *,
                setup: tuple[str, ...] = (), **kw: Any) -> DomainRef:
        """Define and start a domain; forget the events. @return: its running ref."""
        ref = self.define(name, uuid, **kw)
        running = self.case.successResultOf(self.start(ref, setup=setup))
        self.clear()
        return running

    def power_off(self, name: str = "vm1") -> None:
        """
        The guest powers itself off: SHUTDOWN (guest), QEMU is told to quit,
        and exits.
        """
        server = self.servers[name]
        server.expect("quit")
        server.send_event("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        server.assert_done()
        proc = next(p for p in reversed(self.reactor.spawned)
                    if p.pid is not None and f"guest={name}" in ",".join(p.argv))
        proc.exit(0)

    def destroy(self, ref: DomainRef) -> Deferred[None]:
        """Destroy a domain; its QEMU dies of the SIGTERM at once."""
        d = self.driver.destroy(ref.uuid)
        self.reactor.advance(0)
        return d

    # -- files --------------------------------------------------------------

    def config_file(self, name: str) -> str:
        """@return: the path of a domain's config file."""
        return os.path.join(self.paths.config_dir, name + ".xml")

    def status_file(self, name: str) -> str:
        """@return: the path of a domain's status file."""
        return os.path.join(self.paths.status_dir, name + ".xml")

    def autostart_link(self, name: str) -> str:
        """@return: the path of a domain's autostart link."""
        return os.path.join(self.paths.autostart_dir, name + ".xml")
