"""
Real-QEMU acceptance of L{qemud.qemu.argv}: golden cases, rebuilt under the
caps probed from this machine's QEMU, must start (paused) and answer QMP on
the socket passed in as C{qmp_fd}.

Needs QEMU (apt package C{qemu-system-x86}) and C{qemu-img} (C{qemu-utils}).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import unittest
from dataclasses import replace
from typing import Any

import pytest

from qemud.domain.model import Disk, Domain
from qemud.errors import ConfigUnsupportedError
from qemud.qemu.argv import LaunchPaths, build_argv
from qemud.qemu.caps import CapsCache, QemuCaps, check_kvm_usable, find_emulator

pytestmark = pytest.mark.integration

HERE = os.path.dirname(os.path.abspath(__file__))
XML2ARGV = os.path.join(os.path.dirname(HERE), "data", "xml2argv")
CAPS_DIR = os.path.join(os.path.dirname(HERE), "data", "caps")
QEMU = shutil.which("qemu-system-x86_64")
QEMU_IMG = shutil.which("qemu-img")
QMP_FD = 3
START_TIMEOUT = 10.0

_CACHE = CapsCache()


def qtree_pci(text: str) -> dict[str, tuple[str, int, int]]:
    """
    @param text: QEMU's C{info qtree}.
    @return: device id -> (bus name, slot, function) of every PCI device
        with an id.
    """
    out: dict[str, tuple[str, int, int]] = {}
    buses: list[tuple[int, str]] = []  # (indent, name), innermost last
    device: tuple[int, str] | None = None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        text_ = line.strip()
        while buses and buses[-1][0] >= indent:
            buses.pop()
        if text_.startswith("bus: "):
            buses.append((indent, text_[5:]))
        elif text_.startswith("dev: ") and ' id "' in text_:
            device = (indent, text_.split(' id "', 1)[1].rstrip('"'))
        elif text_.startswith("addr = ") and device is not None and indent > device[0] and buses:
            slot, _, function = text_[7:].partition(".")
            out[device[1]] = (buses[-1][1], int(slot, 16), int(function or "0", 16))
            device = None
    return out


def real_caps(binary: str) -> QemuCaps:
    """
    @param binary: an installed emulator.
    @return: its probed caps (cached for the whole module).
    """
    return _CACHE.get(binary)


def multiboot_kernel(path: str) -> None:
    """
    Write a tiny Multiboot image (a header and a C{hlt} loop) that QEMU's
    C{-kernel} loader accepts.

    @param path: where to write it.
    """
    magic, flags = 0x1BADB002, 0x00010000
    checksum = (-(magic + flags)) & 0xFFFFFFFF
    load = 0x100000
    header = struct.pack("<8I", magic, flags, checksum, load, load, 0, 0, load + 32)
    with open(path, "wb") as f:
        f.write(header + b"\xf4\xeb\xfd" + b"\x00" * 29)


class QemuArgvTests(unittest.TestCase):
    """Golden argv, built under the real caps, starts a real QEMU."""

    def setUp(self) -> None:
        if QEMU is None:
            self.skipTest("qemu-system-x86_64 not installed (apt package qemu-system-x86)")
        if QEMU_IMG is None:
            self.skipTest("qemu-img not installed (apt package qemu-utils)")
        self.tmp = tempfile.mkdtemp(prefix="qemud-argv-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def parse_case(self, case: str) -> Domain:
        """
        @param case: a golden case name.
        @return: its domain.
        """
        try:
            from qemud.domain.xml import parse_domain_xml
        except ImportError as err:
            self.skipTest(f"qemud.domain.xml.parse_domain_xml not importable: {err}")
        with open(os.path.join(XML2ARGV, case + ".xml")) as f:
            return parse_domain_xml(f.read())

    def localise(self, dom: Domain) -> Domain:
        """
        Point every disk, kernel and initrd at small files in the temp dir.

        @param dom: a golden domain.
        @return: the same domain with local paths and the installed emulator.
        """
        assert QEMU_IMG is not None
        disks: list[Disk] = []
        for i, disk in enumerate(dom.devices.disks):
            if disk.source is None:
                disks.append(disk)
                continue
            fmt = disk.driver_type or "raw"
            image = os.path.join(self.tmp, f"disk{i}.{fmt}")
            subprocess.run([QEMU_IMG, "create", "-q", "-f", fmt, image,
                            "1440K" if disk.device == "floppy" else "16M"],
                           check=True, timeout=30)
            disks.append(replace(disk, type="file", source=image))
        os_ = dom.os
        if os_.kernel is not None:
            kernel = os.path.join(self.tmp, "kernel")
            multiboot_kernel(kernel)
            os_ = replace(os_, kernel=kernel)
        if os_.initrd is not None:
            initrd = os.path.join(self.tmp, "initrd")
            with open(initrd, "wb") as f:
                f.write(b"\0" * 512)
            os_ = replace(os_, initrd=initrd)
        ifaces = []
        for iface in dom.devices.interfaces:
            if iface.type == "server":
                probe = socket.socket()
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
                probe.close()
                iface = replace(iface, source_address="127.0.0.1", source_port=port)
            ifaces.append(iface)
        emulator = dom.devices.emulator
        if emulator is not None and not os.path.exists(emulator):
            emulator = None
        devices = replace(dom.devices, disks=tuple(disks), interfaces=tuple(ifaces),
                          emulator=emulator)
        return replace(dom, os=os_, devices=devices)

    def run_paused(self, dom: Domain) -> dict[str, Any]:
        """
        Start QEMU for C{dom} with its QMP socket as fd 3, ask C{query-status},
        then C{quit}.

        @param dom: the domain.
        @return: the C{query-status} reply.
        """
        binary = find_emulator(dom)
        caps = real_caps(binary)
        home = os.path.join(self.tmp, "home")
        os.makedirs(home, exist_ok=True)
        launch = build_argv(dom, caps, LaunchPaths(qmp_fd=QMP_FD, domain_dir=home))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.path.join(self.tmp, "qmp.sock")
        listener.bind(path)
        listener.listen(1)
        self.addCleanup(listener.close)
        log = open(os.path.join(self.tmp, "qemu.log"), "wb")
        self.addCleanup(log.close)
        # the child gets the listening socket as fd 3, whatever its number here
        fd = listener.fileno()

        def preexec() -> None:
            os.dup2(fd, QMP_FD)

        proc = subprocess.Popen(launch.argv, env=launch.env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, pass_fds=(fd, QMP_FD),
                                preexec_fn=preexec if fd != QMP_FD else None)
        self.addCleanup(self.reap, proc)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.settimeout(START_TIMEOUT)
        try:
            client.connect(path)
            reader = client.makefile("rb")
            greeting = self.read_reply(reader, proc)
            self.assertIn("QMP", greeting)
            self.execute(client, reader, proc, "qmp_capabilities")
            status: dict[str, Any] = self.execute(client, reader, proc, "query-status")
            self.pci_buses = self.execute(client, reader, proc, "query-pci")
            self.qtree = self.execute(client, reader, proc, "human-monitor-command",
                                      {"command-line": "info qtree"})
            self.execute(client, reader, proc, "quit")
        except (OSError, AssertionError) as err:
            raise AssertionError(f"{err}; QEMU said: {self.log_text()}\n"
                                 f"argv: {launch.argv}") from err
        self.assertEqual(proc.wait(timeout=START_TIMEOUT), 0, self.log_text())
        return status

    def log_text(self) -> str:
        """
        @return: what QEMU wrote so far.
        """
        with open(os.path.join(self.tmp, "qemu.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def read_reply(self, reader: Any, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        """
        @param reader: the QMP stream.
        @param proc: the QEMU process.
        @return: the next non-event message.
        """
        while True:
            line = reader.readline()
            if not line:
                raise AssertionError(f"QMP closed (QEMU rc={proc.poll()})")
            message: dict[str, Any] = json.loads(line)
            if "event" not in message:
                return message

    def execute(self, client: socket.socket, reader: Any, proc: subprocess.Popen[bytes],
                command: str, arguments: dict[str, Any] | None = None) -> Any:
        """
        @param client: the QMP socket.
        @param reader: its stream.
        @param proc: the QEMU process.
        @param command: a QMP command.
        @param arguments: its arguments, if any.
        @return: its C{return} value.
        """
        message: dict[str, Any] = {"execute": command}
        if arguments is not None:
            message["arguments"] = arguments
        client.sendall(json.dumps(message).encode() + b"\n")
        reply = self.read_reply(reader, proc)
        self.assertIn("return", reply, f"{command}: {reply}")
        return reply["return"]

    def reap(self, proc: subprocess.Popen[bytes]) -> None:
        """
        Kill QEMU by PID if it is still running, and wait for it.

        @param proc: the process.
        """
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=START_TIMEOUT)

    def check_case(self, case: str) -> None:
        """
        @param case: a golden case: it must start paused under the real caps.
        """
        dom = self.localise(self.parse_case(case))
        status = self.run_paused(dom)
        self.assertEqual((status["status"], status["running"]), ("prelaunch", False))

    def test_pci_addresses(self) -> None:
        """
        Devices at given and assigned PCI addresses (a multifunction slot, a
        SCSI controller at a slot of its own; q35's root ports packed in a
        multifunction slot of C{pcie.0}, a device behind each) start paused,
        and QEMU reports every device with an C{addr} on exactly that bus,
        slot and function (C{query-pci} for the root bus, whose numbering
        of the buses behind root ports waits for the firmware; C{info
        qtree} for all).
        """
        for case in ("pci-addresses", "pci-q35", "pci-q35-root-ports"):
            with self.subTest(case=case):
                dom = self.localise(self.parse_case(case))
                self.check_case(case)
                assert QEMU is not None
                launch = build_argv(dom, real_caps(QEMU), LaunchPaths(qmp_fd=QMP_FD,
                                                                      domain_dir=self.tmp))
                wanted: dict[str, tuple[str, int, int]] = {}
                for i, arg in enumerate(launch.argv[:-1]):
                    props = dict(p.split("=", 1) for p in launch.argv[i + 1].split(",")
                                 if "=" in p)
                    if arg == "-device" and "addr" in props:
                        slot, _, function = props["addr"].partition(".")
                        wanted[props["id"]] = (props["bus"], int(slot, 16),
                                               int(function or "0", 16))
                found = {dev["qdev_id"]: (dev["slot"], dev["function"])
                         for bus in self.pci_buses for dev in bus["devices"]
                         if dev.get("qdev_id")}
                self.assertGreaterEqual(len(wanted), 5)
                on_root = {k: v[1:] for k, v in wanted.items() if v[0] in ("pci.0", "pcie.0")}
                self.assertEqual({k: found.get(k) for k in on_root}, on_root)
                tree = qtree_pci(self.qtree)
                self.assertEqual({k: tree.get(k) for k in wanted}, wanted)
                if case == "pci-q35":
                    self.assertEqual(len(wanted) - len(on_root), 4)

    def test_demo1_isapc(self) -> None:
        """demo1 (isapc, IDE disk, ne2k_isa user NIC, fixed VNC) starts paused."""
        self.check_case("demo1")

    def test_disk_cdrom(self) -> None:
        """IDE disk plus full and empty cdroms start paused."""
        self.check_case("disk-cdrom")

    def test_boot_floppy(self) -> None:
        """A floppy booted via isa-fdc.bootindexA starts paused."""
        self.check_case("boot-floppy")

    def test_disk_floppy_q35(self) -> None:
        """A floppy on q35's explicit isa-fdc starts paused."""
        self.check_case("disk-floppy-q35")

    def test_disk_sata_q35(self) -> None:
        """SATA disk and empty cdrom on q35's AHCI start paused."""
        self.check_case("disk-sata-q35")

    def test_disk_scsi_lsi(self) -> None:
        """SCSI disk and cdrom on an lsi controller start paused."""
        self.check_case("disk-scsi-lsi")

    def test_disk_virtio_usb_cache(self) -> None:
        """virtio-blk with cache modes, share-rw and serial starts paused."""
        self.check_case("disk-cache-serial")

    def test_disk_usb(self) -> None:
        """A usb-storage disk (with its USB controller) starts paused."""
        self.check_case("disk-usb")

    def test_nics_and_serials(self) -> None:
        """Three NIC models and null/udp/telnet serials plus a virtio console start paused."""
        self.check_case("net-virtio-e1000")
        self.check_case("serial-misc")

    def test_graphics_video(self) -> None:
        """VNC with password/keymap, autoport with cirrus, IPv6 with qxl start paused."""
        for case in ("graphics-vnc-password", "graphics-vnc-autoport", "graphics-vnc-ipv6"):
            self.check_case(case)

    def test_kernel_boot(self) -> None:
        """Direct kernel boot with initrd and command line starts paused."""
        self.check_case("kernel-boot")

    def test_cpu_clock_lifecycle(self) -> None:
        """Custom CPU, host-model under TCG, localtime clock, -action reboot=shutdown, vcpus."""
        for case in ("cpu-custom-features", "cpu-host-model-tcg", "lifecycle-destroy",
                     "vcpu-current", "memory-units", "watchdog-ib700-none",
                     "rng-balloon-none", "input-virtio-usb", "name-comma", "virtio-rng-default",
                     "watchdog", "input-usbtablet", "clock-localtime", "net-server"):
            self.check_case(case)

    def test_kvm_qboot(self) -> None:
        """A type='kvm' guest with the qboot ROM starts paused under KVM."""
        if check_kvm_usable() is not None:
            self.skipTest(f"KVM not usable here: {check_kvm_usable()}")
        self.check_case("loader-qboot-kvm")

    def test_kvm_refused_when_unusable(self) -> None:
        """Under caps whose KVM is unusable, a kvm domain is refused, not run on TCG."""
        dom = self.localise(self.parse_case("loader-qboot-kvm"))
        caps = replace(real_caps(find_emulator(dom)), kvm_problem="KVM is not available (test)")
        with self.assertRaises(ConfigUnsupportedError):
            build_argv(dom, caps, LaunchPaths(qmp_fd=QMP_FD, domain_dir=self.tmp))


class RealProbeTests(unittest.TestCase):
    """Probing the installed QEMU agrees with the recorded fixture."""

    def test_probe_matches_fixture(self) -> None:
        """
        The real probe of qemu-system-x86_64 finds the recorded machines,
        aliases, accelerators and CPU models, quickly, and caches by mtime.
        """
        if QEMU is None:
            self.skipTest("qemu-system-x86_64 not installed (apt package qemu-system-x86)")
        cache = CapsCache()
        started = time.monotonic()
        caps = cache.get(QEMU)
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 5.0)
        self.assertIs(cache.get(QEMU), caps)
        with open(os.path.join(CAPS_DIR, "qemu-7.2-x86_64.json")) as f:
            recorded = QemuCaps.from_json(f.read())
        if caps.version[:2] != recorded.version[:2]:
            self.skipTest(f"installed QEMU {caps.version} is not the recorded 7.2")
        self.assertEqual(caps.machine_aliases, recorded.machine_aliases)
        self.assertEqual(caps.default_machine, recorded.default_machine)
        self.assertEqual(set(caps.machines), set(recorded.machines))
        self.assertEqual(caps.accelerators, recorded.accelerators)
        self.assertEqual(caps.cpu_models, recorded.cpu_models)
        self.assertEqual(caps.canonical_machine("q35"), "pc-q35-7.2")
