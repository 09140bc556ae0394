"""
Live operations against a real daemon, real QEMU and real virsh: save and
restore (the Linux guest keeps counting where it stopped), managed save
across a daemon restart, disk and NIC hot-plug seen by the guest,
hot-plugged devices (and the SCSI controller qemud adds) keeping their PCI
addresses across save/restore and managed save, q35 hot-plug on spare PCIe
root ports (and detach freeing them), cdrom eject, and C{virsh domstats}.

Every test starts its own daemon in a fresh root below C{/tmp}, bounds every
wait, and kills by PID the daemon and every QEMU whose command line or
environment names that root.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.daemon import qemu_pids_below, terminate
from tests.integration.guests import (
    linux_guest_domain_xml,
    noos_guest_domain_xml,
    ticks,
    wait_for_serial,
)

pytestmark = pytest.mark.skipif(shutil.which("virsh") is None or
                                shutil.which("qemu-system-x86_64") is None,
                                reason="needs virsh (libvirt-clients) and qemu-system-x86")


class Daemon:
    """
    A qemud under twistd in its own root.

    @ivar root: the root directory.
    @ivar uri: the URI virsh uses.
    """

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="qd", dir="/tmp")
        self.uri = f"qemu+unix:///system?socket={self.root}/run/qemud/qemud-sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start twistd and wait (10 s at most) for the socket."""
        sock = f"{self.root}/run/qemud/qemud-sock"
        if os.path.exists(sock):
            os.unlink(sock)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", f"--logfile={self.root}/qemud.log", "qemud", "--root", self.root],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"daemon did not come up:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the daemon (guests are left running) and wait for it."""
        terminate(self.proc)

    def cleanup(self) -> None:
        """Stop the daemon and kill its guests by PID."""
        self.stop()
        for pid in qemu_pids_below(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log(self) -> str:
        """@return: the end of the daemon's log."""
        try:
            with open(f"{self.root}/qemud.log") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def virsh(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """
        Run virsh against the daemon.

        @return: its output; a failure (with C{check}) fails the test with
            virsh's error and the daemon's log.
        """
        proc = subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "LC_ALL": "C"})
        if check and proc.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)} failed: {proc.stderr}\n{self.log()}")
        return proc.stdout + proc.stderr

    def define(self, name: str, xml: str) -> None:
        """Define a domain from XML text."""
        path = os.path.join(self.root, name + ".xml")
        with open(path, "w") as f:
            f.write(xml)
        self.virsh("define", path)

    def write(self, name: str, text: str) -> str:
        """@return: the path of a new file in the root holding C{text}."""
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write(text)
        return path


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    """A running daemon, stopped (guests killed) afterwards."""
    d = Daemon()
    d.start()
    try:
        yield d
    finally:
        d.cleanup()


def _linux(daemon: Daemon, image: Any, name: str = "lin") -> str:
    serial = os.path.join(daemon.root, f"{name}.serial")
    daemon.define(name, linux_guest_domain_xml(name, image, serial_log=serial))
    daemon.virsh("start", name)
    wait_for_serial(serial, "GUEST-READY", 60)
    return serial


def test_save_restore_continues(daemon: Daemon, linux_guest_image: Any) -> None:
    """
    C{virsh save} stops the guest (shut off, saved) and leaves the image;
    C{virsh restore} brings it back running (restored) and the guest goes
    on counting past the last TICK before the save, appending to the same
    serial log.
    """
    serial = _linux(daemon, linux_guest_image)
    wait_for_serial(serial, "TICK 2", 30)
    image = os.path.join(daemon.root, "lin.save")
    out = daemon.virsh("save", "lin", image)
    assert f"Domain 'lin' saved to {image}" in out
    assert daemon.virsh("domstate", "--reason", "lin").strip() == "shut off (saved)"
    before = ticks(serial)
    size = os.path.getsize(serial)
    assert "Domain restored from" in daemon.virsh("restore", image)
    assert daemon.virsh("domstate", "--reason", "lin").strip() == "running (restored)"
    wait_for_serial(serial, f"TICK {before[-1] + 2}", 30, after_offset=size)
    after = ticks(serial)
    assert after[:len(before)] == before  # not truncated
    assert after[-1] > before[-1]


def test_managed_save_survives_restart(daemon: Daemon) -> None:
    """
    A managed save is a file: after a daemon restart, dominfo still shows
    it and C{virsh start} restores the guest (running, restored) and
    removes the image.
    """
    daemon.define("ms", noos_guest_domain_xml("ms"))
    daemon.virsh("start", "ms")
    assert "state saved by libvirt" in daemon.virsh("managedsave", "ms")
    daemon.stop()
    daemon.start()
    info = daemon.virsh("dominfo", "ms")
    assert "Managed save:   yes" in info
    assert "shut off" in info
    daemon.virsh("start", "ms")
    assert daemon.virsh("domstate", "--reason", "ms").strip() == "running (restored)"
    assert "Managed save:   no" in daemon.virsh("dominfo", "ms")


def test_hotplug_seen_by_guest(daemon: Daemon, linux_guest_image: Any) -> None:
    """
    A virtio disk and a virtio NIC attached with virsh appear in the guest
    (HOTPLUG add block vdX / net ethX: the guest names them itself) and in the live XML; detached again
    they disappear (HOTPLUG remove ...); device events reach
    C{virsh event}.  C{virsh domstats} shows the busy guest's CPU time rising.
    """
    serial = _linux(daemon, linux_guest_image, "hp")
    first = daemon.virsh("domstats", "--cpu-total", "hp")
    disk_img = os.path.join(daemon.root, "extra.img")
    with open(disk_img, "wb") as f:
        f.truncate(8 << 20)
    disk = daemon.write("disk.xml", f"""<disk type='file' device='disk'>
  <driver name='qemu' type='raw'/>
  <source file='{disk_img}'/>
  <target dev='vdb' bus='virtio'/>
</disk>
""")
    nic = daemon.write("nic.xml", """<interface type='user'>
  <mac address='52:54:00:11:22:33'/>
  <model type='virtio'/>
</interface>
""")
    offset = os.path.getsize(serial)
    assert "Device attached successfully" in daemon.virsh("attach-device", "hp", disk)
    offset = wait_for_serial(serial, "HOTPLUG add block vd", 30, offset)
    assert "vdb" in daemon.virsh("domblklist", "hp")
    assert "Device detached successfully" in daemon.virsh("detach-device", "hp", disk)
    offset = wait_for_serial(serial, "HOTPLUG remove block vd", 30, offset)
    assert "vdb" not in daemon.virsh("domblklist", "hp")
    assert "Device attached successfully" in daemon.virsh("attach-device", "hp", nic)
    offset = wait_for_serial(serial, "HOTPLUG add net", 30, offset)
    assert "52:54:00:11:22:33" in daemon.virsh("domiflist", "hp")
    assert "Device detached successfully" in daemon.virsh("detach-device", "hp", nic)
    wait_for_serial(serial, "HOTPLUG remove net", 30, offset)
    assert "52:54:00:11:22:33" not in daemon.virsh("dumpxml", "hp")
    missing = daemon.virsh("detach-device", "hp", disk, check=False)
    assert "device not found: no target device vdb" in missing
    second = daemon.virsh("domstats", "--cpu-total", "hp")

    def cpu(out: str) -> int:
        return int(next(line.split("=")[1] for line in out.splitlines()
                        if "cpu.time=" in line))

    assert cpu(second) > cpu(first)


def test_cdrom_eject_and_insert(daemon: Daemon) -> None:
    """
    C{virsh change-media --eject} empties an IDE cdrom of a running guest
    (no source in dumpxml); C{--insert} puts a medium back.
    """
    iso = os.path.join(daemon.root, "cd.iso")
    with open(iso, "wb") as f:
        f.truncate(1 << 20)
    xml = noos_guest_domain_xml("cd").replace("<memballoon", f"""<disk type='file' device='cdrom'>
      <source file='{iso}'/>
      <target dev='hdc' bus='ide'/>
    </disk>
    <memballoon""")
    daemon.define("cd", xml)
    daemon.virsh("start", "cd")
    assert "Successfully ejected media." in daemon.virsh("change-media", "cd", "hdc", "--eject")
    live = daemon.virsh("dumpxml", "cd")
    cdrom = live[live.index("device='cdrom'"):live.index("</disk>", live.index("device='cdrom'"))]
    assert "<source" not in cdrom
    assert iso in daemon.virsh("dumpxml", "--inactive", "cd")
    assert "Successfully inserted media." in daemon.virsh("change-media", "cd", "hdc", iso,
                                                          "--insert")
    assert iso in daemon.virsh("domblklist", "cd")


def _send_frames(device: str, count: int, size: int) -> None:
    """
    Write C{count} broadcast Ethernet frames of C{size} bytes to the host
    side of C{device}: the tap transmits them to QEMU, so the guest NIC
    receives them.
    """
    frame = b"\xff" * 6 + bytes.fromhex("02000000aa01") + b"\x88\xb5" + b"q" * (size - 14)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((device, 0))
        for _ in range(count):
            s.send(frame)


def _ifstat(output: str, device: str) -> dict[str, int]:
    """@return: C{virsh domifstat}'s counters by name (C{rx_packets}: 12, ...)."""
    counters = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == device:
            counters[parts[1]] = int(parts[2])
    return counters


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun")
                    or shutil.which("ip") is None,
                    reason="a tap device needs root, /dev/net/tun and ip (iproute2)")
def test_tap_interface_counters(daemon: Daemon, linux_guest_image: Any) -> None:
    """
    A guest NIC backed by a tap device (C{<interface type='ethernet'>}, the
    tap created by QEMU) reports the tap's counters from the guest's side:
    frames the host sends into the tap show up as received in
    C{virsh domifstat} and as C{net.0.rx.*} in C{virsh domstats}; what the
    guest's kernel sends on its own (IPv6 link-local chatter) as sent.
    """
    tap = f"qdt{os.getpid() % 100000}"
    serial = os.path.join(daemon.root, "tapg.serial")
    daemon.define("tapg", linux_guest_domain_xml("tapg", linux_guest_image, serial_log=serial,
                                                 extra_devices=f"""<interface type='ethernet'>
      <target dev='{tap}' managed='no'/>
      <model type='virtio'/>
    </interface>"""))
    daemon.virsh("start", "tapg")
    subprocess.run(["ip", "link", "set", "dev", tap, "up"], check=True, timeout=10)
    wait_for_serial(serial, "net: eth0 lo", 60)
    before = _ifstat(daemon.virsh("domifstat", "tapg", tap), tap)
    _send_frames(tap, 25, 100)
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline and (after["rx_packets"] < before["rx_packets"] + 25
                                           or after["tx_packets"] == 0):
        time.sleep(0.1)
        after = _ifstat(daemon.virsh("domifstat", "tapg", tap), tap)
    assert after["rx_packets"] >= before["rx_packets"] + 25, (before, after)
    assert after["rx_bytes"] >= before["rx_bytes"] + 25 * 100, (before, after)
    assert after["tx_packets"] > 0, (before, after)
    stats = daemon.virsh("domstats", "--interface", "tapg")
    assert f"net.0.name={tap}" in stats
    rx_pkts = [int(line.split("=")[1]) for line in stats.splitlines()
               if line.strip().startswith("net.0.rx.pkts=")]
    assert rx_pkts and rx_pkts[0] >= after["rx_packets"], stats
    unknown = daemon.virsh("domifstat", "tapg", "nosuchdev", check=False)
    assert "invalid path, 'nosuchdev' is not a known interface" in unknown


def _pci_devices(xml: str) -> list[str]:
    """
    @param xml: a domain XML.
    @return: for every device with a PCI address, its opening tag, alias and
        address, in document order (what must survive a save and restore).
    """
    out: list[str] = []
    opening = alias = ""
    for line in xml.splitlines():
        text = line.strip()
        if line.startswith("    <") and not line.startswith("    </"):
            opening, alias = text, ""
        elif text.startswith("<alias "):
            alias = text
        elif text.startswith("<address type='pci'"):
            out.append(f"{opening} {alias} {text}")
    return out


def _hotplug_three(daemon: Daemon, name: str) -> None:
    """
    Attach live a virtio disk (vdb), a SCSI disk (sda, which brings the
    SCSI controller) and a virtio NIC to a running guest.
    """
    for disk in ("vdb", "sda"):
        image = os.path.join(daemon.root, f"{name}-{disk}.img")
        with open(image, "wb") as f:
            f.truncate(1 << 20)
        bus = ["--targetbus", "scsi"] if disk == "sda" else []
        assert "Disk attached successfully" in daemon.virsh(
            "attach-disk", name, image, disk, *bus, "--live")
    nic = daemon.write(f"{name}-nic.xml", """<interface type='user'>
  <mac address='52:54:00:aa:00:02'/>
  <model type='virtio'/>
</interface>
""")
    assert "Device attached successfully" in daemon.virsh("attach-device", name, nic, "--live")


def _noos_with_nic(name: str) -> str:
    return noos_guest_domain_xml(name).replace(
        "<memballoon", "<interface type='user'><mac address='52:54:00:aa:00:01'/>"
        "<model type='virtio'/></interface>\n    <memballoon")


def test_hotplugged_devices_survive_save_restore(daemon: Daemon) -> None:
    """
    A KVM guest with a virtio NIC gets a virtio disk, a SCSI disk (with
    the SCSI controller qemud adds) and a second NIC hot-plugged, each at
    a PCI address shown in the live XML; C{virsh save} and C{virsh
    restore} bring it back running (restored) with every device at the
    same address (QEMU accepts the migration stream only if the slots
    match); a SCSI disk can be detached afterwards and a new disk takes a
    free slot, and the guest is destroyed.
    """
    daemon.define("hp", _noos_with_nic("hp"))
    daemon.virsh("start", "hp")
    _hotplug_three(daemon, "hp")
    before = _pci_devices(daemon.virsh("dumpxml", "hp"))
    assert len(before) == 4, before  # NIC, vdb, SCSI controller, second NIC
    assert any("<controller type='scsi' index='0' model='lsilogic'>" in d for d in before)
    assert len({d.rsplit("slot=", 1)[1] for d in before}) == len(before)
    image = os.path.join(daemon.root, "hp.save")
    assert f"Domain 'hp' saved to {image}" in daemon.virsh("save", "hp", image)
    assert daemon.virsh("domstate", "--reason", "hp").strip() == "shut off (saved)"
    assert "Domain restored from" in daemon.virsh("restore", image)
    assert daemon.virsh("domstate", "--reason", "hp").strip() == "running (restored)"
    assert _pci_devices(daemon.virsh("dumpxml", "hp")) == before
    sda = os.path.join(daemon.root, "hp-sda.img")
    assert "Disk detached successfully" in daemon.virsh("detach-disk", "hp", "sda", "--live")
    assert sda not in daemon.virsh("domblklist", "hp")
    vdc = os.path.join(daemon.root, "hp-vdc.img")
    with open(vdc, "wb") as f:
        f.truncate(1 << 20)
    assert "Disk attached successfully" in daemon.virsh("attach-disk", "hp", vdc, "vdc",
                                                         "--live")
    after = _pci_devices(daemon.virsh("dumpxml", "hp"))
    (new,) = set(after) - set(before)
    assert "virtio-disk2" in new and "slot='0x06'" in new, after
    assert len(after) == len(before) + 1
    assert daemon.virsh("domstate", "hp").strip() == "running"
    assert "Domain 'hp' destroyed" in daemon.virsh("destroy", "hp")


def test_hotplugged_devices_survive_managed_save(daemon: Daemon) -> None:
    """
    The same with C{virsh managedsave}: C{virsh start} restores the guest
    (running, restored) with every hot-plugged device at its address.
    """
    daemon.define("ms", _noos_with_nic("ms"))
    daemon.virsh("start", "ms")
    _hotplug_three(daemon, "ms")
    before = _pci_devices(daemon.virsh("dumpxml", "ms"))
    assert "state saved by libvirt" in daemon.virsh("managedsave", "ms")
    daemon.virsh("start", "ms")
    assert daemon.virsh("domstate", "--reason", "ms").strip() == "running (restored)"
    assert _pci_devices(daemon.virsh("dumpxml", "ms")) == before
    assert "Domain 'ms' destroyed" in daemon.virsh("destroy", "ms")


def test_hotplug_restore_seen_by_guest(daemon: Daemon, linux_guest_image: Any) -> None:
    """
    In the Linux guest: a virtio disk plugged live is seen; after save and
    restore the guest goes on counting and, when the disk is detached, the
    guest sees it go (the ACPI eject reaches the slot the disk is really
    in).
    """
    serial = _linux(daemon, linux_guest_image, "hl")
    wait_for_serial(serial, "TICK 1", 30)
    disk_img = os.path.join(daemon.root, "hl-vdb.img")
    with open(disk_img, "wb") as f:
        f.truncate(8 << 20)
    offset = os.path.getsize(serial)
    assert "Disk attached successfully" in daemon.virsh("attach-disk", "hl", disk_img, "vdb",
                                                         "--live")
    offset = wait_for_serial(serial, "HOTPLUG add block vd", 30, offset)
    before = _pci_devices(daemon.virsh("dumpxml", "hl"))
    image = os.path.join(daemon.root, "hl.save")
    daemon.virsh("save", "hl", image)
    last = ticks(serial)[-1]
    daemon.virsh("restore", image)
    offset = wait_for_serial(serial, f"TICK {last + 1}", 30, offset)
    assert _pci_devices(daemon.virsh("dumpxml", "hl")) == before
    assert "Disk detached successfully" in daemon.virsh("detach-disk", "hl", "vdb", "--live")
    wait_for_serial(serial, "HOTPLUG remove block vd", 30, offset)
    assert "vdb" not in daemon.virsh("domblklist", "hl")


def _noos_q35_with_root_ports(name: str) -> str:
    port = "<controller type='pci' model='pcie-root-port'/>\n    "
    return noos_guest_domain_xml(name).replace("machine='pc'", "machine='q35'").replace(
        "<memballoon", port + port + "<memballoon")


def test_q35_hotplug_on_root_ports(daemon: Daemon) -> None:
    """
    A q35 KVM guest with two spare PCIe root ports (packed at 0x1.0 and
    0x1.1 of pcie.0: it has no video card) gets a virtio disk and a virtio NIC attached live,
    each at slot 0 of a root port's bus in the live XML; a third PCI device
    is refused (no free root port left); C{virsh save} and C{virsh restore}
    bring it back running with every device at the same address, and the
    guest is destroyed.  (Without an OS nothing answers the unplug request:
    detach is tested with the Linux guest, below.)
    """
    daemon.define("q", _noos_q35_with_root_ports("q"))
    daemon.virsh("start", "q")
    vdb = os.path.join(daemon.root, "q-vdb.img")
    with open(vdb, "wb") as f:
        f.truncate(1 << 20)
    assert "Disk attached successfully" in daemon.virsh("attach-disk", "q", vdb, "vdb", "--live")
    nic = daemon.write("q-nic.xml", """<interface type='user'>
  <mac address='52:54:00:aa:00:03'/>
  <model type='virtio'/>
</interface>
""")
    assert "Device attached successfully" in daemon.virsh("attach-device", "q", nic, "--live")
    before = _pci_devices(daemon.virsh("dumpxml", "q"))
    ports = [d for d in before if "model='pcie-root-port'" in d]
    assert [p.split("<address ", 1)[1] for p in ports] == [
        "type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0' multifunction='on'/>",
        "type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/>"], before
    (disk,) = [d for d in before if d.startswith("<disk")]
    (iface,) = [d for d in before if d.startswith("<interface")]
    assert "bus='0x01' slot='0x00' function='0x0'" in disk, before
    assert "bus='0x02' slot='0x00' function='0x0'" in iface, before
    vdc = os.path.join(daemon.root, "q-vdc.img")
    with open(vdc, "wb") as f:
        f.truncate(1 << 20)
    refused = daemon.virsh("attach-disk", "q", vdc, "vdc", "--live", check=False)
    assert "every pcie-root-port is in use" in refused, refused
    image = os.path.join(daemon.root, "q.save")
    assert f"Domain 'q' saved to {image}" in daemon.virsh("save", "q", image)
    assert "Domain restored from" in daemon.virsh("restore", image)
    assert daemon.virsh("domstate", "--reason", "q").strip() == "running (restored)"
    assert _pci_devices(daemon.virsh("dumpxml", "q")) == before
    assert "Domain 'q' destroyed" in daemon.virsh("destroy", "q")


def test_q35_detach_frees_root_port(daemon: Daemon, linux_guest_image: Any) -> None:
    """
    In the Linux guest on q35 with two spare root ports: a virtio disk
    plugged live (at slot 0 of bus 1) is seen; detached, the guest sees it
    go and it leaves the live XML; its root port is free again, so the next
    disk takes the same bus.
    """
    serial = os.path.join(daemon.root, "lq.serial")
    port = "<controller type='pci' model='pcie-root-port'/>\n    "
    daemon.define("lq", linux_guest_domain_xml(
        "lq", linux_guest_image, serial_log=serial, extra_devices="    " + port + port)
        .replace("machine='pc'", "machine='q35'"))
    daemon.virsh("start", "lq")
    wait_for_serial(serial, "GUEST-READY", 60)
    offset = os.path.getsize(serial)
    for disk in ("vdb", "vdc"):
        image = os.path.join(daemon.root, f"lq-{disk}.img")
        with open(image, "wb") as f:
            f.truncate(8 << 20)
        assert "Disk attached successfully" in daemon.virsh("attach-disk", "lq", image, disk,
                                                             "--live")
        offset = wait_for_serial(serial, "HOTPLUG add block vd", 30, offset)
        (plugged,) = [d for d in _pci_devices(daemon.virsh("dumpxml", "lq"))
                      if d.startswith("<disk")]
        assert "bus='0x01' slot='0x00' function='0x0'" in plugged, plugged
        assert "Disk detached successfully" in daemon.virsh("detach-disk", "lq", disk, "--live")
        offset = wait_for_serial(serial, "HOTPLUG remove block vd", 30, offset)
        assert disk not in daemon.virsh("domblklist", "lq")
    assert "Domain 'lq' destroyed" in daemon.virsh("destroy", "lq")
