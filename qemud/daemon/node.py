# -*- test-case-name: tests.daemon.test_node -*-
"""
Facts about the host, read from C{/proc} and sysfs the way libvirtd 9.0
reads them (C{virHostCPUGetInfoPopulateLinux}, C{virHostMemGetInfo},
C{virGetHostname}, C{virSetHostUUIDStr}).

All paths are injectable (C{NodeFacts(proc=..., sys=..., etc=...)}) so the
tests can build fake trees.  Synchronous and cheap: a few small file reads.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from qemud.errors import HostSystemError
from qemud.qemu.caps import HostCPU, host_arch

_VENDORS = {
    "GenuineIntel": "Intel",
    "AuthenticAMD": "AMD",
    "HygonGenuine": "Hygon",
    "CentaurHauls": "VIA",
    "  Shanghai  ": "Zhaoxin",
}

_NODE_RE = re.compile(r"^node(\d+)$")
_CPU_RE = re.compile(r"^cpu(\d+)$")


@dataclass(frozen=True)
class NodeInfo:
    """
    libvirt's C{virNodeInfo} (C{virsh nodeinfo}).

    @ivar model: the host arch string (libvirtd reports it as "CPU model").
    @ivar memory_kib: total memory in KiB.
    @ivar cpus: online CPUs.
    @ivar mhz: CPU frequency in MHz (0 when unknown).
    @ivar nodes: NUMA nodes.
    @ivar sockets: sockets per node.
    @ivar cores: cores per socket.
    @ivar threads: threads per core.
    """

    model: str
    memory_kib: int
    cpus: int
    mhz: int
    nodes: int
    sockets: int
    cores: int
    threads: int

    @property
    def memory(self) -> int:
        """
        @return: memory in KiB under libvirt's field name.
        """
        return self.memory_kib


@dataclass(frozen=True)
class CPUDetails:
    """
    The host CPU as C{/proc/cpuinfo} describes it (first processor).

    @ivar model_name: C{model name}, e.g. C{AMD EPYC}.
    @ivar vendor_id: C{vendor_id}, e.g. C{AuthenticAMD}.
    @ivar vendor: libvirt's vendor name (C{AMD}, C{Intel}), or C{None}.
    @ivar family: C{cpu family}.
    @ivar model: C{model} (the number).
    @ivar stepping: C{stepping}.
    @ivar microcode: C{microcode} as an integer.
    @ivar flags: C{flags}, in order.
    """

    model_name: str | None
    vendor_id: str | None
    vendor: str | None
    family: int | None
    model: int | None
    stepping: int | None
    microcode: int | None
    flags: tuple[str, ...]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def _count_mask_bits(text: str) -> int:
    """
    @param text: a sysfs CPU mask (C{00000000,00000003}).
    @return: how many bits are set.
    """
    return sum(bin(int(word, 16)).count("1") for word in text.strip().split(",") if word)


def _meminfo_kib(text: str, key: str) -> int | None:
    """
    @param text: C{/proc/meminfo} or a node's C{meminfo}
        (C{Node 0 MemTotal:  123 kB}).
    @param key: C{MemTotal} or C{MemFree}.
    @return: the value in KiB.
    """
    for line in text.splitlines():
        head, sep, value = line.partition(":")
        if sep and head.split()[-1:] == [key]:
            fields = value.split()
            if fields and fields[0].isdigit():
                number = int(fields[0])
                unit = fields[1].lower() if len(fields) > 1 else ""
                return number if unit == "kb" else number // 1024
    return None


def _resolver_canonical_name(name: str) -> str | None:
    """
    @param name: a host name.
    @return: the resolver's canonical name for it, or C{None}.
    """
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, 0, 0, socket.AI_CANONNAME)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        if info[3]:
            return info[3]
    return None


class NodeFacts:
    """
    Read host facts below injectable roots.

    @ivar proc: where procfs is mounted.
    @ivar sys: where sysfs is mounted.
    @ivar etc: where C{machine-id} is looked up.
    """

    def __init__(self, proc: str = "/proc", sys: str = "/sys", etc: str = "/etc", *,
                 arch: Callable[[], str] = host_arch,
                 gethostname: Callable[[], str] = socket.gethostname,
                 canonical_name: Callable[[str], str | None] | None = None) -> None:
        """
        @param proc: procfs root.
        @param sys: sysfs root.
        @param etc: the C{/etc} directory.
        @param arch: returns the host arch in libvirt's spelling.
        @param gethostname: returns the kernel's host name.
        @param canonical_name: asks the resolver for a name's canonical
            form (C{None} when it has none); C{getaddrinfo} by default.
        """
        self.proc = proc
        self.sys = sys
        self.etc = etc
        self._arch = arch
        self._gethostname = gethostname
        self._canonical_name = canonical_name or _resolver_canonical_name

    # -- memory -------------------------------------------------------------

    def _node_dirs(self) -> list[str]:
        base = os.path.join(self.sys, "devices", "system", "node")
        try:
            names = os.listdir(base)
        except OSError:
            return []
        numbered = sorted((int(m.group(1)), n) for n in names if (m := _NODE_RE.match(n)))
        return [os.path.join(base, n) for _, n in numbered]

    def _memory_kib(self, key: str) -> int:
        total = 0
        found = False
        for node in self._node_dirs():
            text = _read(os.path.join(node, "meminfo"))
            value = _meminfo_kib(text, key) if text is not None else None
            if value is not None:
                total += value
                found = True
        if found:
            return total
        text = _read(os.path.join(self.proc, "meminfo"))
        value = _meminfo_kib(text, key) if text is not None else None
        if value is None:
            raise HostSystemError(f"cannot read {key} from {os.path.join(self.proc, 'meminfo')}")
        return value

    def memory_kib(self) -> int:
        """
        @return: total memory in KiB: the sum of the NUMA nodes' C{MemTotal}
            when sysfs has nodes, else C{/proc/meminfo}'s.
        @raise HostSystemError: when neither can be read.
        """
        return self._memory_kib("MemTotal")

    def free_memory_bytes(self) -> int:
        """
        @return: free memory in bytes (C{virsh freecell --all}'s total).
        @raise HostSystemError: when it cannot be read.
        """
        return self._memory_kib("MemFree") * 1024

    # -- CPUs ---------------------------------------------------------------

    def _cpuinfo(self) -> str:
        return _read(os.path.join(self.proc, "cpuinfo")) or ""

    def _cpu_dir(self, cpu: int) -> str:
        return os.path.join(self.sys, "devices", "system", "cpu", f"cpu{cpu}")

    def _online(self, cpu: int) -> bool:
        value = _read_int(os.path.join(self._cpu_dir(cpu), "online"))
        # cpu0 often has no "online" file: it cannot be taken offline.
        return value is None or value != 0

    def _cpus_in(self, directory: str) -> list[int]:
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _CPU_RE.match(n)))

    def _parse_node(self, directory: str) -> tuple[int, int, int, int, int]:
        """
        libvirt's C{virHostCPUParseNode}.

        @return: (online cpus, sockets, cores per socket, threads per core,
            offline cpus) for the CPUs listed in C{directory}.
        """
        sockets: dict[int, set[int]] = {}
        threads = 0
        online = offline = 0
        for cpu in self._cpus_in(directory):
            if not self._online(cpu):
                offline += 1
                continue
            online += 1
            topology = os.path.join(self._cpu_dir(cpu), "topology")
            sock = _read_int(os.path.join(topology, "physical_package_id"))
            if sock is None or sock < 0:
                sock = 0
            core = _read_int(os.path.join(topology, "core_id"))
            sockets.setdefault(sock, set()).add(core if core is not None else cpu)
            siblings = _read(os.path.join(topology, "thread_siblings"))
            count = _count_mask_bits(siblings) if siblings else 1
            threads = max(threads, count)
        cores = max((len(c) for c in sockets.values()), default=0)
        return online, len(sockets), cores, threads, offline

    def mhz(self) -> int:
        """
        @return: the CPU frequency: C{cpu MHz} from C{/proc/cpuinfo}
            (truncated), else cpufreq's C{cpuinfo_max_freq}, else 0.
        """
        for line in self._cpuinfo().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("cpu MHz", "clock"):
                match = re.match(r"\s*(\d+)", value)
                if match and int(match.group(1)) > 0:
                    return int(match.group(1))
        freq = os.path.join(self._cpu_dir(0), "cpufreq")
        for name in ("cpuinfo_max_freq", "scaling_max_freq", "scaling_cur_freq"):
            khz = _read_int(os.path.join(freq, name))
            if khz:
                return khz // 1000
        return 0

    def node_info(self) -> NodeInfo:
        """
        Compute C{virsh nodeinfo} as libvirtd 9.0 does.

        CPUs are counted per NUMA node (sockets, cores and threads are the
        maxima over nodes); without nodes in sysfs all CPUs form one node.
        When nodes x sockets x cores x threads does not equal the number of
        CPUs, libvirt reports a flat topology (1 node, 1 socket, one core
        per CPU, 1 thread) and so do we.

        @return: the host's facts.
        @raise HostSystemError: when no CPU or no memory figure is found.
        """
        cpus = offline = nodes = sockets = cores = threads = 0
        for node in self._node_dirs():
            n_cpus, n_sockets, n_cores, n_threads, n_offline = self._parse_node(node)
            nodes += 1
            cpus += n_cpus
            offline += n_offline
            sockets = max(sockets, n_sockets)
            cores = max(cores, n_cores)
            threads = max(threads, n_threads)
        if not (cpus and nodes):
            cpus, sockets, cores, threads, offline = self._parse_node(
                os.path.join(self.sys, "devices", "system", "cpu"))
            nodes = 1
        if cpus == 0:
            cpus = self._cpuinfo_processors()
            sockets, cores, threads, offline = 1, cpus, 1, 0
        if cpus == 0:
            raise HostSystemError("no CPUs found in sysfs or /proc/cpuinfo")
        if nodes * sockets * cores * threads != cpus + offline:
            nodes, sockets, cores, threads = 1, 1, cpus + offline, 1
        return NodeInfo(model=self._arch(), memory_kib=self.memory_kib(), cpus=cpus,
                        mhz=self.mhz(), nodes=nodes, sockets=sockets, cores=cores,
                        threads=threads)

    def _cpuinfo_processors(self) -> int:
        return sum(1 for line in self._cpuinfo().splitlines()
                   if line.split(":")[0].strip() == "processor")

    def cpu_details(self) -> CPUDetails:
        """
        @return: the first processor's description from C{/proc/cpuinfo}.
        """
        fields: dict[str, str] = {}
        for line in self._cpuinfo().splitlines():
            if not line.strip():
                if fields:
                    break
                continue
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())

        def number(key: str) -> int | None:
            try:
                return int(fields[key], 0)
            except (KeyError, ValueError):
                return None

        vendor_id = fields.get("vendor_id")
        return CPUDetails(
            model_name=fields.get("model name"),
            vendor_id=vendor_id,
            vendor=_VENDORS.get(vendor_id, vendor_id) if vendor_id else None,
            family=number("cpu family"),
            model=number("model"),
            stepping=number("stepping"),
            microcode=number("microcode"),
            flags=tuple(fields.get("flags", "").split()),
        )

    def _dies(self) -> int:
        dies: set[tuple[int, int]] = set()
        for cpu in self._cpus_in(os.path.join(self.sys, "devices", "system", "cpu")):
            if not self._online(cpu):
                continue
            topology = os.path.join(self._cpu_dir(cpu), "topology")
            sock = _read_int(os.path.join(topology, "physical_package_id")) or 0
            die = _read_int(os.path.join(topology, "die_id")) or 0
            dies.add((sock, die))
        sockets = {s for s, _ in dies}
        return max(1, len(dies) // max(1, len(sockets)))

    def host_cpu(self) -> HostCPU:
        """
        The host section of the capabilities XML.

        C{model} is left unset: libvirt names a model from its CPU map
        (C{kvm64}, C{EPYC-Milan}, ...), which C{/proc/cpuinfo}'s C{model
        name} is not; L{cpu_details} has the raw facts.

        @return: arch, vendor, topology (sockets per node x nodes, dies,
            cores, threads) and the host UUID.
        """
        info = self.node_info()
        details = self.cpu_details()
        return HostCPU(arch=info.model, model=None, vendor=details.vendor,
                       sockets=info.sockets * info.nodes, dies=self._dies(),
                       cores=info.cores, threads=info.threads, uuid=self.host_uuid())

    # -- identity -----------------------------------------------------------

    def hostname(self) -> str:
        """
        libvirt's C{virGetHostname}: the kernel's host name if it is fully
        qualified (or C{localhost}), else its canonical name from the
        resolver, falling back to the plain name.

        @return: the host name.
        """
        name = self._gethostname()
        if "." in name or name.startswith("localhost"):
            return name
        canon = self._canonical_name(name)
        if canon and not canon.startswith("localhost"):
            return canon
        return name

    def host_uuid(self) -> str:
        """
        A stable host UUID: DMI's C{product_uuid} when it is usable, else
        C{/etc/machine-id} as a UUID, else one derived from the host name.

        @return: the UUID in lower-case dashed form.
        """
        for path in (os.path.join(self.sys, "devices", "virtual", "dmi", "id", "product_uuid"),
                     os.path.join(self.sys, "class", "dmi", "id", "product_uuid")):
            text = _read(path)
            if text:
                try:
                    value = uuid.UUID(text.strip())
                except ValueError:
                    continue
                if len(set(value.hex)) > 1:  # not all zeros or all Fs
                    return str(value)
        text = _read(os.path.join(self.etc, "machine-id"))
        if text:
            try:
                value = uuid.UUID(hex=text.strip())
            except ValueError:
                pass
            else:
                if len(set(value.hex)) > 1:
                    return str(value)
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, self._gethostname()))
