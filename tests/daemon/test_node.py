"""
Tests for L{qemud.daemon.node}: host facts computed from fake C{/proc} and
sysfs trees (with and without NUMA nodes, offline CPUs, odd topologies),
compared where possible with what libvirtd 9.0 reported on an identical
machine, plus a sanity check against the real host.

The capabilities' host section (L{NodeFacts.host_caps}) is checked on fake
trees with the probes that are not file reads (CPUID, the KVM TSC, MSRs,
the power-management queries) replaced: CPUID by the recorded fixture of
the traced machine type, decoded with libvirt's installed CPU map.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon.node import NodeFacts, NodeInfo, format_cpu_list, parse_cpu_list, pretty_size
from qemud.errors import HostSystemError
from qemud.qemu.caps import CacheBank, CellCPU, NUMACell, SecModel, TSCCounter, capabilities_xml
from qemud.qemu.cpumap import DEFAULT_CPU_MAP_DIR, CPUData
from tests.cpudata import (
    TRACE_MICROCODE,
    TRACE_SIGNATURE,
    load_fixture,
    require_cpu_map,
    trace_capabilities,
    trace_element,
    trace_features,
)
from tests.qemu.test_cpumap import host, model_xml, write_map
from tests.shared import require_shared

CPUINFO_ENTRY = """processor\t: {n}
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
{mhz}physical id\t: 0
flags\t\t: fpu vme de pse tsc msr
address sizes\t: 48 bits physical, 48 bits virtual
"""


class FakeHost:
    """
    Build a fake C{/proc}, C{/sys} and C{/etc} under a folder.
    """

    def __init__(self, base: str) -> None:
        self.proc = os.path.join(base, "proc")
        self.sys = os.path.join(base, "sys")
        self.etc = os.path.join(base, "etc")
        for d in (self.proc, self.sys, self.etc):
            os.makedirs(d)

    def write(self, path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def meminfo(self, total: int, free: int) -> None:
        self.write(os.path.join(self.proc, "meminfo"),
                   f"MemTotal:       {total} kB\nMemFree:        {free} kB\n"
                   f"MemAvailable:   {free} kB\n")

    def cpuinfo(self, count: int, mhz: str | None = "2596.146") -> None:
        line = f"cpu MHz\t\t: {mhz}\n" if mhz is not None else ""
        self.write(os.path.join(self.proc, "cpuinfo"),
                   "\n".join(CPUINFO_ENTRY.format(n=n, mhz=line) for n in range(count)))

    def cpu(self, n: int, *, socket: int, core: int, siblings: str, online: bool | None = None,
            die: int = 0, siblings_list: str | None = None) -> None:
        base = os.path.join(self.sys, "devices", "system", "cpu", f"cpu{n}")
        topo = os.path.join(base, "topology")
        self.write(os.path.join(topo, "physical_package_id"), f"{socket}\n")
        self.write(os.path.join(topo, "core_id"), f"{core}\n")
        self.write(os.path.join(topo, "die_id"), f"{die}\n")
        self.write(os.path.join(topo, "thread_siblings"), f"{siblings}\n")
        if siblings_list is not None:
            self.write(os.path.join(topo, "thread_siblings_list"), f"{siblings_list}\n")
        if online is not None:
            self.write(os.path.join(base, "online"), "1\n" if online else "0\n")

    def node(self, n: int, cpus: list[int], total: int, free: int,
             distance: str | None = None) -> None:
        base = os.path.join(self.sys, "devices", "system", "node", f"node{n}")
        os.makedirs(base)
        for cpu in cpus:
            os.symlink(os.path.join("..", "..", "cpu", f"cpu{cpu}"),
                       os.path.join(base, f"cpu{cpu}"))
        self.write(os.path.join(base, "meminfo"),
                   f"Node {n} MemTotal:       {total} kB\nNode {n} MemFree:        {free} kB\n"
                   f"Node {n} MemUsed:        {total - free} kB\n")
        self.write(os.path.join(base, "cpulist"), ",".join(map(str, cpus)) + "\n")
        if distance is not None:
            self.write(os.path.join(base, "distance"), distance + "\n")

    def online(self, cpus: str) -> None:
        self.write(os.path.join(self.sys, "devices", "system", "cpu", "online"), cpus + "\n")

    def hugepages(self, counts: dict[int, int], node: int | None = None) -> None:
        """Huge page pools (size KiB -> pages), system-wide or of one node."""
        base = (os.path.join(self.sys, "kernel", "mm", "hugepages") if node is None else
                os.path.join(self.sys, "devices", "system", "node", f"node{node}", "hugepages"))
        for size, count in counts.items():
            self.write(os.path.join(base, f"hugepages-{size}kB", "nr_hugepages"), f"{count}\n")

    def cache(self, cpu: int, index: int, *, level: int, kind: str, size: str,
              shared: str, bank_id: int | None = 0) -> None:
        base = os.path.join(self.sys, "devices", "system", "cpu", f"cpu{cpu}", "cache",
                            f"index{index}")
        self.write(os.path.join(base, "level"), f"{level}\n")
        self.write(os.path.join(base, "type"), f"{kind}\n")
        self.write(os.path.join(base, "size"), f"{size}\n")
        self.write(os.path.join(base, "shared_cpu_list"), f"{shared}\n")
        if bank_id is not None:
            self.write(os.path.join(base, "id"), f"{bank_id}\n")

    def facts(self, **overrides: Any) -> NodeFacts:
        """
        @return: facts of this tree; no probe reaches the real machine
            (no CPUID, no KVM, no MSR, no commands, an empty CPU map).
        """
        options: dict[str, Any] = {
            "arch": lambda: "x86_64", "gethostname": lambda: "vm",
            "canonical_name": lambda name: None,
            "dev": os.path.join(os.path.dirname(self.proc), "dev"),
            "cpu_map_dir": os.path.join(os.path.dirname(self.proc), "cpu_map"),
            "cpuid": lambda: None, "tsc": lambda: None, "msr": lambda index: None,
            "run": lambda argv, timeout: None, "page_size": 4096, "ids": lambda: (0, 0),
        }
        options.update(overrides)
        return NodeFacts(proc=self.proc, sys=self.sys, etc=self.etc, **options)


def _virsh_nodeinfo() -> dict[str, str]:
    """
    @return: the C{virsh nodeinfo} lines libvirtd 9.0 printed, by label.
    """
    path = os.path.join(require_shared("wire-traces"), "nodeinfo.txt")
    with open(path) as f:
        text = f.read()
    out = text.split("# virsh output:", 1)[1]
    return {m.group(1).strip(): m.group(2).strip()
            for m in re.finditer(r"^#\s+([^:\n]+):\s+(.+)$", out, re.M)}


class NodeInfoTests(SynchronousTestCase):
    """L{NodeFacts.node_info} on fake trees."""

    def setUp(self) -> None:
        self.host = FakeHost(self.mktemp())

    def test_like_libvirtd(self) -> None:
        """
        On a tree laid out like the traced machine (one NUMA node, one
        socket, two cores, C{/proc/meminfo} larger than the node), the
        result equals what libvirtd 9.0 printed there.
        """
        virsh = _virsh_nodeinfo()
        memory = int(virsh["Memory size"].split()[0])
        h = self.host
        h.meminfo(24684096, 23889192)
        h.cpuinfo(2)
        h.cpu(0, socket=0, core=0, siblings="1")
        h.cpu(1, socket=0, core=1, siblings="2", online=True)
        h.node(0, [0, 1], memory, 4000000)
        info = h.facts().node_info()
        self.assertEqual(info.model, virsh["CPU model"])
        self.assertEqual(info.cpus, int(virsh["CPU(s)"]))
        self.assertEqual(info.mhz, int(virsh["CPU frequency"].split()[0]))
        self.assertEqual(info.sockets, int(virsh["CPU socket(s)"]))
        self.assertEqual(info.cores, int(virsh["Core(s) per socket"]))
        self.assertEqual(info.threads, int(virsh["Thread(s) per core"]))
        self.assertEqual(info.nodes, int(virsh["NUMA cell(s)"]))
        self.assertEqual(info.memory_kib, memory)
        self.assertEqual(info.memory, memory)

    def test_two_numa_nodes(self) -> None:
        """
        Two nodes of one socket, two cores and two threads each: 8 CPUs,
        per-node sockets, memory summed over the nodes.
        """
        h = self.host
        h.meminfo(99999999, 1)
        h.cpuinfo(8, "3000.000")
        for cpu in range(8):
            core, thread = divmod(cpu % 4, 2)
            h.cpu(cpu, socket=cpu // 4, core=core, siblings=f"{0b11 << (cpu - thread):x}")
        h.node(0, [0, 1, 2, 3], 1000, 100)
        h.node(1, [4, 5, 6, 7], 2000, 200)
        facts = h.facts()
        self.assertEqual(facts.node_info(),
                         NodeInfo("x86_64", 3000, 8, 3000, 2, 1, 2, 2))
        self.assertEqual(facts.free_memory_bytes(), 300 * 1024)

    def test_without_numa(self) -> None:
        """
        Without C{/sys/devices/system/node}, all CPUs form one node and
        memory comes from C{/proc/meminfo}.
        """
        h = self.host
        h.meminfo(4096000, 1024000)
        h.cpuinfo(4)
        for cpu in range(4):
            h.cpu(cpu, socket=cpu // 2, core=cpu % 2, siblings=f"{1 << cpu:x}")
        os.makedirs(os.path.join(h.sys, "devices", "system", "cpu", "cpufreq"))
        facts = h.facts()
        self.assertEqual(facts.node_info(), NodeInfo("x86_64", 4096000, 4, 2596, 1, 2, 2, 1))
        self.assertEqual(facts.free_memory_bytes(), 1024000 * 1024)

    def test_offline_cpu(self) -> None:
        """
        An offline CPU is not counted, and as the topology then no longer
        multiplies out, libvirt's flat topology is reported.
        """
        h = self.host
        h.meminfo(1000, 10)
        h.cpuinfo(3)
        for cpu in range(4):
            h.cpu(cpu, socket=0, core=cpu, siblings=f"{1 << cpu:x}",
                  online=None if cpu == 0 else cpu != 3)
        h.node(0, [0, 1, 2, 3], 1000, 10)
        self.assertEqual(h.facts().node_info(), NodeInfo("x86_64", 1000, 3, 2596, 1, 1, 4, 1))

    def test_inconsistent_topology(self) -> None:
        """
        Sibling masks that do not match the core count (AMD Bulldozer
        style) give the flat topology: one socket, one core per CPU.
        """
        h = self.host
        h.meminfo(1000, 10)
        h.cpuinfo(4)
        for cpu in range(4):
            h.cpu(cpu, socket=0, core=cpu, siblings="3" if cpu < 2 else "c")
        self.assertEqual(h.facts().node_info(), NodeInfo("x86_64", 1000, 4, 2596, 1, 1, 4, 1))

    def test_mhz_sources(self) -> None:
        """
        Without C{cpu MHz} the frequency comes from cpufreq (kHz), and is 0
        when neither exists.
        """
        h = self.host
        h.meminfo(1000, 10)
        h.cpuinfo(1, mhz=None)
        h.cpu(0, socket=0, core=0, siblings="1")
        self.assertEqual(h.facts().node_info().mhz, 0)
        h.write(os.path.join(h.sys, "devices", "system", "cpu", "cpu0", "cpufreq",
                             "cpuinfo_max_freq"), "3400000\n")
        self.assertEqual(h.facts().mhz(), 3400)

    def test_no_sysfs(self) -> None:
        """
        With no CPU topology in sysfs at all, C{/proc/cpuinfo}'s processors
        are counted as cores of one socket.
        """
        self.host.meminfo(1000, 10)
        self.host.cpuinfo(3)
        self.assertEqual(self.host.facts().node_info(),
                         NodeInfo("x86_64", 1000, 3, 2596, 1, 1, 3, 1))

    def test_no_meminfo(self) -> None:
        """
        Missing memory figures are a L{HostSystemError} naming the file.
        """
        self.host.cpuinfo(1)
        err = self.assertRaises(HostSystemError, self.host.facts().node_info)
        self.assertIn("meminfo", err.message)


class IdentityTests(SynchronousTestCase):
    """Host name, UUID and CPU description."""

    def setUp(self) -> None:
        self.host = FakeHost(self.mktemp())

    def test_uuid_from_dmi(self) -> None:
        """
        DMI's product UUID is used, in lower case.
        """
        self.host.write(os.path.join(self.host.sys, "class", "dmi", "id", "product_uuid"),
                        "CAC88A1E-863C-484B-BFF8-673B9960228E\n")
        self.host.write(os.path.join(self.host.etc, "machine-id"),
                        "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
        self.assertEqual(self.host.facts().host_uuid(), "cac88a1e-863c-484b-bff8-673b9960228e")

    def test_uuid_from_machine_id(self) -> None:
        """
        An all-zero DMI UUID is ignored in favour of C{/etc/machine-id}.
        """
        self.host.write(os.path.join(self.host.sys, "class", "dmi", "id", "product_uuid"),
                        "00000000-0000-0000-0000-000000000000\n")
        self.host.write(os.path.join(self.host.etc, "machine-id"),
                        "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
        self.assertEqual(self.host.facts().host_uuid(), "3d1219c7-c4c5-404a-aa1f-6d2a48adfda4")

    def test_uuid_fallback_stable(self) -> None:
        """
        Without DMI or machine-id the UUID is derived from the host name, so
        it is the same every time.
        """
        first = self.host.facts().host_uuid()
        self.assertEqual(first, self.host.facts().host_uuid())
        self.assertEqual(first, str(uuid.uuid5(uuid.NAMESPACE_DNS, "vm")))

    def test_hostname(self) -> None:
        """
        A dotted or C{localhost} name is kept; a short one is replaced by
        the resolver's canonical name unless that is C{localhost...} or
        missing.
        """
        def facts(name: str, canon: str | None) -> NodeFacts:
            return NodeFacts(proc=self.host.proc, sys=self.host.sys,
                             gethostname=lambda: name, canonical_name=lambda n: canon)

        self.assertEqual(facts("a.example.org", "x.y").hostname(), "a.example.org")
        self.assertEqual(facts("localhost", "x.y").hostname(), "localhost")
        self.assertEqual(facts("vm", "vm.example.org").hostname(), "vm.example.org")
        self.assertEqual(facts("vm", "localhost.localdomain").hostname(), "vm")
        self.assertEqual(facts("vm", None).hostname(), "vm")

    def test_host_cpu(self) -> None:
        """
        The capabilities host CPU has the arch, libvirt's vendor name, the
        topology and the UUID; the raw cpuinfo facts are available too.
        """
        h = self.host
        h.meminfo(1000, 10)
        h.cpuinfo(2)
        h.cpu(0, socket=0, core=0, siblings="1")
        h.cpu(1, socket=0, core=1, siblings="2")
        h.write(os.path.join(h.etc, "machine-id"), "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
        facts = h.facts()
        cpu = facts.host_cpu()
        self.assertEqual((cpu.arch, cpu.vendor, cpu.sockets, cpu.dies, cpu.cores, cpu.threads),
                         ("x86_64", "AMD", 1, 1, 2, 1))
        self.assertEqual(cpu.uuid, "3d1219c7-c4c5-404a-aa1f-6d2a48adfda4")
        details = facts.cpu_details()
        self.assertEqual(details.model_name, "AMD EPYC")
        self.assertEqual(details.vendor_id, "AuthenticAMD")
        self.assertEqual((details.family, details.model, details.stepping), (25, 17, 1))
        self.assertEqual(details.microcode, 16777317)
        self.assertEqual(details.flags[:3], ("fpu", "vme", "de"))


class RealHostTests(SynchronousTestCase):
    """The real machine's facts are sane (values vary between hosts)."""

    def test_sane(self) -> None:
        """
        At least one CPU, some memory, free memory below total, a host name
        and a valid UUID that does not change between calls.
        """
        facts = NodeFacts(canonical_name=lambda name: None)
        info = facts.node_info()
        self.assertGreaterEqual(info.cpus, 1)
        self.assertGreater(info.memory_kib, 0)
        self.assertGreaterEqual(info.nodes * info.sockets * info.cores * info.threads, info.cpus)
        self.assertLessEqual(facts.free_memory_bytes(), info.memory_kib * 1024)
        self.assertTrue(facts.hostname())
        self.assertEqual(facts.host_uuid(), str(uuid.UUID(facts.host_uuid())))
        self.assertEqual(facts.host_uuid(), facts.host_uuid())


def fixture_cpuid() -> CPUData:
    """@return: the traced machine type's CPUID (the fixture)."""
    return load_fixture()


def counting(value: Any) -> tuple[Callable[..., Any], list[int]]:
    """@return: a function returning C{value} and the list counting its calls."""
    calls: list[int] = []

    def function(*args: Any) -> Any:
        calls.append(1)
        return value

    return function, calls


class HostCPUTests(SynchronousTestCase):
    """L{NodeFacts.host_cpu}: the C{<cpu>} of the capabilities."""

    def setUp(self) -> None:
        self.host = FakeHost(self.mktemp())
        h = self.host
        h.meminfo(1000, 10)
        h.cpuinfo(2)
        h.cpu(0, socket=0, core=0, siblings="1")
        h.cpu(1, socket=0, core=1, siblings="2")
        h.hugepages({1048576: 0, 2048: 4})
        os.makedirs(os.path.join(h.sys, "kernel", "mm", "hugepages", "not-a-size"))

    def test_like_libvirtd(self) -> None:
        """
        With the traced machine type's CPUID and libvirt's map: model
        C{kvm64}, vendor, microcode (hex in cpuinfo, decimal here),
        signature, the KVM counter, physical address bits, the trace's
        features and the page sizes (base page first, increasing).
        """
        require_cpu_map()
        cpu = self.host.facts(cpuid=fixture_cpuid, cpu_map_dir=DEFAULT_CPU_MAP_DIR,
                              tsc=lambda: (2596146000, False)).host_cpu()
        self.assertEqual((cpu.model, cpu.vendor), ("kvm64", "AMD"))
        self.assertEqual(cpu.microcode, TRACE_MICROCODE)
        self.assertEqual(cpu.signature, TRACE_SIGNATURE)
        self.assertEqual(cpu.tsc, TSCCounter(frequency=2596146000, scaling=False))
        self.assertEqual(cpu.maxphysaddr, 48)
        self.assertEqual(list(cpu.features), trace_features())
        self.assertEqual(cpu.pages_kib, (4, 2048, 1048576))

    def test_probed_once(self) -> None:
        """CPUID and the TSC are probed once, however often the caps are asked."""
        require_cpu_map()
        cpuid, cpuid_calls = counting(fixture_cpuid())
        tsc, tsc_calls = counting((1000, True))
        facts = self.host.facts(cpuid=cpuid, tsc=tsc, cpu_map_dir=DEFAULT_CPU_MAP_DIR)
        first, second = facts.host_cpu(), facts.host_cpu()
        self.assertEqual(first, second)
        self.assertEqual((len(cpuid_calls), len(tsc_calls)), (1, 1))
        self.assertEqual(first.tsc, TSCCounter(1000, True))

    def test_without_map(self) -> None:
        """
        Without libvirt's map there is no model, no feature and no counter
        (the TSC is not even probed); the signature still comes from CPUID
        and the vendor from cpuinfo.
        """
        tsc, tsc_calls = counting((1000, False))
        cpu = self.host.facts(cpuid=fixture_cpuid, tsc=tsc).host_cpu()
        self.assertIsNone(cpu.model)
        self.assertEqual(cpu.features, ())
        self.assertIsNone(cpu.tsc)
        self.assertEqual(tsc_calls, [])
        self.assertEqual(cpu.signature, TRACE_SIGNATURE)
        self.assertEqual(cpu.vendor, "AMD")
        self.assertEqual(cpu.microcode, TRACE_MICROCODE)

    def test_unusable_map(self) -> None:
        """A broken map is logged and treated as no map: no model."""
        broken = self.mktemp()
        os.makedirs(broken)
        with open(os.path.join(broken, "index.xml"), "w") as f:
            f.write("<cpus><arch name='x86'>")
        cpu = self.host.facts(cpuid=fixture_cpuid, cpu_map_dir=broken).host_cpu()
        self.assertIsNone(cpu.model)
        self.assertEqual(cpu.signature, TRACE_SIGNATURE)

    def test_without_cpuid(self) -> None:
        """
        When CPUID cannot be read: no model, no features, no counter; the
        signature comes from cpuinfo.
        """
        cpu = self.host.facts(cpu_map_dir=DEFAULT_CPU_MAP_DIR, tsc=lambda: (1, False)).host_cpu()
        self.assertEqual((cpu.model, cpu.features, cpu.tsc), (None, (), None))
        self.assertEqual(cpu.signature, TRACE_SIGNATURE)
        self.assertEqual(cpu.vendor, "AMD")

    def test_not_x86(self) -> None:
        """
        On another architecture CPUID is not read and there is no
        microcode nor physical address size (libvirt reads them on x86).
        """
        cpuid, calls = counting(fixture_cpuid())
        cpu = self.host.facts(arch=lambda: "aarch64", cpuid=cpuid).host_cpu()
        self.assertEqual(calls, [])
        self.assertEqual((cpu.arch, cpu.model, cpu.microcode, cpu.maxphysaddr),
                         ("aarch64", None, None, None))

    def test_no_kvm(self) -> None:
        """With C{invtsc} but no KVM there is no counter."""
        require_cpu_map()
        cpu = self.host.facts(cpuid=fixture_cpuid, cpu_map_dir=DEFAULT_CPU_MAP_DIR).host_cpu()
        self.assertEqual(cpu.model, "kvm64")
        self.assertIsNone(cpu.tsc)

    def synthetic(self, *models: str) -> str:
        directory = write_map(models)
        self.addCleanup(shutil.rmtree, directory)
        return directory

    def test_no_invtsc(self) -> None:
        """Without C{invtsc} the TSC is not probed (libvirt's rule)."""
        tsc, calls = counting((1000, False))
        data = host("AMD", ["fpu", "sse"], signature=(25, 17, 1))
        cpu = self.host.facts(cpuid=lambda: data, tsc=tsc,
                              cpu_map_dir=self.synthetic(model_xml("m", ["fpu"]))).host_cpu()
        self.assertEqual((cpu.model, cpu.features, cpu.tsc), ("m", ("sse",), None))
        self.assertEqual(calls, [])

    def test_arch_capabilities(self) -> None:
        """
        When CPUID has C{arch-capabilities}, MSR 0x10a is read and its
        features decoded; an unreadable MSR just leaves them out.
        """
        data = host("Intel", ["fpu", "arch-capabilities"], signature=(6, 85, 7))
        asked: list[int] = []

        def msr(index: int) -> int:
            asked.append(index)
            return 0x20

        directory = self.synthetic(model_xml("m", ["fpu"]))
        cpu = self.host.facts(cpuid=lambda: data, msr=msr, cpu_map_dir=directory).host_cpu()
        self.assertEqual(asked, [0x10A])
        self.assertEqual(cpu.features, ("arch-capabilities", "mds-no"))
        self.assertEqual(cpu.vendor, "Intel")
        cpu = self.host.facts(cpuid=lambda: data, cpu_map_dir=directory).host_cpu()
        self.assertEqual(cpu.features, ("arch-capabilities",))

    def test_no_model_fits(self) -> None:
        """
        When no model of the map fits, there is no model (a warning is
        logged) and the vendor comes from cpuinfo.
        """
        data = host("AMD", ["fpu"], signature=(25, 17, 1))
        directory = self.synthetic(model_xml("m", ["fpu", "sse"]))
        cpu = self.host.facts(cpuid=lambda: data, cpu_map_dir=directory).host_cpu()
        self.assertEqual((cpu.model, cpu.features, cpu.vendor), (None, (), "AMD"))

    def test_no_hugepages(self) -> None:
        """Without huge page support only the base page size is listed."""
        shutil.rmtree(os.path.join(self.host.sys, "kernel"))
        self.assertEqual(self.host.facts(page_size=65536).host_cpu().pages_kib, (64,))


class TopologyTests(SynchronousTestCase):
    """NUMA cells, cache banks and CPU lists."""

    def setUp(self) -> None:
        self.host = FakeHost(self.mktemp())
        self.host.meminfo(16000000, 100)
        self.host.cpuinfo(4)

    def test_cpu_lists(self) -> None:
        """CPU lists parse and format like libvirt's bitmaps."""
        self.assertEqual(parse_cpu_list("0-2,5,7-8\n"), [0, 1, 2, 5, 7, 8])
        self.assertEqual(format_cpu_list([8, 0, 1, 2, 5, 7]), "0-2,5,7-8")
        self.assertEqual(format_cpu_list([3]), "3")
        self.assertEqual(format_cpu_list([]), "")
        with self.assertRaises(ValueError):
            parse_cpu_list("3-1")

    def test_pretty_size(self) -> None:
        """Sizes use the largest binary unit dividing them exactly."""
        self.assertEqual(pretty_size(32 << 20), (32, "MiB"))
        self.assertEqual(pretty_size(1536 << 10), (1536, "KiB"))
        self.assertEqual(pretty_size(1000), (1000, "B"))
        self.assertEqual(pretty_size(0), (0, "B"))
        self.assertEqual(pretty_size(1 << 60), (1, "EiB"))

    def test_two_cells(self) -> None:
        """
        One cell per sysfs node: memory, pages per size (base pages are the
        memory left once the huge page pools are taken off), distances (one
        per node, zeros left out), and each CPU's socket, die, core and
        thread siblings (a missing list is the CPU itself, a negative id
        is 0).  A node without memory or CPUs has no memory element.
        """
        h = self.host
        h.cpu(0, socket=0, core=0, siblings="5", siblings_list="0,2")
        h.cpu(1, socket=-1, core=1, siblings="2", die=-1)
        h.cpu(2, socket=0, core=0, siblings="5", siblings_list="0,2")
        h.node(0, [0, 2], 8000000, 100, distance="10 20 0")
        h.node(1, [1], 4000000, 100, distance="20 10 0")
        h.node(2, [], 0, 0, distance="0 0 10")
        h.hugepages({2048: 100, 1048576: 1}, node=0)
        cells = h.facts().numa_cells()
        self.assertEqual([c.id for c in cells], [0, 1, 2])
        self.assertEqual(cells[0], NUMACell(
            id=0, memory_kib=8000000,
            pages=((4, (8000000 - 204800 - 1048576) // 4), (2048, 100), (1048576, 1)),
            distances=((0, 10), (1, 20)),
            cpus=(CellCPU(0, 0, 0, 0, "0,2"), CellCPU(2, 0, 0, 0, "0,2"))))
        self.assertEqual(cells[1].cpus, (CellCPU(1, 0, 0, 1, "1"),))
        self.assertEqual(cells[1].pages, ((4, 1000000),))
        self.assertEqual((cells[2].memory_kib, cells[2].cpus, cells[2].distances),
                         (0, (), ((2, 10),)))
        text = capabilities_xml(h.facts().host_caps(), [])
        self.assertIn("      <cells num='3'>\n", text)
        self.assertIn("        <cell id='2'>\n          <pages unit='KiB' size='4'>0</pages>\n"
                      "          <distances>\n            <sibling id='2' value='10'/>\n"
                      "          </distances>\n          <cpus num='0'/>\n", text)

    def test_fake_cell(self) -> None:
        """
        Without NUMA nodes in sysfs there is one cell of all memory whose
        CPUs are numbered from the topology (offline ones left out), with
        no pages and no distances.
        """
        h = self.host
        h.cpu(0, socket=0, core=0, siblings="3")
        h.cpu(1, socket=0, core=0, siblings="3")
        h.cpu(2, socket=0, core=1, siblings="c")
        h.cpu(3, socket=0, core=1, siblings="c", online=False)
        cells = h.facts().numa_cells()
        self.assertEqual(cells, (NUMACell(id=0, memory_kib=16000000, cpus=(
            CellCPU(0, 0, 0, 0, "0-1"), CellCPU(1, 0, 0, 0, "0-1"),
            CellCPU(2, 0, 0, 1, "2-3"))),))

    def test_cache_banks(self) -> None:
        """
        Level 3 and up only, once per distinct bank, offline CPUs and banks
        without an id skipped, sorted by level then id, sizes in the
        largest exact unit.
        """
        h = self.host
        h.online("0-1,3")
        for cpu in (0, 1):
            h.cache(cpu, 0, level=1, kind="Data", size="32K", shared=str(cpu), bank_id=cpu)
            h.cache(cpu, 1, level=2, kind="Unified", size="512K", shared=str(cpu), bank_id=cpu)
            h.cache(cpu, 3, level=3, kind="Unified", size="32768K", shared="0-1")
        h.cache(2, 3, level=3, kind="Unified", size="16384K", shared="2", bank_id=1)
        h.cache(3, 3, level=3, kind="Unified", size="1536K", shared="3", bank_id=2)
        h.cache(3, 4, level=4, kind="Unified", size="1G", shared="3", bank_id=0)
        h.cache(3, 5, level=3, kind="Data", size="4M", shared="3", bank_id=None)
        self.assertEqual(h.facts().cache_banks(), (
            CacheBank(0, 3, "both", 32, "MiB", "0-1"),
            CacheBank(2, 3, "both", 1536, "KiB", "3"),
            CacheBank(0, 4, "both", 1, "GiB", "3")))

    def test_unknown_cache_type(self) -> None:
        """An unknown cache type makes libvirt, and us, report no caches."""
        h = self.host
        h.online("0")
        h.cache(0, 3, level=3, kind="Unified", size="32M", shared="0")
        h.cache(0, 4, level=3, kind="Victim", size="32M", shared="0", bank_id=1)
        self.assertEqual(h.facts().cache_banks(), ())

    def test_no_cache_info(self) -> None:
        """Without C{cpu/online} or cache directories there are no banks."""
        self.assertEqual(self.host.facts().cache_banks(), ())


class HostSectionTests(SynchronousTestCase):
    """IOMMU, power management, security models and the whole host section."""

    def setUp(self) -> None:
        self.host = FakeHost(self.mktemp())

    def test_iommu(self) -> None:
        """IOMMU support means at least one group in C{/sys/kernel/iommu_groups}."""
        groups = os.path.join(self.host.sys, "kernel", "iommu_groups")
        self.assertFalse(self.host.facts().iommu())
        os.makedirs(groups)
        self.assertFalse(self.host.facts().iommu())
        os.makedirs(os.path.join(groups, "0"))
        self.assertTrue(self.host.facts().iommu())

    def power(self, answers: dict[str, tuple[int, str] | None]) -> tuple[tuple[str, ...],
                                                                       list[list[str]]]:
        asked: list[list[str]] = []

        def run(argv: Sequence[str], timeout: float) -> tuple[int, str] | None:
            asked.append(list(argv))
            self.assertLessEqual(timeout, 10)
            return answers.get(argv[-1])

        facts = self.host.facts(run=run)
        result = facts.power_management()
        self.assertEqual(facts.power_management(), result)
        return result, asked

    def test_power_management_logind(self) -> None:
        """
        logind's C{yes} means supported, anything else not; pm-utils is
        then not asked.  The answer is computed once.
        """
        result, asked = self.power({"CanSuspend": (0, 's "yes"\n'),
                                    "CanHibernate": (0, 's "no"\n'),
                                    "CanHybridSleep": (0, 's "yes"\n')})
        self.assertEqual(result, ("suspend_mem", "suspend_hybrid"))
        self.assertEqual(len(asked), 3)
        self.assertEqual(asked[0], ["busctl", "--system", "--timeout=2", "call",
                                    "org.freedesktop.login1", "/org/freedesktop/login1",
                                    "org.freedesktop.login1.Manager", "CanSuspend"])

    def test_power_management_pm_utils(self) -> None:
        """
        When logind cannot be reached, C{pm-is-supported}'s exit status
        decides (logind is not asked again); with neither, nothing is
        supported.
        """
        result, asked = self.power({"CanSuspend": (1, ""), "--suspend": (0, ""),
                                    "--hibernate": (1, "")})
        self.assertEqual(result, ("suspend_mem",))
        self.assertEqual([a[0] for a in asked], ["busctl"] + ["pm-is-supported"] * 3)
        self.assertEqual(self.power({})[0], ())

    def test_secmodels(self) -> None:
        """C{none}, then C{dac} labelled with QEMU's (the daemon's) uid and gid."""
        self.assertEqual(self.host.facts(ids=lambda: (107, 112)).secmodels(), (
            SecModel("none"),
            SecModel("dac", labels=(("kvm", "+107:+112"), ("qemu", "+107:+112")))))

    def test_like_libvirtd(self) -> None:
        """
        On a tree laid out like the traced machine, with its CPUID, KVM's
        TSC answer, no power management and root's ids, the host section
        is the one libvirtd 9.0 printed, line for line, except the
        C{<migration_features>} qemud does not offer.
        """
        require_cpu_map()
        h = self.host
        h.meminfo(5000000, 4000000)
        h.cpuinfo(2)
        h.online("0-1")
        h.cpu(0, socket=0, core=0, siblings="1", siblings_list="0")
        h.cpu(1, socket=0, core=1, siblings="2", siblings_list="1")
        h.node(0, [0, 1], 4942028, 4000000, distance="10")
        for counts, node in (({2048: 0, 1048576: 0}, None), ({2048: 0, 1048576: 0}, 0)):
            h.hugepages(counts, node)
        for cpu in (0, 1):
            h.cache(cpu, 0, level=1, kind="Data", size="32K", shared=str(cpu), bank_id=cpu)
            h.cache(cpu, 1, level=1, kind="Instruction", size="32K", shared=str(cpu),
                    bank_id=cpu)
            h.cache(cpu, 2, level=2, kind="Unified", size="1024K", shared=str(cpu), bank_id=cpu)
            h.cache(cpu, 3, level=3, kind="Unified", size="32768K", shared="0-1")
        h.write(os.path.join(h.sys, "class", "dmi", "id", "product_uuid"),
                "cac88a1e-863c-484b-bff8-673b9960228e\n")
        facts = h.facts(cpuid=fixture_cpuid, cpu_map_dir=DEFAULT_CPU_MAP_DIR,
                        tsc=lambda: (2596146000, False))
        got = trace_element("host", capabilities_xml(facts.host_caps(), []))
        want = re.sub(r" *<migration_features>\n.*? *</migration_features>\n", "",
                      trace_element("host"), flags=re.S)
        self.assertEqual(got, want)
        self.assertIn("<migration_features>", trace_capabilities())
