# -*- test-case-name: tests.domain.test_pci -*-
"""
PCI addresses: which devices sit on PCI, where the board's own devices are,
and which slot every other device gets, after libvirt's
C{qemu_domain_address.c} for the two PC machines (i440fx and q35).

QEMU gives a device without an C{addr} the first free slot in command-line
order, so a guest that had devices hot-plugged (placed wherever there was
room) would come back with its devices in other slots when started from its
saved definition: a restore then fails ("Unknown ramblock ..., cannot accept
migration").  As libvirt does, every device on PCI therefore gets an address
in the definition, kept in the XML, and the command line puts each device
at its address.

The root bus is C{pci.0} on i440fx, C{pcie.0} on q35:

  - i440fx: slot 0 is the host bridge; slot 1 the PIIX3 (ISA bridge 1.0,
    IDE 1.1, USB controller 1.2 when there is one, ACPI 1.3); the primary
    video card gets slot 2; every other device without an address gets the
    first free slot of C{pci.0}, in libvirt's order of device kinds:
    network interfaces, controllers, virtio disks, the balloon, RNGs,
    watchdogs, other video cards, virtio input devices;
  - q35: slot 0 is the host bridge; slot 0x1f the ICH9 (LPC 1f.0, SATA
    1f.2, SMBus 1f.3); the primary video card gets slot 1.  C{pcie.0}
    takes no hot-plug, so, as libvirt does, every other device without an
    address gets a PCIe root port of its own (C{<controller type='pci'
    model='pcie-root-port'>}, index N, making bus N, QEMU's C{pci.N}) and
    sits at slot 0 of that bus: first the root ports of the definition that
    nothing uses yet, then new ones added for the rest (in the same order
    of device kinds).  Root ports without an address are packed as the
    functions of one multifunction slot of C{pcie.0} (the first free slot,
    0x2 after a video card), eight to a slot; each gets C{chassis} = its
    index and C{port} = (slot << 3) + function.  Other video cards stay on
    C{pcie.0}.

Addresses the user gave are honoured and checked first: on bus 0, or at
slot 0 of a root port's bus.

L{complete} is the machine-dependent step of reading a definition (after
L{qemud.domain.defaults.fill_defaults} and validation): it adds the
controllers the devices need (a SCSI controller for SCSI disks, ...), fills
in their models, and assigns addresses.  L{hotplug_address} picks the slot
for a device plugged into a running guest: the first free slot of C{pci.0}
on i440fx, a free root port on q35 (a q35 guest meant to take hot-plugged
devices is given spare root ports in its definition, as with libvirt).

Machines other than i440fx and q35 (isapc, microvm, non-x86 boards) get no
addresses: QEMU places their devices, as before.

This module is pure (standard library only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from qemud.domain import defaults
from qemud.domain.defaults import controller_alias, disk_index, machine_kind
from qemud.domain.model import (
    RNG,
    Controller,
    Devices,
    Disk,
    Domain,
    Input,
    Interface,
    MemBalloon,
    PCIAddress,
    Video,
    Watchdog,
)
from qemud.errors import ConfigUnsupportedError, DomainConfigError, InternalError

__all__ = [
    "I440FX", "Q35", "MAX_SLOT", "MAX_FUNCTION", "CONTROLLER_TYPES", "machine_kind",
    "has_pci_layout", "root_bus", "qemu_addr", "on_pci", "controller_alias",
    "add_implicit_controllers", "assign_pci_addresses", "complete", "hotplug_address",
    "used_addresses", "ROOT_PORT", "is_root_port", "bus_name",
]

I440FX = defaults.I440FX
Q35 = defaults.Q35
#: The highest slot and function numbers of a PCI bus.
MAX_SLOT = 31
MAX_FUNCTION = 7

#: The controller types qemud models, in libvirt's order of types.
CONTROLLER_TYPES = ("scsi", "sata", "virtio-serial", "usb", "pci")
#: The model of C{<controller type='pci'>} qemud models: a PCIe root port.
ROOT_PORT = "pcie-root-port"
# Root ports packed in one multifunction slot of pcie.0.
_PORTS_PER_SLOT = MAX_FUNCTION + 1

# Board devices that are always there: slot -> functions.
_BOARD: dict[str, dict[int, frozenset[int]]] = {
    I440FX: {1: frozenset({0, 1, 3})},        # PIIX3: ISA bridge, IDE, ACPI
    Q35: {0x1F: frozenset({0, 2, 3})},        # ICH9: LPC, SATA (AHCI), SMBus
}
_PIIX3_USB = PCIAddress(slot=1, function=2)
_ICH9_SATA = PCIAddress(slot=0x1F, function=2)
_PRIMARY_VIDEO_SLOT = {I440FX: 2, Q35: 1}

# NIC models that are not PCI devices.
_NON_PCI_NICS = frozenset({"ne2k_isa", "usb-net", "spapr-vlan", "smc91c111", "lan9118"})


def has_pci_layout(kind: str) -> bool:
    """
    @param kind: from L{machine_kind}.
    @return: whether qemud assigns PCI addresses on this machine.
    """
    return kind in (I440FX, Q35)


def root_bus(kind: str) -> str:
    """
    @param kind: C{i440fx} or C{q35}.
    @return: QEMU's name of the root bus: C{pci.0} or C{pcie.0}.
    """
    return "pcie.0" if kind == Q35 else "pci.0"


def is_root_port(device: object) -> bool:
    """
    @param device: a device of a definition.
    @return: whether it is a C{pcie-root-port} controller.
    """
    return isinstance(device, Controller) and device.type == "pci" and device.model == ROOT_PORT


def bus_name(address: PCIAddress, kind: str) -> str:
    """
    @param address: a PCI address.
    @param kind: C{i440fx} or C{q35}.
    @return: QEMU's name of its bus: the root bus (L{root_bus}) for bus 0,
        else the id of the root port making it, C{pci.N}.
    """
    return root_bus(kind) if address.bus == 0 else f"pci.{address.bus}"


def qemu_addr(address: PCIAddress) -> str:
    """
    @param address: a PCI address.
    @return: QEMU's C{addr} property as libvirt writes it: C{0x3}, C{0x1.0x2}.
    """
    if address.function:
        return f"0x{address.slot:x}.0x{address.function:x}"
    return f"0x{address.slot:x}"


_PCIDevice = Disk | Interface | Controller | Video | MemBalloon | Watchdog | RNG | Input


def on_pci(device: _PCIDevice) -> bool:
    """
    @param device: a device of a PC guest.
    @return: whether QEMU plugs it into the PCI bus.
    """
    if isinstance(device, Disk):
        return device.target_bus == "virtio"
    if isinstance(device, Interface):
        return device.model not in _NON_PCI_NICS
    if isinstance(device, Controller):
        return not (device.type == "usb" and device.model == "none")
    if isinstance(device, Video):
        return device.model not in ("none", "ramfb")
    if isinstance(device, MemBalloon):
        return device.model != "none"
    if isinstance(device, Watchdog):
        return device.model == "i6300esb"
    if isinstance(device, Input):
        return device.bus == "virtio"
    return True  # RNG: always virtio


def _describe(device: _PCIDevice) -> str:
    if isinstance(device, Disk):
        return f"disk '{device.target_dev}' on bus '{device.target_bus}'"
    if isinstance(device, Interface):
        return f"interface {device.mac} of model '{device.model}'"
    if isinstance(device, Controller):
        return f"controller '{device.type}' of model '{device.model}'"
    if isinstance(device, Video):
        return f"video model '{device.model}'"
    if isinstance(device, MemBalloon):
        return f"memballoon model '{device.model}'"
    if isinstance(device, Watchdog):
        return f"watchdog model '{device.model}'"
    if isinstance(device, Input):
        return f"input '{device.type}' on bus '{device.bus}'"
    return f"rng model '{device.model}'"


# ------------------------------------------------------------------ controllers

def _needed_controllers(dv: Devices) -> list[tuple[str, int]]:
    """
    @return: C{(type, index)} of every controller the devices need, as
        qemud's command line has always placed them (six SATA or seven SCSI
        disks per controller).
    """
    needed: list[tuple[str, int]] = []
    usb_inputs = any((n.bus or ("usb" if n.type == "tablet" else "ps2")) == "usb"
                     for n in dv.inputs)
    if usb_inputs or any(d.target_bus == "usb" for d in dv.disks):
        needed.append(("usb", 0))
    for bus, per in (("sata", 6), ("scsi", 7)):
        for d in dv.disks:
            idx = disk_index(d.target_dev)
            if d.target_bus == bus and idx is not None and (bus, idx // per) not in needed:
                needed.append((bus, idx // per))
    if any(c.target_type == "virtio" for c in dv.consoles):
        needed.append(("virtio-serial", 0))
    return needed


def _default_model(controller: Controller, kind: str) -> str | None:
    if controller.model is not None:
        return controller.model
    if controller.type == "usb":
        return {I440FX: "piix3-uhci", Q35: "qemu-xhci"}.get(kind)
    if controller.type == "scsi":
        return "lsilogic"
    return None


def add_implicit_controllers(domain: Domain, kind: str) -> Domain:
    """
    Add the controllers the devices need and fill in controller models, as
    libvirt's post-parse step does: a USB controller for USB disks and
    input devices, SATA and SCSI controllers for their disks, a
    virtio-serial controller for virtio consoles.  The USB controller is
    C{piix3-uhci} on i440fx and C{qemu-xhci} on q35; SCSI is C{lsilogic}.

    @param domain: a definition with defaults filled in.
    @param kind: the machine kind (L{machine_kind}).
    @return: the definition with its controllers complete, sorted by type
        and index.
    @raise DomainConfigError: two controllers of one type share an index,
        or a root port has index 0 (the root bus's).
    @raise ConfigUnsupportedError: USB devices with C{<controller
        type='usb' model='none'/>}, or a root port on a machine other than q35.
    """
    dv = domain.devices
    have: dict[tuple[str, int], Controller] = {}
    for c in dv.controllers:
        if (c.type, c.index) in have:
            raise DomainConfigError(f"Multiple '{c.type}' controllers with index '{c.index}'")
        if is_root_port(c) and kind != Q35:
            raise ConfigUnsupportedError(
                f"'{ROOT_PORT}' controllers need a PCI Express machine (q35)")
        if is_root_port(c) and c.index == 0:
            raise DomainConfigError(
                "The PCI controller with index='0' must be model='pcie-root' for this "
                f"machine type, but model='{ROOT_PORT}' was found instead")
        have[(c.type, c.index)] = c
    usb_off = any(c.type == "usb" and c.model == "none" for c in dv.controllers)
    for key in _needed_controllers(dv):
        if key[0] == "usb" and usb_off:
            raise ConfigUnsupportedError(
                "USB is disabled for this domain, but USB devices are present in the domain XML")
        if key not in have:
            have[key] = Controller(type=key[0], index=key[1])
    controllers = tuple(
        replace(c, model=_default_model(c, kind))
        for _key, c in sorted(have.items(),
                              key=lambda kv: (CONTROLLER_TYPES.index(kv[0][0]), kv[0][1])))
    if controllers == dv.controllers:
        return domain
    return replace(domain, devices=replace(dv, controllers=controllers))


# ------------------------------------------------------------------ the buses

class _Buses:
    """
    The functions in use on the root bus of one machine and on the buses of
    its root ports.

    @ivar used: (bus, slot) -> functions in use.
    @ivar ports: the buses that root ports make (their indexes).
    """

    def __init__(self, kind: str, ports: set[int]) -> None:
        self.ports = ports
        self.used: dict[tuple[int, int], set[int]] = {}
        for slot, functions in _BOARD[kind].items():
            self.used[(0, slot)] = set(functions)

    def check(self, address: PCIAddress) -> None:
        """
        @raise DomainConfigError: the address is on no bus there is, or off
            the slots of its bus: 1 to 31 on the root bus, 0 on a root
            port's (libvirt's texts).
        """
        if address.domain != 0:
            raise DomainConfigError(
                f"Invalid PCI address {address}. Only PCI domain 0 is available")
        if address.bus != 0 and address.bus not in self.ports:
            last = max(self.ports, default=0)
            if address.bus > last:
                raise DomainConfigError(
                    f"Invalid PCI address {address}. Only PCI buses up to {last} are available")
            raise DomainConfigError(
                f"Could not find PCI controller with index '{address.bus}' required for "
                f"device at address {address}")
        low, high = (1, MAX_SLOT) if address.bus == 0 else (0, 0)
        if address.slot < low:
            raise DomainConfigError(f"Invalid PCI address {address}. slot must be >= {low}")
        if address.slot > high:
            raise DomainConfigError(f"Invalid PCI address {address}. slot must be <= {high}")
        if address.function > MAX_FUNCTION:
            raise DomainConfigError(
                f"Invalid PCI address {address}. function must be <= {MAX_FUNCTION}")

    def reserve(self, address: PCIAddress) -> None:
        """
        @raise DomainConfigError: the address is invalid or already in use.
        """
        self.check(address)
        functions = self.used.setdefault((address.bus, address.slot), set())
        if address.function in functions:
            raise DomainConfigError(f"Attempted double use of PCI Address {address}")
        functions.add(address.function)

    def slot_in_use(self, slot: int, bus: int = 0) -> bool:
        """
        @return: whether any function of C{slot} on C{bus} is in use.
        """
        return bool(self.used.get((bus, slot)))

    def next_free(self) -> PCIAddress:
        """
        @return: function 0 of the first slot of the root bus nothing uses,
            now reserved.
        @raise InternalError: every slot is taken (libvirt's text).
        """
        for slot in range(1, MAX_SLOT + 1):
            if not self.slot_in_use(slot):
                address = PCIAddress(slot=slot)
                self.reserve(address)
                return address
        raise InternalError("No more available PCI slots")

    def free_port(self) -> PCIAddress | None:
        """
        @return: slot 0 of the first root port's bus nothing uses, now
            reserved, or C{None} when every root port is in use.
        """
        for bus in sorted(self.ports):
            if not self.slot_in_use(0, bus):
                address = PCIAddress(bus=bus, slot=0)
                self.reserve(address)
                return address
        return None


class _Devices:
    """
    A mutable copy of a definition's devices, walked in libvirt's order.
    """

    def __init__(self, dv: Devices) -> None:
        self.dv = dv
        self.lists: dict[str, list[Any]] = {
            "interfaces": list(dv.interfaces),
            "controllers": list(dv.controllers),
            "disks": list(dv.disks),
            "memballoon": [] if dv.memballoon is None else [dv.memballoon],
            "rngs": list(dv.rngs),
            "watchdogs": list(dv.watchdogs),
            "videos": list(dv.videos),
            "inputs": list(dv.inputs),
        }

    def walk(self) -> Iterator[tuple[str, int, _PCIDevice]]:
        """
        @return: C{(list name, position, device)} in libvirt's assignment order.
        """
        for name, items in self.lists.items():
            for i, device in enumerate(items):
                yield name, i, device

    def set(self, name: str, i: int, address: PCIAddress) -> None:
        """
        Give the device at C{name[i]} an address.
        """
        self.lists[name][i] = replace(self.lists[name][i], address=address)

    def result(self) -> Devices:
        """
        @return: the devices with the addresses set.
        """
        lists = self.lists
        return replace(
            self.dv, interfaces=tuple(lists["interfaces"]),
            controllers=tuple(lists["controllers"]), disks=tuple(lists["disks"]),
            memballoon=lists["memballoon"][0] if lists["memballoon"] else None,
            rngs=tuple(lists["rngs"]), watchdogs=tuple(lists["watchdogs"]),
            videos=tuple(lists["videos"]), inputs=tuple(lists["inputs"]))


def _fixed_address(device: _PCIDevice, kind: str) -> PCIAddress | None:
    """
    @return: the address a board device must have: the PIIX3 USB controller
        (1.2 on i440fx) and q35's SATA controller (1f.2).
    """
    if isinstance(device, Controller) and device.index == 0:
        if kind == I440FX and device.type == "usb" and device.model == "piix3-uhci":
            return _PIIX3_USB
        if kind == Q35 and device.type == "sata":
            return _ICH9_SATA
    return None


def _check_fixed(device: _PCIDevice, kind: str) -> PCIAddress | None:
    fixed = _fixed_address(device, kind)
    if fixed is not None and device.address is not None and device.address != replace(
            fixed, multifunction=device.address.multifunction):
        if fixed == _PIIX3_USB:
            raise ConfigUnsupportedError(
                "PIIX3 USB controller at index 0 must have PCI address 0:0:1.2")
        raise ConfigUnsupportedError("Primary SATA controller must have PCI address 0:0:1f.2")
    return fixed


def assign_pci_addresses(domain: Domain, kind: str) -> Domain:
    """
    Check the PCI addresses a definition gives and assign one to every PCI
    device without, as described in the module docstring (on q35, adding
    the root ports the devices need).  A definition whose devices all have
    addresses comes back unchanged, so this may run any number of times.

    @param domain: a definition (controllers complete, see
        L{add_implicit_controllers}).
    @param kind: the machine kind (L{machine_kind}); nothing is done for
        machines other than i440fx and q35.
    @return: the definition with every PCI device addressed.
    @raise DomainConfigError: an address on a bus there is not, off the
        slots of its bus, or used twice (libvirt's texts, e.g. "Attempted
        double use of PCI Address 0000:00:05.0").
    @raise ConfigUnsupportedError: a PCI address on a device that is not on
        PCI, a board device not at its place, or a root port off bus 0.
    @raise InternalError: no free slot is left.
    """
    if not has_pci_layout(kind):
        return domain
    work = _Devices(domain.devices)
    buses = _Buses(kind, {c.index for c in domain.devices.controllers if is_root_port(c)})
    # Addresses given: check them and take them first.
    for _name, _i, device in work.walk():
        if device.address is None:
            continue
        if not on_pci(device):
            raise ConfigUnsupportedError(
                f"{_describe(device)} is not a PCI device and cannot have a PCI address")
        fixed = _check_fixed(device, kind)
        if fixed == _ICH9_SATA:
            continue  # the board's own: reserved already
        if is_root_port(device) and device.address.bus != 0:
            raise ConfigUnsupportedError(
                f"The device at PCI address {device.address} cannot be plugged into the PCI "
                f"controller with index='{device.address.bus}'. It requires a controller "
                f"that accepts a {ROOT_PORT}.")
        buses.reserve(device.address)
    # Board devices at their places, then the primary video card.
    for name, i, device in work.walk():
        if device.address is None and on_pci(device):
            fixed = _fixed_address(device, kind)
            if fixed is not None:
                if fixed != _ICH9_SATA:
                    buses.reserve(fixed)
                work.set(name, i, fixed)
    videos = work.lists["videos"]
    if videos and videos[0].address is None and on_pci(videos[0]):
        slot = _PRIMARY_VIDEO_SLOT[kind]
        if buses.slot_in_use(slot):
            work.set("videos", 0, buses.next_free())
        else:
            address = PCIAddress(slot=slot)
            buses.reserve(address)
            work.set("videos", 0, address)
    if kind == Q35:
        _place_on_root_ports(work, buses)
    # Everything else: the first free slot of the root bus, in libvirt's order.
    for name, i, device in work.walk():
        if device.address is None and on_pci(device):
            work.set(name, i, buses.next_free())
    _mark_multifunction(work)
    _number_root_ports(work)
    devices = work.result()
    if devices == domain.devices:
        return domain
    return replace(domain, devices=devices)


def _place_on_root_ports(work: _Devices, buses: _Buses) -> None:
    """
    On q35: give every PCI device without an address (but video cards and
    root ports) slot 0 of a root port of its own, the definition's free
    ones first, then new ones; then pack the root ports without an address
    into multifunction slots of C{pcie.0}.
    """
    wanting = [(name, i) for name, i, device in work.walk()
               if device.address is None and on_pci(device) and name != "videos"
               and not is_root_port(device)]
    controllers = work.lists["controllers"]
    free = sum(1 for bus in buses.ports if not buses.slot_in_use(0, bus))
    index = max((c.index for c in controllers if c.type == "pci"), default=0)
    for _ in range(len(wanting) - free):
        # pci is the last type, so the list stays in order of type and index
        index += 1
        controllers.append(Controller(type="pci", index=index, model=ROOT_PORT))
        buses.ports.add(index)
    slot, function = 0, _PORTS_PER_SLOT
    for i, controller in enumerate(controllers):
        if is_root_port(controller) and controller.address is None:
            if function == _PORTS_PER_SLOT:
                slot, function = buses.next_free().slot, 0
            else:
                buses.reserve(PCIAddress(slot=slot, function=function))
            work.set("controllers", i, PCIAddress(slot=slot, function=function))
            function += 1
    for name, i in wanting:
        address = buses.free_port()
        assert address is not None  # enough root ports were added above
        work.set(name, i, address)


def _number_root_ports(work: _Devices) -> None:
    """
    Give every root port without them libvirt's C{chassis} (its index) and
    C{port} (C{(slot << 3) + function} of its address).
    """
    controllers = work.lists["controllers"]
    for i, controller in enumerate(controllers):
        if is_root_port(controller) and controller.address is not None and (
                controller.target_chassis is None or controller.target_port is None):
            address = controller.address
            controllers[i] = replace(
                controller,
                target_chassis=(controller.index if controller.target_chassis is None
                                else controller.target_chassis),
                target_port=((address.slot << 3) + address.function
                             if controller.target_port is None else controller.target_port))


def _mark_multifunction(work: _Devices) -> None:
    """
    Set C{multifunction='on'} on function 0 of every slot where devices of
    the definition use other functions too (as libvirt does), unless the
    definition says otherwise.
    """
    functions: dict[tuple[int, int], int] = {}
    for _name, _i, device in work.walk():
        if device.address is not None and on_pci(device):
            key = (device.address.bus, device.address.slot)
            functions[key] = functions.get(key, 0) + 1
    for name, i, device in work.walk():
        address = device.address
        if (address is not None and on_pci(device) and address.function == 0
                and address.multifunction is None
                and functions[(address.bus, address.slot)] > 1):
            work.set(name, i, replace(address, multifunction=True))


def complete(domain: Domain, kind: str) -> Domain:
    """
    The machine-dependent step after defaults and validation: implicit
    controllers (L{add_implicit_controllers}), then PCI addresses
    (L{assign_pci_addresses}).

    @param domain: a definition with its defaults filled in.
    @param kind: the machine kind (L{machine_kind}).
    @return: the complete definition.
    """
    return assign_pci_addresses(add_implicit_controllers(domain, kind), kind)


def used_addresses(domain: Domain) -> list[PCIAddress]:
    """
    @param domain: a definition.
    @return: the addresses its PCI devices use, in libvirt's order of kinds.
    """
    return [device.address for _n, _i, device in _Devices(domain.devices).walk()
            if device.address is not None and on_pci(device)]


def hotplug_address(domain: Domain, kind: str, wanted: PCIAddress | None) -> PCIAddress:
    """
    Choose the address of a device plugged into a running guest: the one it
    asks for, if free, or (libvirt reserves whole slots for hot-plugged
    devices) on i440fx function 0 of the first slot nothing in C{domain}
    uses, on q35 slot 0 of the first root port nothing uses (C{pcie.0}
    takes no hot-plug).

    @param domain: the running definition (every PCI device addressed).
    @param kind: C{i440fx} or C{q35}.
    @param wanted: the address the device XML gives, or C{None}.
    @return: the address.
    @raise DomainConfigError: C{wanted} is invalid or in use.
    @raise ConfigUnsupportedError: C{wanted} is not function 0, or on q35's
        root bus.
    @raise InternalError: no free slot is left (on q35: no free root port).
    """
    buses = _Buses(kind, {c.index for c in domain.devices.controllers if is_root_port(c)})
    for used in used_addresses(domain):
        buses.used.setdefault((used.bus, used.slot), set()).add(used.function)
    if kind == Q35 and wanted is None:
        address = buses.free_port()
        if address is None:
            raise InternalError(
                "No more available PCI slots: every pcie-root-port is in use; a q35 guest "
                "takes hot-plugged PCI devices only on spare root ports (add <controller "
                "type='pci' model='pcie-root-port'/> to its definition)")
        return address
    if kind == Q35 and wanted is not None and wanted.bus == 0:
        raise ConfigUnsupportedError(
            f"Cannot hot-plug a device at PCI address {wanted}: bus 0 (pcie-root) does not "
            "support hot-plug; use the bus of a free pcie-root-port")
    if wanted is None:
        return buses.next_free()
    if wanted.function != 0:
        raise ConfigUnsupportedError("Only PCI device addresses with function=0 are supported")
    buses.reserve(wanted)
    return wanted
