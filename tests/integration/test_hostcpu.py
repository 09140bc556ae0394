"""
The host CPU readers of L{qemud.daemon.hostcpu} on the real machine: the
CPUID instruction run in a child process agrees with the kernel's CPUID
device, and KVM answers the TSC probe.  Skipped where the machine cannot
(not x86_64, no C{/dev/cpu/0/cpuid}, no usable C{/dev/kvm}).
"""

from __future__ import annotations

import os
import platform

import pytest

from qemud.daemon import hostcpu
from qemud.qemu.cpumap import cpu_signature, decode_host, features_in, load_cpu_map

pytestmark = pytest.mark.timeout(60)


def _x86_64() -> None:
    if platform.machine() not in ("x86_64", "amd64"):
        pytest.skip(f"CPUID is read on x86_64 only, not {platform.machine()}")


class HostCPUIDTests:
    """CPUID from the instruction and from the kernel's device."""

    def test_instruction(self) -> None:
        """
        The child process's CPUID gives this machine's vendor string (as
        C{/proc/cpuinfo} names it) and its signature.
        """
        _x86_64()
        data = hostcpu.read_cpuid_instruction(timeout=20.0)
        assert data is not None
        leaf0 = data.cpuid[(0, 0)]
        vendor = b"".join(r.to_bytes(4, "little") for r in (leaf0[1], leaf0[3], leaf0[2]))
        fields: dict[str, str] = {}
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip(), value.strip())
        assert vendor.decode() == fields["vendor_id"]
        assert cpu_signature(data) == (int(fields["cpu family"]), int(fields["model"]),
                                       int(fields["stepping"]))

    def test_instruction_agrees_with_device(self) -> None:
        """
        Both sources read the same leaves and decode to the same model and
        features (they differ only in per-CPU APIC ids).
        """
        _x86_64()
        device = hostcpu.read_cpuid_device()
        if device is None:
            pytest.skip("/dev/cpu/0/cpuid cannot be read (needs root and the cpuid module)")
        instruction = hostcpu.read_cpuid_instruction(timeout=20.0)
        assert instruction is not None
        assert set(instruction.cpuid) == set(device.cpuid)
        cpu_map = load_cpu_map()
        if cpu_map is None:
            pytest.skip("libvirt's CPU map is not installed (apt install libvirt0)")
        assert features_in(instruction, cpu_map) == features_in(device, cpu_map)
        assert decode_host(instruction, cpu_map) == decode_host(device, cpu_map)


class KVMTests:
    """libvirt's TSC probe through KVM."""

    def test_tsc(self) -> None:
        """
        With a usable C{/dev/kvm}, the probe gives a positive frequency and
        a scaling answer, and leaves no descriptor open.
        """
        if not os.access("/dev/kvm", os.R_OK):
            pytest.skip("/dev/kvm is not usable here")
        before = set(os.listdir("/proc/self/fd"))
        info = hostcpu.kvm_tsc_info()
        assert info is not None
        frequency, scaling = info
        assert frequency > 0 and frequency % 1000 == 0
        assert isinstance(scaling, bool)
        assert set(os.listdir("/proc/self/fd")) <= before
