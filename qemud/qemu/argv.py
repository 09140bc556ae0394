# -*- test-case-name: tests.qemu.test_argv -*-
"""
Turn a domain definition and a binary's capabilities into a QEMU command line.

This module is pure: no I/O, no Twisted.  L{build_argv} follows libvirt 9's
recipe for QEMU 7.2 (C{qemuBuildCommandLine}):

  - a fixed environment (C{LC_ALL=C}, a minimal C{PATH}, C{HOME} and the
    C{XDG_*} directories inside the domain's own directory);
  - C{-S -no-user-config -nodefaults -no-shutdown}, QMP on a socket the
    daemon opened and passes in as a file descriptor;
  - C{-accel kvm|tcg} (a C{type='kvm'} domain is refused when the caps say
    KVM is not usable: there is no silent fallback to TCG);
  - disks as a C{-blockdev} protocol node plus format node and a front-end
    C{-device}; boot order as C{bootindex} (libvirt 9 no longer uses
    C{-boot order=}), C{-boot strict=on}.

Every device is described by a property dict built by one function per kind
(L{disk_blockdev_props}, L{disk_device_props}, L{netdev_props},
L{nic_device_props}, ...).  L{render_props} turns a dict into a
C{-device}/C{-netdev}/C{-blockdev} argument; the same dict can be sent as
QMP C{device_add}/C{netdev_add}/C{blockdev-add} for hot-plug.  Device ids
are libvirt's aliases (C{ide0-0-0}, C{virtio-disk0}, C{net0}, ...), or the
device's own C{alias} when the definition carries one.

Choices where QEMU 7.2 offers several spellings:
  - C{-machine TYPE,usb=off,dump-guest-core=off,acpi=on|off} (C{-no-acpi} is
    deprecated);
  - C{-m size=NNNk};
  - C{on_reboot='destroy'} becomes C{-action reboot=shutdown};
  - watchdog actions go to C{-action watchdog=...} (libvirt's C{dump} is
    C{pause} to QEMU, as libvirt does);
  - CPU features are C{name=on|off};
  - floppies are C{-device floppy} on the board's own controller (i440fx,
    isapc) with C{-global isa-fdc.bootindexA=N}; q35 has no floppy
    controller, so an C{isa-fdc} (carrying C{bootindexA}) is added first
    (its C{driveA} property is gone in 7.2);
  - VNC with C{autoport} asks QEMU for the first free display
    (C{127.0.0.1:0,to=99}); the chosen port is read back with C{query-vnc};
  - the bridge helper is spawned by QEMU itself, so C{-sandbox} leaves
    C{spawn} allowed when a bridge helper or tap script is used;
  - on i440fx and q35 every PCI device is placed at the address of its
    definition (C{bus=pci.0,addr=0x5}, C{bus=pcie.0,...} on q35; see
    L{qemud.domain.pci}), so the command line, not QEMU's order of
    creation, decides the slots: a guest restored from a saved definition
    has its devices (hot-plugged ones too) where they were.  Controllers
    are devices of the definition (C{<controller>}), with their addresses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from qemud.domain import pci
from qemud.domain.defaults import machine_kind
from qemud.domain.model import (
    RNG,
    CharDev,
    Controller,
    Disk,
    Domain,
    Graphics,
    Input,
    Interface,
    MemBalloon,
    PCIAddress,
    Video,
    Watchdog,
)
from qemud.errors import ConfigUnsupportedError
from qemud.qemu.caps import QemuCaps

__all__ = [
    "DEFAULT_PATH",
    "Launch",
    "LaunchPaths",
    "balloon_device_props",
    "build_argv",
    "chardev_props",
    "controller_device_props",
    "disk_alias",
    "disk_blockdev_props",
    "disk_device_props",
    "disk_index",
    "input_device_props",
    "machine_kind",
    "netdev_props",
    "nic_device_props",
    "nic_driver",
    "pci_device_props",
    "render_props",
    "rng_device_props",
    "rng_object_props",
    "serial_device_props",
    "video_device_props",
    "watchdog_device_props",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
"""The C{PATH} QEMU runs with, as libvirt sets it."""

Props = dict[str, Any]


@dataclass(frozen=True)
class LaunchPaths:
    """
    Where things are for one launch: everything L{build_argv} needs from the host.

    @ivar qmp_fd: the descriptor number, in QEMU, of the listening QMP socket.
    @ivar domain_dir: the domain's private directory; QEMU's C{HOME}.
    @ivar networks: libvirt network name -> host bridge, for C{<interface type='network'>}.
    @ivar bridge_helper: path of C{qemu-bridge-helper}.
    @ivar vnc_listen: the VNC listen address when the definition gives none.
    """

    qmp_fd: int
    domain_dir: str
    networks: tuple[tuple[str, str], ...] = ()
    bridge_helper: str = "/usr/lib/qemu/qemu-bridge-helper"
    vnc_listen: str = "127.0.0.1"


@dataclass(frozen=True)
class Launch:
    """
    A complete recipe to start QEMU.

    @ivar argv: the command line, binary first.
    @ivar env: the whole environment (nothing is inherited).
    """

    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- rendering

def _render_value(value: Any) -> str:
    """
    @param value: a property value (bool, int, str).
    @return: its command-line spelling, commas doubled.
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).replace(",", ",,")


def _flatten(props: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """
    @param props: a property dict, possibly nested (C{{"cache": {"direct": True}}}).
    @return: C{(dotted.key, value)} pairs, skipping C{None} values.
    """
    for key, value in props.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def render_props(props: Mapping[str, Any], head: str | None = None) -> str:
    """
    Render a property dict as QEMU's C{key=value,...} syntax.

    @param props: the properties; nested dicts become dotted keys, booleans
        C{on}/C{off}, C{None} values are left out.
    @param head: a key whose value is written first, bare (C{driver} for
        C{-device}, C{type} for C{-netdev}, C{qom-type} for C{-object}).
    @return: the argument text, with QEMU's comma escaping (C{,} -> C{,,}).
    """
    parts: list[str] = []
    rest = dict(props)
    if head is not None:
        parts.append(_render_value(rest.pop(head)))
    parts.extend(f"{key}={_render_value(value)}" for key, value in _flatten(rest))
    return ",".join(parts)


# ---------------------------------------------------------------- machine

def pci_device_props(props: Props, address: PCIAddress | None, kind: str) -> Props:
    """
    Place a device at its PCI address, as libvirt does.

    @param props: the device's properties, C{driver} first.
    @param address: its address; C{None} leaves the choice to QEMU.
    @param kind: the machine kind: only i440fx and q35 have an address layout.
    @return: C{props} with C{bus} (C{pci.0} / C{pcie.0}, or a q35 root
        port's C{pci.N}), C{addr} (C{0x5}, C{0x1.0x2}) and C{multifunction}
        after the driver.
    """
    if address is None or not pci.has_pci_layout(kind):
        return props
    placed: Props = {"driver": props["driver"], "bus": pci.bus_name(address, kind),
                     "addr": pci.qemu_addr(address), "multifunction": address.multifunction}
    placed.update((key, value) for key, value in props.items() if key != "driver")
    return placed


def _has_pci(kind: str) -> bool:
    """
    @param kind: from L{machine_kind}.
    @return: whether the machine has a PCI bus for devices.
    """
    return kind not in ("isapc", "microvm")


# ---------------------------------------------------------------- disks

_DISK_PREFIX = re.compile(r"^(hd|sd|vd|fd|xvd|ubd)([a-z]+)$")
_FORMATS = frozenset({"raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc", "vhdx",
                      "cloop", "dmg", "parallels", "bochs"})
# cache mode -> (cache.direct, cache.no-flush, write-cache)
_CACHE_MODES: Mapping[str, tuple[bool, bool, bool]] = {
    "none": (True, False, True),
    "writeback": (False, False, True),
    "writethrough": (False, False, False),
    "directsync": (True, False, False),
    "unsafe": (False, True, True),
}


def disk_index(target_dev: str) -> int:
    """
    @param target_dev: C{hda}, C{sdb}, C{vdaa}, ...
    @return: the zero-based index the letters spell (C{a}=0, C{z}=25, C{aa}=26).
    @raise ConfigUnsupportedError: the name is not C{PREFIX} + letters.
    """
    match = _DISK_PREFIX.match(target_dev)
    if match is None:
        raise ConfigUnsupportedError(f"unsupported disk target dev name '{target_dev}'")
    index = 0
    for letter in match.group(2):
        index = index * 26 + (ord(letter) - ord("a") + 1)
    return index - 1


def _disk_placement(disk: Disk, kind: str) -> tuple[str, int, int]:
    """
    @param disk: the disk.
    @param kind: the machine kind.
    @return: (libvirt alias, controller index, unit on that controller).
    @raise ConfigUnsupportedError: the bus or device kind is not supported.
    """
    index = disk_index(disk.target_dev)
    bus = disk.target_bus
    if disk.device == "floppy" and bus != "fdc":
        raise ConfigUnsupportedError(
            f"floppy disk '{disk.target_dev}' must use bus 'fdc', not '{bus}'")
    if bus == "fdc" and disk.device != "floppy":
        raise ConfigUnsupportedError(
            f"disk '{disk.target_dev}' on bus 'fdc' must be a floppy, not '{disk.device}'")
    if bus == "ide":
        if kind == "q35" or kind == "microvm" or kind == "other":
            raise ConfigUnsupportedError(
                "IDE controllers are unsupported for this QEMU binary or machine type")
        if index > 3:
            raise ConfigUnsupportedError(
                f"IDE disk '{disk.target_dev}' is beyond the 4 IDE units (hda..hdd)")
        return f"ide0-{index // 2}-{index % 2}", index // 2, index % 2
    if bus == "fdc":
        if index > 1:
            raise ConfigUnsupportedError(
                f"floppy '{disk.target_dev}' is beyond the 2 floppy units (fda, fdb)")
        return f"fdc0-0-{index}", 0, index
    if not _has_pci(kind) and bus in ("virtio", "scsi", "sata", "usb"):
        raise ConfigUnsupportedError(
            f"disk bus '{bus}' needs a PCI bus, which this machine type has not")
    if bus == "virtio":
        if disk.device != "disk":
            raise ConfigUnsupportedError(
                f"disk '{disk.target_dev}': a {disk.device} cannot be on bus 'virtio'")
        return f"virtio-disk{index}", 0, index
    if bus == "sata":
        return f"sata{index // 6}-0-{index % 6}", index // 6, index % 6
    if bus == "scsi":
        return f"scsi{index // 7}-0-0-{index % 7}", index // 7, index % 7
    if bus == "usb":
        if disk.device != "disk":
            raise ConfigUnsupportedError(
                f"disk '{disk.target_dev}': a {disk.device} cannot be on bus 'usb'")
        return f"usb-disk{index}", 0, index
    raise ConfigUnsupportedError(f"unsupported disk bus '{bus}' for '{disk.target_dev}'")


def disk_alias(disk: Disk, kind: str = "i440fx") -> str:
    """
    @param disk: the disk.
    @param kind: the machine kind (from L{machine_kind}).
    @return: its id: the disk's own alias, or libvirt's (C{ide0-0-0}, C{virtio-disk0}, ...).
    """
    return disk.alias or _disk_placement(disk, kind)[0]


def _node_names(index: int) -> tuple[str, str]:
    """
    @param index: the disk's node index.
    @return: (storage node name, format node name), libvirt 9 style.
    """
    return f"libvirt-{index}-storage", f"libvirt-{index}-format"


def disk_blockdev_props(disk: Disk, index: int) -> list[Props]:
    """
    The block nodes behind one disk: a protocol node and a format node.

    @param disk: the disk.
    @param index: its node index (C{libvirt-INDEX-storage}/C{-format}).
    @return: C{[storage, format]} as C{blockdev-add} dicts, or C{[]} for an
        empty cdrom or floppy.
    @raise ConfigUnsupportedError: unknown driver, format or disk type.
    """
    if disk.source is None:
        if disk.device == "disk":
            raise ConfigUnsupportedError(f"disk '{disk.target_dev}' has no source")
        return []
    if disk.driver_name not in (None, "qemu"):
        raise ConfigUnsupportedError(
            f"unsupported driver name '{disk.driver_name}' for disk '{disk.target_dev}'")
    if disk.type == "file":
        protocol = "file"
    elif disk.type == "block":
        protocol = "host_device"
    else:
        raise ConfigUnsupportedError(
            f"unsupported disk type '{disk.type}' for disk '{disk.target_dev}'")
    fmt = disk.driver_type or "raw"
    if fmt not in _FORMATS:
        raise ConfigUnsupportedError(
            f"unknown driver format value '{fmt}' for disk '{disk.target_dev}'")
    cache: Props | None = None
    if disk.driver_cache not in (None, "default"):
        mode = _CACHE_MODES.get(str(disk.driver_cache))
        if mode is None:
            raise ConfigUnsupportedError(
                f"unknown disk cache mode '{disk.driver_cache}' for disk '{disk.target_dev}'")
        cache = {"direct": mode[0], "no-flush": mode[1]}
    storage, fmt_node = _node_names(index)
    readonly = disk.readonly or disk.device == "cdrom"
    return [
        {"driver": protocol, "filename": disk.source, "node-name": storage,
         "auto-read-only": True, "discard": "unmap", "cache": cache},
        {"node-name": fmt_node, "read-only": readonly, "cache": cache, "driver": fmt,
         "file": storage},
    ]


def disk_device_props(disk: Disk, index: int, *, kind: str = "i440fx",
                      bootindex: int | None = None) -> Props:
    """
    The guest-visible device of one disk (C{device_add} arguments).

    @param disk: the disk.
    @param index: its node index (see L{disk_blockdev_props}).
    @param kind: the machine kind (from L{machine_kind}).
    @param bootindex: its place in the boot order, if any.
    @return: the C{-device} properties; for a floppy, those of C{floppy}.
    @raise ConfigUnsupportedError: an unsupported bus/device combination, or a
        read-only IDE/SATA hard disk.
    """
    alias, controller, unit = _disk_placement(disk, kind)
    alias = disk.alias or alias
    drive = _node_names(index)[1] if disk.source is not None else None
    props: Props
    bus = disk.target_bus
    if bus in ("ide", "sata") and disk.device == "disk" and disk.readonly:
        raise ConfigUnsupportedError(f"readonly {bus} disks are not supported ('{disk.target_dev}')")
    if bus == "ide":
        driver = "ide-cd" if disk.device == "cdrom" else "ide-hd"
        props = {"driver": driver, "bus": f"ide.{controller}", "unit": unit}
    elif bus == "sata":
        driver = "ide-cd" if disk.device == "cdrom" else "ide-hd"
        sata_bus = f"ide.{unit}" if kind == "q35" and controller == 0 else f"sata{controller}.{unit}"
        props = {"driver": driver, "bus": sata_bus}
    elif bus == "scsi":
        driver = "scsi-cd" if disk.device == "cdrom" else "scsi-hd"
        props = {"driver": driver, "bus": f"scsi{controller}.0", "scsi-id": unit}
    elif bus == "virtio":
        props = {"driver": "virtio-blk-pci"}
    elif bus == "usb":
        props = {"driver": "usb-storage", "bus": "usb.0"}
    else:  # fdc
        props = {"driver": "floppy", "unit": unit}
    if disk.shareable:
        props["share-rw"] = True
    props["drive"] = drive
    props["id"] = alias
    if bootindex is not None and bus != "fdc":
        props["bootindex"] = bootindex
    if disk.driver_cache not in (None, "default") and drive is not None and bus != "fdc":
        props["write-cache"] = _CACHE_MODES[str(disk.driver_cache)][2]
    if disk.serial is not None:
        props["serial"] = disk.serial
    return props


# ---------------------------------------------------------------- network

_NIC_DRIVERS: Mapping[str, str] = {
    "virtio": "virtio-net-pci",
    "virtio-net": "virtio-net-pci",
}


def nic_driver(iface: Interface, caps: QemuCaps, kind: str = "i440fx") -> str:
    """
    Choose the QEMU device for a NIC model, as libvirt does.

    @param iface: the interface.
    @param caps: the binary's caps (to check the device exists).
    @param kind: the machine kind; machines without PCI get C{ne2k_isa}.
    @return: the C{-device} driver name.
    @raise ConfigUnsupportedError: QEMU has no such NIC, or it needs PCI and
        the machine has none.
    """
    model = iface.model
    if model is None:
        model = "rtl8139" if _has_pci(kind) else "ne2k_isa"
    driver = _NIC_DRIVERS.get(model, model)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", driver) or not caps.has_device(driver):
        raise ConfigUnsupportedError(
            f"interface model '{model}' is not supported by emulator '{caps.binary}'")
    if not _has_pci(kind) and driver != "ne2k_isa":
        raise ConfigUnsupportedError(
            f"interface model '{model}' needs a PCI bus, which this machine type has not; "
            "use model 'ne2k_isa'")
    return driver


def _host_port(address: str | None, port: int | None, what: str) -> str:
    """
    @param address: a host name or address, or C{None}.
    @param port: the port.
    @param what: the interface type, for the message.
    @return: C{address:port}.
    @raise ConfigUnsupportedError: the port is missing.
    """
    if port is None:
        raise ConfigUnsupportedError(f"interface type '{what}' needs <source port=...>")
    return f"{address or ''}:{port}"


def netdev_props(iface: Interface, index: int, *,
                 paths: LaunchPaths | None = None) -> Props:
    """
    The host back-end of one interface (C{netdev_add} arguments).

    @param iface: the interface.
    @param index: its position; the id is C{hostnetINDEX}.
    @param paths: for type C{network}, the network-to-bridge map, and the
        bridge helper path.
    @return: the C{-netdev} properties, C{type} first.
    @raise ConfigUnsupportedError: an unknown type, an unknown network, or a
        missing address/port/bridge.
    """
    netdev_id = f"host{iface.alias}" if iface.alias else f"hostnet{index}"
    helper = paths.bridge_helper if paths is not None else "/usr/lib/qemu/qemu-bridge-helper"
    kind = iface.type
    if kind == "user":
        return {"type": "user", "id": netdev_id}
    if kind == "ethernet":
        return {"type": "tap", "ifname": iface.target_dev, "script": iface.script or "no",
                "downscript": "no", "id": netdev_id}
    if kind in ("bridge", "network"):
        if kind == "network":
            networks = dict(paths.networks) if paths is not None else {}
            name = iface.source_network
            if name is None or name not in networks:
                raise ConfigUnsupportedError(
                    f"network '{name}' is not known to this host (interface {iface.mac})")
            bridge = networks[name]
        else:
            if not iface.source_bridge:
                raise ConfigUnsupportedError(
                    f"interface {iface.mac} of type 'bridge' needs <source bridge=...>")
            bridge = iface.source_bridge
        return {"type": "bridge", "br": bridge, "helper": helper, "id": netdev_id}
    if kind == "server":
        return {"type": "socket",
                "listen": _host_port(iface.source_address, iface.source_port, kind),
                "id": netdev_id}
    if kind == "client":
        return {"type": "socket",
                "connect": _host_port(iface.source_address or "127.0.0.1",
                                      iface.source_port, kind),
                "id": netdev_id}
    if kind == "mcast":
        if not iface.source_address:
            raise ConfigUnsupportedError("interface type 'mcast' needs <source address=...>")
        return {"type": "socket",
                "mcast": _host_port(iface.source_address, iface.source_port, kind),
                "id": netdev_id}
    if kind == "udp":
        if not iface.source_address:
            raise ConfigUnsupportedError("interface type 'udp' needs <source address=...>")
        local = (_host_port(iface.local_address or "127.0.0.1", iface.local_port, kind)
                 if iface.local_port is not None else None)
        return {"type": "socket",
                "udp": _host_port(iface.source_address, iface.source_port, kind),
                "localaddr": local, "id": netdev_id}
    raise ConfigUnsupportedError(f"unsupported interface type '{kind}'")


def nic_device_props(iface: Interface, index: int, *, driver: str,
                     bootindex: int | None = None) -> Props:
    """
    The guest-visible NIC of one interface (C{device_add} arguments).

    @param iface: the interface.
    @param index: its position; the id is C{netINDEX} and the back-end C{hostnetINDEX}.
    @param driver: from L{nic_driver}.
    @param bootindex: its place in the boot order, if any.
    @return: the C{-device} properties.
    """
    alias = iface.alias or f"net{index}"
    return {"driver": driver, "netdev": f"host{alias}" if iface.alias else f"hostnet{index}",
            "id": alias, "mac": iface.mac, "bootindex": bootindex}


# ---------------------------------------------------------------- character devices

def chardev_props(chardev: CharDev, chardev_id: str) -> Props:
    """
    The host side of a serial port or console (a C{-chardev}).

    @param chardev: the device.
    @param chardev_id: its id (C{charserial0}).
    @return: properties with the back-end name under C{backend}.
    @raise ConfigUnsupportedError: an unknown type or a missing path/host/port.
    """
    kind = chardev.type
    if kind in ("pty", "null", "vc", "stdio"):
        return {"backend": kind, "id": chardev_id}
    if kind == "file":
        if not chardev.source_path:
            raise ConfigUnsupportedError(f"{chardev_id}: type 'file' needs <source path=...>")
        return {"backend": "file", "id": chardev_id, "path": chardev.source_path}
    server = chardev.source_mode == "bind"
    if kind == "unix":
        if not chardev.source_path:
            raise ConfigUnsupportedError(f"{chardev_id}: type 'unix' needs <source path=...>")
        return {"backend": "socket", "id": chardev_id, "path": chardev.source_path,
                "server": True if server else None, "wait": False if server else None}
    if kind in ("tcp", "udp"):
        if not chardev.source_service:
            raise ConfigUnsupportedError(
                f"{chardev_id}: type '{kind}' needs <source service=...>")
        host = chardev.source_host or ("0.0.0.0" if server else "127.0.0.1")
        if kind == "udp":
            return {"backend": "udp", "id": chardev_id, "host": host,
                    "port": chardev.source_service,
                    "localaddr": chardev.bind_host if chardev.bind_service else None,
                    "localport": chardev.bind_service}
        return {"backend": "socket", "id": chardev_id, "host": host,
                "port": chardev.source_service,
                "telnet": True if chardev.protocol == "telnet" else None,
                "server": True if server else None, "wait": False if server else None}
    raise ConfigUnsupportedError(f"unsupported character device type '{kind}'")


def serial_device_props(chardev: CharDev, index: int) -> Props:
    """
    @param chardev: a C{<serial>}.
    @param index: its position; ids C{serialINDEX} / C{charserialINDEX}.
    @return: the guest-visible serial port's C{-device} properties.
    @raise ConfigUnsupportedError: a target type other than an ISA serial port.
    """
    if chardev.target_type not in (None, "isa-serial", "serial"):
        raise ConfigUnsupportedError(
            f"unsupported serial target type '{chardev.target_type}'")
    alias = chardev.alias or f"serial{index}"
    port = chardev.target_port if chardev.target_port is not None else index
    return {"driver": "isa-serial", "chardev": f"char{alias}", "id": alias, "index": port}


# ---------------------------------------------------------------- other devices

_INPUT_DRIVERS: Mapping[tuple[str, str], str] = {
    ("tablet", "usb"): "usb-tablet",
    ("mouse", "usb"): "usb-mouse",
    ("keyboard", "usb"): "usb-kbd",
    ("tablet", "virtio"): "virtio-tablet-pci",
    ("mouse", "virtio"): "virtio-mouse-pci",
    ("keyboard", "virtio"): "virtio-keyboard-pci",
}


def input_device_props(inp: Input, index: int) -> Props | None:
    """
    @param inp: an input device.
    @param index: its position; the id is C{inputINDEX}.
    @return: the C{-device} properties, or C{None} for the board's own PS/2
        mouse and keyboard, which need no argument.
    @raise ConfigUnsupportedError: an unknown type/bus pair.
    """
    bus = inp.bus or ("usb" if inp.type == "tablet" else "ps2")
    if bus == "ps2" and inp.type in ("mouse", "keyboard"):
        return None
    driver = _INPUT_DRIVERS.get((inp.type, bus))
    if driver is None:
        raise ConfigUnsupportedError(f"unsupported input device type '{inp.type}' on bus '{bus}'")
    props: Props = {"driver": driver, "id": inp.alias or f"input{index}"}
    if bus == "usb":
        props["bus"] = "usb.0"
    return props


def video_device_props(video: Video, index: int, kind: str = "i440fx") -> Props | None:
    """
    @param video: a video device.
    @param index: its position; the first is primary (VGA-compatible).
    @param kind: the machine kind (isapc gets C{isa-vga}).
    @return: the C{-device} properties, or C{None} for model C{none}.
    @raise ConfigUnsupportedError: an unknown model.
    """
    primary = index == 0
    model = video.model
    if model == "none":
        return None
    props: Props
    vgamem = video.vram // 1024 if video.vram else None
    if model == "vga":
        props = {"driver": "VGA" if _has_pci(kind) else "isa-vga", "vgamem_mb": vgamem}
    elif model == "cirrus":
        props = {"driver": "cirrus-vga" if _has_pci(kind) else "isa-cirrus-vga"}
    elif model == "virtio":
        props = {"driver": "virtio-vga" if primary else "virtio-gpu-pci",
                 "max_outputs": video.heads}
    elif model == "qxl":
        props = {"driver": "qxl-vga" if primary else "qxl",
                 "vram_size": video.vram * 1024 if video.vram else None,
                 "max_outputs": video.heads}
    elif model == "bochs":
        props = {"driver": "bochs-display"}
    elif model == "ramfb":
        props = {"driver": "ramfb"}
    else:
        raise ConfigUnsupportedError(f"unsupported video model '{model}'")
    if not _has_pci(kind) and props["driver"] not in ("isa-vga", "isa-cirrus-vga"):
        raise ConfigUnsupportedError(
            f"video model '{model}' needs a PCI bus, which this machine type has not")
    props["id"] = video.alias or f"video{index}"
    return props


def balloon_device_props(alias: str | None = None) -> Props:
    """
    @param alias: the balloon's alias, if it has one.
    @return: C{virtio-balloon-pci} properties.
    """
    return {"driver": "virtio-balloon-pci", "id": alias or "balloon0"}


_WATCHDOG_ACTIONS: Mapping[str, str] = {
    "reset": "reset", "shutdown": "shutdown", "poweroff": "poweroff", "pause": "pause",
    "none": "none", "dump": "pause", "inject-nmi": "inject-nmi",
}


def watchdog_device_props(watchdog: Watchdog, index: int) -> Props:
    """
    @param watchdog: the watchdog.
    @param index: its position; the id is C{watchdogINDEX}.
    @return: the C{-device} properties (C{i6300esb} or C{ib700}).
    @raise ConfigUnsupportedError: an unknown model.
    """
    if watchdog.model not in ("i6300esb", "ib700"):
        raise ConfigUnsupportedError(f"unsupported watchdog model '{watchdog.model}'")
    return {"driver": watchdog.model, "id": watchdog.alias or f"watchdog{index}"}


def rng_object_props(rng: RNG, index: int) -> Props:
    """
    @param rng: the random number generator.
    @param index: its position; the object id is C{objrngINDEX}.
    @return: the back-end C{-object} properties (C{object-add} arguments).
    @raise ConfigUnsupportedError: a back-end other than C{random}.
    """
    if rng.backend_model != "random":
        raise ConfigUnsupportedError(f"unsupported rng backend model '{rng.backend_model}'")
    alias = rng.alias or f"rng{index}"
    return {"qom-type": "rng-random", "id": f"obj{alias}",
            "filename": rng.backend_path or "/dev/urandom"}


def rng_device_props(rng: RNG, index: int) -> Props:
    """
    @param rng: the random number generator.
    @param index: its position; the id is C{rngINDEX}.
    @return: the C{virtio-rng-pci} properties.
    @raise ConfigUnsupportedError: a model other than C{virtio}.
    """
    if rng.model != "virtio":
        raise ConfigUnsupportedError(f"unsupported rng model '{rng.model}'")
    alias = rng.alias or f"rng{index}"
    return {"driver": "virtio-rng-pci", "rng": f"obj{alias}", "id": alias}


_USB_DRIVERS: Mapping[str, str] = {"piix3-uhci": "piix3-usb-uhci", "qemu-xhci": "qemu-xhci"}
_SCSI_DRIVERS: Mapping[str, str] = {"lsilogic": "lsi53c895a", "virtio-scsi": "virtio-scsi-pci"}


def controller_device_props(controller: Controller, kind: str = "i440fx") -> Props | None:
    """
    @param controller: a USB, SATA, SCSI, virtio-serial or PCI (root port)
        controller.
    @param kind: the machine kind.
    @return: its C{-device} properties (C{piix3-usb-uhci}, C{qemu-xhci},
        C{ich9-ahci}, C{lsi53c895a}, C{virtio-scsi-pci}, C{virtio-serial-pci},
        C{pcie-root-port} with its C{port} and C{chassis}), or C{None} for
        one that is not a device of its own (USB model C{none}, q35's
        built-in SATA controller).
    @raise ConfigUnsupportedError: an unknown type or model.
    """
    ctype, model = controller.type, controller.model
    if pci.is_root_port(controller):
        port = controller.target_port
        return {"driver": model, "port": None if port is None else f"0x{port:x}",
                "chassis": controller.target_chassis,
                "id": controller.alias or pci.controller_alias(controller, kind)}
    if ctype == "usb":
        if model == "none":
            return None
        driver = _USB_DRIVERS.get(model or ("piix3-uhci" if kind == "i440fx" else "qemu-xhci"))
    elif ctype == "sata":
        if kind == "q35" and controller.index == 0:
            return None
        driver = "ich9-ahci" if model is None else None
    elif ctype == "scsi":
        driver = _SCSI_DRIVERS.get(model or "lsilogic")
    elif ctype == "virtio-serial":
        driver = "virtio-serial-pci" if model is None else None
    else:
        raise ConfigUnsupportedError(f"unsupported controller type '{ctype}'")
    if driver is None:
        raise ConfigUnsupportedError(f"unsupported {ctype} controller model '{model}'")
    return {"driver": driver, "id": controller.alias or pci.controller_alias(controller, kind)}


# ---------------------------------------------------------------- the builder

_DEFAULT_CPU: Mapping[str, str] = {"x86_64": "qemu64", "i686": "qemu32"}
_ARCH_COMPAT: Mapping[str, frozenset[str]] = {
    "x86_64": frozenset({"x86_64", "i686"}),
    "aarch64": frozenset({"aarch64", "armv7l"}),
    "ppc64": frozenset({"ppc64", "ppc64le"}),
}


class _Builder:
    """
    Accumulates one command line; see L{build_argv}.
    """

    def __init__(self, domain: Domain, caps: QemuCaps, paths: LaunchPaths) -> None:
        self.domain = domain
        self.caps = caps
        self.paths = paths
        self.args: list[str] = [caps.binary]
        self.guest_arch = domain.os.arch or caps.arch
        if self.guest_arch not in _ARCH_COMPAT.get(caps.arch, frozenset({caps.arch})):
            raise ConfigUnsupportedError(
                f"emulator '{caps.binary}' ({caps.arch}) cannot run a guest of "
                f"architecture '{self.guest_arch}'")
        self.machine = caps.canonical_machine(domain.os.machine)
        self.kind = machine_kind(self.machine)
        self.x86 = caps.arch in ("x86_64", "i686")
        self.kvm = domain.type == "kvm"
        self.spawns = False
        # A definition that did not come through the XML reader may lack the
        # devices qemud adds (a VGA card for a display, the balloon), the
        # controllers its devices need, and PCI addresses: complete it here
        # (this changes nothing for a complete definition).
        dv = domain.devices
        if not dv.videos and dv.graphics:
            dv = replace(dv, videos=(Video(model="vga" if self.x86 else "virtio"),))
        if dv.memballoon is None:
            dv = replace(dv, memballoon=MemBalloon(model="virtio"))
        self.domain = pci.complete(replace(domain, devices=dv), self.kind)

    def add(self, *args: str) -> None:
        """
        @param args: arguments to append.
        """
        self.args.extend(args)

    def device(self, props: Props, address: PCIAddress | None = None) -> None:
        """
        @param props: a device to add as C{-device}, checked against the caps.
        @param address: where it sits on PCI (L{pci_device_props}).
        @raise ConfigUnsupportedError: the binary lacks the device.
        """
        if not self.caps.has_device(props["driver"]):
            raise ConfigUnsupportedError(
                f"device '{props['driver']}' is not supported by emulator '{self.caps.binary}'")
        self.add("-device", render_props(pci_device_props(props, address, self.kind), "driver"))

    # -- the pieces, in libvirt's order

    def accel(self) -> None:
        """
        Check the domain type against the binary and the host.
        """
        if self.domain.type not in ("qemu", "kvm"):
            raise ConfigUnsupportedError(f"unsupported domain type '{self.domain.type}'")
        if self.kvm:
            if self.caps.kvm_problem is not None:
                raise ConfigUnsupportedError(
                    f"domain type 'kvm' cannot be used: {self.caps.kvm_problem}")
        elif "tcg" not in self.caps.accelerators:
            raise ConfigUnsupportedError(
                f"emulator '{self.caps.binary}' has no TCG accelerator for domain type 'qemu'")

    def machine_args(self) -> None:
        """
        C{-machine} and C{-accel}.
        """
        features = self.domain.features
        props: Props = {"type": self.machine, "usb": False, "dump-guest-core": False}
        if self.x86 and self.kind in ("i440fx", "q35", "isapc", "microvm"):
            props["acpi"] = features.acpi
            for timer in self.domain.clock.timers:
                if timer.name == "hpet" and timer.present is not None and self.kind in (
                        "i440fx", "q35"):
                    props["hpet"] = timer.present
        self.add("-machine", render_props(props, "type"))
        self.add("-accel", "kvm" if self.kvm else "tcg")

    def cpu(self) -> None:
        """
        C{-cpu} from the C{<cpu>} mode, model, features and timers.
        """
        cpu = self.domain.cpu
        model: str | None = None
        extra: list[str] = []
        if cpu is not None:
            if cpu.mode == "host-passthrough":
                if not self.kvm:
                    raise ConfigUnsupportedError(
                        "CPU mode 'host-passthrough' needs domain type 'kvm'; "
                        "TCG cannot pass the host CPU through")
                model = "host"
            elif cpu.mode == "host-model":
                model = "host" if self.kvm else "max"
            elif cpu.mode in ("custom", "maximum"):
                model = "max" if cpu.mode == "maximum" else cpu.model
                if model is not None and self.caps.cpu_models and (
                        model not in self.caps.cpu_models):
                    raise ConfigUnsupportedError(
                        f"CPU model '{model}' is not supported by emulator '{self.caps.binary}'")
            else:
                raise ConfigUnsupportedError(f"unsupported CPU mode '{cpu.mode}'")
            for feature in cpu.features:
                if feature.policy in ("require", "force", "optional"):
                    extra.append(f"{feature.name}=on")
                elif feature.policy in ("disable", "forbid"):
                    extra.append(f"{feature.name}=off")
                else:
                    raise ConfigUnsupportedError(
                        f"unsupported CPU feature policy '{feature.policy}' "
                        f"for feature '{feature.name}'")
        if self.x86:
            for timer in self.domain.clock.timers:
                if timer.name == "kvmclock" and timer.present is not None:
                    extra.append(f"kvmclock={'on' if timer.present else 'off'}")
        if extra and model is None:
            model = _DEFAULT_CPU.get(self.guest_arch)
            if model is None:
                raise ConfigUnsupportedError(
                    f"CPU features need a CPU model for architecture '{self.guest_arch}'")
        if model is not None:
            self.add("-cpu", ",".join([model, *(e.replace(",", ",,") for e in extra)]))

    def firmware(self) -> None:
        """
        C{-bios} or a pflash C{-drive} for C{<loader>}.
        """
        loader = self.domain.os.loader
        if loader is None:
            return
        if loader.type in (None, "rom"):
            self.add("-bios", loader.path)
        elif loader.type == "pflash":
            readonly = loader.readonly if loader.readonly is not None else True
            self.add("-drive", render_props({"file": loader.path, "if": "pflash",
                                             "format": "raw", "unit": 0,
                                             "readonly": readonly}))
        else:
            raise ConfigUnsupportedError(f"unsupported loader type '{loader.type}'")

    def memory_and_cpus(self) -> None:
        """
        C{-m} and C{-smp}.
        """
        domain = self.domain
        if domain.memory_kib <= 0:
            raise ConfigUnsupportedError(f"memory size {domain.memory_kib} KiB is too small")
        self.add("-m", f"size={domain.memory_kib}k")
        if domain.vcpus < 1:
            raise ConfigUnsupportedError(f"vcpu count {domain.vcpus} is invalid")
        limit = self.caps.machine_max_cpus.get(self.machine)
        if limit is not None and domain.vcpus > limit:
            raise ConfigUnsupportedError(
                f"Maximum CPUs greater than specified machine type limit {limit}")
        current = domain.current_vcpus
        if current is not None and not 1 <= current <= domain.vcpus:
            raise ConfigUnsupportedError(
                f"current vcpu count {current} must be between 1 and the maximum {domain.vcpus}")
        smp = str(current if current is not None else domain.vcpus)
        if current is not None and current < domain.vcpus:
            smp += f",maxcpus={domain.vcpus}"
        self.add("-smp", f"{smp},sockets={domain.vcpus},cores=1,threads=1")

    def monitor(self) -> None:
        """
        The QMP monitor on the inherited socket.
        """
        self.add("-chardev", f"socket,id=charmonitor,fd={self.paths.qmp_fd},server=on,wait=off")
        self.add("-mon", "chardev=charmonitor,id=monitor,mode=control")

    def clock(self) -> None:
        """
        C{-rtc} and the tick policies.
        """
        clock = self.domain.clock
        if clock.offset not in ("utc", "localtime"):
            raise ConfigUnsupportedError(f"unsupported clock offset '{clock.offset}'")
        rtc = f"base={clock.offset}"
        for timer in clock.timers:
            if timer.name == "rtc" and timer.tickpolicy == "catchup":
                rtc += ",driftfix=slew"
        self.add("-rtc", rtc)
        for timer in clock.timers:
            if timer.name == "pit" and timer.tickpolicy == "delay" and self.kvm:
                self.add("-global", "kvm-pit.lost_tick_policy=delay")

    def boot_order(self) -> tuple[dict[int, int], dict[int, int]]:
        """
        @return: bootindex by disk position and by interface position, from
            per-device C{<boot order>} or else from C{<os><boot dev>}.
        """
        devices = self.domain.devices
        disks: dict[int, int] = {}
        nics: dict[int, int] = {}
        for i, disk in enumerate(devices.disks):
            if disk.boot_order is not None:
                disks[i] = disk.boot_order
        for i, iface in enumerate(devices.interfaces):
            if iface.boot_order is not None:
                nics[i] = iface.boot_order
        if disks or nics:
            return disks, nics
        order = 1
        for dev in self.domain.os.boot_devs:
            if dev == "network":
                if devices.interfaces and 0 not in nics:
                    nics[0] = order
                    order += 1
                continue
            wanted = {"hd": "disk", "cdrom": "cdrom", "fd": "floppy"}.get(dev)
            if wanted is None:
                raise ConfigUnsupportedError(f"unsupported boot device '{dev}'")
            for i, disk in enumerate(devices.disks):
                if disk.device == wanted and i not in disks:
                    disks[i] = order
                    order += 1
                    break
        return disks, nics

    def boot(self) -> None:
        """
        C{-boot}, C{-action reboot=}, C{-kernel}/C{-initrd}/C{-append}.
        """
        self.add("-no-shutdown")
        if self.domain.on_reboot == "destroy":
            self.add("-action", "reboot=shutdown")
        boot = "strict=on"
        if self.domain.os.bootmenu is not None:
            boot = f"menu={'on' if self.domain.os.bootmenu else 'off'},{boot}"
        self.add("-boot", boot)
        os_ = self.domain.os
        if os_.kernel is not None:
            self.add("-kernel", os_.kernel)
        elif os_.initrd is not None or os_.cmdline is not None:
            raise ConfigUnsupportedError("<initrd> and <cmdline> need a <kernel>")
        if os_.initrd is not None:
            self.add("-initrd", os_.initrd)
        if os_.cmdline is not None:
            self.add("-append", os_.cmdline)

    def controllers_and_disks(self, disk_boot: Mapping[int, int]) -> None:
        """
        Controllers (q35's root ports first, as libvirt; USB, AHCI, SCSI,
        floppy) then every disk.
        """
        devices = self.domain.devices
        disks = devices.disks
        placements = [_disk_placement(disk, self.kind) for disk in disks]
        targets = [disk.target_dev for disk in disks]
        for target in set(targets):
            if targets.count(target) > 1:
                raise ConfigUnsupportedError(f"target '{target}' duplicated for disk sources")
        for ctype in ("pci", "usb", "sata", "scsi"):
            for controller in devices.controllers:
                if controller.type == ctype:
                    self.controller(controller)
        if any(d.target_bus == "virtio" for d in disks) and self.kind not in ("i440fx", "q35"):
            if not _has_pci(self.kind):
                raise ConfigUnsupportedError("virtio disks need a PCI bus")
        total = len(disks)
        if self.kind == "q35" and any(d.target_bus == "fdc" for d in disks):
            # q35 has no floppy controller of its own: add one, boot order on it
            fdc: Props = {"driver": "isa-fdc", "id": "fdc0"}
            for i, disk in enumerate(disks):
                if disk.target_bus == "fdc" and i in disk_boot:
                    fdc[f"bootindex{'AB'[placements[i][2]]}"] = disk_boot[i]
            self.device(fdc)
        for i, disk in enumerate(disks):
            node_index = total - i
            for node in disk_blockdev_props(disk, node_index):
                self.add("-blockdev", render_props(node))
            bootindex = disk_boot.get(i)
            self.device(disk_device_props(disk, node_index, kind=self.kind,
                                          bootindex=bootindex), disk.address)
            if disk.target_bus == "fdc" and bootindex is not None and self.kind != "q35":
                self.add("-global", f"isa-fdc.bootindex{'AB'[placements[i][2]]}={bootindex}")

    def controller(self, controller: Controller) -> None:
        """
        One controller of the definition (see L{controller_device_props}).

        @raise ConfigUnsupportedError: the machine has no PCI bus.
        """
        props = controller_device_props(controller, self.kind)
        if props is None:
            return
        if not _has_pci(self.kind):
            if controller.type == "usb":
                raise ConfigUnsupportedError(
                    "USB devices need a USB controller, which needs PCI; "
                    "this machine type has no PCI bus")
            raise ConfigUnsupportedError(
                f"a {controller.type} controller needs a PCI bus, which this machine type "
                "has not")
        self.device(props, controller.address)

    def network(self, nic_boot: Mapping[int, int]) -> None:
        """
        A C{-netdev}/C{-device} pair per interface.
        """
        for i, iface in enumerate(self.domain.devices.interfaces):
            driver = nic_driver(iface, self.caps, self.kind)
            netdev = netdev_props(iface, i, paths=self.paths)
            if netdev["type"] == "bridge" or (netdev["type"] == "tap"
                                              and netdev.get("script") != "no"):
                self.spawns = True
            self.add("-netdev", render_props(netdev, "type"))
            self.device(nic_device_props(iface, i, driver=driver, bootindex=nic_boot.get(i)),
                        iface.address)

    def chardevs(self) -> None:
        """
        Serial ports and consoles.
        """
        devices = self.domain.devices
        serials = list(devices.serials)
        virtio_consoles: list[tuple[int, CharDev]] = []
        for position, console in enumerate(devices.consoles):
            if console.target_type in (None, "serial"):
                if not serials:
                    serials.append(console)
                # otherwise it is the first serial port again, as libvirt shows it
            elif console.target_type == "virtio":
                virtio_consoles.append((position, console))
            else:
                raise ConfigUnsupportedError(
                    f"unsupported console target type '{console.target_type}'")
        for i, serial in enumerate(serials):
            props = serial_device_props(serial, i)
            self.add("-chardev", render_props(chardev_props(serial, props["chardev"]),
                                              "backend"))
            self.device(props)
        if virtio_consoles and not _has_pci(self.kind):
            raise ConfigUnsupportedError("virtio consoles need a PCI bus")
        for controller in devices.controllers:
            if controller.type == "virtio-serial":
                self.controller(controller)
        if virtio_consoles:
            for position, console in virtio_consoles:
                alias = console.alias or f"console{position}"
                self.add("-chardev", render_props(chardev_props(console, f"char{alias}"),
                                                  "backend"))
                self.device({"driver": "virtconsole", "bus": "virtio-serial0.0",
                             "chardev": f"char{alias}", "id": alias})

    def inputs(self) -> None:
        """
        USB and virtio input devices.
        """
        index = 0
        for inp in self.domain.devices.inputs:
            props = input_device_props(inp, index)
            if props is not None:
                self.device(props, inp.address)
                index += 1

    def graphics(self) -> None:
        """
        C{-vnc} (or C{-display none}) and C{-k}.
        """
        graphics = self.domain.devices.graphics
        if not graphics:
            return
        if len(graphics) > 1:
            raise ConfigUnsupportedError("only one <graphics> device is supported")
        gfx: Graphics = graphics[0]
        if gfx.type != "vnc":
            raise ConfigUnsupportedError(f"unsupported graphics type '{gfx.type}'")
        listen = gfx.listen or self.paths.vnc_listen
        if ":" in listen:
            listen = f"[{listen}]"
        if gfx.port >= 5900:
            vnc = f"{listen}:{gfx.port - 5900}"
        elif gfx.autoport or gfx.port == -1:
            vnc = f"{listen}:0,to=99"
        else:
            raise ConfigUnsupportedError(f"VNC port {gfx.port} is below 5900")
        if gfx.passwd is not None:
            vnc += ",password=on"
        self.add("-vnc", vnc)
        if gfx.keymap:
            self.add("-k", gfx.keymap)

    def videos(self) -> None:
        """
        Video cards (a VGA card by default when there is a display: see
        L{__init__}).
        """
        for i, video in enumerate(self.domain.devices.videos):
            props = video_device_props(video, i, self.kind)
            if props is not None:
                self.device(props, video.address)

    def misc_devices(self) -> None:
        """
        Watchdog, balloon and RNG.
        """
        devices = self.domain.devices
        for i, watchdog in enumerate(devices.watchdogs):
            props = watchdog_device_props(watchdog, i)
            if props["driver"] == "i6300esb" and not _has_pci(self.kind):
                raise ConfigUnsupportedError("watchdog model 'i6300esb' needs a PCI bus")
            self.device(props, watchdog.address)
        if devices.watchdogs:
            action = devices.watchdogs[0].action or "reset"
            if action not in _WATCHDOG_ACTIONS:
                raise ConfigUnsupportedError(f"unsupported watchdog action '{action}'")
            self.add("-action", f"watchdog={_WATCHDOG_ACTIONS[action]}")
        balloon = devices.memballoon
        if balloon is None or balloon.model == "virtio":
            # libvirt's defaults add a virtio balloon to every domain; a machine
            # without PCI (isapc) simply has none, as nothing can be plugged.
            if _has_pci(self.kind):
                self.device(balloon_device_props(balloon.alias if balloon else None),
                            balloon.address if balloon else None)
        elif balloon.model != "none":
            raise ConfigUnsupportedError(f"unsupported memballoon model '{balloon.model}'")
        for i, rng in enumerate(devices.rngs):
            device = rng_device_props(rng, i)
            if not _has_pci(self.kind):
                raise ConfigUnsupportedError("rng model 'virtio' needs a PCI bus")
            self.add("-object", render_props(rng_object_props(rng, i), "qom-type"))
            self.device(device, rng.address)

    def sandbox(self) -> None:
        """
        C{-sandbox} when seccomp is built in, then C{-msg timestamp=on}.
        """
        if self.caps.has_sandbox:
            spawn = "allow" if self.spawns else "deny"
            self.add("-sandbox", "on,obsolete=deny,elevateprivileges=deny,"
                                 f"spawn={spawn},resourcecontrol=deny")
        self.add("-msg", "timestamp=on")


def build_argv(domain: Domain, caps: QemuCaps, paths: LaunchPaths) -> Launch:
    """
    Build the command line and environment that start a domain, paused.

    @param domain: the definition (already parsed, defaulted and validated).
    @param caps: the capabilities of the binary that will run it; C{argv[0]}
        is C{caps.binary}.
    @param paths: the QMP descriptor and the domain's directory.
    @return: the launch recipe.
    @raise ConfigUnsupportedError: the definition asks for something the
        binary or host cannot do (KVM when unusable, an unknown machine or
        NIC model, a bus the machine lacks, ...).
    """
    b = _Builder(domain, caps, paths)
    b.accel()
    b.add("-name", f"guest={_render_value(domain.name)},debug-threads=on")
    b.add("-S")
    b.machine_args()
    b.cpu()
    b.firmware()
    b.memory_and_cpus()
    b.add("-uuid", domain.uuid)
    if not domain.devices.graphics:
        b.add("-display", "none")
    b.add("-no-user-config", "-nodefaults")
    b.monitor()
    b.clock()
    disk_boot, nic_boot = b.boot_order()
    b.boot()
    b.controllers_and_disks(disk_boot)
    b.network(nic_boot)
    b.chardevs()
    b.inputs()
    b.graphics()
    b.videos()
    b.misc_devices()
    b.sandbox()
    home = paths.domain_dir
    env = {
        "LC_ALL": "C",
        "PATH": DEFAULT_PATH,
        "HOME": home,
        "XDG_DATA_HOME": f"{home}/.local/share",
        "XDG_CACHE_HOME": f"{home}/.cache",
        "XDG_CONFIG_HOME": f"{home}/.config",
    }
    return Launch(argv=b.args, env=env)
