# -*- test-case-name: tests.domain.test_corpus -*-
"""
libvirt's own test domain XMLs: a compatibility corpus.

For each of the 35 files in C{shared/libvirt-test-xml}: parsing succeeds,
format → parse → format is a fixed point, and everything the corpus README
says survives C{virsh define} / C{virsh dumpxml --inactive} is intact in the
re-parsed output.
"""

from __future__ import annotations

import os
import unittest
from typing import Any

from qemud.domain.model import Domain
from qemud.domain.xml import format_domain_xml, parse_domain_xml
from tests.shared import require_shared


def _load_corpus() -> dict[str, str]:
    directory = require_shared("libvirt-test-xml")
    files = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".xml"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                files[name] = f.read()
    return files


def surviving(d: Domain) -> dict[str, Any]:
    """
    The fields the corpus README says survive a define/dumpxml cycle.
    """
    dv = d.devices
    return {
        "name": d.name, "uuid": d.uuid, "memory": d.memory_kib,
        "currentMemory": d.current_memory_kib, "vcpus": d.vcpus,
        "os": (d.os.type, d.os.arch, d.os.machine), "boot": d.os.boot_devs,
        "kernel": (d.os.kernel, d.os.initrd, d.os.cmdline),
        "disks": [(x.device, x.target_dev, x.target_bus, x.source, x.readonly, x.boot_order)
                  for x in dv.disks],
        "interfaces": [(x.type, x.mac, x.model, x.source_network, x.source_bridge,
                        x.source_address, x.source_port, x.local_address, x.local_port)
                       for x in dv.interfaces],
        "graphics": dv.graphics,
        "serials": [x.type for x in dv.serials],
        "consoles": [x.type for x in dv.consoles],
    }


class CorpusTests(unittest.TestCase):
    """
    Every corpus file is accepted and keeps what libvirt keeps.
    """

    corpus: dict[str, str]

    @classmethod
    def setUpClass(cls) -> None:
        cls.corpus = _load_corpus()

    def test_count(self) -> None:
        """
        The corpus holds the 35 files its README describes.
        """
        self.assertEqual(len(self.corpus), 35)

    def test_round_trip(self) -> None:
        """
        Each file parses (with warnings only for extras), its formatted form
        is a fixed point, and the surviving fields are unchanged by a
        format → parse cycle.
        """
        for name, text in self.corpus.items():
            with self.subTest(file=name):
                warnings: list[str] = []
                first = parse_domain_xml(text, warnings=warnings)
                out = format_domain_xml(first)
                second = parse_domain_xml(out)
                self.assertEqual(format_domain_xml(second), out)
                self.assertEqual(surviving(second), surviving(first))
                for w in warnings:
                    self.assertTrue(w.startswith("ignoring unsupported "), w)

    def test_spot_checks(self) -> None:
        """
        A few fields compared with the original text.
        """
        def parsed(name: str) -> Domain:
            return parse_domain_xml(format_domain_xml(parse_domain_xml(self.corpus[name])))

        d = parsed("boot-complex.xml")
        self.assertEqual(d.os.boot_devs, ("cdrom", "network", "hd", "fd"))
        self.assertEqual([x.target_dev for x in d.devices.disks],
                         ["vdb", "hdb", "hda", "vda", "hdc", "fdb", "fda"])
        self.assertEqual(d.devices.disks[4].device, "cdrom")
        self.assertTrue(d.devices.disks[4].readonly)
        self.assertEqual(d.memory_kib, 219100)

        d = parsed("disk-cdrom.xml")
        self.assertEqual([(x.target_dev, x.source) for x in d.devices.disks],
                         [("hda", "/dev/HostVG/QEMUGuest1"), ("hdb", "/root/boot.iso"),
                          ("hdc", None), ("hdd", None)])
        self.assertEqual(d.devices.disks[2].driver_cache, "none")

        d = parsed("net-udp.xml")
        n = d.devices.interfaces[0]
        self.assertEqual((n.type, n.mac, n.model, n.source_address, n.source_port,
                          n.local_address, n.local_port),
                         ("udp", "52:54:00:8c:b9:05", "rtl8139", "192.168.10.1", 5555,
                          "192.168.10.1", 5556))

        d = parsed("graphics-vnc-no-listen-attr.xml")
        g = d.devices.graphics[0]
        self.assertEqual((g.port, g.autoport, g.listen),
                         (5903, False, "2001:1:2:3:4:5:1234:1234"))

        d = parsed("cpu-host-passthrough-features.xml")
        self.assertEqual(d.title, "A description of the test machine.")
        self.assertEqual(d.cpuset, "1-4,8-20,525")
        assert d.cpu is not None
        self.assertEqual([(f.policy, f.name) for f in d.cpu.features],
                         [("require", "abm"), ("force", "ds"), ("disable", "invtsc")])

        d = parsed("x86-kvm-32-on-64.xml")
        self.assertEqual((d.type, d.os.arch, d.memory_kib, d.vcpus), ("kvm", "i686", 4194304, 1))

        d = parsed("serial-tcp-chardev.xml")
        s = d.devices.serials[0]
        self.assertEqual((s.source_mode, s.source_host, s.source_service, s.protocol),
                         ("connect", "127.0.0.1", "9999", "raw"))

        d = parsed("net-eth.xml")
        self.assertEqual(d.devices.interfaces[0].script, "/etc/qemu-ifup")
