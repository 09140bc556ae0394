"""
Tests for L{qemud.daemon.hostcpu}: the CPUID, MSR and KVM TSC readers fail
safe (C{None}, never an exception) and read what libvirt reads.  The
kernel device, the child process and the ioctls are faked; the real
hardware is exercised by C{tests/integration/test_host_capabilities.py}.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from typing import Any
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon import hostcpu
from qemud.qemu.cpumap import CPUData, cpu_data_to_dict, load_cpu_map
from tests.cpudata import load_fixture
from tests.qemu.test_cpumap import host, model_xml, write_map


class CPUIDDeviceTests(SynchronousTestCase):
    """L{hostcpu.read_cpuid_device}."""

    def test_reads_leaf_and_subleaf_offsets(self) -> None:
        """
        Each CPUID is a 16-byte read at offset C{leaf | subleaf << 32},
        decoded as little-endian eax, ebx, ecx, edx.
        """
        fixture = load_fixture()
        path = self.mktemp()
        with open(path, "wb"):
            pass
        offsets: list[int] = []

        def pread(fd: int, size: int, offset: int) -> bytes:
            offsets.append(offset)
            regs = fixture.cpuid.get((offset & 0xFFFFFFFF, offset >> 32), (0, 0, 0, 0))
            return struct.pack("<4I", *regs)

        with mock.patch.object(hostcpu.os, "pread", pread):
            data = hostcpu.read_cpuid_device(path)
        assert data is not None
        self.assertEqual(data.cpuid, fixture.cpuid)
        self.assertIn(7 | 1 << 32, offsets)
        self.assertIn(0x80000000, offsets)

    def test_unreadable(self) -> None:
        """A missing device, a directory or a short read give C{None}."""
        self.assertIsNone(hostcpu.read_cpuid_device(os.path.join(self.mktemp(), "cpuid")))
        directory = self.mktemp()
        os.mkdir(directory)
        self.assertIsNone(hostcpu.read_cpuid_device(directory))
        empty = self.mktemp()
        with open(empty, "wb"):
            pass
        self.assertIsNone(hostcpu.read_cpuid_device(empty))


def completed(returncode: int, stdout: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.CompletedProcess(["python"], returncode, stdout, b"")


class CPUIDInstructionTests(SynchronousTestCase):
    """L{hostcpu.read_cpuid_instruction} and L{hostcpu.read_host_cpuid}."""

    def test_other_machine(self) -> None:
        """Off x86_64 no child process is started and there is no data."""
        with mock.patch.object(hostcpu.subprocess, "run") as run:
            self.assertIsNone(hostcpu.read_cpuid_instruction(machine="aarch64"))
        run.assert_not_called()

    def test_child_output(self) -> None:
        """
        The child is a separate, isolated Python with a timeout; its JSON
        is the data.
        """
        fixture = load_fixture()
        payload = json.dumps(cpu_data_to_dict(fixture)).encode()
        with mock.patch.object(hostcpu.subprocess, "run",
                               return_value=completed(0, payload)) as run:
            self.assertEqual(hostcpu.read_cpuid_instruction(3.0, machine="x86_64"), fixture)
        argv = run.call_args.args[0]
        self.assertEqual(argv[1:3], ["-I", "-c"])
        self.assertIn("_instruction_child", argv[3])
        self.assertEqual(run.call_args.kwargs["timeout"], 3.0)

    def test_child_failures(self) -> None:
        """
        A child that dies (e.g. by a signal), prints garbage, times out or
        cannot start gives C{None}.
        """
        outcomes: list[Any] = [
            completed(-11, b""), completed(0, b"not json"), completed(0, b'{"cpuid": [1]}'),
            subprocess.TimeoutExpired("python", 10), OSError("no python"),
        ]
        for outcome in outcomes:
            kwargs = ({"side_effect": outcome} if isinstance(outcome, BaseException)
                      else {"return_value": outcome})
            with self.subTest(repr(outcome)), mock.patch.object(hostcpu.subprocess, "run",
                                                                **kwargs):
                self.assertIsNone(hostcpu.read_cpuid_instruction(machine="x86_64"))

    def test_device_first(self) -> None:
        """
        The kernel device is used when it can be read; the instruction only
        otherwise.
        """
        data = CPUData(cpuid={(0, 0): (1, 2, 3, 4)}, msr={})
        with mock.patch.object(hostcpu, "read_cpuid_device", return_value=data) as device, \
                mock.patch.object(hostcpu, "read_cpuid_instruction") as instruction:
            self.assertIs(hostcpu.read_host_cpuid("/fake/dev"), data)
        device.assert_called_once_with("/fake/dev/cpu/0/cpuid")
        instruction.assert_not_called()
        with mock.patch.object(hostcpu, "read_cpuid_device", return_value=None), \
                mock.patch.object(hostcpu, "read_cpuid_instruction",
                                  return_value=data) as instruction:
            self.assertIs(hostcpu.read_host_cpuid("/fake/dev", timeout=2.0), data)
        instruction.assert_called_once_with(2.0)

    def test_machine_code(self) -> None:
        """
        The CPUID function saves and restores rbx, executes CPUID and
        returns (the encoding is fixed: the child runs it as is).
        """
        code = hostcpu._CPUID_CODE
        self.assertEqual(code[0], 0x53)
        self.assertEqual(code[-2:], bytes([0x5B, 0xC3]))
        self.assertIn(bytes([0x0F, 0xA2]), code)


class MSRTests(SynchronousTestCase):
    """L{hostcpu.read_msr} and L{hostcpu.with_arch_capabilities}."""

    def setUp(self) -> None:
        self.dev = self.mktemp()
        os.makedirs(os.path.join(self.dev, "cpu", "0"))

    def write_msr(self, index: int, value: int) -> None:
        with open(os.path.join(self.dev, "cpu", "0", "msr"), "wb") as f:
            f.seek(index)
            f.write(struct.pack("<Q", value))

    def test_msr_device(self) -> None:
        """The MSR device is read at the MSR's index (8 bytes, little-endian)."""
        self.write_msr(0x10A, 0x1_0000_002B)
        self.assertEqual(hostcpu.read_msr(0x10A, self.dev), 0x1_0000_002B)

    def test_kvm_fallback(self) -> None:
        """
        Without the MSR device KVM's C{KVM_GET_MSRS} answers; a device that
        is not KVM, or no device at all, gives C{None}.
        """
        self.assertIsNone(hostcpu.read_msr(0x10A, self.dev))
        with open(os.path.join(self.dev, "kvm"), "w"):
            pass
        self.assertIsNone(hostcpu.read_msr(0x10A, self.dev))

        def ioctl(fd: int, request: int, buffer: bytearray, mutate: bool) -> int:
            self.assertEqual(request, 0xC008AE88)
            nmsrs, _, index, _, _ = struct.unpack("<IIIIQ", buffer)
            self.assertEqual((nmsrs, index), (1, 0x10A))
            struct.pack_into("<Q", buffer, 16, 0x4C)
            return 1

        with mock.patch("fcntl.ioctl", ioctl):
            self.assertEqual(hostcpu.read_msr(0x10A, self.dev), 0x4C)

    def test_with_arch_capabilities(self) -> None:
        """
        The MSR is added only when the map's C{arch-capabilities} is in the
        CPUID data and the MSR can be read.
        """
        directory = write_map([model_xml("m", ["fpu"])])
        self.addCleanup(shutil.rmtree, directory)
        cpu_map = load_cpu_map(directory)
        with_feature = host("Intel", ["fpu", "arch-capabilities"])
        without = host("Intel", ["fpu"])
        self.assertIs(hostcpu.with_arch_capabilities(with_feature, cpu_map, self.dev),
                      with_feature)
        self.write_msr(0x10A, 0x20)
        self.assertEqual(hostcpu.with_arch_capabilities(with_feature, cpu_map, self.dev).msr,
                         {0x10A: 0x20})
        self.assertIs(hostcpu.with_arch_capabilities(without, cpu_map, self.dev), without)
        self.assertIs(hostcpu.with_arch_capabilities(with_feature, None, self.dev),
                      with_feature)


class TSCTests(SynchronousTestCase):
    """L{hostcpu.kvm_tsc_info}: libvirt's KVM probe."""

    def test_probe(self) -> None:
        """
        A scratch VM and vCPU are created, the vCPU's TSC kHz and the
        TSC-control capability are asked, and every descriptor is closed.
        """
        kvm = self.mktemp()
        with open(kvm, "w"):
            pass
        calls: list[tuple[int, int]] = []
        opened: list[int] = []
        real_close = os.close

        def ioctl(fd: int, request: int, arg: int = 0) -> int:
            calls.append((request, arg))
            if request in (0xAE01, 0xAE41):
                new = os.open(kvm, os.O_RDONLY)
                opened.append(new)
                return new
            return {0xAEA3: 2596146, 0xAE03: 1}[request]

        closed: list[int] = []

        def close(fd: int) -> None:
            closed.append(fd)
            real_close(fd)

        with mock.patch("fcntl.ioctl", ioctl), mock.patch.object(hostcpu.os, "close", close):
            self.assertEqual(hostcpu.kvm_tsc_info(kvm), (2596146000, True))
        self.assertEqual([r for r, _ in calls], [0xAE01, 0xAE41, 0xAEA3, 0xAE03])
        self.assertEqual(calls[-1], (0xAE03, 60))
        self.assertEqual(len(closed), 3)
        self.assertTrue(set(opened) <= set(closed))

    def test_no_kvm(self) -> None:
        """No device, a device that is not KVM, or a zero frequency: C{None}."""
        self.assertIsNone(hostcpu.kvm_tsc_info(os.path.join(self.mktemp(), "kvm")))
        kvm = self.mktemp()
        with open(kvm, "w"):
            pass
        self.assertIsNone(hostcpu.kvm_tsc_info(kvm))

        def ioctl(fd: int, request: int, arg: int = 0) -> int:
            if request in (0xAE01, 0xAE41):  # a VM, a vCPU: new descriptors
                return os.open(kvm, os.O_RDONLY)
            return 0

        with mock.patch("fcntl.ioctl", ioctl):
            self.assertIsNone(hostcpu.kvm_tsc_info(kvm))


class FixtureFormatTests(SynchronousTestCase):
    """L{hostcpu.format_fixture}: the recorded fixtures' layout."""

    def test_round_trip(self) -> None:
        """One item per line, and it is JSON that reads back unchanged."""
        document = {"description": "x", **cpu_data_to_dict(load_fixture())}
        text = hostcpu.format_fixture(document)
        self.assertEqual(json.loads(text), document)
        self.assertEqual(len(text.splitlines()), len(document["cpuid"]) + 6)
        self.assertEqual(json.loads(hostcpu.format_fixture({"cpuid": [], "msr": []})),
                         {"cpuid": [], "msr": []})
