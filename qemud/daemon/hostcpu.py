# -*- test-case-name: tests.daemon.test_hostcpu -*-
"""
Read the host CPU's raw identification data, as libvirtd 9.0 does for
C{virsh capabilities} (C{virCPUx86GetHost}, C{virHostCPUGetMSR},
C{virHostCPUGetTscInfo}).

Every reader fails safe: it returns C{None} (and the capabilities then
omit what it would have given) instead of raising or crashing.

  - B{CPUID} (L{read_host_cpuid}): the kernel's C{/dev/cpu/0/cpuid} when it
    can be read (root, C{cpuid} module loaded): the kernel executes CPUID
    on CPU 0 for an offset of C{leaf | subleaf << 32}.  Otherwise the CPUID
    instruction itself, as libvirt (inline assembly) and py-cpuinfo (a few
    bytes of machine code in an executable C{mmap}, called through ctypes)
    do; that runs in a short-lived child Python process, so that a
    platform refusing executable memory, or any fault, costs the child and
    never the daemon.  Only on x86_64.  The leaves read are libvirt's
    (L{qemud.qemu.cpumap.collect_cpuid}).
  - B{MSRs} (L{read_msr}): C{/dev/cpu/0/msr}, else the KVM system ioctl
    C{KVM_GET_MSRS} (feature MSRs), like libvirt; used for
    C{IA32_ARCH_CAPABILITIES} when CPUID says it exists.
  - B{TSC} (L{kvm_tsc_info}): C{KVM_GET_TSC_KHZ} on a vCPU of a scratch VM
    and C{KVM_CHECK_EXTENSION(KVM_CAP_TSC_CONTROL)}, exactly libvirt's probe.

C{python -m qemud.daemon.hostcpu} prints this host's CPU data as the JSON
that C{tests/data/cpuid/*.json} fixtures hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

from qemud.qemu.cpumap import (
    CPUData,
    CPUMap,
    Registers,
    collect_cpuid,
    cpu_data_from_dict,
    cpu_data_to_dict,
    has_feature,
    load_cpu_map,
)

__all__ = ["kvm_tsc_info", "read_cpuid_device", "read_cpuid_instruction", "read_host_cpuid",
           "read_msr", "with_arch_capabilities"]

# <linux/kvm.h>: _IO(KVMIO=0xAE, nr) and _IOWR(KVMIO, 0x88, struct kvm_msrs).
_KVM_CREATE_VM = 0xAE01
_KVM_CHECK_EXTENSION = 0xAE03
_KVM_CREATE_VCPU = 0xAE41
_KVM_GET_TSC_KHZ = 0xAEA3
_KVM_GET_MSRS = 0xC008AE88
_KVM_CAP_TSC_CONTROL = 60
_ARCH_CAPABILITIES = 0x10A

_X86_64 = ("x86_64", "amd64", "AMD64")

#: CPUID as a function: C{void cpuid(uint32 eax, uint32 ecx, uint32 out[4])}
#: (System V AMD64: edi, esi, rdx).
_CPUID_CODE = bytes([
    0x53,                    # push rbx            (callee-saved, CPUID writes it)
    0x49, 0x89, 0xD0,        # mov  r8, rdx        (out)
    0x89, 0xF8,              # mov  eax, edi       (leaf)
    0x89, 0xF1,              # mov  ecx, esi       (subleaf)
    0x0F, 0xA2,              # cpuid
    0x41, 0x89, 0x00,        # mov  [r8], eax
    0x41, 0x89, 0x58, 0x04,  # mov  [r8+4], ebx
    0x41, 0x89, 0x48, 0x08,  # mov  [r8+8], ecx
    0x41, 0x89, 0x50, 0x0C,  # mov  [r8+12], edx
    0x5B,                    # pop  rbx
    0xC3,                    # ret
])


def read_cpuid_device(path: str = "/dev/cpu/0/cpuid") -> CPUData | None:
    """
    @param path: the kernel's CPUID device for one CPU.
    @return: libvirt's set of leaves read through it, or C{None} when it
        cannot be opened or read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        def call(leaf: int, sub: int) -> Registers:
            raw = os.pread(fd, 16, leaf | (sub << 32))
            if len(raw) != 16:
                raise OSError(f"short read from {path}")
            eax, ebx, ecx, edx = struct.unpack("<4I", raw)
            return eax, ebx, ecx, edx
        try:
            return collect_cpuid(call)
        except OSError:
            return None
    finally:
        os.close(fd)


def _instruction_child() -> None:
    """
    The child process: run CPUID from executable memory, print the data as
    JSON.  Any failure exits non-zero (or kills only this process).
    """
    import ctypes
    import mmap

    memory = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    memory.write(_CPUID_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    function = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                                ctypes.POINTER(ctypes.c_uint32))(address)
    out = (ctypes.c_uint32 * 4)()

    def call(leaf: int, sub: int) -> Registers:
        function(leaf, sub, out)
        return out[0], out[1], out[2], out[3]

    json.dump(cpu_data_to_dict(collect_cpuid(call)), sys.stdout)


def read_cpuid_instruction(timeout: float = 10.0, machine: str | None = None) -> CPUData | None:
    """
    Execute CPUID in a child Python process (see the module docstring).

    @param timeout: seconds the child may take.
    @param machine: the host's machine name (C{platform.machine()} when
        C{None}); only x86_64 is supported.
    @return: the data, or C{None} on another machine or any failure.
    """
    if (machine or platform.machine()) not in _X86_64:
        return None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            "from qemud.daemon.hostcpu import _instruction_child; _instruction_child()")
    try:
        done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    try:
        return cpu_data_from_dict(json.loads(done.stdout))
    except ValueError:
        return None


def read_host_cpuid(dev: str = "/dev", *, timeout: float = 10.0) -> CPUData | None:
    """
    @param dev: where device nodes are (C{/dev}).
    @return: the host's CPUID data from C{dev/cpu/0/cpuid}, else from the
        instruction in a child process, else C{None}.
    """
    data = read_cpuid_device(os.path.join(dev, "cpu", "0", "cpuid"))
    if data is not None:
        return data
    return read_cpuid_instruction(timeout)


@contextlib.contextmanager
def _fds() -> Iterator[list[int]]:
    opened: list[int] = []
    try:
        yield opened
    finally:
        for fd in reversed(opened):
            with contextlib.suppress(OSError):
                os.close(fd)


def read_msr(index: int, dev: str = "/dev") -> int | None:
    """
    libvirt's C{virHostCPUGetMSR}.

    @param index: the MSR (C{0x10a} for C{IA32_ARCH_CAPABILITIES}).
    @param dev: where device nodes are.
    @return: its value from C{dev/cpu/0/msr}, else from KVM's feature-MSR
        ioctl on C{dev/kvm}, else C{None}.
    """
    import fcntl

    with _fds() as fds:
        try:
            fds.append(os.open(os.path.join(dev, "cpu", "0", "msr"), os.O_RDONLY | os.O_CLOEXEC))
            raw = os.pread(fds[-1], 8, index)
            if len(raw) == 8:
                value: int = struct.unpack("<Q", raw)[0]
                return value
        except OSError:
            pass
    with _fds() as fds:
        try:
            fds.append(os.open(os.path.join(dev, "kvm"), os.O_RDONLY | os.O_CLOEXEC))
            # struct kvm_msrs { u32 nmsrs, pad; struct kvm_msr_entry { u32 index,
            # reserved; u64 data; } entries[1]; }
            buffer = bytearray(struct.pack("<IIIIQ", 1, 0, index, 0, 0))
            if fcntl.ioctl(fds[-1], _KVM_GET_MSRS, buffer, True) == 1:
                data: int = struct.unpack_from("<Q", buffer, 16)[0]
                return data
        except OSError:
            pass
    return None


def kvm_tsc_info(kvm: str = "/dev/kvm") -> tuple[int, bool] | None:
    """
    libvirt's C{virHostCPUGetTscInfo}.

    @param kvm: the KVM device.
    @return: (TSC frequency in Hz, whether KVM can scale the TSC), or
        C{None} when KVM is unavailable or refuses.
    """
    import fcntl

    with _fds() as fds:
        try:
            fds.append(os.open(kvm, os.O_RDONLY | os.O_CLOEXEC))
            system = fds[0]
            fds.append(fcntl.ioctl(system, _KVM_CREATE_VM, 0))
            fds.append(fcntl.ioctl(fds[1], _KVM_CREATE_VCPU, 0))
            khz = fcntl.ioctl(fds[2], _KVM_GET_TSC_KHZ, 0)
            scaling = fcntl.ioctl(system, _KVM_CHECK_EXTENSION, _KVM_CAP_TSC_CONTROL)
        except OSError:
            return None
    if khz <= 0:
        return None
    return khz * 1000, scaling > 0


def with_arch_capabilities(data: CPUData, cpu_map: CPUMap | None, dev: str = "/dev", *,
                           read: Callable[[int], int | None] | None = None) -> CPUData:
    """
    Add C{IA32_ARCH_CAPABILITIES} (MSR 0x10a) when the map's
    C{arch-capabilities} feature is in the CPUID data and the MSR can be
    read, as C{virCPUx86GetHost} does (best effort).

    @param read: reads an MSR by index (default: L{read_msr} below C{dev}).
    @return: C{data}, with the MSR when it applies.
    """
    if cpu_map is None or not has_feature(data, "arch-capabilities", cpu_map):
        return data
    value = read(_ARCH_CAPABILITIES) if read is not None else read_msr(_ARCH_CAPABILITIES, dev)
    if value is None:
        return data
    return CPUData(cpuid=data.cpuid, msr={**data.msr, _ARCH_CAPABILITIES: value})


def _describe(data: CPUData) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
                break
    return {"description": f"CPUID of one host ({model}, {platform.machine()}, "
                           f"kernel {platform.release()}), as libvirt's cpuidSet reads it",
            **cpu_data_to_dict(data)}


def format_fixture(document: dict[str, Any]) -> str:
    """
    @return: the JSON of a fixture with one CPUID or MSR item per line.
    """
    lines = ["{"]
    keys = list(document)
    for n, key in enumerate(keys):
        comma = "," if n < len(keys) - 1 else ""
        value = document[key]
        if isinstance(value, list):
            items = [f"  {json.dumps(item)}" for item in value]
            body = ",\n".join(items)
            lines.append(f"  {json.dumps(key)}: [\n{body}\n  ]{comma}" if items
                         else f"  {json.dumps(key)}: []{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines)


def main() -> int:
    """
    Print this host's CPU data (and C{IA32_ARCH_CAPABILITIES} when CPUID
    announces it) as a fixture.

    @return: the exit status.
    """
    data = read_host_cpuid()
    if data is None:
        print("cannot read CPUID on this host", file=sys.stderr)
        return 1
    data = with_arch_capabilities(data, load_cpu_map())
    print(format_fixture(_describe(data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
