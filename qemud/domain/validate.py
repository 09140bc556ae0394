# -*- test-case-name: tests.domain.test_validate -*-
"""
The validation step: check that a complete definition makes sense.

Runs after L{qemud.domain.defaults.fill_defaults}, on values that are already
typed; it checks ranges and the relations between fields (a disk target that
fits its bus, unique targets, MACs and boot orders, memory and vCPU limits),
and raises a L{DomainConfigError} (or L{ConfigUnsupportedError}) whose text
names the element and the offending value.

This module is pure (standard library only).
"""

from __future__ import annotations

import re

from qemud.domain.model import (
    LIFECYCLE_ACTIONS,
    CharDev,
    Disk,
    Domain,
    Interface,
)
from qemud.errors import ConfigUnsupportedError, DomainConfigError

#: The smallest memory (and current memory) a guest may have, in KiB.
MIN_MEMORY_KIB = 1024
#: The largest vCPU count accepted.
MAX_VCPUS = 4096
#: The longest domain name, in UTF-8 bytes (it becomes a file name).
MAX_NAME_BYTES = 255

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_CPUSET = re.compile(r"\^?[0-9]{1,6}(?:-[0-9]{1,6})?(?:,\^?[0-9]{1,6}(?:-[0-9]{1,6})?)*")
_MACHINE = re.compile(r"[A-Za-z0-9._-]+")
_MODEL = re.compile(r"[A-Za-z0-9_-]+")
_SERIAL = re.compile(r"[A-Za-z0-9_.+\- ]*")

_ARCHES = frozenset((
    "i686", "x86_64", "aarch64", "armv6l", "armv7l", "armv7b", "ppc", "ppc64", "ppc64le",
    "ppcemb", "s390", "s390x", "riscv32", "riscv64", "mips", "mipsel", "mips64", "mips64el",
    "sparc", "sparc64", "alpha", "cris", "lm32", "m68k", "microblaze", "microblazeel",
    "nios2", "or32", "parisc", "parisc64", "sh4", "sh4eb", "unicore32", "xtensa", "xtensaeb",
    "loongarch64",
))
_SHUTDOWN_ACTIONS = ("destroy", "restart", "preserve", "rename-restart")
_CPU_MATCH = ("minimum", "exact", "strict")
_CPU_CHECK = ("none", "partial", "full")
_CPU_FALLBACK = ("allow", "forbid")
_CPU_POLICIES = ("force", "require", "optional", "disable", "forbid")
_TIMERS = ("platform", "pit", "rtc", "hpet", "tsc", "kvmclock", "hypervclock", "armvtimer")
_TICKPOLICIES = ("delay", "catchup", "merge", "discard")
_DISK_FORMATS = ("raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc", "vhdx", "luks")
_DISK_CACHES = ("default", "none", "writethrough", "writeback", "directsync", "unsafe")
_BUS_TARGETS = {
    "ide": (re.compile(r"hd[a-d]"), "hda to hdd"),
    "fdc": (re.compile(r"fd[ab]"), "fda or fdb"),
    "virtio": (re.compile(r"vd[a-z]{1,3}"), "vda, vdb, ..."),
    "scsi": (re.compile(r"sd[a-z]{1,3}"), "sda, sdb, ..."),
    "sata": (re.compile(r"sd[a-z]{1,3}"), "sda, sdb, ..."),
    "usb": (re.compile(r"sd[a-z]{1,3}"), "sda, sdb, ..."),
}
_CHR_MODES = ("bind", "connect")
_CHR_PROTOCOLS = ("raw", "telnet", "telnets", "tls")


def check_name(name: str) -> None:
    """
    Check a domain name: it becomes a file name (C{NAME.xml}, C{NAME.log}).

    @param name: the proposed name.
    @raise DomainConfigError: if it is empty, contains C{/}, starts with
        C{.}, contains non-printable characters or is longer than
        L{MAX_NAME_BYTES} bytes in UTF-8.
    """
    if not name:
        raise DomainConfigError("missing domain name")
    if "/" in name:
        raise DomainConfigError(f"domain name '{name}' must not contain '/'")
    if name[0] == ".":
        raise DomainConfigError(f"domain name '{name}' must not start with '.'")
    if not name.isprintable():
        raise DomainConfigError(f"domain name {name!r} contains non-printable characters")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise DomainConfigError(
            f"domain name '{name[:40]}...' is {size} bytes long; the limit is "
            f"{MAX_NAME_BYTES} bytes"
        )


def check_mac(mac: str) -> None:
    """
    Check a normalised (lower-case, colon-separated) unicast MAC.

    @raise DomainConfigError: naming the address.
    """
    if not _MAC.fullmatch(mac):
        raise DomainConfigError(f"unable to parse mac address '{mac}'")
    if int(mac[:2], 16) & 1:
        raise DomainConfigError(f"expected unicast mac address, found multicast '{mac}'")


def validate_disk(disk: Disk) -> None:
    """
    Check one disk on its own.

    @raise DomainConfigError: for a target that does not fit its bus, a
        missing source, or an unknown format or cache mode.
    @raise ConfigUnsupportedError: for a device/bus pair QEMU cannot build.
    """
    dev, bus = disk.target_dev, disk.target_bus
    rule = _BUS_TARGETS.get(bus)
    if rule is None:
        raise DomainConfigError(f"unknown disk bus '{bus}' for target '{dev}'")
    if not rule[0].fullmatch(dev):
        raise DomainConfigError(
            f"disk target '{dev}' does not fit bus '{bus}' (expected {rule[1]})"
        )
    if disk.type not in ("file", "block"):
        raise DomainConfigError(f"unknown disk type '{disk.type}' for disk '{dev}'")
    if disk.device not in ("disk", "cdrom", "floppy"):
        raise DomainConfigError(f"unknown disk device '{disk.device}' for disk '{dev}'")
    if (disk.device == "floppy") != (bus == "fdc"):
        if bus == "fdc":
            raise ConfigUnsupportedError(
                f"disk '{dev}' on bus 'fdc' must be a floppy, not device '{disk.device}'"
            )
        raise ConfigUnsupportedError(f"floppy '{dev}' must use bus 'fdc', not '{bus}'")
    if disk.device == "cdrom" and bus == "virtio":
        raise ConfigUnsupportedError(f"cdrom '{dev}' cannot use bus 'virtio'")
    if disk.device == "disk" and not disk.source:
        attr = "file" if disk.type == "file" else "dev"
        raise DomainConfigError(
            f"disk '{dev}' has no source: device 'disk' requires <source {attr}=...>"
        )
    if disk.driver_name is not None and disk.driver_name != "qemu":
        raise ConfigUnsupportedError(
            f"unsupported driver name '{disk.driver_name}' for disk '{dev}'"
        )
    if disk.driver_type is not None and disk.driver_type not in _DISK_FORMATS:
        raise DomainConfigError(
            f"unknown driver format value '{disk.driver_type}' for disk '{dev}'"
        )
    if disk.driver_cache is not None and disk.driver_cache not in _DISK_CACHES:
        raise DomainConfigError(f"unknown disk cache mode '{disk.driver_cache}' for disk '{dev}'")
    if disk.tray is not None and disk.tray not in ("open", "closed"):
        raise DomainConfigError(f"unknown disk tray status '{disk.tray}' for disk '{dev}'")
    if disk.serial is not None and not _SERIAL.fullmatch(disk.serial):
        raise DomainConfigError(
            f"disk serial '{disk.serial}' of disk '{dev}' contains invalid characters"
        )


def _check_port(port: int | None, what: str) -> None:
    if port is not None and not 0 < port < 65536:
        raise DomainConfigError(f"invalid port {port} in {what}: expected 1 to 65535")


def validate_interface(iface: Interface) -> None:
    """
    Check one interface on its own.

    @raise DomainConfigError: for a bad MAC, a missing source, a port out of
        range, or a model name with invalid characters.
    """
    check_mac(iface.mac)
    t = iface.type
    where = f"<interface type='{t}'>"
    if t == "network" and not iface.source_network:
        raise DomainConfigError(f"missing <source network=...> in {where}")
    if t == "bridge" and not iface.source_bridge:
        raise DomainConfigError(f"missing <source bridge=...> in {where}")
    if t in ("server", "client", "mcast", "udp"):
        if iface.source_port is None:
            raise DomainConfigError(f"missing <source port=...> in {where}")
        if t != "server" and not iface.source_address:
            raise DomainConfigError(f"missing <source address=...> in {where}")
        _check_port(iface.source_port, f"{where}<source>")
        if t == "udp":
            if not iface.local_address or iface.local_port is None:
                raise DomainConfigError(
                    f"missing <local address=... port=...> in {where}<source>"
                )
            _check_port(iface.local_port, f"{where}<source><local>")
    if iface.model is not None and not _MODEL.fullmatch(iface.model):
        raise DomainConfigError(
            f"interface model name '{iface.model}' contains invalid characters"
        )


def validate_device(device: Disk | Interface) -> None:
    """
    Check a single hot-plugged device.

    @raise DomainConfigError: as L{validate_disk} or L{validate_interface}.
    """
    if isinstance(device, Disk):
        validate_disk(device)
        if device.boot_order is not None and device.boot_order < 1:
            raise DomainConfigError(
                f"incorrect boot order '{device.boot_order}', expecting positive integer"
            )
    else:
        validate_interface(device)
        if device.boot_order is not None and device.boot_order < 1:
            raise DomainConfigError(
                f"incorrect boot order '{device.boot_order}', expecting positive integer"
            )


def _validate_chardev(c: CharDev, tag: str) -> None:
    where = f"<{tag} type='{c.type}'>"
    if c.type in ("file", "unix") and not c.source_path:
        raise DomainConfigError(f"missing source path in {where}")
    if c.type in ("unix", "tcp") and c.source_mode not in _CHR_MODES:
        raise DomainConfigError(f"unknown source mode '{c.source_mode}' in {where}")
    if c.type == "tcp":
        if not c.source_host:
            raise DomainConfigError(f"missing source host in {where}")
        if not c.source_service:
            raise DomainConfigError(f"missing source service in {where}")
        if c.protocol not in _CHR_PROTOCOLS:
            raise DomainConfigError(f"unknown protocol type '{c.protocol}' in {where}")
    if c.type == "udp" and not c.source_service:
        raise DomainConfigError(f"missing source service in {where}")
    if c.target_port is not None and c.target_port < 0:
        raise DomainConfigError(f"invalid target port {c.target_port} in {where}")


def _validate_memory(d: Domain) -> None:
    if d.memory_kib < MIN_MEMORY_KIB:
        raise DomainConfigError(
            f"memory size {d.memory_kib} KiB is below the minimum of {MIN_MEMORY_KIB} KiB"
        )
    cur = d.current_memory_kib
    if cur is not None:
        if cur > d.memory_kib:
            raise DomainConfigError(
                f"currentMemory {cur} KiB is larger than memory {d.memory_kib} KiB"
            )
        if cur < MIN_MEMORY_KIB:
            raise DomainConfigError(
                f"currentMemory size {cur} KiB is below the minimum of {MIN_MEMORY_KIB} KiB"
            )


def _validate_vcpus(d: Domain) -> None:
    if d.vcpus < 1:
        raise DomainConfigError(f"invalid vcpu count {d.vcpus}: must be at least 1")
    if d.vcpus > MAX_VCPUS:
        raise DomainConfigError(f"vcpu count {d.vcpus} exceeds the maximum of {MAX_VCPUS}")
    if d.current_vcpus is not None:
        if d.current_vcpus < 1:
            raise DomainConfigError(
                f"invalid current vcpu count {d.current_vcpus}: must be at least 1"
            )
        if d.current_vcpus > d.vcpus:
            raise DomainConfigError(
                f"maxvcpus must not be less than current vcpus ({d.vcpus} < {d.current_vcpus})"
            )
    if d.vcpu_placement is not None and d.vcpu_placement not in ("static", "auto"):
        raise DomainConfigError(f"unknown vcpu placement '{d.vcpu_placement}'")
    if d.cpuset is not None:
        ok = _CPUSET.fullmatch(d.cpuset) is not None
        if ok:
            for part in d.cpuset.replace("^", "").split(","):
                lo, _, hi = part.partition("-")
                ok = ok and (not hi or int(lo) <= int(hi))
        if not ok:
            raise DomainConfigError(f"invalid value of 'cpuset': '{d.cpuset}'")


def _validate_os_cpu_clock(d: Domain) -> None:
    if d.os.arch is not None and d.os.arch not in _ARCHES:
        raise DomainConfigError(f"unknown architecture '{d.os.arch}' in <os><type arch>")
    if d.os.machine is not None and not _MACHINE.fullmatch(d.os.machine):
        raise DomainConfigError(f"invalid machine type '{d.os.machine}' in <os><type machine>")
    cpu = d.cpu
    if cpu is not None:
        if cpu.match is not None and cpu.match not in _CPU_MATCH:
            raise DomainConfigError(f"invalid CPU match '{cpu.match}' in <cpu>")
        if cpu.check is not None and cpu.check not in _CPU_CHECK:
            raise DomainConfigError(f"invalid CPU check '{cpu.check}' in <cpu>")
        if cpu.fallback is not None and cpu.fallback not in _CPU_FALLBACK:
            raise DomainConfigError(f"invalid CPU fallback '{cpu.fallback}' in <cpu><model>")
        seen = set()
        for f in cpu.features:
            if f.policy not in _CPU_POLICIES:
                raise DomainConfigError(
                    f"invalid CPU feature policy '{f.policy}' for feature '{f.name}'"
                )
            if f.name in seen:
                raise DomainConfigError(f"CPU feature '{f.name}' specified more than once")
            seen.add(f.name)
        if cpu.mode == "custom" and cpu.model is None and cpu.features:
            raise DomainConfigError("non-empty feature list specified without CPU model")
    for t in d.clock.timers:
        if t.name not in _TIMERS:
            raise DomainConfigError(f"unknown timer name '{t.name}' in <clock>")
        if t.tickpolicy is not None and t.tickpolicy not in _TICKPOLICIES:
            raise DomainConfigError(
                f"unknown timer tickpolicy '{t.tickpolicy}' for timer '{t.name}'"
            )


def _validate_boot(d: Domain) -> None:
    seen: dict[int, str] = {}
    devices: list[Disk | Interface] = [*d.devices.disks, *d.devices.interfaces]
    for dev in devices:
        order = dev.boot_order
        if order is None:
            continue
        name = dev.target_dev if isinstance(dev, Disk) else f"interface {dev.mac}"
        if order < 1:
            raise DomainConfigError(
                f"incorrect boot order '{order}' for {name}, expecting positive integer"
            )
        if order in seen:
            raise DomainConfigError(
                f"boot order '{order}' used for more than one device ({seen[order]} and {name})"
            )
        seen[order] = str(name)
    if seen and d.os.boot_devs:
        raise DomainConfigError(
            "per-device boot elements cannot be used together with os/boot elements"
        )


def _validate_devices(d: Domain) -> None:
    dv = d.devices
    targets: dict[str, Disk] = {}
    for disk in dv.disks:
        validate_disk(disk)
        other = targets.get(disk.target_dev)
        if other is not None:
            raise DomainConfigError(
                f"target '{disk.target_dev}' duplicated for disk sources "
                f"'{other.source or ''}' and '{disk.source or ''}'"
            )
        targets[disk.target_dev] = disk
    macs: set[str] = set()
    for iface in dv.interfaces:
        validate_interface(iface)
        if iface.mac in macs:
            raise DomainConfigError(f"MAC address '{iface.mac}' is used by more than one interface")
        macs.add(iface.mac)
    if len(dv.graphics) > 1:
        raise ConfigUnsupportedError("only one <graphics> device is supported")
    for g in dv.graphics:
        if not (g.autoport and g.port == -1) and not 5900 <= g.port <= 65535:
            raise DomainConfigError(
                f"VNC port '{g.port}' out of range: expected -1 (autoport) or 5900 to 65535"
            )
    ports: set[int] = set()
    for c in dv.serials:
        _validate_chardev(c, "serial")
        if c.target_port is not None:
            if c.target_port in ports:
                raise DomainConfigError(
                    f"serial target port {c.target_port} is used by more than one <serial>"
                )
            ports.add(c.target_port)
    for c in dv.consoles:
        _validate_chardev(c, "console")
    for n in dv.inputs:
        if n.bus == "ps2" and n.type == "tablet":
            raise DomainConfigError("ps2 bus does not support tablet input device")
    for v in dv.videos:
        if v.vram is not None and v.vram < 0:
            raise DomainConfigError(f"invalid video vram '{v.vram}' for model '{v.model}'")
        if v.heads is not None and v.heads < 1:
            raise DomainConfigError(f"invalid video heads '{v.heads}' for model '{v.model}'")


def validate_domain(domain: Domain) -> None:
    """
    The validation step for a whole definition.

    @param domain: a definition with its defaults filled in.
    @raise DomainConfigError: naming the element and value at fault.
    @raise ConfigUnsupportedError: for a configuration qemud cannot run.
    """
    d = domain
    check_name(d.name)
    if not _UUID.fullmatch(d.uuid):
        raise DomainConfigError(f"malformed uuid element '{d.uuid}'")
    if d.title is not None and "\n" in d.title:
        raise DomainConfigError("title must not contain newlines")
    _validate_memory(d)
    _validate_vcpus(d)
    for key, allowed in (("on_poweroff", _SHUTDOWN_ACTIONS), ("on_reboot", _SHUTDOWN_ACTIONS),
                         ("on_crash", LIFECYCLE_ACTIONS)):
        value = getattr(d, key)
        if value not in allowed:
            raise DomainConfigError(f"unknown lifecycle action '{value}' for <{key}>")
    _validate_os_cpu_clock(d)
    _validate_devices(d)
    _validate_boot(d)
