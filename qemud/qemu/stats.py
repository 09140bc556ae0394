# -*- test-case-name: tests.qemu.test_hotplug -*-
"""
Guest statistics as libvirt reports them: per-vCPU times from C{/proc},
memory, block and interface counters, and the typed parameters of
C{virConnectGetAllDomainStats} (C{virsh domstats}).

The inputs are what QMP answers (C{query-cpus-fast}, C{query-blockstats},
C{query-balloon}) and what C{/proc} says about QEMU's threads; this module
only reads files and shapes numbers (no Twisted).

Interface counters: libvirt reads them from the host side of a tap device.
QEMU's user-mode network (slirp) has no host device and QMP exposes no
per-NIC counters, so for those interfaces C{virsh domifstat} fails (as with
libvirt, which cannot find the device) and C{virsh domstats} lists the
interface with its name only.  Tap-backed interfaces (C{ethernet},
C{bridge}, C{network}) report the tap's counters with rx and tx swapped
(the guest's receive is the tap's transmit), as libvirt does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qemud.domain.model import Domain
from qemud.errors import InvalidArgError, OperationUnsupportedError

# virTypedParameterType
TP_INT = 1
TP_UINT = 2
TP_LLONG = 3
TP_ULLONG = 4
TP_STRING = 7

# virDomainStatsTypes
STATS_STATE = 1
STATS_CPU_TOTAL = 2
STATS_BALLOON = 4
STATS_VCPU = 8
STATS_INTERFACE = 16
STATS_BLOCK = 32
STATS_SUPPORTED = (STATS_STATE | STATS_CPU_TOTAL | STATS_BALLOON | STATS_VCPU
                   | STATS_INTERFACE | STATS_BLOCK)

# virDomainMemoryStatTags
MEMORY_STAT_ACTUAL_BALLOON = 6
MEMORY_STAT_RSS = 7

# virVcpuState
VCPU_OFFLINE = 0
VCPU_RUNNING = 1
VCPU_BLOCKED = 2

Param = tuple[str, tuple[int, Any]]


@dataclass(frozen=True)
class TaskStat:
    """
    One thread's line of C{/proc/PID/task/TID/stat}.

    @ivar state: the one-letter state.
    @ivar utime: user time, clock ticks.
    @ivar stime: system time, clock ticks.
    @ivar processor: the host CPU it last ran on.
    """

    state: str
    utime: int
    stime: int
    processor: int


@dataclass(frozen=True)
class VcpuInfo:
    """
    libvirt's C{virVcpuInfo}.
    """

    number: int
    state: int
    cpu_time_ns: int
    cpu: int


def parse_task_stat(text: str) -> TaskStat:
    """
    @param text: a C{stat} file of C{/proc}.
    @return: the fields used here.
    @raise ValueError: malformed text.
    """
    _head, sep, tail = text.rpartition(")")
    fields = tail.split()
    if not sep or len(fields) < 37:
        raise ValueError(f"malformed /proc stat line: {text[:80]!r}")
    return TaskStat(state=fields[0], utime=int(fields[11]), stime=int(fields[12]),
                    processor=int(fields[36]))


def read_task_stat(pid: int, tid: int, proc_root: str = "/proc") -> TaskStat | None:
    """
    @return: the stat of thread C{tid} of process C{pid}, or C{None} if gone.
    """
    try:
        with open(os.path.join(proc_root, str(pid), "task", str(tid), "stat")) as f:
            return parse_task_stat(f.read())
    except (OSError, ValueError):
        return None


def read_process_stat(pid: int, proc_root: str = "/proc") -> TaskStat | None:
    """
    @return: the stat of the whole process C{pid} (all threads), or C{None}.
    """
    try:
        with open(os.path.join(proc_root, str(pid), "stat")) as f:
            return parse_task_stat(f.read())
    except (OSError, ValueError):
        return None


def read_rss_kib(pid: int, proc_root: str = "/proc") -> int | None:
    """
    @return: the process's resident set (C{VmRSS}) in KiB, or C{None}.
    """
    try:
        with open(os.path.join(proc_root, str(pid), "status")) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def vcpu_threads(query_cpus_fast: Iterable[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """
    @param query_cpus_fast: QMP C{query-cpus-fast} output.
    @return: C{(vcpu number, thread id)} pairs, by vCPU number.
    """
    pairs = []
    for cpu in query_cpus_fast:
        index, tid = cpu.get("cpu-index"), cpu.get("thread-id")
        if isinstance(index, int) and isinstance(tid, int):
            pairs.append((index, tid))
    return sorted(pairs)


def vcpu_info(pid: int, threads: Iterable[tuple[int, int]], clock_ticks: int,
              proc_root: str = "/proc") -> list[VcpuInfo]:
    """
    @param pid: QEMU's pid.
    @param threads: from L{vcpu_threads}.
    @param clock_ticks: C{SC_CLK_TCK}.
    @return: one L{VcpuInfo} per vCPU thread (state running, CPU time, the
        host CPU it last ran on), as libvirt's C{qemuDomainHelperGetVcpus}.
    """
    infos = []
    for number, tid in threads:
        stat = read_task_stat(pid, tid, proc_root)
        if stat is None:
            infos.append(VcpuInfo(number, VCPU_OFFLINE, 0, -1))
            continue
        ns = (stat.utime + stat.stime) * 1_000_000_000 // clock_ticks
        infos.append(VcpuInfo(number, VCPU_RUNNING, ns, stat.processor))
    return infos


def cpumap(tid: int, maplen: int) -> bytes:
    """
    @return: the thread's CPU affinity as libvirt's bitmap of C{maplen} bytes
        (all host CPUs when it cannot be read).
    """
    try:
        cpus = os.sched_getaffinity(tid)
    except OSError:
        cpus = set(range(maplen * 8))
    data = bytearray(maplen)
    for cpu in cpus:
        if cpu < maplen * 8:
            data[cpu // 8] |= 1 << (cpu % 8)
    return bytes(data)


def _blockstat_device(entry: Mapping[str, Any]) -> str:
    qdev = str(entry.get("qdev") or entry.get("device") or "")
    parts = qdev.strip("/").split("/")
    if len(parts) >= 3 and parts[:2] == ["machine", "peripheral"]:
        return parts[2]
    return qdev


def block_counters(query_blockstats: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """
    @param query_blockstats: QMP C{query-blockstats} output.
    @return: device alias to its counters (QEMU's names: C{rd_operations},
        C{rd_bytes}, C{wr_operations}, ...).
    """
    found: dict[str, dict[str, int]] = {}
    for entry in query_blockstats:
        stats = entry.get("stats")
        if isinstance(stats, Mapping):
            found[_blockstat_device(entry)] = {k: int(v) for k, v in stats.items()
                                               if isinstance(v, int) and not isinstance(v, bool)}
    return found


def find_disk_alias(domain: Domain, path: str) -> str:
    """
    @param domain: the running definition.
    @param path: what the client named: a target dev (C{vda}) or a source path.
    @return: the disk's alias.
    @raise InvalidArgError: no such disk (libvirt's text).
    """
    for disk in domain.devices.disks:
        if path in (disk.target_dev, disk.source) and disk.alias:
            return disk.alias
    raise InvalidArgError(f"invalid path: {path}")


def block_stats(domain: Domain, counters: Mapping[str, Mapping[str, int]],
                path: str) -> tuple[int, int, int, int, int]:
    """
    @param path: a disk (target or source), or C{""} for the sum of all.
    @return: libvirt's C{virDomainBlockStatsStruct}: (rd_req, rd_bytes,
        wr_req, wr_bytes, errs); errs is -1 (QEMU keeps none), as libvirt.
    """
    aliases = ([d.alias for d in domain.devices.disks if d.alias] if path == ""
               else [find_disk_alias(domain, path)])
    rd_req = rd_bytes = wr_req = wr_bytes = 0
    for alias in aliases:
        c = counters.get(alias, {})
        rd_req += c.get("rd_operations", 0)
        rd_bytes += c.get("rd_bytes", 0)
        wr_req += c.get("wr_operations", 0)
        wr_bytes += c.get("wr_bytes", 0)
    return rd_req, rd_bytes, wr_req, wr_bytes, -1


def tap_counters(dev: str, sys_root: str = "/sys") -> tuple[int, ...] | None:
    """
    @param dev: a host network device.
    @return: the guest's view (rx_bytes, rx_packets, rx_errs, rx_drop,
        tx_bytes, tx_packets, tx_errs, tx_drop), or C{None} if unreadable.
    """
    base = os.path.join(sys_root, "class", "net", dev, "statistics")
    values = []
    try:
        for name in ("tx_bytes", "tx_packets", "tx_errors", "tx_dropped",
                     "rx_bytes", "rx_packets", "rx_errors", "rx_dropped"):
            with open(os.path.join(base, name)) as f:
                values.append(int(f.read().strip()))
    except (OSError, ValueError):
        return None
    return tuple(values)


def interface_stats(domain: Domain, path: str,
                    sys_root: str = "/sys") -> tuple[int, ...]:
    """
    @param path: the interface's host device (C{target dev}), its MAC or its alias.
    @return: the eight counters of C{virDomainInterfaceStatsStruct}.
    @raise InvalidArgError: no such interface.
    @raise OperationUnsupportedError: a user-mode (or socket) interface,
        for which QEMU keeps no counters the host can read.
    """
    for iface in domain.devices.interfaces:
        if path in (iface.target_dev, iface.mac, iface.alias):
            if not iface.target_dev:
                raise OperationUnsupportedError(
                    f"interface '{path}' of type '{iface.type}' has no host device; "
                    "QEMU keeps no traffic counters for it")
            counters = tap_counters(iface.target_dev, sys_root)
            if counters is None:
                raise OperationUnsupportedError(
                    f"cannot read the counters of host device '{iface.target_dev}'")
            return counters
    raise InvalidArgError(f"invalid path, '{path}' is not a known interface")


def ull(name: str, value: int) -> Param:
    """@return: an unsigned long long typed parameter."""
    return (name, (TP_ULLONG, max(0, int(value))))


def uint(name: str, value: int) -> Param:
    """@return: an unsigned int typed parameter."""
    return (name, (TP_UINT, max(0, int(value))))


def sint(name: str, value: int) -> Param:
    """@return: an int typed parameter."""
    return (name, (TP_INT, int(value)))


def string(name: str, value: str) -> Param:
    """@return: a string typed parameter."""
    return (name, (TP_STRING, value))


def block_params(domain: Domain, counters: Mapping[str, Mapping[str, int]],
                 capacities: Mapping[str, int]) -> list[Param]:
    """
    @return: the C{block} group: C{block.count}, then per disk C{name},
        C{path}, C{rd.reqs}, C{rd.bytes}, C{rd.times}, C{wr.*}, C{fl.*},
        C{capacity} (libvirt's names).
    """
    params = [uint("block.count", len(domain.devices.disks))]
    for i, disk in enumerate(domain.devices.disks):
        p = f"block.{i}."
        params.append(string(p + "name", disk.target_dev))
        if disk.source:
            params.append(string(p + "path", disk.source))
        c = counters.get(disk.alias or "", {})
        for ours, qemu in (("rd.reqs", "rd_operations"), ("rd.bytes", "rd_bytes"),
                           ("rd.times", "rd_total_time_ns"), ("wr.reqs", "wr_operations"),
                           ("wr.bytes", "wr_bytes"), ("wr.times", "wr_total_time_ns"),
                           ("fl.reqs", "flush_operations"), ("fl.times", "flush_total_time_ns")):
            if disk.alias in counters:
                params.append(ull(p + ours, c.get(qemu, 0)))
        if disk.alias in capacities:
            params.append(ull(p + "capacity", capacities[disk.alias or ""]))
    return params


def net_params(domain: Domain, sys_root: str = "/sys") -> list[Param]:
    """
    @return: the C{net} group: C{net.count}, then per interface C{name}
        (host device, or the alias for user-mode) and, for tap-backed ones,
        C{rx.bytes}, C{rx.pkts}, C{rx.errs}, C{rx.drop}, C{tx.*}.
    """
    params = [uint("net.count", len(domain.devices.interfaces))]
    for i, iface in enumerate(domain.devices.interfaces):
        p = f"net.{i}."
        params.append(string(p + "name", iface.target_dev or iface.alias or iface.mac))
        counters = tap_counters(iface.target_dev, sys_root) if iface.target_dev else None
        if counters is not None:
            for name, value in zip(("rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes",
                                    "tx.pkts", "tx.errs", "tx.drop"), counters, strict=True):
                params.append(ull(p + name, value))
    return params
