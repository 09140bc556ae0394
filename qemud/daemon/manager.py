# -*- test-case-name: tests.daemon.test_driver -*-
"""
The domain manager service: loads domains when the daemon starts, defines
C{--define} files, starts autostart guests, and decides what happens to
guests when the daemon stops (they keep running, as with libvirtd).
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from qemud.daemon.driver import DomainDriver
from qemud.daemon.node import NodeFacts
from qemud.daemon.paths import DaemonPaths
from qemud.daemon.store import DomainStore
from qemud.domain.xml import read_domain_xml
from qemud.errors import QemudError
from qemud.qemu.caps import CapsCache
from qemud.qemu.guest import Guest, GuestTimeouts
from qemud.qemu.vnc import VncPortAllocator


def build_driver(reactor: Any, paths: DaemonPaths, *,
                 timeouts: GuestTimeouts | None = None) -> DomainDriver:
    """
    Assemble a L{DomainDriver} with its store, capability cache, host facts
    and VNC port allocator for the given layout.

    @param timeouts: the guests' time limits (QMP commands, the kill timer).
    """
    store = DomainStore(paths.config_dir, paths.status_dir, paths.autostart_dir)
    caps = CapsCache(cache_dir=os.path.join(paths.cache_dir, "capabilities"))
    limits = timeouts or GuestTimeouts()
    return DomainDriver(reactor, paths, store, caps, NodeFacts(), VncPortAllocator(),
                        guest_factory=partial(Guest, timeouts=limits),
                        guest_attach=partial(Guest.attach, timeouts=limits))


class DomainManagerService(Service):
    """
    Owns the driver's life: load before listening, autostart once up.

    @ivar driver: the domain driver.
    """

    log = Logger()

    def __init__(self, driver: DomainDriver, *, defines: tuple[str, ...] | list[str] = (),
                 autostart: bool = True) -> None:
        self.driver = driver
        self._defines = list(defines)
        self._autostart = autostart
        self._loaded: Deferred[None] | None = None

    def privilegedStartService(self) -> None:
        """
        Load configs and status files before any listener accepts a client.
        """
        super().privilegedStartService()
        self._loaded = self.driver.load()

    def startService(self) -> None:
        """
        Define C{--define} files and start autostart guests once every
        running guest has been re-attached.
        """
        super().startService()
        if self._loaded is None:
            self._loaded = self.driver.load()
        self._loaded.addCallback(lambda _: ensureDeferred(self._after_load()))
        self._loaded.addErrback(lambda f: self.log.failure("loading domains failed", f))

    async def _after_load(self) -> None:
        for path in self._defines:
            self._define_file(path)
        if self._autostart:
            await self.driver.autostart_all()
        self.log.info("qemud ready: {count} domains", count=len(self.driver.list_domains()))

    def _define_file(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                xml = f.read()
            name = read_domain_xml(xml).name
            try:
                self.driver.lookup_by_name(name)
                return
            except QemudError:
                pass
            self.driver.define_xml(xml)
        except (OSError, QemudError) as e:
            self.log.error("--define {path}: {error}", path=path, error=e)

    def stopService(self) -> Deferred[None] | None:
        """
        Guests keep running when the daemon stops: nothing to tear down but
        the QMP connections, which close with the process.
        """
        self.log.info("qemud stopping; guests keep running")
        return super().stopService()  # type: ignore[no-any-return]
