# -*- test-case-name: tests.daemon.test_node -*-
"""
Facts about the host, read from C{/proc} and sysfs the way libvirtd 9.0
reads them (C{virHostCPUGetInfoPopulateLinux}, C{virHostMemGetInfo},
C{virGetHostname}, C{virSetHostUUIDStr}), and the host section of
C{virsh capabilities} (L{NodeFacts.host_caps}: C{virCPUx86GetHost},
C{virCapabilitiesHostNUMAInitReal}, C{virCapabilitiesInitCaches},
C{virNumaGetPages}, C{virHostHasIOMMU}, C{virNodeSuspendGetTargetMask}).

All paths are injectable (C{NodeFacts(proc=..., sys=..., etc=..., dev=...)})
so the tests can build fake trees, and so are the probes that are not file
reads (CPUID, the KVM TSC probe, MSRs, the power-management queries).
Synchronous: a few small file reads; the CPU's identity (CPUID decoded
against libvirt's CPU map, microcode, TSC) and the power-management answer
do not change while the daemon runs and are computed once.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.logger import Logger

from qemud.daemon import hostcpu
from qemud.errors import HostSystemError
from qemud.qemu.caps import (
    CacheBank,
    CellCPU,
    HostCaps,
    HostCPU,
    NUMACell,
    SecModel,
    TSCCounter,
    host_arch,
)
from qemud.qemu.cpumap import (
    DEFAULT_CPU_MAP_DIR,
    CPUData,
    CPUMap,
    CPUMapError,
    DecodedCPU,
    cpu_signature,
    decode_host,
    has_feature,
    load_cpu_map,
)

_VENDORS = {
    "GenuineIntel": "Intel",
    "AuthenticAMD": "AMD",
    "HygonGenuine": "Hygon",
    "CentaurHauls": "VIA",
    "  Shanghai  ": "Zhaoxin",
}

_NODE_RE = re.compile(r"^node(\d+)$")
_CPU_RE = re.compile(r"^cpu(\d+)$")
_HUGEPAGES_RE = re.compile(r"^hugepages-(\d+)kB$", re.IGNORECASE)

#: sysfs cache C{type} -> libvirt's bank type.
_CACHE_TYPES = {"Unified": "both", "Instruction": "code", "Data": "data"}

#: libvirt's suspend targets: (element, logind method, pm-is-supported option).
_SUSPEND_TARGETS = (("suspend_mem", "CanSuspend", "--suspend"),
                    ("suspend_disk", "CanHibernate", "--hibernate"),
                    ("suspend_hybrid", "CanHybridSleep", "--suspend-hybrid"))

#: Runs a command: (argv, timeout) -> (exit status, stdout), or C{None}
#: when it cannot be run at all.
Runner = Callable[[Sequence[str], float], tuple[int, str] | None]


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


def parse_cpu_list(text: str) -> list[int]:
    """
    @param text: a kernel CPU list (C{0-3,8,10-11}).
    @return: the CPUs, sorted.
    @raise ValueError: it is not a CPU list.
    """
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, dash, last = part.partition("-")
        lo = int(first)
        hi = int(last) if dash else lo
        if hi < lo:
            raise ValueError(f"invalid CPU range '{part}'")
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def format_cpu_list(cpus: Sequence[int]) -> str:
    """
    @return: libvirt's C{virBitmapFormat} of a CPU set (C{0-3,8,10-11}).
    """
    out: list[str] = []
    ordered = sorted(set(cpus))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def pretty_size(value: int) -> tuple[int, str]:
    """
    libvirt's C{virFormatIntPretty}: the largest binary unit that divides
    C{value} exactly.

    @param value: bytes.
    @return: (number, unit), e.g. (32, C{"MiB"}).
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value == 0 or value % 1024:
            return value, unit
        value //= 1024
    return value, "EiB"


def _scaled_size(text: str) -> int | None:
    """
    @param text: a sysfs size (C{32768K}, C{1M}, C{512}).
    @return: bytes, or C{None} when it is not a size.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        return None
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(match.group(1)) * scale[match.group(2).upper()]


def _run_command(argv: Sequence[str], timeout: float) -> tuple[int, str] | None:
    """
    @return: (exit status, stdout) of C{argv}, or C{None} when it is not
        installed, cannot start or times out.
    """
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.returncode, done.stdout


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


@dataclass(frozen=True)
class _CPUIdentity:
    """
    What does not change while the daemon runs: the decoded CPU and the
    facts libvirt gathers with it.
    """

    decoded: DecodedCPU | None
    signature: tuple[int, int, int] | None
    tsc: TSCCounter | None


class NodeFacts:
    """
    Read host facts below injectable roots.

    @ivar proc: where procfs is mounted.
    @ivar sys: where sysfs is mounted.
    @ivar etc: where C{machine-id} is looked up.
    """

    log = Logger()

    def __init__(self, proc: str = "/proc", sys: str = "/sys", etc: str = "/etc", *,
                 dev: str = "/dev",
                 cpu_map_dir: str = DEFAULT_CPU_MAP_DIR,
                 arch: Callable[[], str] = host_arch,
                 gethostname: Callable[[], str] = socket.gethostname,
                 canonical_name: Callable[[str], str | None] | None = None,
                 cpuid: Callable[[], CPUData | None] | None = None,
                 msr: Callable[[int], int | None] | None = None,
                 tsc: Callable[[], tuple[int, bool] | None] | None = None,
                 run: Runner = _run_command,
                 page_size: int | None = None,
                 ids: Callable[[], tuple[int, int]] = lambda: (os.getuid(), os.getgid()),
                 ) -> None:
        """
        @param proc: procfs root.
        @param sys: sysfs root.
        @param etc: the C{/etc} directory.
        @param dev: the device directory (C{cpu/0/cpuid}, C{cpu/0/msr}, C{kvm}).
        @param cpu_map_dir: libvirt's CPU map (read when it is installed).
        @param arch: returns the host arch in libvirt's spelling.
        @param gethostname: returns the kernel's host name.
        @param canonical_name: asks the resolver for a name's canonical
            form (C{None} when it has none); C{getaddrinfo} by default.
        @param cpuid: returns the host's raw CPUID data (C{None}: unreadable);
            L{hostcpu.read_host_cpuid} below C{dev} by default.
        @param msr: reads an MSR (C{None}: unreadable); L{hostcpu.read_msr}.
        @param tsc: returns (TSC Hz, scaling) from KVM (C{None}: no KVM);
            L{hostcpu.kvm_tsc_info} on C{dev/kvm} by default.
        @param run: runs the power-management queries.
        @param page_size: the base page size in bytes (the system's).
        @param ids: the uid and gid QEMU runs as (the daemon's own).
        """
        self.proc = proc
        self.sys = sys
        self.etc = etc
        self.dev = dev
        self.cpu_map_dir = cpu_map_dir
        self._arch = arch
        self._gethostname = gethostname
        self._canonical_name = canonical_name or _resolver_canonical_name
        self._cpuid = cpuid or (lambda: hostcpu.read_host_cpuid(dev))
        self._msr = msr or (lambda index: hostcpu.read_msr(index, dev))
        self._tsc = tsc or (lambda: hostcpu.kvm_tsc_info(os.path.join(dev, "kvm")))
        self._run = run
        self._page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self._ids = ids
        self._identity: _CPUIdentity | None = None
        self._power: tuple[str, ...] | None = None

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

    def _load_cpu_map(self) -> CPUMap | None:
        try:
            return load_cpu_map(self.cpu_map_dir)
        except CPUMapError as e:
            self.log.warn("libvirt's CPU map is unusable: {error}", error=str(e))
            return None

    def _cpu_identity(self) -> _CPUIdentity:
        """
        libvirt's C{virCPUx86GetHost}: CPUID (plus C{IA32_ARCH_CAPABILITIES}
        when CPUID has the map's C{arch-capabilities}) decoded against the
        CPU map; the TSC probed through KVM when the CPU has C{invtsc}.
        Without CPUID or without the map there is no model, no features and
        no counter; the signature then comes from CPUID or C{/proc/cpuinfo}.
        """
        if self._identity is not None:
            return self._identity
        decoded: DecodedCPU | None = None
        signature: tuple[int, int, int] | None = None
        tsc: TSCCounter | None = None
        data = self._cpuid() if self._arch() in ("x86_64", "i686") else None
        cpu_map = self._load_cpu_map() if data is not None else None
        if data is not None:
            signature = cpu_signature(data)
        if data is not None and cpu_map is not None:
            data = hostcpu.with_arch_capabilities(data, cpu_map, read=self._msr)
            decoded = decode_host(data, cpu_map)
            if decoded is None:
                self.log.warn("no CPU model of libvirt's map fits this host's CPU")
            if has_feature(data, "invtsc", cpu_map):
                probed = self._tsc()
                if probed is not None:
                    tsc = TSCCounter(frequency=probed[0], scaling=probed[1])
        if signature is None:
            details = self.cpu_details()
            if details.family and details.model is not None and details.stepping is not None:
                signature = (details.family, details.model, details.stepping)
        self._identity = _CPUIdentity(decoded=decoded, signature=signature, tsc=tsc)
        return self._identity

    def _cpuinfo_field(self, name: str) -> str | None:
        """
        @return: the first value of C{name} in C{/proc/cpuinfo}.
        """
        for line in self._cpuinfo().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == name:
                return value.strip()
        return None

    def microcode(self) -> int | None:
        """
        libvirt's C{virHostCPUGetMicrocodeVersion}: the first C{microcode}
        of C{/proc/cpuinfo}, read as hexadecimal (x86 only).

        @return: the version, or C{None}.
        """
        if self._arch() not in ("x86_64", "i686"):
            return None
        text = self._cpuinfo_field("microcode")
        match = re.match(r"(?:0x)?([0-9a-fA-F]+)", text or "")
        return int(match.group(1), 16) if match else None

    def maxphysaddr(self) -> int | None:
        """
        libvirt's C{virHostCPUGetPhysAddrSize}: C{address sizes : N bits
        physical} of C{/proc/cpuinfo} (x86 only).

        @return: N, or C{None}.
        """
        if self._arch() not in ("x86_64", "i686"):
            return None
        match = re.match(r"(\d+)", self._cpuinfo_field("address sizes") or "")
        return int(match.group(1)) if match else None

    def _hugepage_sizes(self, directory: str) -> list[tuple[int, str]]:
        """
        @return: (size KiB, its directory) for each C{hugepages-NkB} in
            C{directory}.
        """
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        return sorted((int(m.group(1)), os.path.join(directory, n))
                      for n in names if (m := _HUGEPAGES_RE.match(n)))

    def page_sizes_kib(self) -> tuple[int, ...]:
        """
        libvirt's C{virCapabilitiesInitPages}: the base page and every size
        in C{/sys/kernel/mm/hugepages}, increasing.
        """
        sizes = {self._page_size // 1024}
        sizes.update(size for size, _ in self._hugepage_sizes(
            os.path.join(self.sys, "kernel", "mm", "hugepages")))
        return tuple(sorted(sizes))

    def host_cpu(self) -> HostCPU:
        """
        The C{<cpu>} of the capabilities' host section, as libvirt 9.0
        builds it: the model, vendor, signature and extra features decoded
        from CPUID with libvirt's CPU map (no model without CPUID or the
        map), the microcode version, the KVM TSC counter, the topology of
        L{node_info}, the physical address size and the page sizes.

        @return: the host CPU, with the host UUID.
        """
        info = self.node_info()
        details = self.cpu_details()
        identity = self._cpu_identity()
        decoded = identity.decoded
        return HostCPU(
            arch=info.model, model=decoded.model if decoded else None,
            vendor=decoded.vendor if decoded and decoded.vendor else details.vendor,
            sockets=info.sockets * info.nodes, dies=self._dies(),
            cores=info.cores, threads=info.threads, uuid=self.host_uuid(),
            microcode=self.microcode(), signature=identity.signature, tsc=identity.tsc,
            maxphysaddr=self.maxphysaddr(), features=decoded.features if decoded else (),
            pages_kib=self.page_sizes_kib())

    # -- the rest of the capabilities' host section -------------------------------

    def iommu(self) -> bool:
        """
        libvirt's C{virHostHasIOMMU}.

        @return: whether C{/sys/kernel/iommu_groups} has any group.
        """
        try:
            return bool(os.listdir(os.path.join(self.sys, "kernel", "iommu_groups")))
        except OSError:
            return False

    def power_management(self) -> tuple[str, ...]:
        """
        libvirt's C{virNodeSuspendGetTargetMask}: for each suspend target,
        ask systemd-logind over the system bus (C{busctl call ...
        CanSuspend}, C{CanHibernate}, C{CanHybridSleep}: C{yes} means
        supported); once logind cannot be reached, ask pm-utils instead
        (C{pm-is-supported --suspend}, ...: exit status 0 means supported).
        Neither available: nothing is supported.  Asked once, each query
        bounded by a few seconds (it runs when the capabilities are first
        asked for).

        @return: the supported targets (C{suspend_mem}, C{suspend_disk},
            C{suspend_hybrid}), in libvirt's order.
        """
        if self._power is not None:
            return self._power
        supported: list[str] = []
        logind = True
        for element, method, option in _SUSPEND_TARGETS:
            if logind:
                answer = self._run(["busctl", "--system", "--timeout=2", "call",
                                    "org.freedesktop.login1", "/org/freedesktop/login1",
                                    "org.freedesktop.login1.Manager", method], 3.0)
                if answer is not None and answer[0] == 0:
                    if answer[1].split() == ["s", '"yes"']:
                        supported.append(element)
                    continue
                logind = False
            answer = self._run(["pm-is-supported", option], 3.0)
            if answer is not None and answer[0] == 0:
                supported.append(element)
        self._power = tuple(supported)
        return self._power

    def _cell_cpu(self, cpu: int) -> CellCPU:
        """
        libvirt's C{virCapabilitiesFillCPUInfo}: socket, die and core ids
        (0 when missing or negative) and the thread siblings (the CPU alone
        when missing).
        """
        topology = os.path.join(self._cpu_dir(cpu), "topology")

        def value(name: str) -> int:
            number = _read_int(os.path.join(topology, name))
            return number if number is not None and number >= 0 else 0

        siblings = [cpu]
        text = _read(os.path.join(topology, "thread_siblings_list"))
        if text is not None:
            try:
                siblings = parse_cpu_list(text) or [cpu]
            except ValueError:
                pass
        return CellCPU(id=cpu, socket_id=value("physical_package_id"), die_id=value("die_id"),
                       core_id=value("core_id"), siblings=format_cpu_list(siblings))

    def _node_pages(self, node_dir: str, memory_kib: int) -> tuple[tuple[int, int], ...]:
        """
        libvirt's C{virNumaGetPages} for one node: each huge page size with
        its pool size, and the base pages left once the pools are taken off
        the node's memory.
        """
        pages: list[tuple[int, int]] = []
        huge_bytes = 0
        for size, directory in self._hugepage_sizes(os.path.join(node_dir, "hugepages")):
            count = _read_int(os.path.join(directory, "nr_hugepages")) or 0
            pages.append((size, count))
            huge_bytes += size * 1024 * count
        base = max(0, memory_kib * 1024 - huge_bytes) // self._page_size
        pages.append((self._page_size // 1024, base))
        return tuple(sorted(pages))

    def numa_cells(self) -> tuple[NUMACell, ...]:
        """
        libvirt's C{virCapabilitiesHostNUMAInitReal} (sysfs NUMA nodes)
        or, without nodes in sysfs, C{virCapabilitiesHostNUMAInitFake}
        (one cell of all memory, CPUs numbered from L{node_info}'s
        topology, no pages or distances).

        For each node: its memory (C{MemTotal}), its pages, its distances
        (the node's C{distance} file, one value per node, zeros left out)
        and its CPUs (C{cpulist}) with their topology.

        @return: the cells, by node id.
        """
        nodes = self._node_dirs()
        if not nodes:
            return self._fake_cells()
        ids = [int(os.path.basename(n)[4:]) for n in nodes]
        cells = []
        for node_id, node in zip(ids, nodes, strict=True):
            cpus: list[int] = []
            text = _read(os.path.join(node, "cpulist"))
            try:
                cpus = parse_cpu_list(text) if text is not None else self._cpus_in(node)
            except ValueError:
                cpus = self._cpus_in(node)
            meminfo = _read(os.path.join(node, "meminfo"))
            memory = (_meminfo_kib(meminfo, "MemTotal") if meminfo is not None else None) or 0
            distances: list[tuple[int, int]] = []
            for other, word in zip(ids, (_read(os.path.join(node, "distance")) or "").split(),
                                   strict=False):
                if word.isdigit() and int(word):
                    distances.append((other, int(word)))
            cells.append(NUMACell(id=node_id, memory_kib=memory,
                                  pages=self._node_pages(node, memory),
                                  distances=tuple(distances),
                                  cpus=tuple(self._cell_cpu(c) for c in cpus)))
        return tuple(cells)

    def _fake_cells(self) -> tuple[NUMACell, ...]:
        info = self.node_info()
        cpus: list[CellCPU] = []
        cpu = 0
        for _ in range(info.nodes):
            for sock in range(info.sockets):
                for core in range(info.cores):
                    siblings = format_cpu_list(range(cpu, cpu + info.threads))
                    for _ in range(info.threads):
                        if self._online(cpu):
                            cpus.append(CellCPU(id=cpu, socket_id=sock, die_id=0, core_id=core,
                                                siblings=siblings))
                        cpu += 1
        return (NUMACell(id=0, memory_kib=info.memory_kib, cpus=tuple(cpus)),)

    def cache_banks(self) -> tuple[CacheBank, ...]:
        """
        libvirt's C{virCapabilitiesInitCaches}: for every online CPU, each
        C{cache/indexN} of level 3 or more (those missing C{id}, C{level},
        C{type}, C{size} or C{shared_cpu_list} are skipped), once per
        distinct bank, sorted by level then id.  An unknown cache type makes
        libvirt give up on caches, and so do we.  The resctrl details
        (C{<control>}, C{<monitor>}) are not reported.

        @return: the banks.
        """
        base = os.path.join(self.sys, "devices", "system", "cpu")
        online_text = _read(os.path.join(base, "online"))
        try:
            online = parse_cpu_list(online_text) if online_text is not None else []
        except ValueError:
            online = []
        banks: list[CacheBank] = []
        for cpu in online:
            directory = os.path.join(base, f"cpu{cpu}", "cache")
            try:
                names = sorted(n for n in os.listdir(directory) if n.startswith("index"))
            except OSError:
                continue
            for name in names:
                index = os.path.join(directory, name)
                level = _read_int(os.path.join(index, "level"))
                if level is None or level < 3:
                    continue
                bank_id = _read_int(os.path.join(index, "id"))
                kind = _read(os.path.join(index, "type"))
                size_text = _read(os.path.join(index, "size"))
                shared = _read(os.path.join(index, "shared_cpu_list"))
                if bank_id is None or kind is None or size_text is None or shared is None:
                    continue
                size = _scaled_size(size_text)
                bank_type = _CACHE_TYPES.get(kind.strip())
                if bank_type is None:
                    self.log.warn("unknown cache type {type!r}", type=kind.strip())
                    return ()
                try:
                    cpus = format_cpu_list(parse_cpu_list(shared))
                except ValueError:
                    continue
                if size is None:
                    continue
                number, unit = pretty_size(size)
                bank = CacheBank(id=bank_id, level=level, type=bank_type, size=number,
                                 unit=unit, cpus=cpus)
                if bank not in banks:
                    banks.append(bank)
        return tuple(sorted(banks, key=lambda b: (b.level, b.id)))

    def secmodels(self) -> tuple[SecModel, ...]:
        """
        The security models: C{none}, then C{dac} with the base label
        C{+UID:+GID} of the user QEMU runs as (the daemon's own user) for
        both domain types, as libvirt's DAC driver reports its user.
        """
        uid, gid = self._ids()
        label = f"+{uid}:+{gid}"
        return (SecModel("none"), SecModel("dac", labels=(("kvm", label), ("qemu", label))))

    def probe_slow_facts(self) -> None:
        """
        Work out and keep what L{host_caps} needs that may take long: the
        CPU identity (CPUID, possibly in a child process; the KVM TSC probe)
        and the power-management queries (child processes bounded by a few
        seconds each).  Blocking: run it in a thread, before L{host_caps}
        is first called from the reactor.
        """
        self._cpu_identity()
        self.power_management()

    def host_caps(self) -> HostCaps:
        """
        @return: the whole host section of C{virsh capabilities}; quick
            once L{probe_slow_facts} has run.
        """
        return HostCaps(cpu=self.host_cpu(), power_management=self.power_management(),
                        iommu=self.iommu(), cells=self.numa_cells(), caches=self.cache_banks(),
                        secmodels=self.secmodels())

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
