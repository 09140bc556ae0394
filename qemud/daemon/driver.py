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

import contextlib
import itertools
import os
import signal
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredLock,
    DeferredSemaphore,
    ensureDeferred,
    succeed,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from qemud.daemon.node import NodeFacts, NodeInfo
from qemud.daemon.paths import DaemonPaths
from qemud.daemon.store import DomainStore
from qemud.domain import pci
from qemud.domain.defaults import assign_aliases, fill_defaults
from qemud.domain.model import Disk, Domain, Graphics, Interface
from qemud.domain.validate import validate_domain
from qemud.domain.xml import (
    format_domain_xml,
    parse_device_xml,
    parse_domain_xml,
    read_domain_xml,
)
from qemud.errors import (
    DomainExistsError,
    HostSystemError,
    InvalidArgError,
    NoDomainError,
    OperationFailedError,
    OperationInvalidError,
    OperationUnsupportedError,
    QemudError,
)
from qemud.qemu import hotplug, saveimage, stats
from qemud.qemu.argv import Launch, LaunchPaths, build_argv, machine_kind, nic_driver
from qemud.qemu.caps import (
    CapsCache,
    QemuCaps,
    capabilities_xml,
    emulator_for_arch,
    find_emulator,
    host_arch,
    installed_emulators,
)
from qemud.qemu.guest import (
    Guest,
    GuestEvent,
    GuestExit,
    GuestPaths,
    GuestStatus,
    find_unrecorded,
)
from qemud.qemu.process import ProcFS, ProcReader
from qemud.qemu.states import (
    DefinedDetail,
    DomainState,
    LifecycleEvent,
    PausedReason,
    ShutoffReason,
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

# QEMU processes initialising at once, per host CPU (see DomainDriver._start):
# measured with 50 concurrent starts on 2 cores, 1 keeps other clients' calls
# under 30 ms (2: up to 100 ms) at the same total start time.
START_SLOTS_PER_CPU = 1

# virDomainXMLFlags
XML_SECURE = 1
XML_INACTIVE = 2

# virDomainCreateFlags
START_PAUSED = 1
START_FORCE_BOOT = 8

# virDomainSaveRestoreFlags
SAVE_BYPASS_CACHE = 1
SAVE_RUNNING = 2
SAVE_PAUSED = 4

# virDomainModificationImpact / virDomainDeviceModifyFlags
AFFECT_LIVE = 1
AFFECT_CONFIG = 2
DEVICE_MODIFY_FORCE = 4

# virDomainVcpuFlags
VCPU_LIVE = 1
VCPU_CONFIG = 2
VCPU_MAXIMUM = 4

# virDomainJobType
JOB_NONE = 0
JOB_UNBOUNDED = 2

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
class JobInfo:
    """
    What C{virDomainGetJobInfo} reports (times in ms, sizes in bytes).
    """

    type: int
    time_elapsed: int = 0
    time_remaining: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    mem_total: int = 0
    mem_processed: int = 0
    mem_remaining: int = 0
    file_total: int = 0
    file_processed: int = 0
    file_remaining: int = 0


def job_info_from_migration(info: dict[str, Any], elapsed_ms: int) -> JobInfo:
    """
    @param info: a C{query-migrate} reply.
    @param elapsed_ms: how long the job has run.
    @return: an unbounded job's progress: data and memory from C{ram}.
    """
    found = info.get("ram")
    ram: dict[str, Any] = found if isinstance(found, dict) else {}
    total = int(ram.get("total", 0))
    done = int(ram.get("transferred", 0))
    left = int(ram.get("remaining", 0))
    if info.get("status") == "completed":
        left = 0
    return JobInfo(JOB_UNBOUNDED, elapsed_ms, 0, total, done, left, total, done, left)


def _with_incoming(launch: Launch) -> Launch:
    """
    The launch recipe of a restore: C{-incoming defer}, and serial files
    appended to rather than truncated, so that a guest's console log goes
    on where it stopped when it was saved.
    """
    argv = list(launch.argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == "-chardev" and argv[i + 1].startswith("file,") and (
                ",append=" not in argv[i + 1]):
            argv[i + 1] += ",append=on"
    return replace(launch, argv=[*argv, "-incoming", "defer"])


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

    @ivar guest: the running (or starting) guest, if any.
    @ivar id: the running id, -1 when inactive.
    @ivar autostart: whether the daemon starts it at start-up.
    @ivar shutoff_reason: why it is shut off (libvirt's reason number).
    @ivar attaching: while a restarted daemon re-attaches to its guest, the
        C{(state, reason)} recorded in the status file; C{None} otherwise.
    @ivar starting: whether its guest is being started (its status file is
        written once, when the start completes).
    @ivar on_change: called with the old and the new definition whenever
        C{config} or C{live} is replaced (the driver indexes definitions).
    """

    def __init__(self, uuid: str, name: str, config: Domain | None) -> None:
        self.uuid = uuid
        self.uuid_bytes = uuidlib.UUID(uuid).bytes
        self.name = name
        self.on_change: Callable[[Domain | None, Domain | None], None] = _nothing
        self._config = config
        self._live: Domain | None = None
        self.guest: Guest | None = None
        self.id = -1
        self._ref: DomainRef | None = None
        self.autostart = False
        self.shutoff_reason: int = ShutoffReason.UNKNOWN
        self.attaching: tuple[int, int] | None = None
        self.starting = False

    @property
    def config(self) -> Domain | None:
        """
        @return: the persistent definition, C{None} for a transient domain.
        """
        return self._config

    @config.setter
    def config(self, value: Domain | None) -> None:
        old, self._config = self._config, value
        self.on_change(old, value)

    @property
    def live(self) -> Domain | None:
        """
        @return: the running definition, C{None} when inactive.
        """
        return self._live

    @live.setter
    def live(self, value: Domain | None) -> None:
        old, self._live = self._live, value
        self.on_change(old, value)

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
        return self.guest is not None or self.attaching is not None

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
        @return: the domain's current wire reference (the same object until
            its id changes: lists of many domains reuse them).
        """
        ref = self._ref
        if ref is None or ref.id != self.id:
            ref = self._ref = DomainRef(self.name, self.uuid_bytes, self.id)
        return ref

    def state(self) -> tuple[int, int]:
        """
        @return: libvirt's C{(state, reason)}.
        """
        if self.guest is not None:
            return self.guest.state
        if self.attaching is not None:
            return self.attaching
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
        guest_factory: Callable[..., Guest] = Guest,
        guest_attach: Callable[..., Deferred[Guest]] = Guest.attach,
        procfs: ProcReader | None = None,
        in_thread: Callable[[Callable[[], None]], Deferred[None]] | None = None,
    ) -> None:
        """
        @param procfs: where processes are looked up (tests: a fake C{/proc}).
        @param in_thread: runs blocking work off the reactor thread (default:
            the reactor's thread pool; tests: at once).
        """
        self._reactor = reactor
        self.paths = paths
        self._store = store
        self._caps = caps
        self._node = node
        self._vnc_ports = vnc_ports
        self._guest_factory = guest_factory
        self._guest_attach = guest_attach
        self._procfs: ProcReader = procfs if procfs is not None else ProcFS()
        self._by_uuid: dict[str, DomainObject] = {}
        self._by_uuid_bytes: dict[bytes, DomainObject] = {}
        self._by_name: dict[str, DomainObject] = {}
        self._by_id: dict[int, DomainObject] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Callable[[DomainEvent], None]] = []
        self._mac_count: Counter[str] = Counter()
        self._start_slots = DeferredSemaphore(START_SLOTS_PER_CPU * (os.cpu_count() or 1))
        self._in_thread = in_thread or self._in_reactor_thread_pool
        self._host_probe = DeferredLock()
        self._host_probed = False

    def _in_reactor_thread_pool(self, work: Callable[[], None]) -> Deferred[None]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), work)

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
        obj.on_change = self._index_macs
        self._index_macs(None, obj.config)
        self._index_macs(None, obj.live)
        self._by_uuid[obj.uuid] = obj
        self._by_uuid_bytes[obj.uuid_bytes] = obj
        self._by_name[obj.name] = obj

    def _remove(self, obj: DomainObject) -> None:
        obj.on_change = _nothing
        self._index_macs(obj.config, None)
        self._index_macs(obj.live, None)
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
        if obj.attaching is not None:
            raise OperationInvalidError(
                "domain is being re-attached after a daemon restart; try again")
        if obj.guest is None:
            raise OperationInvalidError("domain is not running")
        return obj, obj.guest

    def _macs(self) -> frozenset[str]:
        """
        @return: the MAC of every interface of every domain (config and live).
        """
        return frozenset(self._mac_count)

    def _index_macs(self, old: Domain | None, new: Domain | None) -> None:
        """
        Keep the count of MACs in use current when a definition changes.
        """
        if old is not None:
            for iface in old.devices.interfaces:
                self._mac_count[iface.mac] -= 1
                if not self._mac_count[iface.mac]:
                    del self._mac_count[iface.mac]
        if new is not None:
            for iface in new.devices.interfaces:
                self._mac_count[iface.mac] += 1

    # -- queries --------------------------------------------------------------

    def list_domains(self, flags: int = 0) -> list[DomainRef]:
        """
        @param flags: libvirt's C{virConnectListAllDomainsFlags}; 0 lists all.
        @return: the matching domains.
        """
        objs = self._by_uuid.values()
        # Only the filters the flags ask for are evaluated (C{virsh list
        # --all} asks none): listing 1000 domains must not touch the disk.
        wanted = [(bool(flags & yes), test) for yes, no, test in _LIST_FILTERS
                  if flags & (yes | no) not in (0, yes | no)]
        states = flags & (LIST_RUNNING | LIST_PAUSED | LIST_SHUTOFF | LIST_OTHER)
        if not wanted and not states:
            return [obj.ref for obj in objs]
        return [obj.ref for obj in objs
                if all(test(self, obj) == want for want, test in wanted)
                and (not states or states & _state_flag(obj.state()[0]))]

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
        obj = self._get(uuid)
        if flags & VCPU_LIVE and flags & VCPU_CONFIG:
            raise InvalidArgError("flags 'affect live' and 'affect config' are mutually exclusive")
        if flags & VCPU_LIVE:
            if obj.live is None:
                raise OperationInvalidError("domain is not running")
            definition = obj.live
        elif flags & VCPU_CONFIG:
            if obj.config is None:
                raise OperationInvalidError(
                    "transient domains do not have any persistent config")
            definition = obj.config
        else:
            definition = obj.definition
        if flags & VCPU_MAXIMUM:
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

    def node_memory_stats(self) -> list[tuple[str, int]]:
        """
        @return: C{virNodeGetMemoryStats} of the whole host, in KiB:
            C{total}, C{free}, C{buffers}, C{cached} from C{/proc/meminfo}.
        """
        values: dict[str, int] = {}
        try:
            with open(os.path.join(getattr(self._node, "proc", "/proc"), "meminfo")) as f:
                for line in f:
                    key, _sep, rest = line.partition(":")
                    fields = rest.split()
                    if fields and fields[0].isdigit():
                        values[key.strip()] = int(fields[0])
        except OSError as e:
            raise OperationFailedError(f"cannot read /proc/meminfo: {e.strerror or e}") from e
        return [(name, values.get(key, 0)) for name, key in (
            ("total", "MemTotal"), ("free", "MemFree"), ("buffers", "Buffers"),
            ("cached", "Cached"))]

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

    def capabilities_xml(self) -> Deferred[str]:
        """
        The host's slow facts (CPUID, KVM, power management) are probed
        once, in a thread, by the first call; later calls (and calls made
        meanwhile) wait for that probe, never the reactor.

        @return: libvirt's capabilities XML for this host.
        """

        def build(_: None) -> str:
            guests = [self._caps.get(binary) for binary in installed_emulators()]
            return capabilities_xml(self._node.host_caps(), guests)

        return self._host_probe.run(self._probe_host_once).addCallback(build)

    def _probe_host_once(self) -> Deferred[None]:
        if self._host_probed:
            return succeed(None)

        def probed(_: None) -> None:
            self._host_probed = True

        return self._in_thread(self._node.probe_slow_facts).addCallback(probed)

    # -- define / undefine ----------------------------------------------------

    def _parse(self, xml: str, warnings: list[str]) -> Domain:
        domain = read_domain_xml(xml, warnings=warnings)
        # The host's MACs are gathered only when one must be generated.
        needs_mac = any(not iface.mac for iface in domain.devices.interfaces)
        domain = fill_defaults(domain, existing_macs=self._macs() if needs_mac else frozenset())
        validate_domain(domain)
        binary = find_emulator(domain)
        caps = self._caps.get(binary)
        os_ = replace(domain.os, arch=domain.os.arch or caps.arch,
                      machine=caps.canonical_machine(domain.os.machine))
        # Controllers and PCI addresses depend on the machine: assigned once
        # it is known, and kept in the stored XML.
        return pci.complete(replace(domain, os=os_), machine_kind(os_.machine or ""))

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
        if obj.active or obj.starting:
            raise OperationInvalidError("domain is already running")
        assert obj.config is not None
        paused = bool(flags & START_PAUSED)
        managed = self.paths.managed_save_file(obj.name)
        if os.path.exists(managed):
            if not flags & START_FORCE_BOOT:
                return ensureDeferred(self._start_from_managed_save(obj, managed, paused))
            os.unlink(managed)
        return ensureDeferred(self._start(obj, obj.config, paused=paused))

    async def _start_from_managed_save(self, obj: DomainObject, path: str,
                                       paused: bool) -> DomainRef:
        """
        C{start} of a domain with a managed-save image: restore it, then
        remove the image (kept if the restore fails).
        """
        ref = await self._restore(path, None, SAVE_PAUSED if paused else 0, into=obj)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return ref

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

    async def _start(self, obj: DomainObject, definition: Domain, *, paused: bool,
                     incoming_fd: int | None = None) -> DomainRef:
        """
        Start (or restore) a guest once a start slot is free: at most
        C{START_SLOTS_PER_CPU} per core initialise at once, so that many
        concurrent starts do not starve the daemon (and its other clients) of
        CPU, and finish no later for it.

        @raise OperationInvalidError: when the domain is being started already.
        """
        if obj.starting:
            raise OperationInvalidError("domain is already being started")
        obj.starting = True
        try:
            await self._start_slots.acquire()
            try:
                return await self._launch(obj, definition, paused=paused,
                                          incoming_fd=incoming_fd)
            finally:
                self._start_slots.release()
        finally:
            obj.starting = False

    async def _launch(self, obj: DomainObject, definition: Domain, *, paused: bool,
                      incoming_fd: int | None) -> DomainRef:
        binary = find_emulator(definition)
        caps = self._caps.get(binary)
        ports: list[int] = []
        try:
            live = self._live_definition(definition, ports)
            domain_dir = self.paths.domain_dir(obj.name)
            os.makedirs(domain_dir, mode=0o700, exist_ok=True)

            def launch(fd: int) -> Launch:
                recipe = build_argv(live, caps, LaunchPaths(qmp_fd=fd, domain_dir=domain_dir))
                return recipe if incoming_fd is None else _with_incoming(recipe)

            guest = self._guest_factory(
                self._reactor, live,
                GuestPaths(domain_dir, self.paths.qmp_socket(obj.uuid),
                           self.paths.log_file(obj.name)),
                launch,
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
        # Recorded before QEMU is spawned (pid unknown) and again as soon as it
        # runs: a daemon killed before the start completes finds the process
        # and stops it (see _reattach).
        self._store.save_status(obj.name, GuestStatus(
            name=obj.name, live_xml=format_domain_xml(live, inactive=False, secure=False,
                                                      domain_id=domain_id),
            pid=0, start_time=0, qmp_path=guest.paths.qmp_path, log_path=guest.paths.log_path,
            domain_dir=guest.paths.domain_dir, started_at=0.0, state=DomainState.PAUSED,
            reason=PausedReason.STARTING_UP, domain_id=domain_id).to_document().encode())

        def spawned() -> None:
            self._save_status(obj, guest)

        try:
            if incoming_fd is None:
                await guest.start(paused=paused, on_spawned=spawned)
            else:
                await guest.start(paused=paused, incoming_fd=incoming_fd, on_spawned=spawned)
        except BaseException:
            # A destroy during the start leaves the guest's own reason.
            state, reason = guest.state
            self._forget_guest(obj, guest, reason if state == DomainState.SHUTOFF
                               and reason != ShutoffReason.UNKNOWN else ShutoffReason.FAILED)
            self._release_ports(ports)
            raise
        guest.when_exited().addBoth(self._on_guest_exit, obj, guest, ports)
        obj.live = guest.live_domain
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
            self._forget_guest(obj, guest, guest.state[1])
        elif obj.live is not None and not obj.starting and event.kind in (
                "lifecycle", "device-added", "device-removed", "tray-change"):
            # Pause/resume, devices, media: keep the live XML and status file current.
            obj.live = guest.live_domain
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

        @raise HostSystemError: a directory of the layout cannot be created
            (e.g. a user's home that does not exist).
        """
        try:
            self.paths.create_dirs()
        except OSError as e:
            raise HostSystemError(f"cannot create directory {e.filename}: {e.strerror}") from e
        self.reload_configs()
        attaching = [ensureDeferred(self._reattach(name, document))
                     for name, document in self._store.load_statuses()]
        return DeferredList(attaching, consumeErrors=True).addCallback(lambda _: None)

    def reload_configs(self) -> None:
        """
        Read the config directory and add every domain not known yet; files
        that do not parse are logged and skipped.
        """
        configs, problems = self._store.load_configs()
        autostart = self._store.autostart_names()
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
            obj = DomainObject(domain.uuid, domain.name, domain)
            obj.autostart = name in autostart
            self._add(obj)
            self.log.info("loaded domain {name}", name=name)

    async def _reattach(self, name: str, document: bytes) -> None:
        try:
            status = GuestStatus.from_document(document.decode("utf-8", "replace"))
            live = parse_domain_xml(status.live_xml)
        except (ValueError, QemudError) as e:
            self.log.error("dropping unreadable status of {name}: {error}", name=name, error=e)
            self._store.remove_status(name)
            return
        if status.pid == 0:
            self._stop_unrecorded(name, live, status)
            return
        # Shown running from the status file at once (as libvirtd does), so
        # that clients never see a running guest as shut off meanwhile.
        obj = self._by_name.get(name)
        if obj is None:
            obj = DomainObject(live.uuid, live.name, None)
            self._add(obj)
        domain_id = status.domain_id
        if domain_id <= 0 or domain_id in self._by_id:
            domain_id = next(self._ids)
        else:
            self._ids = itertools.count(max(next(self._ids), domain_id + 1))
        obj.live, obj.id, obj.attaching = live, domain_id, (status.state, status.reason)
        self._by_id[domain_id] = obj
        ports = [g.port for g in live.devices.graphics if g.type == "vnc" and g.autoport]
        for port in ports:
            self._vnc_ports.reserve(port)
        # A start the previous daemon did not finish (it records QEMU as soon
        # as it runs): stop that QEMU, as libvirt ends an interrupted start job.
        interrupted = (status.state, status.reason) == (DomainState.PAUSED,
                                                        PausedReason.STARTING_UP)
        try:
            guest = await self._guest_attach(self._reactor, live, status)
        except Exception as e:
            self.log.warn("guest {name} is gone ({error}); marking it shut off", name=name,
                          error=e)
            self._drop_reattached(obj, domain_id, ports, ShutoffReason.CRASHED)
            return
        if interrupted:
            self.log.warn("the start of {name} was interrupted by a daemon stop; "
                          "stopping its QEMU (pid {pid})", name=name, pid=guest.pid)
            try:
                await guest.destroy()
            finally:
                self._drop_reattached(obj, domain_id, ports, ShutoffReason.FAILED)
            return
        obj.guest, obj.live, obj.attaching = guest, guest.live_domain, None
        guest.add_listener(lambda event: self._on_guest_event(obj, guest, event))
        guest.when_exited().addBoth(self._on_guest_exit, obj, guest, ports)
        if domain_id != status.domain_id:
            self._save_status(obj, guest)
        self.log.info("re-attached to guest {name} pid {pid}", name=name, pid=guest.pid)

    def _stop_unrecorded(self, name: str, live: Domain, status: GuestStatus) -> None:
        """
        The previous daemon stopped between writing a starting status and
        recording QEMU's pid: kill any QEMU it spawned for the domain (it
        never got past its launch) and mark the domain shut off/failed.
        """
        for pid in find_unrecorded(self._procfs, live.uuid, status.domain_dir):
            self.log.warn("the start of {name} was interrupted by a daemon stop; "
                          "killing its QEMU (pid {pid})", name=name, pid=pid)
            with contextlib.suppress(ProcessLookupError):
                self._procfs.kill(pid, signal.SIGKILL)
        self._store.remove_status(name)
        obj = self._by_name.get(name)
        if obj is not None:
            obj.shutoff_reason = ShutoffReason.FAILED

    def _drop_reattached(self, obj: DomainObject, domain_id: int, ports: list[int],
                         reason: int) -> None:
        """
        A guest found in a status file is not (or no longer) running: the
        domain is shut off with C{reason}, or forgotten when transient.
        """
        self._release_ports(ports)
        self._store.remove_status(obj.name)
        self._by_id.pop(domain_id, None)
        obj.live, obj.id, obj.attaching = None, -1, None
        obj.shutoff_reason = reason
        if not obj.persistent:
            self._remove(obj)

    def autostart_all(self) -> Deferred[None]:
        """
        Start every inactive autostart domain; failures are logged.
        """
        starts = []
        for obj in list(self._by_uuid.values()):
            if obj.autostart and not obj.active and obj.config is not None:
                d = ensureDeferred(self._start(obj, obj.config, paused=False))
                d.addErrback(self._autostart_failed, obj.name)
                starts.append(d)
        return DeferredList(starts).addCallback(lambda _: None)

    # -- save / restore -------------------------------------------------------

    def save(self, uuid: bytes, path: str, dxml: str | None = None,
             flags: int = 0) -> Deferred[None]:
        """
        Save a running domain's state to C{path} and stop it (C{virsh save}).

        The image is written to a temporary file and renamed when complete;
        a failed save leaves no file and the guest running.

        @param dxml: an alternative XML to store for the restore (same
            domain); C{None} stores the running definition.
        @param flags: C{SAVE_RUNNING} / C{SAVE_PAUSED} decide the state after
            a restore (default: the state now); C{SAVE_BYPASS_CACHE} is accepted.
        @raise OperationInvalidError: when it is not running.
        """
        if flags & ~(SAVE_BYPASS_CACHE | SAVE_RUNNING | SAVE_PAUSED):
            raise InvalidArgError(f"unsupported flags (0x{flags:x}) in function qemuDomainSaveFlags")
        if flags & SAVE_RUNNING and flags & SAVE_PAUSED:
            raise InvalidArgError("running and paused flags are mutually exclusive")
        obj, guest = self._get_active(uuid)
        return ensureDeferred(self._save(obj, guest, os.path.abspath(path), dxml, flags))

    async def _save(self, obj: DomainObject, guest: Guest, path: str, dxml: str | None,
                    flags: int) -> None:
        if dxml is not None:
            alt = self._parse(dxml, [])
            if alt.uuid != obj.uuid or alt.name != obj.name:
                raise InvalidArgError("the saved XML must describe the same domain")
            xml = format_domain_xml(alt, inactive=True, secure=False)
        else:
            xml = format_domain_xml(guest.live_domain, inactive=True, secure=False)
        running = guest.state[0] == DomainState.RUNNING
        if flags & SAVE_RUNNING:
            running = True
        elif flags & SAVE_PAUSED:
            running = False
        tmp, fd = saveimage.create_image(path, xml, running)
        committed = []

        def commit() -> None:
            saveimage.commit_image(tmp, path)
            committed.append(True)

        try:
            await guest.save(fd, commit)
        except BaseException:
            if not committed:
                saveimage.discard(tmp)
            raise
        finally:
            os.close(fd)
        self.log.info("saved domain {name} to {path}", name=obj.name, path=path)

    def restore(self, path: str, dxml: str | None = None, flags: int = 0) -> Deferred[DomainRef]:
        """
        Start the domain saved in C{path} from its saved state (C{virsh restore}).

        The domain is the one in the image: an inactive domain of that name
        and UUID is restored into; otherwise a transient one is created.

        @param dxml: an alternative XML for the same domain.
        @param flags: C{SAVE_RUNNING} / C{SAVE_PAUSED} override the saved state.
        @raise DomainExistsError: when that domain is running.
        """
        if flags & ~(SAVE_BYPASS_CACHE | SAVE_RUNNING | SAVE_PAUSED):
            raise InvalidArgError(
                f"unsupported flags (0x{flags:x}) in function qemuDomainRestoreFlags")
        return ensureDeferred(self._restore(os.path.abspath(path), dxml, flags))

    async def _restore(self, path: str, dxml: str | None, flags: int, *,
                       into: DomainObject | None = None) -> DomainRef:
        header, fd = saveimage.open_stream(path)
        try:
            domain = self._parse(dxml if dxml is not None else header.xml, [])
            if into is not None:
                if domain.uuid != into.uuid or domain.name != into.name:
                    raise OperationFailedError(
                        f"managed save image of '{into.name}' describes domain '{domain.name}'")
                obj = into
            else:
                existing = self._check_unique(domain, allow_active=False)
                if existing is None:
                    obj = DomainObject(domain.uuid, domain.name, None)
                    self._add(obj)
                else:
                    obj = existing
            paused = not header.running
            if flags & SAVE_RUNNING:
                paused = False
            elif flags & SAVE_PAUSED:
                paused = True
            ref = await self._start(obj, domain, paused=paused, incoming_fd=fd)
        finally:
            os.close(fd)
        self.log.info("restored domain {name} from {path}", name=obj.name, path=path)
        return ref

    def managed_save(self, uuid: bytes, flags: int = 0) -> Deferred[None]:
        """
        Save a persistent domain's state into the daemon's managed-save
        directory; the next C{create} restores it.

        @raise OperationInvalidError: for a transient or inactive domain.
        """
        obj, _guest = self._get_active(uuid)
        if not obj.persistent:
            raise OperationInvalidError("cannot do managed save for transient domain")
        os.makedirs(self.paths.save_dir, mode=0o700, exist_ok=True)
        return self.save(uuid, self.paths.managed_save_file(obj.name), None, flags)

    def managed_save_remove(self, uuid: bytes, flags: int = 0) -> None:
        """
        Remove a domain's managed-save image (nothing if there is none).
        """
        obj = self._get(uuid)
        try:
            os.unlink(self.paths.managed_save_file(obj.name))
        except FileNotFoundError:
            pass

    def get_job_info(self, uuid: bytes) -> Deferred[JobInfo]:
        """
        @return: the progress of the save in progress (type unbounded, from
            C{query-migrate}), or a job of type none.
        @raise OperationInvalidError: when the domain is not running.
        """
        _obj, guest = self._get_active(uuid)
        started = guest.job_started
        if started is None:
            return succeed(JobInfo(JOB_NONE))
        elapsed = int((self._reactor.seconds() - started) * 1000)

        def convert(info: Any) -> JobInfo:
            if guest.job_started is None or not isinstance(info, dict):
                return JobInfo(JOB_NONE)
            return job_info_from_migration(info, elapsed)

        d = guest.query("query-migrate")
        d.addCallback(convert)
        d.addErrback(lambda f: JobInfo(JOB_NONE))
        return d

    # -- devices --------------------------------------------------------------

    def _affected(self, obj: DomainObject, flags: int) -> tuple[bool, bool]:
        live, config = bool(flags & AFFECT_LIVE), bool(flags & AFFECT_CONFIG)
        if not live and not config:
            live, config = obj.active, not obj.active
        if live and not obj.active:
            raise OperationInvalidError("domain is not running")
        if config and not obj.persistent:
            raise OperationInvalidError("transient domains do not have any persistent config")
        return live, config

    def _caps_and_kind(self, domain: Domain) -> tuple[QemuCaps, str]:
        caps = self._caps.get(find_emulator(domain))
        return caps, machine_kind(caps.canonical_machine(domain.os.machine))

    def attach_device(self, uuid: bytes, xml: str, flags: int = 0) -> Deferred[None]:
        """
        Attach a C{<disk>} or C{<interface>} live, to the config, or both
        (C{AFFECT_LIVE}, C{AFFECT_CONFIG}; 0 means live when running, else
        config).  Live attach hot-plugs with the boot command line's device
        properties; a device-added event follows.

        @raise OperationFailedError: the target dev or MAC is in use.
        """
        if flags & ~(AFFECT_LIVE | AFFECT_CONFIG):
            raise InvalidArgError(
                f"unsupported flags (0x{flags:x}) in function qemuDomainAttachDeviceFlags")
        obj = self._get(uuid)
        live, config = self._affected(obj, flags)
        device = parse_device_xml(xml, existing_macs=self._macs())
        new_config: Domain | None = None
        if config:
            assert obj.config is not None
            hotplug.check_attachable(obj.config, device)
            new_config = self._parse(format_domain_xml(
                hotplug.add_device(obj.config, device), inactive=True, secure=False), [])
        if live:
            assert obj.live is not None
            hotplug.check_attachable(obj.live, device)
        return ensureDeferred(self._change_devices(
            obj, self._attach_live(device) if live else None, new_config))

    def _attach_live(self, device: Disk | Interface) -> Callable[[Guest], Deferred[Any]]:
        def attach(guest: Guest) -> Deferred[Any]:
            caps, kind = self._caps_and_kind(guest.live_domain)
            if isinstance(device, Disk):
                return guest.attach_disk(device, kind=kind, has_device=caps.has_device)
            return guest.attach_interface(device, driver=nic_driver(device, caps, kind),
                                          kind=kind)
        return attach

    async def _change_devices(self, obj: DomainObject,
                              live_change: Callable[[Guest], Deferred[Any]] | None,
                              new_config: Domain | None) -> None:
        """
        Apply a device change to the running guest (then keep its live
        definition and status file current) and store the new config.
        """
        guest = obj.guest
        if live_change is not None and guest is not None:
            try:
                await live_change(guest)
            except BaseException:
                # What did get plugged (a SCSI controller) stays in the live
                # definition.
                if obj.guest is guest and guest.live_domain != obj.live:
                    obj.live = guest.live_domain
                    self._save_status(obj, guest)
                raise
            if obj.guest is guest:
                obj.live = guest.live_domain
                self._save_status(obj, guest)
        if new_config is not None:
            self._store_config(obj, new_config)

    def _store_config(self, obj: DomainObject, domain: Domain) -> None:
        self._store.save_config(domain.name, format_domain_xml(domain, inactive=True,
                                                               secure=False))
        obj.config = domain

    def _find_device(self, domain: Domain, device: Disk | Interface,
                     mac_given: bool) -> Disk | Interface:
        if isinstance(device, Disk):
            disk = hotplug.find_disk(domain, device.target_dev)
            if disk is None:
                raise hotplug.DeviceMissingError(f"no target device {device.target_dev}")
            return disk
        if mac_given:
            iface = hotplug.find_interface(domain, device)
        elif len(domain.devices.interfaces) == 1:
            iface = domain.devices.interfaces[0]
        elif not domain.devices.interfaces:
            iface = None
        else:
            raise OperationFailedError("multiple devices matching MAC address; give a <mac>")
        if iface is None:
            raise hotplug.DeviceMissingError(
                f"no device matching MAC address {device.mac} found")
        return iface

    def detach_device(self, uuid: bytes, xml: str, flags: int = 0) -> Deferred[None]:
        """
        Detach a C{<disk>} (matched by target dev) or C{<interface>} (by
        MAC) live, from the config, or both.  Live detach waits for the guest
        to release the device (QEMU's C{DEVICE_DELETED}), then frees its
        back-end; a device-removed event follows.

        @raise DeviceMissingError: no such device.
        @raise OperationTimeoutError: the guest did not release it in time.
        """
        if flags & ~(AFFECT_LIVE | AFFECT_CONFIG):
            raise InvalidArgError(
                f"unsupported flags (0x{flags:x}) in function qemuDomainDetachDeviceFlags")
        obj = self._get(uuid)
        live, config = self._affected(obj, flags)
        device = parse_device_xml(xml, existing_macs=self._macs())
        mac_given = "<mac" in xml
        new_config: Domain | None = None
        if config:
            assert obj.config is not None
            found = self._find_device(obj.config, device, mac_given)
            new_config = hotplug.remove_device(obj.config, found)
        live_device = None
        if live:
            assert obj.live is not None
            live_device = self._find_device(obj.live, device, mac_given)
        return ensureDeferred(self._change_devices(
            obj, None if live_device is None else lambda guest: guest.detach_device(live_device),
            new_config))

    def update_device(self, uuid: bytes, xml: str, flags: int = 0) -> Deferred[None]:
        """
        Change the medium of a cdrom or floppy (C{virsh change-media}): the
        C{<disk>} names the drive by target dev; no C{<source>} ejects.

        @raise DeviceMissingError: no such drive.
        @raise OperationUnsupportedError: anything but a cdrom or floppy medium.
        """
        if flags & ~(AFFECT_LIVE | AFFECT_CONFIG | DEVICE_MODIFY_FORCE):
            raise InvalidArgError(
                f"unsupported flags (0x{flags:x}) in function qemuDomainUpdateDeviceFlags")
        obj = self._get(uuid)
        live, config = self._affected(obj, flags)
        device = parse_device_xml(xml, existing_macs=self._macs())
        if not isinstance(device, Disk):
            raise OperationUnsupportedError("only the medium of a cdrom or floppy can be updated")
        new_config: Domain | None = None
        for domain, wanted in ((obj.config, config), (obj.live, live)):
            if not wanted or domain is None:
                continue
            disk = self._find_device(domain, device, True)
            assert isinstance(disk, Disk)
            if disk.device not in ("cdrom", "floppy"):
                raise OperationUnsupportedError(
                    f"disk '{disk.target_dev}': only the medium of a cdrom or floppy can be "
                    "changed")
            if domain is obj.config:
                new_config = hotplug.replace_disk(domain, replace(
                    disk, source=device.source,
                    driver_type=device.driver_type if device.source else disk.driver_type))
        return ensureDeferred(self._change_devices(
            obj, (lambda guest: guest.change_media(device)) if live else None, new_config))

    # -- statistics -----------------------------------------------------------

    def get_vcpu_info(self, uuid: bytes, maxinfo: int,
                      maplen: int) -> Deferred[tuple[list[stats.VcpuInfo], bytes]]:
        """
        C{virDomainGetVcpus}: per vCPU its state, CPU time and the host CPU it
        last ran on (from C{query-cpus-fast} thread ids and
        C{/proc/PID/task/TID/stat}), and its affinity map.

        @raise OperationInvalidError: when the domain is not running.
        """
        _obj, guest = self._get_active(uuid)
        d = guest.query("query-cpus-fast")

        def convert(reply: Any) -> tuple[list[stats.VcpuInfo], bytes]:
            pid = guest.pid
            if pid is None:
                raise OperationInvalidError("domain is not running")
            threads = stats.vcpu_threads(reply or [])[:max(maxinfo, 0)]
            infos = stats.vcpu_info(pid, threads, os.sysconf("SC_CLK_TCK"))
            maps = b"".join(stats.cpumap(tid, maplen) for _n, tid in threads) if maplen else b""
            return infos, maps

        return d.addCallback(convert)

    def memory_stats(self, uuid: bytes, max_stats: int) -> Deferred[list[tuple[int, int]]]:
        """
        C{virDomainMemoryStats}: the balloon's actual size (C{query-balloon};
        the current memory without a balloon) and QEMU's RSS, in KiB.
        """
        obj, guest = self._get_active(uuid)
        current = obj.definition.current_memory_kib or obj.definition.memory_kib

        def convert(reply: Any) -> list[tuple[int, int]]:
            actual = current
            if isinstance(reply, dict) and isinstance(reply.get("actual"), int):
                actual = reply["actual"] // 1024
            found = [(stats.MEMORY_STAT_ACTUAL_BALLOON, actual)]
            pid = guest.pid
            rss = stats.read_rss_kib(pid) if pid is not None else None
            if rss is not None:
                found.append((stats.MEMORY_STAT_RSS, rss))
            return found[:max(max_stats, 0)]

        d = guest.query("query-balloon")
        d.addErrback(lambda f: None)
        return d.addCallback(convert)

    def block_stats(self, uuid: bytes, path: str) -> Deferred[tuple[int, int, int, int, int]]:
        """
        C{virDomainBlockStats} of one disk (target dev or source path), or of
        all disks for C{""}.
        """
        obj, guest = self._get_active(uuid)
        live = guest.live_domain
        if path:
            stats.find_disk_alias(live, path)
        d = guest.query("query-blockstats")
        return d.addCallback(lambda reply: stats.block_stats(
            live, stats.block_counters(reply or []), path))

    def interface_stats(self, uuid: bytes, path: str) -> tuple[int, ...]:
        """
        C{virDomainInterfaceStats}: the counters of a tap-backed interface;
        user-mode interfaces have none (see L{qemud.qemu.stats}).
        """
        _obj, guest = self._get_active(uuid)
        return stats.interface_stats(guest.live_domain, path)

    def get_all_domain_stats(self, refs: list[bytes], groups: int,
                             flags: int) -> Deferred[list[tuple[DomainRef, list[stats.Param]]]]:
        """
        C{virConnectGetAllDomainStats} / C{virDomainListGetStats}
        (C{virsh domstats}): typed parameters with libvirt's names for the
        state, cpu-total, balloon, vcpu, interface and block groups.

        @param refs: the domains' UUIDs; empty means every domain matching
            C{flags} (the C{list_domains} filter bits).
        @param groups: C{virDomainStatsTypes} bits, 0 for all supported.
        """
        enforce = bool(flags & 0x80000000)
        if enforce and groups & ~stats.STATS_SUPPORTED:
            raise OperationUnsupportedError("Stats types bits 0x%x are not supported by this "
                                            "daemon" % (groups & ~stats.STATS_SUPPORTED))
        groups = (groups & stats.STATS_SUPPORTED) or stats.STATS_SUPPORTED
        if refs:
            objs = [self._get(u) for u in refs]
        else:
            wanted = {ref.uuid for ref in self.list_domains(flags & 0xFFFF)}
            objs = [o for o in self._by_uuid.values() if o.uuid_bytes in wanted]
        return ensureDeferred(self._collect_stats(objs, groups))

    async def _collect_stats(self, objs: list[DomainObject],
                             groups: int) -> list[tuple[DomainRef, list[stats.Param]]]:
        records = []
        for obj in objs:
            try:
                params = await self._domain_stats(obj, groups)
            except QemudError as e:
                self.log.info("stats of {name}: {error}", name=obj.name, error=e.message)
                params = []
            records.append((obj.ref, params))
        return records

    async def _domain_stats(self, obj: DomainObject, groups: int) -> list[stats.Param]:
        state, reason = obj.state()
        params: list[stats.Param] = []
        if groups & stats.STATS_STATE:
            params += [stats.sint("state.state", state), stats.sint("state.reason", reason)]
        guest = obj.guest
        pid = guest.pid if guest is not None else None
        definition = obj.definition
        if guest is None or pid is None:
            return params
        ticks = os.sysconf("SC_CLK_TCK")
        if groups & stats.STATS_CPU_TOTAL:
            total = stats.read_process_stat(pid)
            if total is not None:
                user = total.utime * 1_000_000_000 // ticks
                system = total.stime * 1_000_000_000 // ticks
                params += [stats.ull("cpu.time", user + system),
                           stats.ull("cpu.user", user), stats.ull("cpu.system", system)]
        if groups & stats.STATS_BALLOON:
            current = definition.current_memory_kib or definition.memory_kib
            try:
                balloon = await guest.query("query-balloon")
                if isinstance(balloon, dict) and isinstance(balloon.get("actual"), int):
                    current = balloon["actual"] // 1024
            except QemudError:
                pass
            params += [stats.ull("balloon.current", current),
                       stats.ull("balloon.maximum", definition.memory_kib)]
            rss = stats.read_rss_kib(pid)
            if rss is not None:
                params.append(stats.ull("balloon.rss", rss))
        if groups & stats.STATS_VCPU:
            threads = stats.vcpu_threads(await guest.query("query-cpus-fast") or [])
            params += [stats.uint("vcpu.current", definition.current_vcpus or definition.vcpus),
                       stats.uint("vcpu.maximum", definition.vcpus)]
            for info in stats.vcpu_info(pid, threads, ticks):
                params += [stats.sint(f"vcpu.{info.number}.state", info.state),
                           stats.ull(f"vcpu.{info.number}.time", info.cpu_time_ns)]
        if groups & stats.STATS_INTERFACE:
            params += stats.net_params(guest.live_domain)
        if groups & stats.STATS_BLOCK:
            counters = stats.block_counters(await guest.query("query-blockstats") or [])
            params += stats.block_params(guest.live_domain, counters, {})
        return params

    def _autostart_failed(self, failure: Failure, name: str) -> None:
        self.log.failure("autostart of {name} failed", failure, name=name)


def _state_flag(state: int) -> int:
    return {DomainState.RUNNING: LIST_RUNNING, DomainState.PAUSED: LIST_PAUSED,
            DomainState.SHUTOFF: LIST_SHUTOFF}.get(DomainState(state), LIST_OTHER)


# (flag for "yes", flag for "no", the test) of each C{virConnectListAllDomains} filter pair.
_LIST_FILTERS: tuple[tuple[int, int, Callable[[DomainDriver, DomainObject], bool]], ...] = (
    (LIST_ACTIVE, LIST_INACTIVE, lambda driver, obj: obj.active),
    (LIST_PERSISTENT, LIST_TRANSIENT, lambda driver, obj: obj.persistent),
    (LIST_MANAGEDSAVE, LIST_NO_MANAGEDSAVE, lambda driver, obj: driver._has_managed_save(obj)),
    (LIST_AUTOSTART, LIST_NO_AUTOSTART, lambda driver, obj: obj.autostart),
    (LIST_HAS_SNAPSHOT, LIST_NO_SNAPSHOT, lambda driver, obj: False),
    (LIST_HAS_CHECKPOINT, LIST_NO_CHECKPOINT, lambda driver, obj: False),
)


def _nothing(old: Domain | None, new: Domain | None) -> None:
    """The C{on_change} of a domain no driver indexes."""
