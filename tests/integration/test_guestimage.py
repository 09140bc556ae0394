"""
The tiny Linux test guest boots under QEMU (TCG) and behaves as the other
integration tests expect: device lines, the ready marker, a ticking counter,
ACPI power-off, reboot and hot-plug reporting.

These boot the image directly with C{qemu-system-x86_64} (no qemud), using
the command line verified in C{shared/docs/test-guest.md}.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.guestimage import GUEST_CMDLINE, GuestImage, builder_hash, ensure_image
from tests.integration.guests import (
    ProcessReaper,
    SimpleQMP,
    direct_boot_argv,
    linux_guest_domain_xml,
    noos_guest_domain_xml,
    read_serial,
    ticks,
    wait_for_serial,
)

pytestmark = pytest.mark.integration

BOOT_TIMEOUT = 60.0


def _lines(text: str, prefix: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]


@pytest.fixture
def workdir() -> Iterator[str]:
    """A short temporary folder (UNIX socket paths must stay short)."""
    path = tempfile.mkdtemp(prefix="qg-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _boot(reaper: ProcessReaper, image: GuestImage, workdir: str, *,
          devices: bool, no_reboot: bool = True) -> tuple[subprocess.Popen[bytes], str, str]:
    serial = os.path.join(workdir, "serial.log")
    qmp = os.path.join(workdir, "qmp.sock")
    extra: tuple[str, ...] = ()
    if devices:
        disk = os.path.join(workdir, "d1.img")
        with open(disk, "wb") as f:
            f.truncate(16 << 20)
        extra = (
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-blockdev", f"driver=file,filename={disk},node-name=d1",
            "-device", "virtio-blk-pci,drive=d1",
        )
    argv = direct_boot_argv(image, serial_log=serial, qmp_socket=qmp,
                            no_reboot=no_reboot, extra_args=extra)
    proc = reaper.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
    return proc, serial, qmp


def _power_down(qmp: SimpleQMP, serial: str, after: int) -> int:
    qmp.execute("system_powerdown")
    try:
        return wait_for_serial(serial, "GUEST-POWEROFF", 1.0, after)
    except TimeoutError:
        # A press that arrives while the guest is still busy can be lost.
        qmp.execute("system_powerdown")
        return wait_for_serial(serial, "GUEST-POWEROFF", 20.0, after)


class GuestImageBuildTests:
    """The builder and its cache."""

    def test_files(self, linux_guest_image: GuestImage) -> None:
        """
        The image holds an ELF vmlinux, a bzImage and a gzip'd initramfs, and
        its cache entry is keyed by kernel package, version and builder hash.
        """
        with open(linux_guest_image.vmlinux, "rb") as f:
            assert f.read(4) == b"\x7fELF"
        with open(linux_guest_image.vmlinuz, "rb") as f:
            assert f.read(0x206)[0x202:] == b"HdrS"
        with open(linux_guest_image.initramfs, "rb") as f:
            assert f.read(2) == b"\x1f\x8b"
        assert os.path.getsize(linux_guest_image.initramfs) < 4 << 20
        name = os.path.basename(linux_guest_image.directory)
        assert name == (f"{linux_guest_image.kernel_package}_"
                        f"{linux_guest_image.kernel_version}_{builder_hash()}")

    def test_cache_reused(self, linux_guest_image: GuestImage) -> None:
        """
        Asking again returns the same files without rebuilding.
        """
        before = os.stat(linux_guest_image.initramfs).st_mtime_ns
        again = ensure_image(os.path.dirname(linux_guest_image.directory))
        assert again.build_seconds is None
        assert again.initramfs == linux_guest_image.initramfs
        assert os.stat(again.initramfs).st_mtime_ns == before


class DomainXMLTests:
    """The libvirt XML helpers."""

    def test_linux_guest_xml(self, linux_guest_image: GuestImage) -> None:
        """
        The Linux guest XML is a TCG C{pc} guest with ACPI, direct kernel
        boot, a file serial console and restart on reboot.
        """
        text = linux_guest_domain_xml("g<1>", linux_guest_image, serial_log="/tmp/a'b.log",
                                      memory_mib=96,
                                      extra_devices="    <watchdog model='i6300esb'/>\n")
        root = ET.fromstring(text)
        assert root.get("type") == "qemu"
        assert root.findtext("name") == "g<1>"
        assert root.find("memory").text == "96"  # type: ignore[union-attr]
        assert root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
        assert root.find("os/type").get("machine") == "pc"  # type: ignore[union-attr]
        assert root.findtext("os/kernel") == linux_guest_image.vmlinux
        assert root.findtext("os/initrd") == linux_guest_image.initramfs
        assert root.findtext("os/cmdline") == GUEST_CMDLINE
        assert root.find("features/acpi") is not None
        assert root.findtext("on_reboot") == "restart"
        serial = root.find("devices/serial")
        assert serial is not None and serial.get("type") == "file"
        assert serial.find("source").get("path") == "/tmp/a'b.log"  # type: ignore[union-attr]
        assert root.find("devices/watchdog") is not None

    def test_noos_guest_xml(self) -> None:
        """
        The no-OS guest XML is a KVM guest booting qboot, without disks.
        """
        root = ET.fromstring(noos_guest_domain_xml("n1", memory_mib=32))
        assert root.get("type") == "kvm"
        assert root.findtext("name") == "n1"
        assert root.findtext("memory") == "32"
        loader = root.find("os/loader")
        assert loader is not None and loader.get("type") == "rom"
        assert loader.text == "/usr/share/qemu/qboot.rom"
        assert root.find("devices/disk") is None


class WaitForSerialTests:
    """L{wait_for_serial} on plain files."""

    def test_offsets(self, workdir: str) -> None:
        """
        It finds whole lines only, returns the offset after the line, and
        finds the next occurrence when given that offset.
        """
        path = os.path.join(workdir, "s.log")
        with open(path, "wb") as f:
            f.write(b"boot\r\nGUEST-READY\r\n# \x1b[6nTICK 1\r\nGUEST-READY\r\nGUEST-REA")
        first = wait_for_serial(path, "GUEST-READY", 1)
        assert first == len(b"boot\r\nGUEST-READY\r\n")
        assert wait_for_serial(path, "TICK 1", 1, first) == first + len(b"# \x1b[6nTICK 1\r\n")
        second = wait_for_serial(path, "GUEST-READY", 1, first)
        with pytest.raises(TimeoutError):
            wait_for_serial(path, "GUEST-READY", 0.2, second)
        assert ticks(path) == [1]

    def test_missing_file(self, workdir: str) -> None:
        """
        A log that never appears is a bounded wait ending in TimeoutError.
        """
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            wait_for_serial(os.path.join(workdir, "none.log"), "X", 0.3)
        assert time.monotonic() - t0 < 5


class GuestBootTests:
    """Booting the image under QEMU/TCG."""

    def test_boot_devices_ticks_poweroff(self, linux_guest_image: GuestImage,
                                         qemu_binary: str, reaper: ProcessReaper,
                                         workdir: str) -> None:
        """
        With one virtio NIC and one virtio disk the guest reports
        C{net: eth0 lo} and C{block: vda}, prints GUEST-READY, keeps
        counting TICKs, and on C{system_powerdown} prints GUEST-POWEROFF and
        QEMU exits.
        """
        t0 = time.monotonic()
        proc, serial, qmp_path = _boot(reaper, linux_guest_image, workdir, devices=True)
        ready = wait_for_serial(serial, "GUEST-READY", BOOT_TIMEOUT)
        boot_seconds = time.monotonic() - t0
        print(f"\nexec -> GUEST-READY (TCG, vmlinux, virtio NIC + disk): {boot_seconds:.2f} s")
        text = read_serial(serial)
        assert _lines(text, "net:") == ["net: eth0 lo"]
        assert _lines(text, "block:") == ["block: vda"]

        end = wait_for_serial(serial, "TICK 2", 20, ready)
        first = ticks(serial, ready)
        wait_for_serial(serial, f"TICK {first[-1] + 1}", 20, end)
        later = ticks(serial, ready)
        assert later[-1] > first[-1]
        assert later == list(range(1, len(later) + 1))

        qmp = SimpleQMP(qmp_path)
        try:
            t1 = time.monotonic()
            _power_down(qmp, serial, ready)
            rc = proc.wait(timeout=30)
            print(f"system_powerdown -> QEMU exit: {time.monotonic() - t1:.2f} s")
        finally:
            qmp.close()
        assert rc == 0

    def test_boot_without_devices(self, linux_guest_image: GuestImage, qemu_binary: str,
                                  reaper: ProcessReaper, workdir: str) -> None:
        """
        Without devices the guest reports only C{lo} and no block device.
        """
        proc, serial, qmp_path = _boot(reaper, linux_guest_image, workdir, devices=False)
        ready = wait_for_serial(serial, "GUEST-READY", BOOT_TIMEOUT)
        text = read_serial(serial)
        assert _lines(text, "net:") == ["net: lo"]
        assert _lines(text, "block:") == ["block:"]
        qmp = SimpleQMP(qmp_path)
        try:
            _power_down(qmp, serial, ready)
        finally:
            qmp.close()
        assert proc.wait(timeout=30) == 0

    def test_reset_reboots(self, linux_guest_image: GuestImage, qemu_binary: str,
                           reaper: ProcessReaper, workdir: str) -> None:
        """
        After C{system_reset} the kernel boots again and prints GUEST-READY
        a second time, with the counter starting over.
        """
        proc, serial, qmp_path = _boot(reaper, linux_guest_image, workdir, devices=False,
                                       no_reboot=False)
        ready = wait_for_serial(serial, "GUEST-READY", BOOT_TIMEOUT)
        wait_for_serial(serial, "TICK 1", 20, ready)
        qmp = SimpleQMP(qmp_path)
        try:
            mark = os.path.getsize(serial)
            qmp.execute("system_reset")
            again = wait_for_serial(serial, "GUEST-READY", BOOT_TIMEOUT, mark)
            wait_for_serial(serial, "TICK 1", 20, again)
            assert proc.poll() is None
            _power_down(qmp, serial, again)
        finally:
            qmp.close()
        # Without -no-reboot the power-off still ends QEMU.
        assert proc.wait(timeout=30) == 0

    def test_hotplug_reported(self, linux_guest_image: GuestImage, qemu_binary: str,
                              reaper: ProcessReaper, workdir: str) -> None:
        """
        Plugging a NIC and a disk in, and the NIC out again, makes the guest
        print the matching HOTPLUG lines.
        """
        proc, serial, qmp_path = _boot(reaper, linux_guest_image, workdir, devices=False)
        ready = wait_for_serial(serial, "GUEST-READY", BOOT_TIMEOUT)
        disk = os.path.join(workdir, "d2.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        qmp = SimpleQMP(qmp_path)
        try:
            qmp.execute("netdev_add", {"type": "user", "id": "hn2"})
            qmp.execute("device_add", {"driver": "virtio-net-pci", "id": "hnic",
                                       "netdev": "hn2", "romfile": ""})
            wait_for_serial(serial, "HOTPLUG add net eth0", 30, ready)
            qmp.execute("blockdev-add", {"driver": "file", "filename": disk,
                                         "node-name": "hd2"})
            qmp.execute("device_add", {"driver": "virtio-blk-pci", "id": "hdisk",
                                       "drive": "hd2"})
            wait_for_serial(serial, "HOTPLUG add block vda", 30, ready)
            qmp.execute("device_del", {"id": "hnic"})
            wait_for_serial(serial, "HOTPLUG remove net eth0", 30, ready)
            _power_down(qmp, serial, ready)
        finally:
            qmp.close()
        assert proc.wait(timeout=30) == 0
