"""
Tests for L{qemud.daemon.node}: host facts computed from fake C{/proc} and
sysfs trees (with and without NUMA nodes, offline CPUs, odd topologies),
compared where possible with what libvirtd 9.0 reported on an identical
machine, plus a sanity check against the real host.
"""

from __future__ import annotations

import os
import re
import uuid

from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon.node import NodeFacts, NodeInfo
from qemud.errors import HostSystemError
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
            die: int = 0) -> None:
        base = os.path.join(self.sys, "devices", "system", "cpu", f"cpu{n}")
        topo = os.path.join(base, "topology")
        self.write(os.path.join(topo, "physical_package_id"), f"{socket}\n")
        self.write(os.path.join(topo, "core_id"), f"{core}\n")
        self.write(os.path.join(topo, "die_id"), f"{die}\n")
        self.write(os.path.join(topo, "thread_siblings"), f"{siblings}\n")
        if online is not None:
            self.write(os.path.join(base, "online"), "1\n" if online else "0\n")

    def node(self, n: int, cpus: list[int], total: int, free: int) -> None:
        base = os.path.join(self.sys, "devices", "system", "node", f"node{n}")
        os.makedirs(base)
        for cpu in cpus:
            os.symlink(os.path.join("..", "..", "cpu", f"cpu{cpu}"),
                       os.path.join(base, f"cpu{cpu}"))
        self.write(os.path.join(base, "meminfo"),
                   f"Node {n} MemTotal:       {total} kB\nNode {n} MemFree:        {free} kB\n"
                   f"Node {n} MemUsed:        {total - free} kB\n")
        self.write(os.path.join(base, "cpulist"), ",".join(map(str, cpus)) + "\n")

    def facts(self) -> NodeFacts:
        return NodeFacts(proc=self.proc, sys=self.sys, etc=self.etc,
                         arch=lambda: "x86_64", gethostname=lambda: "vm",
                         canonical_name=lambda name: None)


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
