# -*- test-case-name: tests.daemon.test_driver -*-
"""
The domain driver: every domain the daemon knows, and what can be done to it.

It is what RPC dispatch calls.  Queries are synchronous and never wait for
QEMU; lifecycle operations return Deferreds and delegate to the domain's
L{Guest}.  Domains are identified by UUID (as libvirtd does) and reported as
L{DomainRef}s, the same C{(name, uuid, id)} triple as libvirt's
C{remote_nonnull_domain}.

Persistent domains live in the L{DomainStore} as their inactive XML;
transient ones (C{create_xml}) exist only while they run.  Running guests
have a status file so that a restarted daemon re-attaches to them.
"""

from __future__ import annotations

import itertools
import os
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from qemud.daemon.node import NodeFacts, NodeInfo
from qemud.daemon.paths import DaemonPaths
from qemud.daemon.store import DomainStore
from qemud.domain.defaults import assign_aliases
from qemud.domain.model import Domain, Graphics
from qemud.domain.validate import check_name
from qemud.domain.xml import format_domain_xml, parse_domain_xml
from qemud.errors import (
    DomainExistsError,
    InvalidArgError,
    NoDomainError,
    OperationInvalidError,
    QemudError,
)
from qemud.qemu.caps import (
    CapsCache,
    QemuCaps,
    capabilities_xml,
    emulator_for_arch,
    find_emulator,
    host_arch,
    installed_emulators,
)
from qemud.qemu.argv import LaunchPaths, build_argv
from qemud.qemu.guest import Guest, GuestEvent, GuestExit, GuestPaths, GuestStatus
from qemud.qemu.states import (
    DefinedDetail,
    DomainState,
    LifecycleEvent,
    ShutoffReason,
    StoppedDetail,
    UndefinedDetail,
)
from qemud.qemu.vnc import VncPortAllocator

# virConnectListAllDomainsFlags
LIST_ACTIVE = 1
LIST_INACTIVE = 2
LIST_PERSISTENT = 4
LIST_TRANSIENT = 8
LIST_RUNNING = 16
LIST_PAUSED = 32
LIST_SHUTOFF = 64
LIST_OTHER = 128
LIST_MANAGEDSAVE = 256
LIST_NO_MANAGEDSAVE = 512
LIST_AUTOSTART = 1024
LIST_NO_AUTOSTART = 2048
LIST_HAS_SNAPSHOT = 4096
LIST_NO_SNAPSHOT = 8192
LIST_HAS_CHECKPOINT = 16384
LIST_NO_CHECKPOINT = 32768

# virDomainXMLFlags
XML_SECURE = 1
XML_INACTIVE = 2

# virDomainCreateFlags
START_PAUSED = 1

# virDomainDestroyFlags
DESTROY_GRACEFUL = 1

# virDomainUndefineFlags
UNDEFINE_MANAGED_SAVE = 1

# libvirt event ids used by the driver
EVENT_ID_LIFECYCLE = 0
EVENT_ID_REBOOT = 1
EVENT_ID_TRAY_CHANGE = 10
EVENT_ID_DEVICE_REMOVED = 15
EVENT_ID_DEVICE_ADDED = 19

_GUEST_EVENT_IDS = {
    "reboot": EVENT_ID_REBOOT,
    "tray-change": EVENT_ID_TRAY_CHANGE,
    "device-removed": EVENT_ID_DEVICE_REMOVED,
    "device-added": EVENT_ID_DEVICE_ADDED,
}


class DomainRef(NamedTuple):
    """
    A domain as the wire names it.

    @ivar name: the domain name.
    @ivar uuid: the 16 raw UUID bytes.
    @ivar id: the running id, -1 when inactive.
    """

    name: str
    uuid: bytes
    id: int


@dataclass(frozen=True)
class DomainInfo:
    """
    What C{virDomainGetInfo} reports.
    """

    state: int
    max_mem_kib: int
    memory_kib: int
    vcpus: int
    cpu_time_ns: int


@dataclass(frozen=True)
class DomainEvent:
    """
    One event for clients.

    @ivar event_id: libvirt's event id (0 lifecycle, 1 reboot, 10 tray change,
        15 device removed, 19 device added).
    @ivar ref: the domain as it is when the event happens.
    @ivar args: the event's payload: C{(event, detail)} for lifecycle,
        C{(alias, reason)} for tray change, C{(alias,)} for device events.
    """

    event_id: int
    ref: DomainRef
    args: tuple[Any, ...]


class DomainObject:
    """
    One domain known to the driver.

    @ivar config: the persistent definition, C{None} for a transient domain.
    @ivar guest: the running (or starting) guest, if any.
    @ivar live: the running definition (aliases, chosen VNC port).
    @ivar id: the running id, -1 when inactive.
    @ivar autostart: whether the daemon starts it at start-up.
    @ivar shutoff_reason: why it is shut off (libvirt's reason number).
    """

    def __init__(self, uuid: str, name: str, config: Domain | None) -> None:
        self.uuid = uuid
        self.uuid_bytes = uuidlib.UUID(uuid).bytes
        self.name = name
        self.config = config
        self.guest: Guest | None = None
        self.live: Domain | None = None
        self.id = -1
        self.autostart = False
        self.shutoff_reason = ShutoffReason.UNKNOWN

    @property
    def persistent(self) -> bool:
        """
        @return: whether the domain has a persistent config.
        """
        return self.config is not None

    @property
    def active(self) -> bool:
        """
        @return: whether a QEMU process exists for it (running or paused).
        """
        return self.guest is not None

    @property
    def definition(self) -> Domain:
        """
        @return: the running definition when active, else the config.
        """
        if self.live is not None:
            return self.live
        assert self.config is not None, "an inactive domain is always persistent"
        return self.config

    @property
    def ref(self) -> DomainRef:
        """
        @return: the domain's current wire reference.
        """
        return DomainRef(self.name, self.uuid_bytes, self.id)

    def state(self) -> tuple[int, int]:
        """
        @return: libvirt's C{(state, reason)}.
        """
        if self.guest is not None:
            return self.guest.state
        return (DomainState.SHUTOFF, self.shutoff_reason)


class DomainDriver:
    """
    The registry of domains and the operations on them.

    @ivar paths: the daemon's directory layout.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        paths: DaemonPaths,
        store: DomainStore,
        caps: CapsCache,
        node: NodeFacts,
        vnc_ports: VncPortAllocator,
        *,
        session: bool,
        guest_factory: Callable[..., Guest] = Guest,
        guest_attach: Callable[..., Deferred[Guest]] = Guest.attach,
    ) -> None:
        self._reactor = reactor
        self.paths = paths
        self._store = store
        self._caps = caps
        self._node = node
        self._vnc_ports = vnc_ports
        self._session = session
        self._guest_factory = guest_factory
        self._guest_attach = guest_attach
        self._by_uuid: dict[str, DomainObject] = {}
        self._by_uuid_bytes: dict[bytes, DomainObject] = {}
        self._by_name: dict[str, DomainObject] = {}
        self._by_id: dict[int, DomainObject] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Callable[[DomainEvent], None]] = []

    # -- events ---------------------------------------------------------------

    def add_event_listener(self, listener: Callable[[DomainEvent], None]) -> None:
        """
        Call C{listener} with every L{DomainEvent} from now on.
        """
        self._listeners.append(listener)

    def remove_event_listener(self, listener: Callable[[DomainEvent], None]) -> None:
        """
        Stop calling C{listener}; unknown listeners are ignored.
        """
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event_id: int, obj: DomainObject, *args: Any) -> None:
        event = DomainEvent(event_id, obj.ref, args)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.failure("event listener failed for {event!r}", event=event)

    def _emit_lifecycle(self, obj: DomainObject, event: int, detail: int) -> None:
        self._emit(EVENT_ID_LIFECYCLE, obj, int(event), int(detail))

    # -- registry -------------------------------------------------------------

    def _add(self, obj: DomainObject) -> None:
        self._by_uuid[obj.uuid] = obj
        self._by_uuid_bytes[obj.uuid_bytes] = obj
        self._by_name[obj.name] = obj

    def _remove(self, obj: DomainObject) -> None:
        self._by_uuid.pop(obj.uuid, None)
        self._by_uuid_bytes.pop(obj.uuid_bytes, None)
        self._by_name.pop(obj.name, None)
        if obj.id >= 0:
            self._by_id.pop(obj.id, None)

    def _get(self, uuid: bytes) -> DomainObject:
        obj = self._by_uuid_bytes.get(uuid)
        if obj is None:
            raise NoDomainError(f"no domain with matching uuid '{uuidlib.UUID(bytes=uuid)}'")
        return obj

    def _get_active(self, uuid: bytes) -> tuple[DomainObject, Guest]:
        obj = self._get(uuid)
        if obj.guest is None:
            raise OperationInvalidError("domain is not running")
        return obj, obj.guest

    def _macs(self, exclude: str | None = None) -> frozenset[str]:
        return frozenset(
            iface.mac
            for obj in self._by_uuid.values() if obj.uuid != exclude
            for iface in obj.definition.devices.interfaces
        )

    # -- queries --------------------------------------------------------------

    def list_domains(self, flags: int = 0) -> list[DomainRef]:
        """
        @param flags: libvirt's C{virConnectListAllDomainsFlags}; 0 lists all.
        @return: the matching domains.
        """
        return [obj.ref for obj in self._by_uuid.values() if self._matches(obj, flags)]

    def _matches(self, obj: DomainObject, flags: int) -> bool:
        def pair(yes: int, no: int, value: bool) -> bool:
            if flags & (yes | no) in (0, yes | no):
                return True
            return bool(flags & yes) == value

        if not pair(LIST_ACTIVE, LIST_INACTIVE, obj.active):
            return False
        if not pair(LIST_PERSISTENT, LIST_TRANSIENT, obj.persistent):
            return False
        if not pair(LIST_MANAGEDSAVE, LIST_NO_MANAGEDSAVE, self._has_managed_save(obj)):
            return False
        if not pair(LIST_AUTOSTART, LIST_NO_AUTOSTART, obj.autostart):
            return False
        if not pair(LIST_HAS_SNAPSHOT, LIST_NO_SNAPSHOT, False):
            return False
        if not pair(LIST_HAS_CHECKPOINT, LIST_NO_CHECKPOINT, False):
            return False
        state_flags = flags & (LIST_RUNNING | LIST_PAUSED | LIST_SHUTOFF | LIST_OTHER)
        if state_flags:
            state = obj.state()[0]
            kind = {DomainState.RUNNING: LIST_RUNNING, DomainState.PAUSED: LIST_PAUSED,
                    DomainState.SHUTOFF: LIST_SHUTOFF}.get(state, LIST_OTHER)
            return bool(state_flags & kind)
        return True

    def lookup_by_name(self, name: str) -> DomainRef:
        """
        @raise NoDomainError: when no domain has that name.
        """
        obj = self._by_name.get(name)
        if obj is None:
            raise NoDomainError(f"no domain with matching name '{name}'")
        return obj.ref

    def lookup_by_uuid(self, uuid: bytes) -> DomainRef:
        """
        @raise NoDomainError: when no domain has that UUID.
        """
        return self._get(uuid).ref

    def lookup_by_id(self, domain_id: int) -> DomainRef:
        """
        @raise NoDomainError: when no running domain has that id.
        """
        obj = self._by_id.get(domain_id)
        if obj is None:
            raise NoDomainError(f"no domain with matching id {domain_id}")
        return obj.ref

    def get_xml_desc(self, uuid: bytes, flags: int = 0) -> str:
        """
        @param flags: C{XML_INACTIVE} for the persistent config, C{XML_SECURE}
            to include secrets.
        @return: the domain XML.
        """
        obj = self._get(uuid)
        secure = not flags & XML_SECURE
        if obj.live is not None and not flags & XML_INACTIVE:
            return format_domain_xml(obj.live, inactive=False, secure=secure, domain_id=obj.id)
        definition = obj.config if obj.config is not None else obj.definition
        return format_domain_xml(definition, inactive=True, secure=secure)

    def get_info(self, uuid: bytes) -> DomainInfo:
        """
        @return: state, memory, vCPUs and CPU time of the domain.
        """
        obj = self._get(uuid)
        definition = obj.definition
        memory = definition.current_memory_kib or definition.memory_kib
        vcpus = definition.current_vcpus or definition.vcpus
        cpu_time = obj.guest.cpu_time_ns() if obj.guest is not None else 0
        return DomainInfo(obj.state()[0], definition.memory_kib, memory, vcpus, cpu_time)

    def get_state(self, uuid: bytes) -> tuple[int, int]:
        """
        @return: libvirt's C{(state, reason)}.
        """
        return self._get(uuid).state()

    def get_os_type(self, uuid: bytes) -> str:
        """
        @return: the OS type, C{hvm}.
        """
        return self._get(uuid).definition.os.type

    def get_max_vcpus(self, uuid: bytes) -> int:
        """
        @return: the domain's maximum vCPU count.
        """
        return self._get(uuid).definition.vcpus

    def get_vcpus(self, uuid: bytes, flags: int = 0) -> int:
        """
        @param flags: libvirt's C{VIR_DOMAIN_VCPU_MAXIMUM} (4) asks for the maximum.
        @return: the domain's (current) vCPU count.
        """
        definition = self._get(uuid).definition
        if flags & 4:
            return definition.vcpus
        return definition.current_vcpus or definition.vcpus

    def is_active(self, uuid: bytes) -> bool:
        """
        @return: whether the domain runs (or is paused).
        """
        return self._get(uuid).active

    def is_persistent(self, uuid: bytes) -> bool:
        """
        @return: whether the domain has a persistent config.
        """
        return self._get(uuid).persistent

    def get_autostart(self, uuid: bytes) -> bool:
        """
        @return: whether the daemon starts the domain at start-up.
        """
        return self._get(uuid).autostart

    def set_autostart(self, uuid: bytes, autostart: bool) -> None:
        """
        @raise OperationInvalidError: for a transient domain.
        """
        obj = self._get(uuid)
        if not obj.persistent:
            raise OperationInvalidError("cannot set autostart for transient domain")
        if obj.autostart != autostart:
            self._store.set_autostart(obj.name, autostart)
            obj.autostart = autostart

    def has_managed_save(self, uuid: bytes) -> bool:
        """
        @return: whether a managed-save image exists for the domain.
        """
        return self._has_managed_save(self._get(uuid))

    def _has_managed_save(self, obj: DomainObject) -> bool:
        return os.path.exists(self.paths.managed_save_file(obj.name))

    # -- host -----------------------------------------------------------------

    def hostname(self) -> str:
        """
        @return: the host's name.
        """
        return self._node.hostname()

    def node_info(self) -> NodeInfo:
        """
        @return: the host's CPU and memory facts.
        """
        return self._node.node_info()

    def node_free_memory(self) -> int:
        """
        @return: the host's free memory in bytes.
        """
        return self._node.free_memory_bytes()

    def default_caps(self) -> QemuCaps:
        """
        @return: the capabilities of the host architecture's emulator.
        """
        return self._caps.get(emulator_for_arch(host_arch()))

    def hypervisor_version(self) -> int:
        """
        @return: QEMU's version as major * 1,000,000 + minor * 1,000 + micro.
        """
        major, minor, micro = self.default_caps().version
        return major * 1_000_000 + minor * 1_000 + micro

    def capabilities_xml(self) -> str:
        """
        @return: libvirt's capabilities XML for this host.
        """
        guests = [self._caps.get(binary) for binary in installed_emulators()]
        return capabilities_xml(self._node.host_cpu(), guests)

    # -- define / undefine ----------------------------------------------------

    def _parse(self, xml: str, warnings: list[str]) -> Domain:
        domain = parse_domain_xml(xml, existing_macs=self._macs(), warnings=warnings)
        binary = find_emulator(domain)
        caps = self._caps.get(binary)
        os_ = replace(domain.os, arch=domain.os.arch or caps.arch,
                      machine=caps.canonical_machine(domain.os.machine))
        return replace(domain, os=os_)

    def _check_unique(self, domain: Domain, *, allow_active: bool = True) -> DomainObject | None:
        by_name = self._by_name.get(domain.name)
        by_uuid = self._by_uuid.get(domain.uuid)
        if by_name is not None and by_name.uuid != domain.uuid:
            raise DomainExistsError(
                f"domain '{domain.name}' already exists with uuid {by_name.uuid}")
        if by_uuid is not None and by_uuid.name != domain.name:
            raise DomainExistsError(
                f"domain '{by_uuid.name}' is already defined with uuid {domain.uuid}")
        if by_uuid is not None and by_uuid.active and not allow_active:
            raise DomainExistsError(f"domain '{domain.name}' is already active")
        return by_uuid

    def define_xml(self, xml: str) -> DomainRef:
        """
        Define a domain or update an existing one's config; make a running
        transient domain persistent.

        @raise DomainConfigError: when the XML is not a valid domain.
        @raise DomainExistsError: when another domain has that name or UUID.
        """
        warnings: list[str] = []
        domain = self._parse(xml, warnings)
        for warning in warnings:
            self.log.warn("define {name}: {warning}", name=domain.name, warning=warning)
        existing = self._check_unique(domain)
        self._store.save_config(domain.name, format_domain_xml(domain, inactive=True,
                                                               secure=False))
        if existing is None:
            obj = DomainObject(domain.uuid, domain.name, domain)
            self._add(obj)
            detail = DefinedDetail.ADDED
        else:
            obj = existing
            detail = (DefinedDetail.UPDATED if obj.persistent
                      else DefinedDetail.ADDED)
            obj.config = domain
        self.log.info("defined domain {name} ({uuid})", name=obj.name, uuid=obj.uuid)
        self._emit_lifecycle(obj, LifecycleEvent.DEFINED, detail)
        return obj.ref

    def undefine(self, uuid: bytes, flags: int = 0) -> None:
        """
        Remove a domain's persistent config; a running domain keeps running,
        transient.

        @raise OperationInvalidError: for a transient domain, or when a
            managed-save image exists and C{UNDEFINE_MANAGED_SAVE} is not given.
        """
        obj = self._get(uuid)
        if not obj.persistent:
            raise OperationInvalidError("cannot undefine transient domain")
        save_file = self.paths.managed_save_file(obj.name)
        if os.path.exists(save_file):
            if not flags & UNDEFINE_MANAGED_SAVE:
                raise OperationInvalidError(
                    "Refusing to undefine while domain managed save image exists")
            os.unlink(save_file)
        if obj.autostart:
            self._store.set_autostart(obj.name, False)
            obj.autostart = False
        self._store.remove_config(obj.name)
        obj.config = None
        if not obj.active:
            self._remove(obj)
        self.log.info("undefined domain {name}", name=obj.name)
        self._emit_lifecycle(obj, LifecycleEvent.UNDEFINED, UndefinedDetail.REMOVED)

    # -- lifecycle ------------------------------------------------------------

    def create(self, uuid: bytes, flags: int = 0) -> Deferred[DomainRef]:
        """
        Start a defined domain.

        @param flags: C{START_PAUSED} leaves its vCPUs stopped.
        @raise OperationInvalidError: when it is already running.
        """
        obj = self._get(uuid)
        if obj.active:
            raise OperationInvalidError("domain is already running")
        assert obj.config is not None
        return ensureDeferred(self._start(obj, obj.config, paused=bool(flags & START_PAUSED)))

    def create_xml(self, xml: str, flags: int = 0) -> Deferred[DomainRef]:
        """
        Start a transient domain from XML (or an inactive defined one with
        this definition for this run).

        @raise DomainExistsError: when a domain with that name or UUID exists
            and is active, or differs in name or UUID.
        """
        warnings: list[str] = []
        domain = self._parse(xml, warnings)
        existing = self._check_unique(domain, allow_active=False)
        if existing is None:
            obj = DomainObject(domain.uuid, domain.name, None)
            self._add(obj)
        else:
            obj = existing
        return ensureDeferred(self._start(obj, domain, paused=bool(flags & START_PAUSED)))

    async def _start(self, obj: DomainObject, definition: Domain, *, paused: bool) -> DomainRef:
        binary = find_emulator(definition)
        caps = self._caps.get(binary)
        ports: list[int] = []
        try:
            live = self._live_definition(definition, ports)
            domain_dir = self.paths.domain_dir(obj.name)
            os.makedirs(domain_dir, mode=0o700, exist_ok=True)
            guest = self._guest_factory(
                self._reactor, live,
                GuestPaths(domain_dir, self.paths.qmp_socket(obj.uuid),
                           self.paths.log_file(obj.name)),
                lambda fd: build_argv(live, caps, LaunchPaths(qmp_fd=fd, domain_dir=domain_dir)),
            )
        except BaseException:
            self._release_ports(ports)
            if not obj.persistent:
                self._remove(obj)
            raise
        domain_id = next(self._ids)
        obj.guest, obj.live, obj.id = guest, live, domain_id
        self._by_id[domain_id] = obj
        guest.add_listener(lambda event: self._on_guest_event(obj, guest, event))
        try:
            await guest.start(paused=paused)
        except BaseException:
            self._forget_guest(obj, guest, ShutoffReason.FAILED)
            self._release_ports(ports)
            raise
        guest.when_exited().addBoth(self._on_guest_exit, obj, guest, ports)
        self._save_status(obj, guest)
        self.log.info("started domain {name} id {id} pid {pid}", name=obj.name, id=domain_id,
                      pid=guest.pid)
        return obj.ref

    def _live_definition(self, definition: Domain, ports: list[int]) -> Domain:
        """
        The running definition: aliases assigned, VNC autoports chosen.
        """
        graphics: list[Graphics] = []
        for g in definition.devices.graphics:
            if g.type == "vnc" and (g.autoport or g.port == -1):
                port = self._vnc_ports.acquire(g.listen)
                ports.append(port)
                g = replace(g, port=port)
            graphics.append(g)
        devices = replace(definition.devices, graphics=tuple(graphics))
        return assign_aliases(replace(definition, devices=devices))

    def _release_ports(self, ports: Iterable[int]) -> None:
        for port in ports:
            self._vnc_ports.release(port)

    def _forget_guest(self, obj: DomainObject, guest: Guest, reason: int) -> None:
        """
        The guest is gone: the domain becomes inactive (or disappears when
        transient).
        """
        if obj.guest is not guest:
            return
        self._by_id.pop(obj.id, None)
        obj.guest, obj.live, obj.id = None, None, -1
        obj.shutoff_reason = reason
        self._store.remove_status(obj.name)
        if not obj.persistent:
            self._remove(obj)

    def _on_guest_event(self, obj: DomainObject, guest: Guest, event: GuestEvent) -> None:
        if obj.guest is not guest:
            return
        if event.kind == "lifecycle" and event.event == LifecycleEvent.STOPPED:
            # The guest is gone: update the registry before clients hear of it.
            self._forget_guest(obj, guest, _SHUTOFF_REASON_OF_STOP.get(
                StoppedDetail(event.detail), ShutoffReason.UNKNOWN))
        elif event.kind == "lifecycle" and obj.live is not None:
            # Pause/resume: keep the status file's state current.
            self._save_status(obj, guest)
        self._emit(int(event.event_id), obj, *event.args)

    def _save_status(self, obj: DomainObject, guest: Guest) -> None:
        if obj.live is None or guest.pid is None:
            return
        live_xml = format_domain_xml(guest.live_domain, inactive=False, secure=False,
                                     domain_id=obj.id)
        status = guest.make_status(live_xml, domain_id=obj.id)
        self._store.save_status(obj.name, status.to_document().encode())

    def _on_guest_exit(self, result: GuestExit | Failure, obj: DomainObject, guest: Guest,
                       ports: list[int]) -> None:
        self._release_ports(ports)
        if isinstance(result, Failure):
            self.log.failure("guest {name} ended with an error", result, name=obj.name)
            self._forget_guest(obj, guest, ShutoffReason.CRASHED)
        else:
            self._forget_guest(obj, guest, result.reason)

    def destroy(self, uuid: bytes, flags: int = 0) -> Deferred[None]:
        """
        Stop the domain's QEMU at once (SIGTERM, then SIGKILL).

        @raise OperationInvalidError: when it is not running.
        """
        obj, guest = self._get_active(uuid)
        return guest.destroy(graceful=bool(flags & DESTROY_GRACEFUL))

    def shutdown(self, uuid: bytes, flags: int = 0) -> Deferred[None]:
        """
        Ask the guest to power off (ACPI power button).
        """
        return self._get_active(uuid)[1].shutdown()

    def reboot(self, uuid: bytes, flags: int = 0) -> Deferred[None]:
        """
        Ask the guest to reboot (ACPI).
        """
        return self._get_active(uuid)[1].reboot()

    def reset(self, uuid: bytes, flags: int = 0) -> Deferred[None]:
        """
        Reset the guest's hardware at once.
        """
        return self._get_active(uuid)[1].reset()

    def suspend(self, uuid: bytes) -> Deferred[None]:
        """
        Pause the guest's vCPUs.
        """
        return self._get_active(uuid)[1].suspend()

    def resume(self, uuid: bytes) -> Deferred[None]:
        """
        Resume the guest's vCPUs.
        """
        return self._get_active(uuid)[1].resume()

    # -- start-up, reload and re-attach ---------------------------------------

    def load(self) -> Deferred[None]:
        """
        Load every config and status file and re-attach to guests still
        running.  Configs are usable at once; the returned Deferred fires when
        every re-attach has succeeded or failed.
        """
        self.paths.create_dirs()
        self.reload_configs()
        autostart = self._store.autostart_names()
        for obj in self._by_uuid.values():
            obj.autostart = obj.name in autostart
        attaching = [ensureDeferred(self._reattach(name, document))
                     for name, document in self._store.load_statuses()]
        return DeferredList(attaching, consumeErrors=True).addCallback(lambda _: None)

    def reload_configs(self) -> None:
        """
        Read the config directory and add every domain not known yet; files
        that do not parse are logged and skipped.
        """
        configs, problems = self._store.load_configs()
        for path, reason in problems:
            self.log.error("skipping config {path}: {reason}", path=path, reason=reason)
        for name, xml in configs:
            if name in self._by_name:
                continue
            try:
                domain = self._parse(xml, [])
                if domain.name != name:
                    raise InvalidArgError(
                        f"config file {name}.xml defines domain '{domain.name}'")
                self._check_unique(domain)
            except QemudError as e:
                self.log.error("skipping config of {name}: {error}", name=name, error=e.message)
                continue
            self._add(DomainObject(domain.uuid, domain.name, domain))
            self.log.info("loaded domain {name}", name=name)

    async def _reattach(self, name: str, document: bytes) -> None:
        try:
            status = GuestStatus.from_document(document.decode("utf-8", "replace"))
            live = parse_domain_xml(status.live_xml)
        except (ValueError, QemudError) as e:
            self.log.error("dropping unreadable status of {name}: {error}", name=name, error=e)
            self._store.remove_status(name)
            return
        obj = self._by_name.get(name)
        if obj is None:
            obj = DomainObject(live.uuid, live.name, None)
            self._add(obj)
        ports = [g.port for g in live.devices.graphics if g.type == "vnc" and g.autoport]
        for port in ports:
            self._vnc_ports.reserve(port)
        try:
            guest = await self._guest_attach(self._reactor, live, status)
        except Exception as e:
            self.log.warn("guest {name} is gone ({error}); marking it shut off", name=name,
                          error=e)
            self._release_ports(ports)
            self._store.remove_status(name)
            obj.shutoff_reason = ShutoffReason.CRASHED
            if not obj.persistent:
                self._remove(obj)
            return
        obj.guest, obj.live, obj.id = guest, guest.live_domain, status.domain_id
        self._by_id[status.domain_id] = obj
        self._ids = itertools.count(max(next(self._ids), status.domain_id + 1))
        guest.add_listener(lambda event: self._on_guest_event(obj, guest, event))
        guest.when_exited().addBoth(self._on_guest_exit, obj, guest, ports)
        self.log.info("re-attached to guest {name} pid {pid}", name=name, pid=guest.pid)

    def autostart_all(self) -> Deferred[None]:
        """
        Start every inactive autostart domain; failures are logged.
        """
        starts = []
        for obj in list(self._by_uuid.values()):
            if obj.autostart and not obj.active and obj.config is not None:
                d = ensureDeferred(self._start(obj, obj.config, paused=False))
                d.addErrback(lambda f, name=obj.name: self.log.failure(
                    "autostart of {name} failed", f, name=name))
                starts.append(d)
        return DeferredList(starts).addCallback(lambda _: None)

    def check_name(self, name: str) -> None:
        """
        @raise DomainConfigError: when C{name} cannot be a domain name.
        """
        check_name(name)


_SHUTOFF_REASON_OF_STOP = {
    StoppedDetail.SHUTDOWN: ShutoffReason.SHUTDOWN,
    StoppedDetail.DESTROYED: ShutoffReason.DESTROYED,
    StoppedDetail.CRASHED: ShutoffReason.CRASHED,
    StoppedDetail.SAVED: ShutoffReason.SAVED,
    StoppedDetail.FAILED: ShutoffReason.FAILED,
}
