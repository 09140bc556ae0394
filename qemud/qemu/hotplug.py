# -*- test-case-name: tests.qemu.test_hotplug -*-
"""
Hot-plug planning: which QMP commands add, remove or change a device of a
running guest, and how the domain definition changes with it.

Device properties come from the same builders as the boot command line
(L{qemud.qemu.argv}: C{disk_blockdev_props}, C{disk_device_props},
C{netdev_props}, C{nic_device_props}), as libvirt's C{qemu_hotplug.c} uses
C{qemuBuildDiskDeviceProps} for both.  Everything here is pure: the
L{qemud.qemu.guest.Guest} runs the commands, the driver edits the configs.

A L{Step} is one QMP command plus the command that undoes it; a failed
attach undoes the steps already done, in reverse order.

A device that sits on PCI is plugged at an address chosen here
(L{qemud.domain.pci.hotplug_address}: the one the device XML gives, if free,
or the first free slot of the running definition; on q35, slot 0 of a free
PCIe root port, C{bus=pci.N,addr=0x0}, as C{pcie.0} takes no hot-plug) and
recorded in the live
definition, so that the guest is started again (restore, migration) with
every device where it was.  A SCSI disk plugged into a guest without a SCSI
controller brings one (C{lsi53c895a}, at its own free slot), which stays
when the disk goes, as in libvirt.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qemud.domain import pci
from qemud.domain.defaults import controller_alias, disk_index
from qemud.domain.defaults import disk_alias as libvirt_disk_alias
from qemud.domain.model import Controller, Disk, Domain, Interface, PCIAddress
from qemud.errors import (
    ConfigUnsupportedError,
    OperationFailedError,
    OperationUnsupportedError,
)
from qemud.qemu.argv import (
    controller_device_props,
    disk_blockdev_props,
    disk_device_props,
    netdev_props,
    nic_device_props,
    pci_device_props,
)

__all__ = [
    "DeviceMissingError", "Step", "AttachPlan", "strip_none", "next_node_index", "find_block_node",
    "storage_node_of", "plan_disk_attach", "plan_nic_attach", "disk_backend_removal",
    "nic_backend_removal", "media_change_steps", "find_disk", "find_interface",
    "add_device", "add_controller", "remove_device", "remove_alias", "replace_disk",
    "check_attachable", "device_alias", "plug_address",
]

class DeviceMissingError(OperationFailedError):
    """
    The device a detach or update names is not there (libvirt's
    C{VIR_ERR_DEVICE_MISSING}, "device not found").
    """

    code = 99
    prefix = "device not found: %s"


_NODE = re.compile(r"^libvirt-(\d+)-(storage|format)$")


@dataclass(frozen=True)
class Step:
    """
    One QMP command of a hot-plug, and how to undo it.

    @ivar command: the command name.
    @ivar args: its arguments.
    @ivar undo: C{(command, args)} that reverts it, or C{None}.
    """

    command: str
    args: dict[str, Any]
    undo: tuple[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class AttachPlan:
    """
    Everything to attach one device live.

    @ivar device: the device as the live definition will show it (alias and
        PCI address set).
    @ivar steps: the commands, in order.
    @ivar controller: a controller plugged first for the device (its
        C{device_add} is the first step), or C{None}.
    """

    device: Disk | Interface
    steps: tuple[Step, ...]
    controller: Controller | None = None


def strip_none(value: Any) -> Any:
    """
    @param value: builder output (dicts with C{None} for "leave out").
    @return: the same without C{None} members, at any depth, as QMP wants it.
    """
    if isinstance(value, Mapping):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [strip_none(v) for v in value]
    return value


def next_node_index(named_nodes: Iterable[Mapping[str, Any]]) -> int:
    """
    @param named_nodes: C{query-named-block-nodes} output.
    @return: an index no C{libvirt-N-*} node uses yet (one more than the largest).
    """
    used = [0]
    for node in named_nodes:
        match = _NODE.match(str(node.get("node-name", "")))
        if match:
            used.append(int(match.group(1)))
    return max(used) + 1


def find_block_node(query_block: Iterable[Mapping[str, Any]], alias: str) -> str | None:
    """
    @param query_block: C{query-block} output.
    @param alias: a disk's device id (C{virtio-disk1}, C{ide0-1-0}).
    @return: the node name of the medium inserted in that device, or C{None}
        (no such device, or an empty drive).
    """
    for entry in query_block:
        qdev = str(entry.get("qdev") or entry.get("device") or "")
        parts = qdev.strip("/").split("/")
        if qdev == alias or (len(parts) >= 3 and parts[:2] == ["machine", "peripheral"]
                             and parts[2] == alias):
            inserted = entry.get("inserted")
            if isinstance(inserted, Mapping) and inserted.get("node-name"):
                return str(inserted["node-name"])
            return None
    return None


def storage_node_of(format_node: str) -> str | None:
    """
    @param format_node: C{libvirt-N-format}.
    @return: the protocol node under it, C{libvirt-N-storage} (C{None} for
        another naming scheme).
    """
    match = _NODE.match(format_node)
    if match is None or match.group(2) != "format":
        return None
    return f"libvirt-{match.group(1)}-storage"


def device_alias(device: Disk | Interface, domain: Domain) -> str:
    """
    @param device: a device about to be plugged into C{domain}.
    @param domain: the running definition.
    @return: the alias libvirt would give it: C{virtio-disk1}, C{scsi0-0-0-1},
        C{netN} with N one more than the largest in use.
    """
    if isinstance(device, Disk):
        alias = libvirt_disk_alias(device)
        if alias is None:
            raise ConfigUnsupportedError(f"unsupported disk target '{device.target_dev}'")
        return alias
    numbers = [-1]
    for iface in domain.devices.interfaces:
        if iface.alias and iface.alias.startswith("net") and iface.alias[3:].isdigit():
            numbers.append(int(iface.alias[3:]))
    return f"net{max(numbers) + 1}"


def find_disk(domain: Domain, target_dev: str) -> Disk | None:
    """
    @return: the disk of C{domain} with that target, or C{None}.
    """
    return next((d for d in domain.devices.disks if d.target_dev == target_dev), None)


def find_interface(domain: Domain, iface: Interface) -> Interface | None:
    """
    Find the interface a detach request means: by MAC, as libvirt does (a
    generated MAC is no match: the request then names the only interface,
    or an alias).

    @return: the matching interface of C{domain}, or C{None}.
    """
    for have in domain.devices.interfaces:
        if have.mac == iface.mac:
            return have
    if iface.alias:
        return next((n for n in domain.devices.interfaces if n.alias == iface.alias), None)
    return None


def check_attachable(domain: Domain, device: Disk | Interface) -> None:
    """
    @raise OperationFailedError: the target dev or MAC is already in use
        (libvirt's texts).
    """
    if isinstance(device, Disk):
        if find_disk(domain, device.target_dev) is not None:
            raise OperationFailedError(f"target {device.target_dev} already exists")
    elif any(n.mac == device.mac for n in domain.devices.interfaces):
        raise OperationFailedError(f"interface {device.mac} already exists")


def add_device(domain: Domain, device: Disk | Interface) -> Domain:
    """
    @return: C{domain} with C{device} appended to its disks or interfaces.
    """
    dv = domain.devices
    if isinstance(device, Disk):
        dv = dataclasses.replace(dv, disks=(*dv.disks, device))
    else:
        dv = dataclasses.replace(dv, interfaces=(*dv.interfaces, device))
    return dataclasses.replace(domain, devices=dv)


def add_controller(domain: Domain, controller: Controller) -> Domain:
    """
    @return: C{domain} with C{controller} among its controllers (kept in
        order of type and index).
    """
    dv = domain.devices
    controllers = sorted((*dv.controllers, controller),
                         key=lambda c: (pci.CONTROLLER_TYPES.index(c.type), c.index))
    return dataclasses.replace(domain, devices=dataclasses.replace(
        dv, controllers=tuple(controllers)))


def plug_address(domain: Domain, device: Disk | Interface | Controller,
                 kind: str) -> PCIAddress | None:
    """
    @param domain: the running definition.
    @param device: a device about to be plugged in.
    @param kind: the machine kind.
    @return: its PCI address (L{qemud.domain.pci.hotplug_address});
        C{None} when it is not on PCI; the address it asks for, if any,
        when the machine has no address layout (QEMU places it).
    @raise ConfigUnsupportedError: a PCI address on a device not on PCI.
    @raise DomainConfigError: the address asked for is invalid or in use.
    """
    if not pci.on_pci(device):
        if device.address is not None:
            raise ConfigUnsupportedError(
                "only devices on PCI (virtio disks, NICs) can have a PCI address")
        return None
    if not pci.has_pci_layout(kind):
        return device.address
    return pci.hotplug_address(domain, kind, device.address)


def remove_device(domain: Domain, device: Disk | Interface) -> Domain:
    """
    @return: C{domain} without C{device} (matched by target dev or MAC).
    """
    dv = domain.devices
    if isinstance(device, Disk):
        dv = dataclasses.replace(
            dv, disks=tuple(d for d in dv.disks if d.target_dev != device.target_dev))
    else:
        dv = dataclasses.replace(
            dv, interfaces=tuple(n for n in dv.interfaces if n.mac != device.mac))
    return dataclasses.replace(domain, devices=dv)


def remove_alias(domain: Domain, alias: str) -> tuple[Domain, Disk | Interface | None]:
    """
    @return: C{domain} without the disk or interface of that alias, and the
        device removed (C{None} when none had it).
    """
    for disk in domain.devices.disks:
        if disk.alias == alias:
            return remove_device(domain, disk), disk
    for iface in domain.devices.interfaces:
        if iface.alias == alias:
            return remove_device(domain, iface), iface
    return domain, None


def replace_disk(domain: Domain, disk: Disk) -> Domain:
    """
    @return: C{domain} with the disk of the same target replaced by C{disk}.
    """
    dv = domain.devices
    disks = tuple(disk if d.target_dev == disk.target_dev else d for d in dv.disks)
    return dataclasses.replace(domain, devices=dataclasses.replace(dv, disks=disks))


def plan_disk_attach(domain: Domain, disk: Disk, node_index: int, *, kind: str,
                     has_device: Any = None) -> AttachPlan:
    """
    @param domain: the running definition.
    @param disk: the disk to plug (defaults filled in).
    @param node_index: from L{next_node_index}.
    @param kind: the machine kind (L{qemud.qemu.argv.machine_kind}).
    @param has_device: C{caps.has_device}, to check the QEMU device exists.
    @return: C{blockdev-add} (storage, format), then C{device_add}; a SCSI
        controller first when the guest has none yet.
    @raise OperationUnsupportedError: a bus that cannot be hot-plugged
        (IDE, SATA, floppy: libvirt refuses those too), or a removable medium.
    @raise ConfigUnsupportedError: from the builders.
    """
    if disk.target_bus not in ("virtio", "scsi", "usb"):
        raise OperationUnsupportedError(
            f"disk bus '{disk.target_bus}' cannot be hotplugged.")
    if disk.device != "disk":
        raise OperationUnsupportedError(
            f"disk device '{disk.device}' cannot be hotplugged on bus '{disk.target_bus}'")
    alias = device_alias(disk, domain)
    steps: list[Step] = []
    controller = None
    controllers = domain.devices.controllers
    if disk.target_bus == "scsi":
        index = (disk_index(disk.target_dev) or 0) // 7
        if not any(c.type == "scsi" and c.index == index for c in controllers):
            controller = Controller(type="scsi", index=index, model="lsilogic")
            controller = dataclasses.replace(
                controller, alias=controller_alias(controller, kind),
                address=plug_address(domain, controller, kind))
            props = controller_device_props(controller, kind)
            assert props is not None
            if has_device is not None and not has_device(props["driver"]):
                raise ConfigUnsupportedError(
                    f"device '{props['driver']}' is not supported by QEMU")
            # Not undone: like libvirt, the controller stays once plugged.
            steps.append(Step("device_add", strip_none(
                pci_device_props(props, controller.address, kind))))
            domain = add_controller(domain, controller)
    if disk.target_bus == "usb" and not any(c.type == "usb" and c.model != "none"
                                            for c in controllers):
        raise OperationUnsupportedError("a USB disk needs a USB controller present at boot")
    live = dataclasses.replace(disk, alias=alias, address=plug_address(domain, disk, kind))
    for node in disk_blockdev_props(live, node_index):
        props = strip_none(node)
        steps.append(Step("blockdev-add", props,
                          ("blockdev-del", {"node-name": props["node-name"]})))
    device = strip_none(pci_device_props(disk_device_props(live, node_index, kind=kind),
                                         live.address, kind))
    if has_device is not None and not has_device(device["driver"]):
        raise ConfigUnsupportedError(f"device '{device['driver']}' is not supported by QEMU")
    steps.append(Step("device_add", device, ("device_del", {"id": alias})))
    return AttachPlan(live, tuple(steps), controller)


def plan_nic_attach(domain: Domain, iface: Interface, *, driver: str,
                    kind: str = "i440fx") -> AttachPlan:
    """
    @param domain: the running definition.
    @param iface: the interface to plug (MAC filled in).
    @param driver: from L{qemud.qemu.argv.nic_driver}.
    @param kind: the machine kind (L{qemud.qemu.argv.machine_kind}).
    @return: C{netdev_add} then C{device_add} (at the NIC's PCI address).
    """
    alias = device_alias(iface, domain)
    # Whether it sits on PCI follows from the QEMU device (the model may be unset).
    address = plug_address(domain, dataclasses.replace(iface, model=driver), kind)
    live = dataclasses.replace(iface, alias=alias, address=address)
    netdev = strip_none(netdev_props(live, 0))
    device = strip_none(pci_device_props(nic_device_props(live, 0, driver=driver), address,
                                         kind))
    return AttachPlan(live, (
        Step("netdev_add", netdev, ("netdev_del", {"id": netdev["id"]})),
        Step("device_add", device, ("device_del", {"id": alias})),
    ))


def disk_backend_removal(format_node: str | None) -> list[tuple[str, dict[str, Any]]]:
    """
    @param format_node: the disk's top node (L{find_block_node}), if any.
    @return: the C{blockdev-del}s that free its nodes once the device is gone.
    """
    if format_node is None:
        return []
    cmds = [("blockdev-del", {"node-name": format_node})]
    storage = storage_node_of(format_node)
    if storage is not None:
        cmds.append(("blockdev-del", {"node-name": storage}))
    return cmds


def nic_backend_removal(iface: Interface) -> list[tuple[str, dict[str, Any]]]:
    """
    @return: the C{netdev_del} that frees the interface's back-end.
    """
    return [("netdev_del", {"id": f"host{iface.alias}"})]


def media_change_steps(old: Disk, new: Disk, old_node: str | None,
                       node_index: int) -> list[tuple[str, dict[str, Any]]]:
    """
    The commands that change the medium of a cdrom or floppy, as libvirt's
    C{qemuDomainChangeMediaBlockdev}: open the tray (forced), remove the
    medium, add and insert the new one (if any), close the tray, free the
    old nodes.

    @param old: the drive as it is (alias set).
    @param new: the drive as wanted (C{source=None} ejects).
    @param old_node: the node of the medium now in the drive, if any.
    @param node_index: the index for the new medium's nodes.
    @return: the commands in order.
    """
    assert old.alias is not None
    alias = old.alias
    cmds: list[tuple[str, dict[str, Any]]] = [
        ("blockdev-open-tray", {"id": alias, "force": True}),
        ("blockdev-remove-medium", {"id": alias}),
    ]
    if new.source is not None:
        nodes = [strip_none(n) for n in disk_blockdev_props(
            dataclasses.replace(new, device=old.device), node_index)]
        for node in nodes:
            cmds.append(("blockdev-add", node))
        cmds.append(("blockdev-insert-medium",
                     {"id": alias, "node-name": nodes[-1]["node-name"]}))
    cmds.append(("blockdev-close-tray", {"id": alias}))
    cmds.extend(disk_backend_removal(old_node))
    return cmds
