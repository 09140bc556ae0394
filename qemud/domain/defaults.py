# -*- test-case-name: tests.domain.test_defaults -*-
"""
The defaults step: fill in what a domain XML document left out, as libvirt's
post-parse callbacks do.

This sits between reading (L{qemud.domain.xml.read_domain_xml}) and
validation (L{qemud.domain.validate.validate_domain}).  It generates the UUID
and MAC addresses, derives each disk's bus from its target name, makes every
cdrom read-only, adds C{<boot dev='hd'/>} when no boot device is named, adds
the implicit C{<memballoon model='virtio'/>}, a VGA video device for a guest
with graphics, and the attributes libvirt always prints (vCPU placement,
current memory, input buses, serial ports, watchdog action).

L{assign_aliases} gives devices the aliases libvirt shows for a running
guest.  Machine types are not touched: resolving C{pc} to a versioned type
needs QEMU's capabilities and is the driver's job; L{machine_kind} only
tells the machine families apart.  Controllers and PCI addresses, which
depend on the machine, are the next step's (L{qemud.domain.pci.complete}).

This module is pure (standard library only); nothing here raises for bad
input, that is the validation step's job.
"""

from __future__ import annotations

import os
import re
import uuid as _uuid
from dataclasses import replace

from qemud.domain.model import (
    CPU,
    OS,
    CharDev,
    Controller,
    Devices,
    Disk,
    Domain,
    Interface,
    MemBalloon,
    Video,
)
from qemud.errors import InternalError

#: The prefix of generated MACs: QEMU's (and libvirt's) OUI.
MAC_PREFIX = "52:54:00"

#: Machine kinds (L{machine_kind}) whose PCI layout qemud knows.
I440FX = "i440fx"
Q35 = "q35"

_PREFIX_BUS = (("hd", "ide"), ("fd", "fdc"), ("vd", "virtio"), ("sd", "scsi"), ("ub", "usb"))
_DISK_NAME = re.compile(r"(hd|fd|vd|sd|xvd|ubd)([a-z]{1,7})")
_VIDEO_VRAM = {"vga": 16384, "cirrus": 16384, "vmvga": 16384, "bochs": 16384, "qxl": 65536}


def generate_uuid() -> str:
    """
    @return: a new random UUID in lower-case dashed form.
    """
    return str(_uuid.uuid4())


def generate_mac(existing: frozenset[str]) -> str:
    """
    Generate a MAC address with QEMU's C{52:54:00} prefix.

    @param existing: lower-case MACs already in use; the result is not among them.
    @return: the new MAC in lower-case colon form.
    @raise InternalError: if no free address turns up after many attempts.
    """
    for _ in range(1000):
        tail = os.urandom(3)
        mac = f"{MAC_PREFIX}:{tail[0]:02x}:{tail[1]:02x}:{tail[2]:02x}"
        if mac not in existing:
            return mac
    raise InternalError("could not generate a unique MAC address")


def disk_index(target_dev: str) -> int | None:
    """
    libvirt's C{virDiskNameToIndex}: the position a target name encodes.

    @param target_dev: e.g. C{'hda'} (0), C{'vdb'} (1), C{'sdaa'} (26).
    @return: the index, or C{None} if the name has no known prefix and letters.
    """
    m = _DISK_NAME.fullmatch(target_dev)
    if m is None:
        return None
    idx = 0
    for i, ch in enumerate(m.group(2)):
        idx = (idx + (1 if i else 0)) * 26 + (ord(ch) - 97)
    return idx


def default_disk_bus(target_dev: str, device: str) -> str:
    """
    The bus libvirt picks when C{<target bus=>} is absent.

    @return: C{fdc} for a floppy; else by the target's prefix (C{hd} ide,
        C{fd} fdc, C{vd} virtio, C{sd} scsi, C{ub} usb), C{ide} otherwise.
    """
    if device == "floppy":
        return "fdc"
    for prefix, bus in _PREFIX_BUS:
        if target_dev.startswith(prefix):
            return bus
    return "ide"


def fill_disk_defaults(disk: Disk) -> Disk:
    """
    Fill a disk's bus from its target name; make a cdrom read-only.
    """
    bus = disk.target_bus or default_disk_bus(disk.target_dev, disk.device)
    readonly = disk.readonly or disk.device == "cdrom"
    if bus == disk.target_bus and readonly == disk.readonly:
        return disk
    return replace(disk, target_bus=bus, readonly=readonly)


def fill_interface_defaults(iface: Interface, used_macs: set[str]) -> Interface:
    """
    Give an interface without a MAC a generated one.

    @param used_macs: MACs in use; the generated one is added to it.
    """
    if iface.mac:
        return iface
    mac = generate_mac(frozenset(used_macs))
    used_macs.add(mac)
    return replace(iface, mac=mac)


def fill_device_defaults(
    device: Disk | Interface, *, existing_macs: frozenset[str] = frozenset()
) -> Disk | Interface:
    """
    The defaults step for a single hot-plugged device.

    @param existing_macs: MACs in use; a generated MAC avoids them.
    """
    if isinstance(device, Disk):
        return fill_disk_defaults(device)
    return fill_interface_defaults(device, set(existing_macs))


def _chardev(c: CharDev, index: int, console: bool) -> CharDev:
    changes: dict[str, object] = {}
    if c.target_port is None:
        changes["target_port"] = index
    if console and c.target_type is None:
        changes["target_type"] = "serial"
    if c.type in ("unix", "tcp") and c.source_mode is None:
        changes["source_mode"] = "connect"
    if c.type == "tcp" and c.protocol is None:
        changes["protocol"] = "raw"
    return replace(c, **changes) if changes else c  # type: ignore[arg-type]


def _video(v: Video) -> Video:
    model = v.model or "vga"
    vram = v.vram if v.vram is not None else _VIDEO_VRAM.get(model)
    heads = v.heads if v.heads is not None or model == "none" else 1
    if (model, vram, heads) == (v.model, v.vram, v.heads):
        return v
    return replace(v, model=model, vram=vram, heads=heads)


def _fill_devices(dv: Devices, existing_macs: frozenset[str]) -> Devices:
    disks = tuple(fill_disk_defaults(d) for d in dv.disks)
    ifaces = dv.interfaces
    if any(not n.mac for n in ifaces):
        used = set(existing_macs)
        used.update(n.mac for n in ifaces if n.mac)
        ifaces = tuple(fill_interface_defaults(n, used) for n in ifaces)
    serials = tuple(_chardev(c, i, False) for i, c in enumerate(dv.serials))
    consoles = tuple(_chardev(c, i, True) for i, c in enumerate(dv.consoles))
    inputs = tuple(
        n if n.bus is not None else replace(n, bus="usb" if n.type == "tablet" else "ps2")
        for n in dv.inputs
    )
    videos = tuple(_video(v) for v in dv.videos)
    if not videos and dv.graphics:
        videos = (Video(model="vga", vram=16384, heads=1),)
    balloon = dv.memballoon if dv.memballoon is not None else MemBalloon(model="virtio")
    watchdogs = tuple(
        w if w.action is not None else replace(w, action="reset")
        for w in dv.watchdogs
    )
    return replace(dv, disks=disks, interfaces=ifaces, serials=serials, consoles=consoles,
                   inputs=inputs, videos=videos, memballoon=balloon, watchdogs=watchdogs)


def _fill_cpu(cpu: CPU | None) -> CPU | None:
    if cpu is None or cpu.mode != "custom" or cpu.model is None:
        return cpu
    if cpu.match is not None and cpu.fallback is not None:
        return cpu
    return replace(cpu, match=cpu.match or "exact", fallback=cpu.fallback or "allow")


def fill_defaults(domain: Domain, *, existing_macs: frozenset[str] = frozenset()) -> Domain:
    """
    The defaults step for a whole definition.

    @param domain: the definition as read.
    @param existing_macs: lower-case MACs used by other guests; generated MACs avoid them.
    @return: the definition with every default filled in.
    """
    d = domain
    devices = _fill_devices(d.devices, existing_macs)
    os_def: OS = d.os
    bootable: list[Disk | Interface] = [*devices.disks, *devices.interfaces]
    if not os_def.boot_devs and not any(dev.boot_order is not None for dev in bootable):
        os_def = replace(os_def, boot_devs=("hd",))
    current_vcpus = None if d.current_vcpus == d.vcpus else d.current_vcpus
    return replace(
        d,
        uuid=d.uuid or generate_uuid(),
        current_memory_kib=d.memory_kib if d.current_memory_kib is None
        else d.current_memory_kib,
        current_vcpus=current_vcpus,
        vcpu_placement=d.vcpu_placement or "static",
        os=os_def,
        cpu=_fill_cpu(d.cpu),
        devices=devices,
    )


def disk_alias(disk: Disk) -> str | None:
    """
    The alias libvirt gives a disk of a running guest.

    @return: e.g. C{ide0-1-0} (hdc), C{virtio-disk0}, C{sata0-0-0},
        C{scsi0-0-0-0}, C{fdc0-0-0}, C{usb-disk0}; C{None} for a bad target.
    """
    idx = disk_index(disk.target_dev)
    if idx is None:
        return None
    bus = disk.target_bus
    if bus == "ide":
        return f"ide{idx // 4}-{(idx % 4) // 2}-{idx % 2}"
    if bus == "sata":
        return f"sata{idx // 6}-0-{idx % 6}"
    if bus == "scsi":
        return f"scsi0-0-0-{idx}"
    if bus == "fdc":
        return f"fdc0-0-{idx}"
    if bus == "virtio":
        return f"virtio-disk{idx}"
    if bus == "usb":
        return f"usb-disk{idx}"
    return None


def machine_kind(machine: str | None, arch: str | None = None) -> str:
    """
    @param machine: a machine type (C{pc}, C{pc-i440fx-7.2}, C{q35}, ...), or
        C{None} for the emulator's default (C{pc} on x86).
    @param arch: the guest architecture, used when C{machine} is C{None}.
    @return: C{i440fx}, C{q35}, C{isapc}, C{microvm} or C{other}.
    """
    if machine is None:
        return I440FX if arch in (None, "x86_64", "i686") else "other"
    if machine.startswith("pc-q35") or machine == "q35":
        return Q35
    if machine.startswith("pc-i440fx") or machine == "pc":
        return I440FX
    if machine in ("isapc", "microvm"):
        return machine
    return "other"


def controller_alias(controller: Controller, kind: str = I440FX) -> str:
    """
    @param controller: a controller.
    @param kind: the machine kind.
    @return: libvirt's alias, which is also QEMU's device id: C{usb},
        C{scsi0}, C{sata1}, C{virtio-serial0}, C{pci.1}; q35's built-in
        SATA controller is C{ide}.
    """
    if controller.type == "pci":
        return f"pci.{controller.index}"
    if controller.type == "usb":
        return "usb" if controller.index == 0 else f"usb{controller.index}"
    if controller.type == "sata" and controller.index == 0 and kind == Q35:
        return "ide"
    return f"{controller.type}{controller.index}"


def assign_aliases(domain: Domain) -> Domain:
    """
    Give every device the alias libvirt shows in a running guest's XML.

    Disks by bus and position (C{ide0-0-0}, C{virtio-disk0}, ...); then
    C{net0}, C{serial0}, C{input0}, C{video0}, C{balloon0}, C{watchdog0},
    C{rng0}, ... by order; controllers C{usb}, C{scsi0}, ...
    (L{controller_alias}).  A first console of target type C{serial} is the
    first serial port and shares its alias, as in libvirt.

    @param domain: a valid definition.
    @return: a copy with aliases set.
    """
    dv = domain.devices
    kind = machine_kind(domain.os.machine, domain.os.arch)
    consoles = []
    for i, c in enumerate(dv.consoles):
        if i == 0 and dv.serials and c.target_type == "serial":
            consoles.append(replace(c, alias="serial0"))
        else:
            consoles.append(replace(c, alias=f"console{i}"))
    balloon = dv.memballoon
    if balloon is not None:
        balloon = replace(balloon, alias=None if balloon.model == "none" else "balloon0")
    devices = replace(
        dv,
        disks=tuple(replace(d, alias=disk_alias(d)) for d in dv.disks),
        interfaces=tuple(replace(n, alias=f"net{i}") for i, n in enumerate(dv.interfaces)),
        serials=tuple(replace(c, alias=f"serial{i}") for i, c in enumerate(dv.serials)),
        consoles=tuple(consoles),
        inputs=tuple(replace(n, alias=f"input{i}") for i, n in enumerate(dv.inputs)),
        videos=tuple(replace(v, alias=f"video{i}") for i, v in enumerate(dv.videos)),
        memballoon=balloon,
        watchdogs=tuple(replace(w, alias=f"watchdog{i}") for i, w in enumerate(dv.watchdogs)),
        rngs=tuple(replace(r, alias=f"rng{i}") for i, r in enumerate(dv.rngs)),
        controllers=tuple(replace(c, alias=controller_alias(c, kind)) for c in dv.controllers),
    )
    return replace(domain, devices=devices)

