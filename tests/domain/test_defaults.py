# -*- test-case-name: tests.domain.test_defaults -*-
"""
Tests for L{qemud.domain.defaults}: generated values, defaults and aliases.
"""

from __future__ import annotations

import re
import unittest
from dataclasses import replace
from unittest import mock

from qemud.domain import defaults
from qemud.domain.model import (
    RNG,
    CharDev,
    Devices,
    Disk,
    Domain,
    Input,
    Interface,
    MemBalloon,
    Video,
    Watchdog,
)

DOMAIN = Domain(type="kvm", name="d", uuid="", memory_kib=65536)


class GenerateTests(unittest.TestCase):
    """
    UUIDs and MACs are generated in the normalised form.
    """

    def test_uuid(self) -> None:
        """
        L{defaults.generate_uuid} gives distinct lower-case dashed UUIDs.
        """
        uuids = {defaults.generate_uuid() for _ in range(100)}
        self.assertEqual(len(uuids), 100)
        for u in uuids:
            self.assertRegex(u, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

    def test_mac_prefix(self) -> None:
        """
        Generated MACs carry QEMU's 52:54:00 prefix and are lower-case.
        """
        mac = defaults.generate_mac(frozenset())
        self.assertRegex(mac, r"^52:54:00(:[0-9a-f]{2}){3}$")

    def test_mac_unique(self) -> None:
        """
        A generated MAC is never one of the existing ones, even when most of
        the candidates the random source offers are taken.
        """
        existing: set[str] = set()
        for _ in range(500):
            mac = defaults.generate_mac(frozenset(existing))
            self.assertNotIn(mac, existing)
            existing.add(mac)
        self.assertEqual(len(existing), 500)

    def test_mac_unique_with_fixed_random(self) -> None:
        """
        When the random source repeats a taken address, another is drawn.
        """
        draws = [b"\x00\x00\x01", b"\x00\x00\x01", b"\x00\x00\x02"]
        with mock.patch("os.urandom", side_effect=draws) as urandom:
            mac = defaults.generate_mac(frozenset({"52:54:00:00:00:01"}))
        self.assertEqual(mac, "52:54:00:00:00:02")
        self.assertEqual(urandom.call_count, 3)


class FillDefaultsTests(unittest.TestCase):
    """
    L{defaults.fill_defaults} fills what libvirt's post-parse fills.
    """

    def test_domain_level(self) -> None:
        """
        UUID generated, current memory equals memory, placement static, boot
        from hd, implicit virtio balloon.
        """
        d = defaults.fill_defaults(DOMAIN)
        self.assertRegex(d.uuid, r"^[0-9a-f-]{36}$")
        self.assertEqual(d.current_memory_kib, 65536)
        self.assertEqual(d.vcpu_placement, "static")
        self.assertEqual(d.os.boot_devs, ("hd",))
        self.assertEqual(d.devices.memballoon, MemBalloon(model="virtio"))

    def test_no_boot_dev_with_device_boot_order(self) -> None:
        """
        With a per-device boot order no C{<os><boot>} is added.
        """
        disk = Disk(target_dev="vda", target_bus="", source="/x", boot_order=1)
        d = defaults.fill_defaults(replace(DOMAIN, devices=Devices(disks=(disk,))))
        self.assertEqual(d.os.boot_devs, ())

    def test_disk_bus_from_prefix(self) -> None:
        """
        The bus follows the target prefix; floppies always use fdc; unknown
        prefixes fall back to ide.
        """
        cases = [("hda", "disk", "ide"), ("fdb", "floppy", "fdc"), ("vdc", "disk", "virtio"),
                 ("sda", "disk", "scsi"), ("ubb", "disk", "usb"), ("xyz", "disk", "ide"),
                 ("hdb", "floppy", "fdc")]
        for dev, device, bus in cases:
            with self.subTest(dev=dev):
                self.assertEqual(defaults.default_disk_bus(dev, device), bus)

    def test_explicit_bus_kept(self) -> None:
        """
        An explicit bus is not replaced.
        """
        disk = Disk(target_dev="sda", target_bus="sata", source="/x")
        self.assertIs(defaults.fill_disk_defaults(disk), disk)

    def test_cdrom_readonly(self) -> None:
        """
        A cdrom is always made read-only.
        """
        disk = Disk(target_dev="hdc", target_bus="ide", device="cdrom")
        self.assertTrue(defaults.fill_disk_defaults(disk).readonly)

    def test_macs_avoid_existing_and_siblings(self) -> None:
        """
        Generated MACs avoid the given existing set and the domain's own MACs.
        """
        ifaces = (Interface(type="user", mac=""), Interface(type="user", mac="52:54:00:00:00:01"),
                  Interface(type="user", mac=""))
        d = defaults.fill_defaults(replace(DOMAIN, devices=Devices(interfaces=ifaces)),
                                   existing_macs=frozenset({"52:54:00:00:00:02"}))
        macs = [n.mac for n in d.devices.interfaces]
        self.assertEqual(macs[1], "52:54:00:00:00:01")
        self.assertEqual(len(set(macs)), 3)
        self.assertNotIn("52:54:00:00:00:02", macs)

    def test_device_defaults(self) -> None:
        """
        Inputs get their bus, chardevs their port and mode, videos their
        vram and heads, watchdogs the reset action; graphics imply a video.
        """
        dv = Devices(
            inputs=(Input(type="tablet"), Input(type="mouse")),
            serials=(CharDev(type="tcp", source_host="h", source_service="1"),),
            consoles=(CharDev(type="pty"),),
            videos=(Video(model=""),),
            watchdogs=(Watchdog(model="ib700"),),
        )
        d = defaults.fill_defaults(replace(DOMAIN, devices=dv)).devices
        self.assertEqual([n.bus for n in d.inputs], ["usb", "ps2"])
        self.assertEqual(d.serials[0], CharDev(type="tcp", source_host="h", source_service="1",
                                               source_mode="connect", protocol="raw",
                                               target_port=0))
        self.assertEqual(d.consoles[0], CharDev(type="pty", target_type="serial", target_port=0))
        self.assertEqual(d.videos, (Video(model="vga", vram=16384, heads=1),))
        self.assertEqual(d.watchdogs, (Watchdog(model="ib700", action="reset"),))

    def test_implicit_video(self) -> None:
        """
        A guest with graphics and no video gets a VGA adapter.
        """
        from qemud.domain.model import Graphics
        d = defaults.fill_defaults(replace(DOMAIN, devices=Devices(graphics=(Graphics(),))))
        self.assertEqual(d.devices.videos, (Video(model="vga", vram=16384, heads=1),))


class DiskIndexTests(unittest.TestCase):
    """
    L{defaults.disk_index} decodes target names like libvirt.
    """

    def test_indexes(self) -> None:
        """
        a is 0, z is 25, aa is 26, ab is 27, ba is 52; bad names give None.
        """
        cases = {"hda": 0, "hdd": 3, "vdz": 25, "sdaa": 26, "sdab": 27, "sdba": 52,
                 "fdb": 1, "xyz": None, "hd1": None, "vd": None}
        for name, idx in cases.items():
            with self.subTest(name=name):
                self.assertEqual(defaults.disk_index(name), idx)


class AssignAliasesTests(unittest.TestCase):
    """
    L{defaults.assign_aliases} gives libvirt's live aliases.
    """

    def test_aliases(self) -> None:
        """
        Disks by bus and position; other devices by kind and order; the
        first serial console shares the first serial's alias.
        """
        disks = tuple(Disk(target_dev=dev, target_bus=bus, source="/x") for dev, bus in (
            ("hda", "ide"), ("hdc", "ide"), ("hdd", "ide"), ("vda", "virtio"),
            ("vdc", "virtio"), ("sda", "sata"), ("sdb", "sata"), ("sda", "scsi"),
            ("fda", "fdc"), ("fdb", "fdc"), ("sdb", "usb")))
        dv = Devices(
            disks=disks,
            interfaces=(Interface(type="user", mac="52:54:00:00:00:01"),
                        Interface(type="user", mac="52:54:00:00:00:02")),
            serials=(CharDev(type="pty", target_port=0), CharDev(type="pty", target_port=1)),
            consoles=(CharDev(type="pty", target_type="serial", target_port=0),
                      CharDev(type="pty", target_type="virtio", target_port=1)),
            inputs=(Input(type="mouse", bus="ps2"), Input(type="tablet", bus="usb")),
            videos=(Video(model="vga"),),
            memballoon=MemBalloon(model="virtio"),
            watchdogs=(Watchdog(model="ib700"),),
            rngs=(RNG(model="virtio"),),
        )
        d = defaults.assign_aliases(replace(DOMAIN, devices=dv)).devices
        self.assertEqual([x.alias for x in d.disks], [
            "ide0-0-0", "ide0-1-0", "ide0-1-1", "virtio-disk0", "virtio-disk2",
            "sata0-0-0", "sata0-0-1", "scsi0-0-0-0", "fdc0-0-0", "fdc0-0-1", "usb-disk1"])
        self.assertEqual([x.alias for x in d.interfaces], ["net0", "net1"])
        self.assertEqual([x.alias for x in d.serials], ["serial0", "serial1"])
        self.assertEqual([x.alias for x in d.consoles], ["serial0", "console1"])
        self.assertEqual([x.alias for x in d.inputs], ["input0", "input1"])
        self.assertEqual(d.videos[0].alias, "video0")
        assert d.memballoon is not None
        self.assertEqual(d.memballoon.alias, "balloon0")
        self.assertEqual(d.watchdogs[0].alias, "watchdog0")
        self.assertEqual(d.rngs[0].alias, "rng0")

    def test_console_without_serial(self) -> None:
        """
        Without serial ports the first console is C{console0}; a balloon of
        model C{none} has no alias.
        """
        dv = Devices(consoles=(CharDev(type="pty", target_type="serial"),),
                     memballoon=MemBalloon(model="none"))
        d = defaults.assign_aliases(replace(DOMAIN, devices=dv)).devices
        self.assertEqual(d.consoles[0].alias, "console0")
        assert d.memballoon is not None
        self.assertIsNone(d.memballoon.alias)
        self.assertTrue(re.match("^console0$", d.consoles[0].alias or ""))
