# -*- test-case-name: tests.domain.test_xml -*-
"""
Tests for L{qemud.domain.xml}: reading, refusing and rendering domain XML.
"""

from __future__ import annotations

import time
import unittest
from dataclasses import replace

from qemud.domain.defaults import assign_aliases
from qemud.domain.model import Disk, Interface
from qemud.domain.xml import (
    MAX_XML_BYTES,
    format_device_xml,
    format_domain_xml,
    parse_device_xml,
    parse_domain_xml,
    read_domain_xml,
)
from qemud.errors import ConfigUnsupportedError, DomainConfigError
from tests.domain.refusal import RefusalTestCase

UUID = "4dea23b3-1d52-d8f3-2516-782e98a23fa0"


def doc(devices: str = "", *, dtype: str = "qemu", name: str = "<name>t</name>",
        uuid: str = f"<uuid>{UUID}</uuid>", memory: str = "<memory>131072</memory>",
        vcpu: str = "", os: str = "<os><type>hvm</type></os>", extra: str = "") -> str:
    """
    Build a small domain document from its parts.
    """
    return (f"<domain type='{dtype}'>{name}{uuid}{memory}{vcpu}{os}{extra}"
            f"<devices>{devices}</devices></domain>")


class RefusalTests(RefusalTestCase):
    """
    Bad documents raise the right error class with an exact message.
    """

    def test_malformed(self) -> None:
        """
        Malformed XML reports expat's line and column.
        """
        self.assertRefused("<domain type='qemu'>\n  <name>x</nam>\n</domain>",
                           "XML error: malformed XML at line 2, column 12: mismatched tag")

    def test_empty(self) -> None:
        """
        An empty document is malformed.
        """
        self.assertRefused("", "XML error: malformed XML at line 1, column 1: no element found")

    def test_entities(self) -> None:
        """
        Entity declarations (billion laughs) are refused outright.
        """
        laughs = ("<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'>"
                  "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
                  "<domain type='qemu'><name>&b;</name></domain>")
        self.assertRefused(laughs, "XML error: entity declarations are not allowed in domain XML")

    def test_too_large(self) -> None:
        """
        Documents over 4 MiB are refused before parsing (even if malformed).
        """
        text = "<domain>" + " " * MAX_XML_BYTES
        self.assertRefused(text, f"XML error: XML document of {len(text)} bytes exceeds the "
                                 f"limit of {MAX_XML_BYTES} bytes")

    def test_multibyte_size(self) -> None:
        """
        The limit counts UTF-8 bytes, not characters.
        """
        text = "<domain>" + "\u00e9" * (MAX_XML_BYTES // 2)
        self.assertRefused(text, f"XML error: XML document of {MAX_XML_BYTES + 8} bytes "
                                 f"exceeds the limit of {MAX_XML_BYTES} bytes")

    def test_root(self) -> None:
        """
        The root element must be C{<domain>}.
        """
        self.assertRefused("<network><name>x</name></network>",
                           "XML error: unexpected root element <network>, expecting <domain>")

    def test_domain_types(self) -> None:
        """
        kqemu is refused as unsupported, explaining why; other hypervisors are
        unsupported; nonsense is unknown; a missing type is an error.
        """
        self.assertRefused(
            doc(dtype="kqemu"),
            "unsupported configuration: domain type 'kqemu' is not supported: QEMU dropped "
            "kqemu support in version 0.12 (2009); use type='qemu' or type='kvm'",
            ConfigUnsupportedError)
        self.assertRefused(doc(dtype="xen"),
                           "unsupported configuration: domain type 'xen' is not supported",
                           ConfigUnsupportedError)
        self.assertRefused(doc(dtype="bogus"), "XML error: unknown domain type 'bogus'")
        self.assertRefused("<domain><name>x</name></domain>",
                           "XML error: missing 'type' attribute in <domain>")

    def test_name(self) -> None:
        """
        A missing or empty name is refused; so is a name with a slash.
        """
        self.assertRefused(doc(name=""), "XML error: missing domain name")
        self.assertRefused(doc(name="<name></name>"), "XML error: missing domain name")
        self.assertRefused(doc(name="<name>a/b</name>"),
                           "XML error: domain name 'a/b' must not contain '/'")

    def test_duplicate_single_element(self) -> None:
        """
        A single-valued element given twice is refused.
        """
        self.assertRefused(doc(name="<name>a</name><name>b</name>"),
                           "XML error: element <domain/name> may appear only once, found 2")

    def test_uuid(self) -> None:
        """
        A malformed UUID is refused with its value.
        """
        self.assertRefused(doc(uuid="<uuid>1234-xyz</uuid>"),
                           "XML error: malformed uuid element '1234-xyz'")

    def test_memory(self) -> None:
        """
        Memory is required, at least 1 MiB, and current memory may not exceed it.
        """
        self.assertRefused(doc(memory=""), "XML error: missing <memory> element")
        self.assertRefused(doc(memory="<memory>1023</memory>"),
                           "XML error: memory size 1023 KiB is below the minimum of 1024 KiB")
        self.assertRefused(
            doc(memory="<memory unit='MiB'>64</memory><currentMemory unit='MiB'>65"
                       "</currentMemory>"),
            "XML error: currentMemory 66560 KiB is larger than memory 65536 KiB")
        self.assertRefused(doc(memory="<memory unit='parsecs'>1</memory>"),
                           "XML error: unknown unit 'parsecs' in <memory>")

    def test_vcpu(self) -> None:
        """
        Zero vCPUs, current above maximum and a bad cpuset are refused.
        """
        self.assertRefused(doc(vcpu="<vcpu>0</vcpu>"),
                           "XML error: invalid vcpu count 0: must be at least 1")
        self.assertRefused(doc(vcpu="<vcpu current='3'>2</vcpu>"),
                           "XML error: maxvcpus must not be less than current vcpus (2 < 3)")
        self.assertRefused(doc(vcpu="<vcpu>two</vcpu>"),
                           "XML error: invalid value 'two' for <vcpu>: expected an integer")
        self.assertRefused(doc(vcpu="<vcpu cpuset='3-1'>1</vcpu>"),
                           "XML error: invalid value of 'cpuset': '3-1'")

    def test_os(self) -> None:
        """
        An unknown boot device, a non-hvm OS type, and a missing <os> are refused.
        """
        self.assertRefused(doc(os="<os><type>hvm</type><boot dev='usb'/></os>"),
                           "XML error: unknown boot device 'usb' in <os><boot>")
        self.assertRefused(doc(os="<os><type>linux</type></os>"),
                           "unsupported configuration: OS type 'linux' is not supported",
                           ConfigUnsupportedError)
        self.assertRefused(doc(os=""), "XML error: missing <os> element")
        self.assertRefused(doc(os="<os><type arch='z80'>hvm</type></os>"),
                           "XML error: unknown architecture 'z80' in <os><type arch>")

    def test_lifecycle(self) -> None:
        """
        Unknown lifecycle actions are refused, naming the element.
        """
        self.assertRefused(doc(extra="<on_reboot>explode</on_reboot>"),
                           "XML error: unknown lifecycle action 'explode' for <on_reboot>")

    def test_duplicate_target(self) -> None:
        """
        Two disks on one target are refused, naming both sources; this covers
        two cdroms on one IDE slot.
        """
        self.assertRefused(
            doc("<disk device='cdrom'><source file='/a.iso'/><target dev='hdc'/></disk>"
                "<disk device='cdrom'><source file='/b.iso'/><target dev='hdc'/></disk>"),
            "XML error: target 'hdc' duplicated for disk sources '/a.iso' and '/b.iso'")

    def test_disk_refusals(self) -> None:
        """
        Unknown device or bus, targets not fitting their bus, and a disk
        without source are refused.
        """
        self.assertRefused(
            doc("<disk device='tape'><source file='/a'/><target dev='hda'/></disk>"),
            "XML error: unknown disk device 'tape'")
        self.assertRefused(
            doc("<disk><source file='/a'/><target dev='hda' bus='pata'/></disk>"),
            "XML error: unknown disk bus 'pata' for target 'hda'")
        self.assertRefused(
            doc("<disk><source file='/a'/><target dev='vda' bus='ide'/></disk>"),
            "XML error: disk target 'vda' does not fit bus 'ide' (expected hda to hdd)")
        self.assertRefused(
            doc("<disk><source file='/a'/><target dev='hde'/></disk>"),
            "XML error: disk target 'hde' does not fit bus 'ide' (expected hda to hdd)")
        self.assertRefused(
            doc("<disk device='floppy'><source file='/a'/><target dev='fdc'/></disk>"),
            "XML error: disk target 'fdc' does not fit bus 'fdc' (expected fda or fdb)")
        self.assertRefused(
            doc("<disk type='file' device='disk'><target dev='vda'/></disk>"),
            "XML error: disk 'vda' has no source: device 'disk' requires <source file=...>")
        self.assertRefused(
            doc("<disk type='block'><source dev=''/><target dev='sda'/></disk>"),
            "XML error: disk 'sda' has no source: device 'disk' requires <source dev=...>")
        self.assertRefused(
            doc("<disk type='network'><target dev='vda'/></disk>"),
            "unsupported configuration: disk type 'network' is not supported",
            ConfigUnsupportedError)
        self.assertRefused(
            doc("<disk><source file='/a'/></disk>"),
            "XML error: missing <target dev=...> in <disk> with source '/a'")
        self.assertRefused(
            doc("<disk><driver type='vhd9'/><source file='/a'/><target dev='vda'/></disk>"),
            "XML error: unknown driver format value 'vhd9' for disk 'vda'")

    def test_interface_refusals(self) -> None:
        """
        Bad, multicast and duplicate MACs and unknown types are refused.
        """
        self.assertRefused(doc("<interface type='user'><mac address='52:54:00:zz:00:01'/>"
                               "</interface>"),
                           "XML error: unable to parse mac address '52:54:00:zz:00:01'")
        self.assertRefused(doc("<interface type='user'><mac address='01:00:5e:00:00:01'/>"
                               "</interface>"),
                           "XML error: expected unicast mac address, found multicast "
                           "'01:00:5e:00:00:01'")
        self.assertRefused(doc("<interface type='user'><mac address='52:54:00:00:00:01'/>"
                               "</interface><interface type='user'>"
                               "<mac address='52:54:00:00:00:01'/></interface>"),
                           "XML error: MAC address '52:54:00:00:00:01' is used by more than "
                           "one interface")
        self.assertRefused(doc("<interface type='carrier-pigeon'/>"),
                           "XML error: unknown interface type 'carrier-pigeon'")
        self.assertRefused(doc("<interface type='direct'/>"),
                           "unsupported configuration: interface type 'direct' is not supported",
                           ConfigUnsupportedError)
        self.assertRefused(doc("<interface type='network'/>"),
                           "XML error: missing <source network=...> in <interface type='network'>")
        self.assertRefused(doc("<interface type='mcast'><source address='230.0.0.1' port='0'/>"
                               "</interface>"),
                           "XML error: invalid port 0 in <interface type='mcast'><source>: "
                           "expected 1 to 65535")

    def test_boot_order(self) -> None:
        """
        A duplicated boot order, and boot orders mixed with <os><boot>, are refused.
        """
        self.assertRefused(
            doc("<disk><source file='/a'/><target dev='vda'/><boot order='1'/></disk>"
                "<disk><source file='/b'/><target dev='vdb'/><boot order='1'/></disk>"),
            "XML error: boot order '1' used for more than one device (vda and vdb)")
        self.assertRefused(
            doc("<disk><source file='/a'/><target dev='vda'/><boot order='1'/></disk>",
                os="<os><type>hvm</type><boot dev='hd'/></os>"),
            "XML error: per-device boot elements cannot be used together with os/boot elements")

    def test_graphics_refusals(self) -> None:
        """
        Unsupported graphics types, out-of-range ports and conflicting listen
        addresses are refused.
        """
        self.assertRefused(doc("<graphics type='spice'/>"),
                           "unsupported configuration: graphics type 'spice' is not supported",
                           ConfigUnsupportedError)
        self.assertRefused(doc("<graphics type='vnc' port='80'/>"),
                           "XML error: VNC port '80' out of range: expected -1 (autoport) "
                           "or 5900 to 65535")
        self.assertRefused(
            doc("<graphics type='vnc' listen='1.2.3.4'><listen type='address' "
                "address='5.6.7.8'/></graphics>"),
            "XML error: graphics 'listen' attribute '1.2.3.4' must match 'address' attribute "
            "of first listen element (found '5.6.7.8')")

    def test_chardev_refusals(self) -> None:
        """
        A file chardev without path and an unknown chardev type are refused.
        """
        self.assertRefused(doc("<serial type='file'/>"),
                           "XML error: missing source path in <serial type='file'>")
        self.assertRefused(doc("<serial type='telepathy'/>"),
                           "XML error: unknown character device type 'telepathy'")


class ParseTests(unittest.TestCase):
    """
    What parsing keeps, normalises and reports.
    """

    def test_uuid_forms(self) -> None:
        """
        Dashed and plain 32-hex UUIDs in any case are stored dashed lower-case.
        """
        for form in (UUID, UUID.upper(), UUID.replace("-", ""), UUID.replace("-", "").upper()):
            with self.subTest(form=form):
                d = parse_domain_xml(doc(uuid=f"<uuid> {form} </uuid>"))
                self.assertEqual(d.uuid, UUID)

    def test_uuid_generated(self) -> None:
        """
        A missing UUID is generated; two parses get different ones.
        """
        a = parse_domain_xml(doc(uuid=""))
        b = parse_domain_xml(doc(uuid=""))
        self.assertNotEqual(a.uuid, b.uuid)
        self.assertRegex(a.uuid, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

    def test_mac_generated_avoiding_existing(self) -> None:
        """
        A missing MAC is generated with the 52:54:00 prefix; MACs are
        normalised to lower case.
        """
        d = parse_domain_xml(doc("<interface type='user'/><interface type='user'>"
                                 "<mac address='52:54:00:AB:CD:EF'/></interface>"),
                             existing_macs=frozenset({"52:54:00:00:00:01"}))
        self.assertRegex(d.devices.interfaces[0].mac, r"^52:54:00(:[0-9a-f]{2}){3}$")
        self.assertEqual(d.devices.interfaces[1].mac, "52:54:00:ab:cd:ef")

    def test_memory_units(self) -> None:
        """
        Memory units follow libvirt: KB is 1000 bytes, k and KiB 1024.
        """
        d = parse_domain_xml(doc(memory="<memory unit='KB'>2048000</memory>"
                                        "<currentMemory unit='k'>1500000</currentMemory>"))
        self.assertEqual((d.memory_kib, d.current_memory_kib), (2000000, 1500000))

    def test_cdrom_readonly_and_empty(self) -> None:
        """
        A cdrom without source parses as empty and read-only; so does an
        empty source attribute.
        """
        d = parse_domain_xml(doc("<disk device='cdrom'><target dev='hdc'/></disk>"
                                 "<disk device='cdrom'><source file=''/><target dev='hdd'/>"
                                 "</disk>"))
        for disk in d.devices.disks:
            self.assertIsNone(disk.source)
            self.assertTrue(disk.readonly)
            self.assertEqual(disk.target_bus, "ide")

    def test_warnings(self) -> None:
        """
        Unsupported elements and attributes are dropped and named in the
        warnings list, once per distinct path with a count.
        """
        warnings: list[str] = []
        parse_domain_xml(doc(
            "<disk><driver name='qemu' io='native'/><source file='/a'/><target dev='hda'/>"
            "<address type='drive'/></disk><disk><source file='/b'/><target dev='hdb'/>"
            "<address type='drive'/></disk><controller type='ide'/>",
            extra="<pm/>"), warnings=warnings)
        self.assertEqual(warnings, [
            "ignoring unsupported attribute 'io' of <domain/devices/disk/driver>",
            "ignoring unsupported element <domain/devices/disk/address> (2 times)",
            "ignoring unsupported element <domain/devices/controller>",
            "ignoring unsupported element <domain/pm>",
        ])

    def test_no_warnings_list(self) -> None:
        """
        Without a warnings list unsupported content is silently dropped.
        """
        d = parse_domain_xml(doc("<controller type='usb'/>"))
        self.assertEqual(d.name, "t")

    def test_read_is_only_parsing(self) -> None:
        """
        L{read_domain_xml} fills nothing in and does not validate.
        """
        d = read_domain_xml(doc("<disk><target dev='vda'/></disk>", uuid=""))
        self.assertEqual(d.uuid, "")
        self.assertEqual(d.devices.disks[0].target_bus, "")
        self.assertIsNone(d.devices.memballoon)

    def test_vnc_autoport_forms(self) -> None:
        """
        No port and C{port='-1'} mean autoport; a fixed port without
        autoport keeps it; C{autoport='yes'} wins over a port.
        """
        cases = [("", (-1, True)), ("port='-1'", (-1, True)),
                 ("port='5901'", (5901, False)), ("port='5901' autoport='no'", (5901, False)),
                 ("autoport='no'", (-1, True))]
        for attrs, expected in cases:
            with self.subTest(attrs=attrs):
                g = parse_domain_xml(doc(f"<graphics type='vnc' {attrs}/>")).devices.graphics[0]
                self.assertEqual((g.port, g.autoport), expected)

    def test_speed(self) -> None:
        """
        A typical domain parses in well under a millisecond (bounded
        generously here at 3 ms on average, for slow shared machines).
        """
        text = doc("<emulator>/usr/bin/qemu-system-x86_64</emulator>"
                   "<disk><driver name='qemu' type='qcow2'/><source file='/a'/>"
                   "<target dev='vda'/></disk><disk device='cdrom'><target dev='hdc'/></disk>"
                   "<interface type='network'><mac address='52:54:00:00:00:01'/>"
                   "<source network='default'/><model type='virtio'/></interface>"
                   "<serial type='pty'/><console type='pty'/><input type='tablet'/>"
                   "<graphics type='vnc'/><video><model type='vga'/></video>")
        start = time.perf_counter()
        for _ in range(200):
            parse_domain_xml(text)
        self.assertLess((time.perf_counter() - start) / 200, 0.003)


class RenderTests(unittest.TestCase):
    """
    Live versus inactive and secure versus insecure rendering.
    """

    TEXT = doc("<disk><source file='/a'/><target dev='vda'/></disk>"
               "<disk device='cdrom'><target dev='hdc'/></disk>"
               "<interface type='user'><mac address='52:54:00:00:00:01'/></interface>"
               "<serial type='pty'/><console type='pty'/><input type='mouse'/>"
               "<graphics type='vnc' passwd='sekrit'/><watchdog model='ib700'/>"
               "<rng model='virtio'><backend model='random'/></rng>", dtype="kvm")

    def test_live(self) -> None:
        """
        C{inactive=False} with an id shows C{id='3'} and every alias, and
        the VNC port actually chosen.
        """
        d = assign_aliases(parse_domain_xml(self.TEXT))
        g = replace(d.devices.graphics[0], port=5901)
        d = replace(d, devices=replace(d.devices, graphics=(g,)))
        out = format_domain_xml(d, inactive=False, domain_id=3)
        self.assertTrue(out.startswith("<domain type='kvm' id='3'>\n"))
        for alias in ("virtio-disk0", "ide0-1-0", "net0", "serial0", "input0", "video0",
                      "watchdog0", "balloon0", "rng0"):
            self.assertIn(f"<alias name='{alias}'/>", out)
        self.assertEqual(out.count("<alias name='serial0'/>"), 2)
        self.assertIn("<graphics type='vnc' port='5901' autoport='yes'>", out)
        self.assertIn("    <disk type='file' device='disk'>\n"
                      "      <source file='/a'/>\n"
                      "      <target dev='vda' bus='virtio'/>\n"
                      "      <alias name='virtio-disk0'/>\n"
                      "      <address type='pci' domain='0x0000' bus='0x00' slot='0x04'"
                      " function='0x0'/>\n"
                      "    </disk>\n", out)

    def test_inactive_hides_live_state(self) -> None:
        """
        The inactive rendering of the same definition has no id, no alias
        and shows the autoport marker C{port='-1'}.
        """
        d = assign_aliases(parse_domain_xml(self.TEXT))
        g = replace(d.devices.graphics[0], port=5901)
        d = replace(d, devices=replace(d.devices, graphics=(g,)))
        out = format_domain_xml(d, domain_id=3)
        self.assertTrue(out.startswith("<domain type='kvm'>\n"))
        self.assertNotIn("<alias", out)
        self.assertIn("<graphics type='vnc' port='-1' autoport='yes'>", out)

    def test_live_round_trip(self) -> None:
        """
        Live XML parses back to the same aliases (as a status file would).
        """
        d = assign_aliases(parse_domain_xml(self.TEXT))
        again = parse_domain_xml(format_domain_xml(d, inactive=False, secure=False,
                                                   domain_id=3))
        self.assertEqual(again, d)

    def test_secure(self) -> None:
        """
        The VNC password appears only when C{secure=False}, escaped.
        """
        d = parse_domain_xml(doc("<graphics type='vnc' passwd='a&amp;b'/>"))
        self.assertNotIn("passwd", format_domain_xml(d))
        self.assertNotIn("passwd", format_domain_xml(d, secure=True, inactive=False))
        insecure = format_domain_xml(d, secure=False)
        self.assertIn("<graphics type='vnc' port='-1' autoport='yes' passwd='a&amp;b'>",
                      insecure)
        self.assertEqual(parse_domain_xml(insecure).devices.graphics[0].passwd, "a&b")


class DeviceXMLTests(unittest.TestCase):
    """
    Single-device documents, as used for hot-plug.
    """

    def test_disk(self) -> None:
        """
        A C{<disk>} parses with defaults and formats at top level.
        """
        disk = parse_device_xml("<disk type='file' device='cdrom'><source file='/x.iso'/>"
                                "<target dev='sda' bus='sata'/></disk>")
        self.assertEqual(disk, Disk(target_dev="sda", target_bus="sata", device="cdrom",
                                    source="/x.iso", readonly=True))
        self.assertEqual(format_device_xml(disk),
                         "<disk type='file' device='cdrom'>\n"
                         "  <source file='/x.iso'/>\n"
                         "  <target dev='sda' bus='sata'/>\n"
                         "  <readonly/>\n"
                         "</disk>\n")

    def test_interface(self) -> None:
        """
        An C{<interface>} gets a MAC that avoids the existing ones.
        """
        iface = parse_device_xml("<interface type='network'><source network='default'/>"
                                 "<model type='virtio'/></interface>",
                                 existing_macs=frozenset({"52:54:00:00:00:01"}))
        assert isinstance(iface, Interface)
        self.assertRegex(iface.mac, r"^52:54:00(:[0-9a-f]{2}){3}$")
        self.assertEqual(parse_device_xml(format_device_xml(iface)), iface)

    def test_refusals(self) -> None:
        """
        Another root, or an invalid device, is refused.
        """
        with self.assertRaises(DomainConfigError) as cm:
            parse_device_xml("<graphics type='vnc'/>")
        self.assertEqual(cm.exception.message, "XML error: unexpected root element "
                                               "<graphics>, expecting <disk> or <interface>")
        with self.assertRaises(DomainConfigError) as cm:
            parse_device_xml("<disk><source file='/a'/><target dev='vda' bus='ide'/></disk>")
        self.assertEqual(cm.exception.message,
                         "XML error: disk target 'vda' does not fit bus 'ide' "
                         "(expected hda to hdd)")
