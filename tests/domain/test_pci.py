# -*- test-case-name: tests.domain.test_pci -*-
"""
Tests for PCI addresses: C{<address type='pci'>} in domain XML
(L{qemud.domain.xml}), and the controllers and slots of
L{qemud.domain.pci}.
"""

from __future__ import annotations

import unittest
from dataclasses import replace

from qemud.domain import pci
from qemud.domain.model import Controller, Disk, Domain, Interface, PCIAddress
from qemud.domain.xml import (
    format_device_xml,
    format_domain_xml,
    parse_device_xml,
    parse_domain_xml,
)
from qemud.errors import ConfigUnsupportedError, DomainConfigError, InternalError
from tests.domain.refusal import RefusalTestCase

UUID = "4dea23b3-1d52-d8f3-2516-782e98a23fa0"


def doc(devices: str = "", *, machine: str = "pc") -> str:
    """
    @return: a small domain document with these devices on this machine.
    """
    return (f"<domain type='qemu'><name>t</name><uuid>{UUID}</uuid><memory>131072</memory>"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
            f"<devices>{devices}</devices></domain>")


def addr(slot: int, function: int = 0) -> str:
    """
    @return: an C{<address>} element for slot and function on the root bus.
    """
    return (f"<address type='pci' domain='0x0000' bus='0x00' slot='{slot:#04x}' "
            f"function='{function:#x}'/>")


def slots(d: Domain) -> dict[str, tuple[int, int]]:
    """
    @return: a name for each addressed device -> (slot, function).
    """
    out: dict[str, tuple[int, int]] = {}
    dv = d.devices
    named: list[tuple[str, object]] = [
        *((f"disk {x.target_dev}", x) for x in dv.disks),
        *((f"net {x.mac}", x) for x in dv.interfaces),
        *((f"controller {x.type}{x.index}", x) for x in dv.controllers),
        *((f"video{i}", x) for i, x in enumerate(dv.videos)),
        *((f"input{i}", x) for i, x in enumerate(dv.inputs)),
        *((f"watchdog{i}", x) for i, x in enumerate(dv.watchdogs)),
        *((f"rng{i}", x) for i, x in enumerate(dv.rngs)),
        ("balloon", dv.memballoon),
    ]
    for name, device in named:
        a = getattr(device, "address", None)
        if a is not None:
            out[name] = (a.slot, a.function)
    return out


def pci_addresses(d: Domain) -> dict[str, PCIAddress]:
    """
    @return: the names of L{slots} -> the whole address.
    """
    dv = d.devices
    named: list[tuple[str, object]] = [
        *((f"disk {x.target_dev}", x) for x in dv.disks),
        *((f"net {x.mac}", x) for x in dv.interfaces),
        *((f"controller {x.type}{x.index}", x) for x in dv.controllers),
        *((f"video{i}", x) for i, x in enumerate(dv.videos)),
        *((f"input{i}", x) for i, x in enumerate(dv.inputs)),
        *((f"watchdog{i}", x) for i, x in enumerate(dv.watchdogs)),
        *((f"rng{i}", x) for i, x in enumerate(dv.rngs)),
        ("balloon", dv.memballoon),
    ]
    return {name: a for name, device in named
            if (a := getattr(device, "address", None)) is not None}


NIC = "<interface type='user'><mac address='52:54:00:00:00:0{n}'/><model type='virtio'/>{a}"\
      "</interface>"
VDA = "<disk type='file' device='disk'><source file='/a'/><target dev='vda'/>{a}</disk>"


class AddressXMLTests(RefusalTestCase):
    """C{<address type='pci'>} read and written as libvirt does."""

    def test_round_trip(self) -> None:
        """
        An address written in hex, decimal or octal (libvirt's C{strtoul}
        base 0) is kept and written back as libvirt formats it.
        """
        d = parse_domain_xml(doc(
            VDA.format(a="<address type='pci' domain='0' bus='0' slot='18' function='0'/>")
            + NIC.format(n=1, a="<address type='pci' slot='0x1e' function='0x0'/>")
            + NIC.format(n=2, a="<address type='pci' slot='010' multifunction='on'/>")))
        self.assertEqual(d.devices.disks[0].address, PCIAddress(slot=18))
        self.assertEqual(d.devices.interfaces[0].address, PCIAddress(slot=30))
        self.assertEqual(d.devices.interfaces[1].address,
                         PCIAddress(slot=8, multifunction=True))
        out = format_domain_xml(d)
        self.assertIn("<address type='pci' domain='0x0000' bus='0x00' slot='0x12' "
                      "function='0x0'/>", out)
        self.assertIn("<address type='pci' domain='0x0000' bus='0x00' slot='0x08' "
                      "function='0x0' multifunction='on'/>", out)
        self.assertEqual(format_domain_xml(parse_domain_xml(out)), out)

    def test_empty_address_means_assign(self) -> None:
        """
        C{<address type='pci'/>} (all zero) asks for an address, as in
        libvirt: the device gets the first free slot.
        """
        d = parse_domain_xml(doc(VDA.format(a="<address type='pci'/>")))
        self.assertEqual(d.devices.disks[0].address, PCIAddress(slot=2))

    def test_other_address_types_ignored(self) -> None:
        """
        Addresses of other types (drive, usb, ...) are still dropped and
        reported, and a virtio disk with one gets a PCI address.
        """
        warnings: list[str] = []
        d = parse_domain_xml(doc(VDA.format(
            a="<address type='drive' controller='0' bus='0' target='0' unit='0'/>")),
            warnings=warnings)
        self.assertEqual(warnings, ["ignoring unsupported element <domain/devices/disk/address>"])
        self.assertEqual(d.devices.disks[0].address, PCIAddress(slot=2))

    def test_out_of_range(self) -> None:
        """
        Slot, function, bus and domain beyond what PCI allows are refused
        with libvirt's texts.
        """
        for attrs, message in (
                ("slot='0x20'", "Invalid PCI address slot='0x20', must be <= 0x1F"),
                ("slot='3' function='8'", "Invalid PCI address function=0x8, must be <= 7"),
                ("bus='0x100' slot='3'", "Invalid PCI address bus='0x100', must be <= 0xFF"),
                ("domain='0x10000'", "Invalid PCI address domain='0x10000', must be <= 0xFFFF")):
            with self.subTest(attrs=attrs):
                self.assertRefused(doc(VDA.format(a=f"<address type='pci' {attrs}/>")),
                                   f"XML error: {message}")

    def test_malformed_values(self) -> None:
        """
        A value that is not a non-negative integer, a bad C{multifunction}
        and two addresses on one device are refused.
        """
        self.assertRefused(
            doc(VDA.format(a="<address type='pci' slot='-1'/>")),
            "XML error: Invalid value for attribute 'slot' in element 'address': '-1'. "
            "Expected non-negative integer value")
        self.assertRefused(
            doc(VDA.format(a="<address type='pci' slot='0x3g'/>")),
            "XML error: Invalid value for attribute 'slot' in element 'address': '0x3g'. "
            "Expected non-negative integer value")
        self.assertRefused(
            doc(VDA.format(a="<address type='pci' slot='3' multifunction='yes'/>")),
            "XML error: Invalid value for attribute 'multifunction' in element 'address': "
            "'yes'. Expected 'on' or 'off'")
        self.assertRefused(
            doc(VDA.format(a=addr(3) + addr(4))),
            "XML error: element <domain/devices/disk/address> may appear only once, found 2")

    def test_device_xml(self) -> None:
        """
        A single C{<disk>} or C{<interface>} (hot-plug) carries its address
        both ways.
        """
        disk = parse_device_xml(VDA.format(a=addr(9)))
        self.assertEqual(disk.address, PCIAddress(slot=9))
        self.assertIn("  <address type='pci' domain='0x0000' bus='0x00' slot='0x09' "
                      "function='0x0'/>\n</disk>", format_device_xml(disk))
        nic = parse_device_xml(NIC.format(n=1, a=addr(7)))
        self.assertEqual(nic.address, PCIAddress(slot=7))

    def test_controllers(self) -> None:
        """
        USB, SATA, SCSI and virtio-serial controllers are read with index,
        model and address; other types (ide, pci, fdc) and unknown models
        are dropped and reported, as before.
        """
        warnings: list[str] = []
        d = parse_domain_xml(doc(
            "<controller type='scsi' index='0' model='virtio-scsi'>" + addr(9)
            + "</controller><controller type='virtio-serial'/>"
            "<controller type='ide' index='0'/><controller type='pci' model='pci-root'/>"
            "<controller type='usb' model='ich9-ehci1'/>"), warnings=warnings)
        self.assertEqual(warnings, [
            "ignoring unsupported element <domain/devices/controller>"])
        self.assertEqual(
            [(c.type, c.index, c.model, c.address) for c in d.devices.controllers],
            [("scsi", 0, "virtio-scsi", PCIAddress(slot=9)),
             ("virtio-serial", 0, None, PCIAddress(slot=2))])
        out = format_domain_xml(d)
        self.assertIn("    <controller type='scsi' index='0' model='virtio-scsi'>\n"
                      "      <address type='pci' domain='0x0000' bus='0x00' slot='0x09' "
                      "function='0x0'/>\n    </controller>\n", out)
        self.assertEqual(format_domain_xml(parse_domain_xml(out)), out)

    def test_controller_index(self) -> None:
        """
        A controller without an index gets the lowest free one of its type;
        two of a type with one index are refused.
        """
        d = parse_domain_xml(doc("<controller type='sata' index='0'/><controller type='sata'/>"))
        self.assertEqual([c.index for c in d.devices.controllers], [0, 1])
        self.assertRefused(doc("<controller type='scsi' index='0'/>"
                               "<controller type='scsi' index='0'/>"),
                           "XML error: Multiple 'scsi' controllers with index '0'")
        self.assertRefused(doc("<controller type='scsi' index='-1'/>"),
                           "XML error: invalid value '-1' for <controller index>: "
                           "expected 0 or more")


class AssignTests(RefusalTestCase):
    """Addresses assigned when a definition is read, as libvirt does."""

    ALL = (VDA.format(a="") + "<disk type='file'><source file='/s'/><target dev='sda'/></disk>"
           + NIC.format(n=1, a="") + NIC.format(n=2, a="")
           + "<input type='tablet'/><input type='keyboard' bus='virtio'/>"
           "<graphics type='vnc'/><video><model type='qxl'/></video><video/>"
           "<watchdog model='i6300esb'/><rng model='virtio'><backend model='random'/></rng>"
           "<console type='pty'><target type='virtio'/></console>")

    def test_i440fx_order(self) -> None:
        """
        On i440fx: the USB controller at the PIIX3's 1.2, the primary video
        card at slot 2, then from slot 3 in libvirt's order: NICs,
        controllers (SCSI, virtio-serial), virtio disks, balloon, RNG,
        watchdog, other video cards, virtio input devices.
        """
        d = parse_domain_xml(doc(self.ALL))
        self.assertEqual(slots(d), {
            "controller usb0": (1, 2), "video0": (2, 0),
            "net 52:54:00:00:00:01": (3, 0), "net 52:54:00:00:00:02": (4, 0),
            "controller scsi0": (5, 0), "controller virtio-serial0": (6, 0),
            "disk vda": (7, 0), "balloon": (8, 0), "rng0": (9, 0), "watchdog0": (10, 0),
            "video1": (11, 0), "input1": (12, 0)})
        self.assertEqual([(c.type, c.model) for c in d.devices.controllers],
                         [("scsi", "lsilogic"), ("virtio-serial", None),
                          ("usb", "piix3-uhci")])

    def test_q35_order(self) -> None:
        """
        On q35: the primary video card at slot 1, the built-in SATA
        controller at 1f.2; every other device but video cards on a root
        port of its own (slot 0 of bus N), in libvirt's order; the ten root
        ports added packed at slots 2 and 3, the second video card after
        them; slot 0x1f is the ICH9's.
        """
        d = parse_domain_xml(doc(self.ALL + "<disk type='file'><source file='/c'/>"
                                 "<target dev='sdb' bus='sata'/></disk>", machine="q35"))
        buses = {name: a.bus for name, a in pci_addresses(d).items()}
        self.assertEqual(slots(d), {
            "video0": (1, 0), "controller sata0": (0x1F, 2), "video1": (4, 0),
            **{f"controller pci{n}": (2 + (n - 1) // 8, (n - 1) % 8) for n in range(1, 11)},
            **{name: (0, 0) for name, bus in buses.items() if bus}})
        self.assertEqual({name: bus for name, bus in buses.items() if bus}, {
            "net 52:54:00:00:00:01": 1, "net 52:54:00:00:00:02": 2, "controller scsi0": 3,
            "controller virtio-serial0": 4, "controller usb0": 5, "disk vda": 6,
            "balloon": 7, "rng0": 8, "watchdog0": 9, "input1": 10})
        self.assertEqual([(c.type, c.model) for c in d.devices.controllers][-11:-9],
                         [("usb", "qemu-xhci"), ("pci", "pcie-root-port")])
        self.assertRefused(doc(VDA.format(a=addr(0x1F, 3)), machine="q35"),
                           "XML error: Attempted double use of PCI Address 0000:00:1f.3")

    def test_without_video(self) -> None:
        """
        Without a video card slot 2 is free for the first device.
        """
        d = parse_domain_xml(doc(NIC.format(n=1, a="")))
        self.assertEqual(slots(d), {"net 52:54:00:00:00:01": (2, 0), "balloon": (3, 0)})

    def test_given_addresses_honoured(self) -> None:
        """
        Addresses in the XML are kept; the others fill the free slots
        around them, and the primary video card moves when slot 2 is taken.
        """
        d = parse_domain_xml(doc(NIC.format(n=1, a=addr(2)) + NIC.format(n=2, a="")
                                 + VDA.format(a=addr(3)) + "<video/>"))
        self.assertEqual(slots(d), {"net 52:54:00:00:00:01": (2, 0), "disk vda": (3, 0),
                                    "video0": (4, 0), "net 52:54:00:00:00:02": (5, 0),
                                    "balloon": (6, 0)})

    def test_stable(self) -> None:
        """
        Assignment is deterministic and a fixed point: the formatted result
        parses to the same addresses, and completing it again changes nothing.
        """
        first = parse_domain_xml(doc(self.ALL))
        again = parse_domain_xml(format_domain_xml(first))
        self.assertEqual(again, first)
        self.assertIs(pci.complete(first, pci.I440FX), first)
        self.assertEqual(parse_domain_xml(doc(self.ALL)), first)

    def test_double_use(self) -> None:
        """
        Two devices at one address, or one at a function of the PIIX3, are
        refused with libvirt's XML error.
        """
        with self.assertRaises(DomainConfigError) as cm:
            parse_domain_xml(doc(NIC.format(n=1, a=addr(5)) + VDA.format(a=addr(5))))
        self.assertIs(type(cm.exception), DomainConfigError)
        self.assertEqual(cm.exception.code, 27)
        self.assertEqual(cm.exception.message,
                         "XML error: Attempted double use of PCI Address 0000:00:05.0")
        for function in (0, 1, 3):
            self.assertRefused(
                doc(VDA.format(a=addr(1, function))),
                f"XML error: Attempted double use of PCI Address 0000:00:01.{function}")
        self.assertRefused(
            doc(VDA.format(a=addr(1, 2)) + "<input type='tablet'/>"),
            "XML error: Attempted double use of PCI Address 0000:00:01.2")

    def test_not_on_root_bus(self) -> None:
        """
        Another PCI domain or bus, or slot 0 (the host bridge), is refused.
        """
        for attrs, message in (
                ("domain='1' slot='3'",
                 "Invalid PCI address 0001:00:03.0. Only PCI domain 0 is available"),
                ("bus='1' slot='3'",
                 "Invalid PCI address 0000:01:03.0. Only PCI buses up to 0 are available")):
            with self.subTest(attrs=attrs):
                self.assertRefused(doc(VDA.format(a=f"<address type='pci' {attrs}/>")),
                                   f"XML error: {message}")
        # In XML, slot 0 on bus 0 means "assign one"; a definition built
        # otherwise may still name it.
        base = parse_domain_xml(doc())
        d = replace(base, devices=replace(base.devices, disks=(Disk(
            target_dev="vda", target_bus="virtio", source="/a",
            address=PCIAddress(function=1)),)))
        with self.assertRaises(DomainConfigError) as cm:
            pci.assign_pci_addresses(d, pci.I440FX)
        self.assertEqual(cm.exception.message,
                         "XML error: Invalid PCI address 0000:00:00.1. slot must be >= 1")

    def test_not_a_pci_device(self) -> None:
        """
        A PCI address on a device that is not on PCI (an IDE disk, a USB
        tablet) is refused; so is the PIIX3 USB controller elsewhere than 1.2.
        """
        self.assertRefused(
            doc("<disk type='file'><source file='/a'/><target dev='hda'/>" + addr(4)
                + "</disk>"),
            "unsupported configuration: disk 'hda' on bus 'ide' is not a PCI device and "
            "cannot have a PCI address", ConfigUnsupportedError)
        self.assertRefused(
            doc("<controller type='usb' index='0'>" + addr(4) + "</controller>"),
            "unsupported configuration: PIIX3 USB controller at index 0 must have PCI "
            "address 0:0:1.2", ConfigUnsupportedError)

    def test_multifunction(self) -> None:
        """
        Devices on several functions of one slot turn C{multifunction='on'}
        on for function 0, as libvirt does.
        """
        d = parse_domain_xml(doc(NIC.format(n=1, a=addr(5)) + NIC.format(n=2, a=addr(5, 1))))
        self.assertEqual([n.address for n in d.devices.interfaces],
                         [PCIAddress(slot=5, multifunction=True), PCIAddress(slot=5, function=1)])

    def test_no_layout(self) -> None:
        """
        Machines other than i440fx and q35 get no addresses (QEMU places
        their devices, as before).
        """
        for machine in ("isapc", "microvm", "virt"):
            with self.subTest(machine=machine):
                d = parse_domain_xml(doc(NIC.format(n=1, a=""), machine=machine))
                self.assertEqual(slots(d), {})

    def test_full(self) -> None:
        """
        When every slot is taken the next device is refused with libvirt's text.
        """
        nics = "".join(f"<interface type='user'><mac address='52:54:00:00:01:{i:02x}'/>"
                       "</interface>" for i in range(30))
        with self.assertRaises(InternalError) as cm:
            parse_domain_xml(doc(nics))
        self.assertEqual(cm.exception.message, "internal error: No more available PCI slots")


class ImplicitControllerTests(unittest.TestCase):
    """The controllers devices need are added, with the machine's models."""

    def test_added_once(self) -> None:
        """
        SCSI disks bring one lsilogic controller per seven disks, SATA disks
        one per six, USB devices the USB controller, virtio consoles the
        virtio-serial controller.
        """
        disks = "".join(f"<disk type='file'><source file='/{i}'/><target dev='sd{c}' bus='{b}'/>"
                        "</disk>" for i, (c, b) in enumerate(
                            [("a", "scsi"), ("b", "scsi"), ("h", "scsi"), ("c", "sata")]))
        d = parse_domain_xml(doc(disks))
        self.assertEqual([(c.type, c.index, c.model) for c in d.devices.controllers],
                         [("scsi", 0, "lsilogic"), ("scsi", 1, "lsilogic"), ("sata", 0, None)])

    def test_usb_none(self) -> None:
        """
        USB devices with USB turned off are refused (libvirt's text).
        """
        with self.assertRaises(ConfigUnsupportedError) as cm:
            parse_domain_xml(doc("<controller type='usb' model='none'/><input type='tablet'/>"))
        self.assertEqual(cm.exception.message,
                         "unsupported configuration: USB is disabled for this domain, but USB "
                         "devices are present in the domain XML")
        d = parse_domain_xml(doc("<controller type='usb' model='none'/>"))
        self.assertEqual(slots(d), {"balloon": (2, 0)})


class HotplugAddressTests(unittest.TestCase):
    """L{pci.hotplug_address}: the slot of a device plugged in live."""

    def setUp(self) -> None:
        self.domain = parse_domain_xml(doc(NIC.format(n=1, a="") + "<video/>"))
        self.assertEqual(slots(self.domain), {"video0": (2, 0),
                                              "net 52:54:00:00:00:01": (3, 0),
                                              "balloon": (4, 0)})

    def test_first_free(self) -> None:
        """
        Without a wish, function 0 of the first slot nothing uses.
        """
        self.assertEqual(pci.hotplug_address(self.domain, pci.I440FX, None), PCIAddress(slot=5))

    def test_wanted(self) -> None:
        """
        An address asked for is granted when free; refused when in use, not
        function 0, or off the bus.
        """
        self.assertEqual(pci.hotplug_address(self.domain, pci.I440FX, PCIAddress(slot=9)),
                         PCIAddress(slot=9))
        with self.assertRaises(DomainConfigError) as cm:
            pci.hotplug_address(self.domain, pci.I440FX, PCIAddress(slot=3))
        self.assertEqual(cm.exception.message,
                         "XML error: Attempted double use of PCI Address 0000:00:03.0")
        with self.assertRaises(ConfigUnsupportedError) as cu:
            pci.hotplug_address(self.domain, pci.I440FX, PCIAddress(slot=9, function=1))
        self.assertEqual(cu.exception.message, "unsupported configuration: Only PCI device "
                         "addresses with function=0 are supported")
        self.assertRaises(DomainConfigError, pci.hotplug_address, self.domain, pci.I440FX,
                          PCIAddress(bus=1, slot=9))

    def test_freed(self) -> None:
        """
        A slot is free again once its device is gone from the definition.
        """
        dv = self.domain.devices
        without = replace(self.domain, devices=replace(dv, interfaces=()))
        self.assertEqual(pci.hotplug_address(without, pci.I440FX, None), PCIAddress(slot=3))

    def test_q35_free_root_port(self) -> None:
        """
        On q35 a device goes to slot 0 of the first root port nothing uses
        (the balloon took the first spare one at define); once every root
        port is used the plug is refused with a message naming the remedy,
        and a port is free again once its device is gone.
        """
        d = parse_domain_xml(doc("<video/>" + PORT + PORT, machine="q35"))
        self.assertEqual(d.devices.memballoon.address if d.devices.memballoon else None,
                         PCIAddress(bus=1, slot=0))
        self.assertEqual(pci.hotplug_address(d, pci.Q35, None), PCIAddress(bus=2, slot=0))
        nic = Interface(type="user", mac="52:54:00:00:00:09", model="virtio",
                        address=PCIAddress(bus=2, slot=0))
        full = replace(d, devices=replace(d.devices, interfaces=(nic,)))
        with self.assertRaises(InternalError) as cm:
            pci.hotplug_address(full, pci.Q35, None)
        self.assertIn("No more available PCI slots: every pcie-root-port is in use",
                      cm.exception.message)
        self.assertIn("<controller type='pci' model='pcie-root-port'/>", cm.exception.message)
        without = replace(full, devices=replace(full.devices, interfaces=()))
        self.assertEqual(pci.hotplug_address(without, pci.Q35, None), PCIAddress(bus=2, slot=0))

    def test_q35_wanted(self) -> None:
        """
        On q35 an address asked for must be slot 0 of a free root port:
        C{pcie.0} takes no hot-plug, another slot or a used or missing bus
        is refused with libvirt's texts.
        """
        d = parse_domain_xml(doc("<video/>" + PORT + PORT, machine="q35"))
        self.assertEqual(pci.hotplug_address(d, pci.Q35, PCIAddress(bus=2)), PCIAddress(bus=2))
        with self.assertRaises(ConfigUnsupportedError) as cu:
            pci.hotplug_address(d, pci.Q35, PCIAddress(slot=9))
        self.assertIn("bus 0 (pcie-root) does not support hot-plug", cu.exception.message)
        for wanted, message in (
                (PCIAddress(bus=1), "Attempted double use of PCI Address 0000:01:00.0"),
                (PCIAddress(bus=2, slot=1), "Invalid PCI address 0000:02:01.0. slot must be <= 0"),
                (PCIAddress(bus=3), "Invalid PCI address 0000:03:00.0. Only PCI buses up to 2 "
                                    "are available")):
            with self.assertRaises(DomainConfigError) as cm:
                pci.hotplug_address(d, pci.Q35, wanted)
            self.assertEqual(cm.exception.message, "XML error: " + message)


PORT = "<controller type='pci' model='pcie-root-port'/>"


def on_bus(bus: int, slot: int = 0) -> str:
    """
    @return: an C{<address>} element for a slot of bus C{bus}.
    """
    return (f"<address type='pci' domain='0x0000' bus='{bus:#04x}' slot='{slot:#04x}' "
            "function='0x0'/>")


class RootPortTests(RefusalTestCase):
    """q35's PCIe root ports: C{<controller type='pci' model='pcie-root-port'>}."""

    def test_round_trip(self) -> None:
        """
        A root port is read with its C{<model name>}, C{<target chassis
        port>} and address, and written back as libvirt writes it; a
        second reading changes nothing.
        """
        text = doc("<controller type='pci' index='3' model='pcie-root-port'>"
                   "<model name='pcie-root-port'/><target chassis='7' port='0x1a'/>"
                   f"{addr(5, 2)}</controller><memballoon model='none'/>", machine="q35")
        d = parse_domain_xml(text)
        self.assertEqual(d.devices.controllers, (Controller(
            type="pci", index=3, model="pcie-root-port", target_chassis=7, target_port=0x1A,
            address=PCIAddress(slot=5, function=2)),))
        out = format_domain_xml(d)
        self.assertIn("    <controller type='pci' index='3' model='pcie-root-port'>\n"
                      "      <model name='pcie-root-port'/>\n"
                      "      <target chassis='7' port='0x1a'/>\n"
                      "      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' "
                      "function='0x2'/>\n"
                      "    </controller>\n", out)
        self.assertEqual(parse_domain_xml(out), d)

    def test_defaults(self) -> None:
        """
        Root ports without index get the lowest free from 1 (0 is the root
        bus); without address they are packed as functions of the first
        free slot (multifunction on function 0), with chassis = index and
        port = (slot << 3) + function.  Devices use the free ones first.
        """
        d = parse_domain_xml(doc(NIC.format(n=1, a="") + PORT + PORT
                                 + "<memballoon model='none'/>", machine="q35"))
        self.assertEqual(d.devices.controllers, (
            Controller(type="pci", index=1, model="pcie-root-port", target_chassis=1,
                       target_port=0x8, address=PCIAddress(slot=1, multifunction=True)),
            Controller(type="pci", index=2, model="pcie-root-port", target_chassis=2,
                       target_port=0x9, address=PCIAddress(slot=1, function=1))))
        self.assertEqual(d.devices.interfaces[0].address, PCIAddress(bus=1))
        self.assertEqual(pci.complete(d, pci.Q35), d)

    def test_added_as_needed(self) -> None:
        """
        Devices beyond the free root ports get new ones, numbered after the
        highest index; nine root ports take two slots.
        """
        disks = "".join(f"<disk type='file'><source file='/{c}'/><target dev='vd{c}'/></disk>"
                        for c in "abcdefgh")
        d = parse_domain_xml(doc("<video/>" + disks, machine="q35"))
        ports = [c for c in d.devices.controllers if pci.is_root_port(c)]
        self.assertEqual([(c.index, c.address) for c in ports],
                         [(n, PCIAddress(slot=2 + (n - 1) // 8, function=(n - 1) % 8,
                                         multifunction=True if n == 1 else None))
                          for n in range(1, 10)])
        self.assertEqual([disk.address for disk in d.devices.disks],
                         [PCIAddress(bus=n) for n in range(1, 9)])
        self.assertEqual(d.devices.memballoon.address if d.devices.memballoon else None,
                         PCIAddress(bus=9))

    def test_given_addresses(self) -> None:
        """
        A device may sit at slot 0 of a root port's bus; another slot, a
        bus beyond the last or a bus no controller makes is refused with
        libvirt's texts.
        """
        ports = ("<controller type='pci' index='1' model='pcie-root-port'/>"
                 "<controller type='pci' index='3' model='pcie-root-port'/>"
                 "<memballoon model='none'/>")
        d = parse_domain_xml(doc(VDA.format(a=on_bus(3)) + ports, machine="q35"))
        self.assertEqual(d.devices.disks[0].address, PCIAddress(bus=3))
        for address, message in (
                (on_bus(1, 1), "Invalid PCI address 0000:01:01.0. slot must be <= 0"),
                (on_bus(4), "Invalid PCI address 0000:04:00.0. Only PCI buses up to 3 "
                            "are available"),
                (on_bus(2), "Could not find PCI controller with index '2' required for "
                            "device at address 0000:02:00.0")):
            with self.subTest(address=address):
                self.assertRefused(doc(VDA.format(a=address) + ports, machine="q35"),
                                   "XML error: " + message)

    def test_refused(self) -> None:
        """
        Root ports only on q35, never index 0 nor off bus 0, chassis and
        port from 0 to 255, model name C{pcie-root-port}.
        """
        self.assertRefused(doc(PORT), "unsupported configuration: 'pcie-root-port' "
                           "controllers need a PCI Express machine (q35)", ConfigUnsupportedError)
        self.assertRefused(
            doc("<controller type='pci' index='0' model='pcie-root-port'/>", machine="q35"),
            "XML error: The PCI controller with index='0' must be model='pcie-root' for this "
            "machine type, but model='pcie-root-port' was found instead")
        self.assertRefused(
            doc("<controller type='pci' index='2' model='pcie-root-port'/>"
                f"<controller type='pci' index='1' model='pcie-root-port'>{on_bus(2)}"
                "</controller>", machine="q35"),
            "unsupported configuration: The device at PCI address 0000:02:00.0 cannot be "
            "plugged into the PCI controller with index='2'. It requires a controller that "
            "accepts a pcie-root-port.", ConfigUnsupportedError)
        self.assertRefused(
            doc("<controller type='pci' model='pcie-root-port'><target chassis='256'/>"
                "</controller>", machine="q35"),
            "XML error: PCI controller chassis '256' out of range - must be 0-255")
        self.assertRefused(
            doc("<controller type='pci' model='pcie-root-port'><model name='ioh3420'/>"
                "</controller>", machine="q35"),
            "unsupported configuration: PCI controller model name 'ioh3420' is not supported "
            "for model 'pcie-root-port'", ConfigUnsupportedError)

    def test_root_bus_ignored(self) -> None:
        """
        libvirt's C{pcie-root} controller (index 0) stays implicit: it is
        reported as ignored, as before.
        """
        warnings: list[str] = []
        d = parse_domain_xml(doc("<controller type='pci' index='0' model='pcie-root'/>",
                                 machine="q35"), warnings=warnings)
        self.assertFalse([c for c in d.devices.controllers if c.type == "pci" and c.index == 0])
        self.assertTrue(any("controller" in w for w in warnings))


class HelpersTests(unittest.TestCase):
    """Small helpers: machine kinds, QEMU's spelling, which devices are PCI."""

    def test_machine_kind(self) -> None:
        """
        Machine names map to their family; no machine on x86 is i440fx.
        """
        for machine, arch, kind in (("pc", None, "i440fx"), ("pc-i440fx-7.2", None, "i440fx"),
                                    ("q35", None, "q35"), ("pc-q35-7.2", None, "q35"),
                                    ("isapc", None, "isapc"), (None, "x86_64", "i440fx"),
                                    (None, "aarch64", "other"), ("virt", None, "other")):
            self.assertEqual(pci.machine_kind(machine, arch), kind)

    def test_qemu_addr(self) -> None:
        """
        QEMU's C{addr} is the slot, with the function when not 0, in hex.
        """
        self.assertEqual(pci.qemu_addr(PCIAddress(slot=0x1F)), "0x1f")
        self.assertEqual(pci.qemu_addr(PCIAddress(slot=1, function=2)), "0x1.0x2")
        self.assertEqual(str(PCIAddress(slot=0x1F, function=2)), "0000:00:1f.2")

    def test_on_pci(self) -> None:
        """
        virtio disks and PCI NICs are on PCI; IDE disks, ISA NICs and a USB
        controller of model none are not.
        """
        self.assertTrue(pci.on_pci(Disk(target_dev="vda", target_bus="virtio")))
        self.assertFalse(pci.on_pci(Disk(target_dev="hda", target_bus="ide")))
        self.assertTrue(pci.on_pci(Interface(type="user", mac="52:54:00:00:00:01")))
        self.assertFalse(pci.on_pci(Interface(type="user", mac="52:54:00:00:00:01",
                                              model="ne2k_isa")))
        self.assertFalse(pci.on_pci(Controller(type="usb", model="none")))
