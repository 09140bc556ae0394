"""
Tests for L{qemud.qemu.caps}: output parsers, the JSON round trip, machine
aliases, probing and caching (against a fake emulator script), emulator
selection and the capabilities XML.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import unittest
from dataclasses import replace
from unittest import mock

import xmltodict

import qemud.qemu.caps as caps_module
from qemud.domain.model import OS, Devices, Domain
from qemud.errors import ConfigUnsupportedError, InvalidArgError
from qemud.qemu.caps import (
    CacheBank,
    CapsCache,
    CellCPU,
    HostCaps,
    HostCPU,
    NUMACell,
    QemuCaps,
    SecModel,
    TSCCounter,
    arch_of_binary,
    capabilities_xml,
    check_kvm_usable,
    find_emulator,
    host_native_archs,
    kvm_problem,
    parse_accel_help,
    parse_cpu_help,
    parse_device_help,
    parse_machine_help,
    parse_version,
)
from tests.cpudata import trace_capabilities
from tests.qemu.test_argv import load_caps

MACHINE_HELP = """Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)
isapc                ISA-only PC
none                 empty machine
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)
pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)
"""

CPU_HELP = """Available CPUs:
x86 486                   (alias configured by machine type)
x86 Broadwell-IBRS        (alias of Broadwell-v3)
x86 qemu64                (alias configured by machine type)
x86 host                  KVM processor with all supported host features
x86 max                   Enables all features supported by the accelerator in the current host

Recognized CPUID flags:
  3dnow 3dnowext
"""

FAKE_QEMU = """#!/bin/sh
echo probe >> "$(dirname "$0")/count"
case "$1" in
-version) echo "QEMU emulator version 7.2.22 (Debian)";;
-machine)
  if [ "$2" = help ]; then cat "$(dirname "$0")/machines.txt"; else cat >/dev/null; \
  echo '{"QMP": {}}'; echo '{"return": {}}'; \
  echo '{"return": [{"name": "pc-i440fx-7.2", "cpu-max": 255, "deprecated": false}], "id": "machines"}'; \
  echo '{"error": {"class": "GenericError"}, "id": "sandbox"}'; fi;;
-accel) printf 'Accelerators supported in QEMU binary:\\ntcg\\n';;
-cpu) printf 'Available CPUs:\\nx86 qemu64   QEMU\\n';;
-device) echo 'name "e1000", bus PCI, alias "e1000-82540em"';;
-help) echo '-sandbox on';;
esac
"""


class ParserTests(unittest.TestCase):
    """Parsing the help outputs of QEMU 7.2."""

    def test_version(self) -> None:
        """The version triple comes from C{-version}; a missing micro is 0."""
        self.assertEqual(parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2)"), (7, 2, 22))
        self.assertEqual(parse_version("QEMU emulator version 8.1"), (8, 1, 0))

    def test_version_garbage(self) -> None:
        """Output without a version is an error naming the text."""
        with self.assertRaises(Exception) as ctx:
            parse_version("bash: not found")
        self.assertIn("cannot parse QEMU version", str(ctx.exception))

    def test_machine_help(self) -> None:
        """
        Canonical names keep their order, aliases map to canonical names, and
        the default is the canonical machine marked (default).
        """
        machines, default, aliases = parse_machine_help(MACHINE_HELP)
        self.assertEqual(machines, ("microvm", "pc-i440fx-7.2", "pc-i440fx-7.1", "isapc",
                                    "none", "pc-q35-7.2"))
        self.assertEqual(default, "pc-i440fx-7.2")
        self.assertEqual(aliases, {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"})

    def test_accel_cpu_device(self) -> None:
        """Accelerators, CPU models (no flags) and device names plus aliases."""
        self.assertEqual(parse_accel_help("Accelerators supported in QEMU binary:\ntcg\nkvm\n"),
                         ("tcg", "kvm"))
        self.assertEqual(parse_cpu_help(CPU_HELP),
                         ("486", "Broadwell-IBRS", "qemu64", "host", "max"))
        self.assertEqual(parse_device_help('name "virtio-net-pci", bus PCI, alias "virtio-net"\n'
                                           'name "ne2k_isa", bus ISA\n'),
                         frozenset({"virtio-net-pci", "virtio-net", "ne2k_isa"}))

    def test_arch_of_binary(self) -> None:
        """Binary names map to libvirt arch names (i386 is i686)."""
        self.assertEqual(arch_of_binary("/usr/bin/qemu-system-i386"), "i686")
        self.assertEqual(arch_of_binary("/usr/bin/qemu-system-x86_64-microvm"), "x86_64")
        self.assertEqual(arch_of_binary("qemu-system-aarch64"), "aarch64")


class QemuCapsTests(unittest.TestCase):
    """The recorded caps value object."""

    def test_fixture(self) -> None:
        """The recorded probe holds what QEMU 7.2 on x86_64 offers."""
        caps = load_caps()
        self.assertEqual(caps.version, (7, 2, 22))
        self.assertEqual(caps.arch, "x86_64")
        self.assertEqual(caps.accelerators, ("tcg", "kvm"))
        self.assertIn("qemu64", caps.cpu_models)
        self.assertTrue(caps.has_sandbox)
        self.assertEqual(caps.machine_max_cpus["isapc"], 1)
        self.assertEqual(load_caps("i386").arch, "i686")

    def test_canonical_machine(self) -> None:
        """Aliases resolve like libvirt's; None is the default's canonical name."""
        caps = load_caps()
        self.assertEqual(caps.canonical_machine("pc"), "pc-i440fx-7.2")
        self.assertEqual(caps.canonical_machine("q35"), "pc-q35-7.2")
        self.assertEqual(caps.canonical_machine(None), "pc-i440fx-7.2")
        self.assertEqual(caps.canonical_machine("pc-i440fx-2.0"), "pc-i440fx-2.0")

    def test_canonical_machine_unknown(self) -> None:
        """An unknown machine is refused, naming it and the binary."""
        with self.assertRaises(ConfigUnsupportedError) as ctx:
            load_caps().canonical_machine("virt")
        self.assertEqual(ctx.exception.message, "unsupported configuration: Emulator "
                         "'/usr/bin/qemu-system-x86_64' does not support machine type 'virt'")

    def test_round_trip(self) -> None:
        """from_dict(to_dict(caps)) == caps, and the JSON text is stable."""
        caps = load_caps()
        self.assertEqual(QemuCaps.from_dict(caps.to_dict()), caps)
        self.assertEqual(QemuCaps.from_json(caps.to_json()).to_json(), caps.to_json())

    def test_from_dict_malformed(self) -> None:
        """A record missing a key is an InvalidArgError naming the key."""
        data = load_caps().to_dict()
        del data["machines"]
        with self.assertRaises(InvalidArgError) as ctx:
            QemuCaps.from_dict(data)
        self.assertIn("'machines'", ctx.exception.message)

    def test_kvm_usable(self) -> None:
        """kvm_usable/has_kvm follow kvm_problem."""
        caps = load_caps()
        self.assertTrue(replace(caps, kvm_problem=None).has_kvm)
        self.assertFalse(replace(caps, kvm_problem="no").kvm_usable)


class KvmTests(unittest.TestCase):
    """Host checks for KVM."""

    def test_missing_device(self) -> None:
        """A missing device node gives a reason naming it."""
        self.assertEqual(check_kvm_usable("/nonexistent/kvm"),
                         "/nonexistent/kvm: No such file or directory")

    def test_openable_device(self) -> None:
        """A node that opens read-write is usable."""
        self.assertIsNone(check_kvm_usable("/dev/null"))

    def test_problem_order(self) -> None:
        """No kvm accelerator, then a foreign arch, then the device are reported."""
        self.assertEqual(kvm_problem("/q", "x86_64", ["tcg"], kvm_device="/dev/null",
                                     host="x86_64"),
                         "emulator '/q' was built without the kvm accelerator")
        self.assertEqual(kvm_problem("/q", "aarch64", ["tcg", "kvm"], kvm_device="/dev/null",
                                     host="x86_64"),
                         "guest arch 'aarch64' cannot run natively on a 'x86_64' host")
        self.assertIsNone(kvm_problem("/q", "i686", ["kvm"], kvm_device="/dev/null",
                                      host="x86_64"))
        self.assertEqual(host_native_archs("x86_64"), frozenset({"x86_64", "i686"}))


class ProbeTests(unittest.TestCase):
    """Probing and caching, against a fake emulator shell script."""

    def setUp(self) -> None:
        """Write the fake emulator into a fresh directory."""
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.binary = os.path.join(self.dir, "qemu-system-x86_64")
        with open(self.binary, "w") as f:
            f.write(FAKE_QEMU)
        os.chmod(self.binary, stat.S_IRWXU)
        with open(os.path.join(self.dir, "machines.txt"), "w") as f:
            f.write(MACHINE_HELP)

    def probes(self) -> int:
        """
        @return: how many times the fake binary ran.
        """
        with open(os.path.join(self.dir, "count")) as f:
            return len(f.readlines())

    def test_probe_and_cache(self) -> None:
        """
        One probe runs the binary 7 times; a second get() is cached; a new
        mtime probes again.
        """
        cache = CapsCache(kvm_device="/nonexistent")
        caps = cache.get(self.binary)
        self.assertEqual(caps.version, (7, 2, 22))
        self.assertEqual(caps.canonical_machine("q35"), "pc-q35-7.2")
        self.assertEqual(caps.machine_max_cpus, {"pc-i440fx-7.2": 255})
        self.assertEqual(caps.cpu_models, ("qemu64",))
        self.assertIn("e1000-82540em", caps.devices)
        self.assertFalse(caps.has_sandbox)  # QMP said no, whatever -help claims
        self.assertEqual(caps.kvm_problem,
                         f"emulator '{self.binary}' was built without the kvm accelerator")
        self.assertEqual(self.probes(), 7)
        self.assertIs(cache.get(self.binary), caps)
        self.assertEqual(self.probes(), 7)
        os.utime(self.binary, ns=(1, 1))
        self.assertIsNot(cache.get(self.binary), caps)
        self.assertEqual(self.probes(), 14)

    def test_disk_cache_survives_a_restart(self) -> None:
        """
        With a cache directory, a second cache (a restarted daemon) takes the
        probe from disk without running the binary; a changed binary, or a
        cache file of another format, is probed again.
        """
        cache_dir = os.path.join(self.dir, "cache")
        first = CapsCache(kvm_device="/nonexistent", cache_dir=cache_dir).get(self.binary)
        self.assertEqual(self.probes(), 7)
        again = CapsCache(kvm_device="/nonexistent", cache_dir=cache_dir).get(self.binary)
        self.assertEqual(self.probes(), 7)
        self.assertEqual(again, first)
        os.utime(self.binary, ns=(1, 1))
        CapsCache(kvm_device="/nonexistent", cache_dir=cache_dir).get(self.binary)
        self.assertEqual(self.probes(), 14)
        (name,) = os.listdir(cache_dir)
        with open(os.path.join(cache_dir, name), "w") as f:
            f.write('{"format": 0}')
        CapsCache(kvm_device="/nonexistent", cache_dir=cache_dir).get(self.binary)
        self.assertEqual(self.probes(), 21)

    def test_disk_cache_rechecks_kvm(self) -> None:
        """
        Whether KVM is usable is not taken from the cache: it is checked again
        when the probe is loaded from disk.
        """
        cache_dir = os.path.join(self.dir, "cache")
        CapsCache(kvm_device="/nonexistent", cache_dir=cache_dir).get(self.binary)
        with mock.patch.object(caps_module, "kvm_problem", return_value="checked again"):
            loaded = CapsCache(kvm_device="/dev/null", cache_dir=cache_dir).get(self.binary)
        self.assertEqual(loaded.kvm_problem, "checked again")
        self.assertEqual(self.probes(), 7)

    def test_missing_binary(self) -> None:
        """A binary that does not exist is refused, named."""
        with self.assertRaises(ConfigUnsupportedError) as ctx:
            CapsCache().get("/nonexistent/qemu")
        self.assertEqual(ctx.exception.message, "unsupported configuration: Cannot check "
                         "QEMU binary /nonexistent/qemu: No such file or directory")


class FindEmulatorTests(unittest.TestCase):
    """Choosing the binary for a domain."""

    def setUp(self) -> None:
        """Put empty executables named like emulators in a fresh directory."""
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        for name in ("qemu-system-i386", "qemu-system-x86_64"):
            path = os.path.join(self.dir, name)
            open(path, "w").close()
            os.chmod(path, stat.S_IRWXU)

    def dom(self, arch: str | None = None, emulator: str | None = None) -> Domain:
        """
        @return: a minimal domain with that arch and emulator.
        """
        return Domain(type="qemu", name="t", uuid="c7a5fdbd-edaf-9455-926a-d65c16db1809",
                      memory_kib=1024, os=OS(arch=arch), devices=Devices(emulator=emulator))

    def test_by_arch(self) -> None:
        """i686 picks qemu-system-i386, x86_64 picks qemu-system-x86_64."""
        self.assertEqual(find_emulator(self.dom("i686"), self.dir),
                         os.path.join(self.dir, "qemu-system-i386"))
        self.assertEqual(find_emulator(self.dom("x86_64"), self.dir),
                         os.path.join(self.dir, "qemu-system-x86_64"))

    def test_emulator_wins(self) -> None:
        """An explicit emulator is used as is."""
        path = os.path.join(self.dir, "qemu-system-i386")
        self.assertEqual(find_emulator(self.dom("x86_64", path), "/nowhere"), path)

    def test_emulator_missing(self) -> None:
        """A named emulator that does not exist is refused."""
        with self.assertRaises(ConfigUnsupportedError) as ctx:
            find_emulator(self.dom(emulator="/opt/kvm/bin/qemu-system-x86_64"))
        self.assertEqual(ctx.exception.message, "unsupported configuration: emulator "
                         "'/opt/kvm/bin/qemu-system-x86_64' does not exist or is not executable")

    def test_unknown_arch(self) -> None:
        """An arch with no known emulator is refused, named."""
        with self.assertRaises(ConfigUnsupportedError) as ctx:
            find_emulator(self.dom("vax"), self.dir)
        self.assertEqual(ctx.exception.message, "unsupported configuration: no QEMU emulator "
                         "is known for architecture 'vax'")

    def test_binary_not_installed(self) -> None:
        """A known arch whose binary is not on the path is refused, naming both."""
        with self.assertRaises(ConfigUnsupportedError) as ctx:
            find_emulator(self.dom("aarch64"), self.dir)
        self.assertEqual(ctx.exception.message, "unsupported configuration: no emulator for "
                         "architecture 'aarch64': 'qemu-system-aarch64' was not found on the "
                         "search path")


class CapabilitiesXMLTests(unittest.TestCase):
    """The C{virsh capabilities} document."""

    def test_structure(self) -> None:
        """
        It parses; the host CPU and topology are there; one guest per binary
        with arch, wordsize, emulator, canonical machines plus aliases with
        canonical=, and kvm only where usable.
        """
        x86 = replace(load_caps(), kvm_problem=None)
        i386 = replace(load_caps("i386"), kvm_problem="no /dev/kvm")
        host = HostCPU(arch="x86_64", model="kvm64", vendor="AMD", sockets=1, dies=1, cores=2,
                       threads=1, uuid="cac88a1e-863c-484b-bff8-673b9960228e")
        doc = xmltodict.parse(capabilities_xml(host, [i386, x86]),
                              force_list=("guest", "machine", "domain"))["capabilities"]
        self.assertEqual(doc["host"]["cpu"]["arch"], "x86_64")
        self.assertEqual(doc["host"]["cpu"]["topology"]["@cores"], "2")
        guests = {g["arch"]["@name"]: g for g in doc["guest"]}
        self.assertEqual(set(guests), {"i686", "x86_64"})
        arch = guests["x86_64"]["arch"]
        self.assertEqual(guests["x86_64"]["os_type"], "hvm")
        self.assertEqual(arch["wordsize"], "64")
        self.assertEqual(guests["i686"]["arch"]["wordsize"], "32")
        self.assertEqual(arch["emulator"], "/usr/bin/qemu-system-x86_64")
        machines = {m["#text"]: m for m in arch["machine"]}
        self.assertEqual(machines["pc"]["@canonical"], "pc-i440fx-7.2")
        self.assertEqual(machines["q35"]["@canonical"], "pc-q35-7.2")
        self.assertNotIn("@canonical", machines["pc-i440fx-7.2"])
        self.assertEqual(machines["isapc"]["@maxCpus"], "1")
        self.assertNotIn("none", machines)
        self.assertEqual([d["@type"] for d in arch["domain"]], ["qemu", "kvm"])
        self.assertEqual([d["@type"] for d in guests["i686"]["arch"]["domain"]], ["qemu"])

    def test_guests_like_libvirtd(self) -> None:
        """
        With the traced machine's QEMU 7.2 caps, each C{<guest>} prints as
        libvirtd printed it: same lines, same order (machines: the default
        first, then in QEMU's C{query-machines} order).
        """
        guests = [replace(load_caps("i386"), kvm_problem=None),
                  replace(load_caps(), kvm_problem=None)]
        ours = capabilities_xml(HostCPU(arch="x86_64"), guests)
        pattern = re.compile(r"^  <guest>\n.*?^  </guest>\n", re.M | re.S)
        theirs = pattern.findall(trace_capabilities())
        self.assertEqual(len(theirs), 2)
        for got, want in zip(pattern.findall(ours), theirs, strict=True):
            self.assertEqual(got.splitlines(), want.splitlines())

    def test_machine_order(self) -> None:
        """
        Machines are kept in libvirt's order: the default first, then as
        C{query-machines} lists them, then any only C{-machine help} showed;
        names QMP lists that help does not (C{none}) are left out.
        """
        self.assertEqual(
            caps_module.libvirt_machine_order(("a", "b", "c", "d"), ("none", "c", "b", "d"), "b"),
            ("b", "c", "d", "a"))
        self.assertEqual(caps_module.libvirt_machine_order(("a", "b"), (), None), ("a", "b"))

    def test_layout(self) -> None:
        """
        libvirt's layout: a blank line after C{<capabilities>} and after
        each section, single-quoted attributes, empty elements self-closed,
        special characters escaped; no C{<migration_features>} (qemud does
        not migrate).
        """
        text = capabilities_xml(HostCPU(arch="x86_64", vendor="A&B <x>"), [load_caps()])
        self.assertTrue(text.startswith("<capabilities>\n\n  <host>\n    <cpu>\n"))
        self.assertTrue(text.endswith("  </guest>\n\n</capabilities>\n"))
        self.assertIn("  </host>\n\n  <guest>\n", text)
        self.assertIn("      <vendor>A&amp;B &lt;x&gt;</vendor>\n", text)
        self.assertIn("    <arch name='x86_64'>\n", text)
        self.assertNotIn('"', text)
        self.assertNotIn("migration", text)
        xmltodict.parse(text)

    def test_host_cpu_only(self) -> None:
        """
        Given only the host CPU, the host section has no power management
        targets, no IOMMU, no topology or caches, and secmodel C{none}.
        """
        text = capabilities_xml(HostCPU(arch="aarch64", uuid="u"), [])
        self.assertEqual(text, (
            "<capabilities>\n\n  <host>\n    <uuid>u</uuid>\n    <cpu>\n"
            "      <arch>aarch64</arch>\n    </cpu>\n    <power_management/>\n"
            "    <iommu support='no'/>\n    <secmodel>\n      <model>none</model>\n"
            "      <doi>0</doi>\n    </secmodel>\n  </host>\n\n</capabilities>\n"))

    def test_full_host(self) -> None:
        """
        Every part of the host section, in libvirt's order: the CPU's
        arch, model, vendor, microcode, signature, counter, topology,
        maxphysaddr, features and page sizes; power management; IOMMU; NUMA
        cells (memory, pages, distances, CPUs); cache banks; security
        models with base labels.
        """
        cpu = HostCPU(arch="x86_64", model="EPYC-Rome", vendor="AMD", sockets=1, dies=1,
                      cores=2, threads=2, microcode=0x1000065, signature=(23, 49, 0),
                      tsc=TSCCounter(2000000000, None), maxphysaddr=43,
                      features=("x2apic", "invtsc"), pages_kib=(4, 2048))
        host = HostCaps(
            cpu=cpu, power_management=("suspend_mem", "suspend_disk"), iommu=True,
            cells=(NUMACell(0, 1000, ((4, 250), (2048, 0)), ((0, 10), (1, 21)),
                            (CellCPU(0, 0, 0, 0, "0,2"), CellCPU(2, 0, 0, 0, "0,2"))),
                   NUMACell(1, 0, (), (), (CellCPU(1),))),
            caches=(CacheBank(0, 3, "both", 16, "MiB", "0-3"),),
            secmodels=(SecModel("none"), SecModel("dac", labels=(("kvm", "+1:+2"),))))
        self.assertEqual(capabilities_xml(host, []), """\
<capabilities>

  <host>
    <cpu>
      <arch>x86_64</arch>
      <model>EPYC-Rome</model>
      <vendor>AMD</vendor>
      <microcode version='16777317'/>
      <signature family='23' model='49' stepping='0'/>
      <counter name='tsc' frequency='2000000000'/>
      <topology sockets='1' dies='1' cores='2' threads='2'/>
      <maxphysaddr mode='emulate' bits='43'/>
      <feature name='x2apic'/>
      <feature name='invtsc'/>
      <pages unit='KiB' size='4'/>
      <pages unit='KiB' size='2048'/>
    </cpu>
    <power_management>
      <suspend_mem/>
      <suspend_disk/>
    </power_management>
    <iommu support='yes'/>
    <topology>
      <cells num='2'>
        <cell id='0'>
          <memory unit='KiB'>1000</memory>
          <pages unit='KiB' size='4'>250</pages>
          <pages unit='KiB' size='2048'>0</pages>
          <distances>
            <sibling id='0' value='10'/>
            <sibling id='1' value='21'/>
          </distances>
          <cpus num='2'>
            <cpu id='0' socket_id='0' die_id='0' core_id='0' siblings='0,2'/>
            <cpu id='2' socket_id='0' die_id='0' core_id='0' siblings='0,2'/>
          </cpus>
        </cell>
        <cell id='1'>
          <cpus num='1'>
            <cpu id='1'/>
          </cpus>
        </cell>
      </cells>
    </topology>
    <cache>
      <bank id='0' level='3' type='both' size='16' unit='MiB' cpus='0-3'/>
    </cache>
    <secmodel>
      <model>none</model>
      <doi>0</doi>
    </secmodel>
    <secmodel>
      <model>dac</model>
      <doi>0</doi>
      <baselabel type='kvm'>+1:+2</baselabel>
    </secmodel>
  </host>

</capabilities>
""")
