"""
Tests for the live operations of L{qemud.daemon.driver.DomainDriver}: save,
restore, managed save, device attach/detach/update and job info, on a
L{FakeProcessReactor} and scripted L{FakeQMPServer}s.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.test.iosim import FakeTransport
from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon import driver as drv
from qemud.daemon.driver import DomainRef
from qemud.errors import DomainConfigError, OperationFailedError, OperationInvalidError
from qemud.qemu import saveimage
from qemud.qemu.hotplug import DeviceMissingError
from qemud.testing import FakeQMPServer
from tests.daemon.fakedriver import DriverEnv, domain_xml, raw

SAVE_SCRIPT = ("stop", "migrate-set-parameters", "getfd", "migrate")
DISK = """<disk type='file' device='disk'>
  <driver name='qemu' type='raw'/>
  <source file='/images/extra.img'/>
  <target dev='vdb' bus='virtio'/>
</disk>
"""


class _DriverTestCase(SynchronousTestCase):
    """
    A driver on fakes whose QMP transports record the descriptors handed to
    QEMU (C{getfd}) in C{sent}.
    """

    def setUp(self) -> None:
        self.sent: list[int] = []
        transport: Any = FakeTransport
        transport.sendFileDescriptor = lambda _self, fd: self.sent.append(fd)
        self.addCleanup(delattr, transport, "sendFileDescriptor")
        self.env = DriverEnv(self)

    def restore_start(self, ref: DomainRef) -> Deferred[DomainRef]:
        """
        Start a managed-saved domain, its QEMU answering the incoming
        migration and resuming.

        @return: what C{create} gave, after the whole QMP script ran.
        """
        d = self.env.driver.create(ref.uuid)
        server = FakeQMPServer()
        server.expect("query-status", ret={"status": "inmigrate", "running": False})
        server.expect("getfd")
        server.expect("migrate-incoming")
        server.expect("query-migrate", ret={"status": "completed"})
        server.expect("cont", events_before=[("RESUME", {})])
        self.env.reactor.accept_unix(server)
        server.assert_done()
        return d


class LiveOpsTests(_DriverTestCase):
    """Save, restore and devices through the driver."""

    def setUp(self) -> None:
        super().setUp()
        self.ref = self.env.started()
        self.server = self.env.servers["vm1"]

    def _script_save(self, final: dict[str, Any]) -> None:
        s = self.server
        s.expect("stop", events_before=[("STOP", {})])
        for command in SAVE_SCRIPT[1:]:
            s.expect(command)
        s.expect("query-migrate", ret=final)

    def test_save_failure_leaves_guest_running_and_no_file(self) -> None:
        """
        A save QEMU fails: the guest is resumed, the error is QEMU's, and
        neither the image nor its temporary file exists.
        """
        path = os.path.abspath(self.mktemp())
        self._script_save({"status": "failed", "error-desc": "write error"})
        self.server.expect("migrate_cancel")
        self.server.expect("cont", events_before=[("RESUME", {})])
        d = self.env.driver.save(self.ref.uuid, path)
        self.server.flush()
        failure = self.failureResultOf(d, OperationFailedError)
        self.assertIn("write error", failure.value.message)
        self.assertEqual(self.env.driver.get_state(self.ref.uuid)[0], 1)
        self.assertEqual(os.listdir(os.path.dirname(path)), [])

    def test_save_then_managed_start(self) -> None:
        """
        A managed save writes the image (header with the XML) into the save
        directory; the domain is shut off/saved and reports a managed save;
        C{create} then restores it with C{-incoming defer} and removes it.
        """
        self._script_save({"status": "completed"})
        self.server.expect("quit")
        d = self.env.driver.managed_save(self.ref.uuid)
        self.server.flush()
        self.env.process().exit(0)
        self.successResultOf(d)
        image = self.env.paths.managed_save_file("vm1")
        self.assertIn("<name>vm1</name>", saveimage.read_header(image).xml)
        self.assertTrue(saveimage.read_header(image).running)
        self.assertEqual(self.env.driver.get_state(self.ref.uuid), (5, 5))
        self.assertTrue(self.env.driver.has_managed_save(self.ref.uuid))
        self.assertEqual(self.env.lifecycle(), [(3, 0), (5, 4)])

        self.successResultOf(self.restore_start(self.ref))
        argv = self.env.process().argv
        self.assertEqual(argv[-2:], ["-incoming", "defer"])
        self.assertFalse(os.path.exists(image))
        self.assertEqual(self.env.driver.get_state(self.ref.uuid), (1, 3))
        self.assertEqual(self.env.lifecycle()[-2:], [(2, 2), (4, 2)])

    def test_job_info(self) -> None:
        """
        While a save runs, job info is unbounded with QEMU's progress; idle,
        it is of type none; inactive, the domain is not running.
        """
        idle = self.successResultOf(self.env.driver.get_job_info(self.ref.uuid))
        self.assertEqual(idle.type, drv.JOB_NONE)
        s = self.server
        s.expect("stop", events_before=[("STOP", {})])
        for command in SAVE_SCRIPT[1:]:
            s.expect(command)
        held = s.expect("query-migrate", hold=True)
        d = self.env.driver.save(self.ref.uuid, os.path.abspath(self.mktemp()))
        s.flush()
        s.expect("query-migrate", ret={"status": "active",
                                       "ram": {"total": 1000, "transferred": 400,
                                               "remaining": 600}})
        # the job query answers out of turn, in the order QEMU receives it
        job_d = self.env.driver.get_job_info(self.ref.uuid)
        s.reply(held, ret={"status": "failed", "error-desc": "x"})
        s.expect("migrate_cancel")
        s.expect("cont", events_before=[("RESUME", {})])
        s.flush()
        self.failureResultOf(d, OperationFailedError)
        job = self.successResultOf(job_d)
        self.assertEqual((job.type, job.data_total, job.data_processed, job.data_remaining),
                         (drv.JOB_UNBOUNDED, 1000, 400, 600))

    def test_attach_config_and_missing_detach(self) -> None:
        """
        C{AFFECT_CONFIG} adds the disk to the persistent definition only;
        detaching a device that is not there fails with "device not found".
        """
        self.successResultOf(self.env.driver.attach_device(self.ref.uuid, DISK,
                                                           drv.AFFECT_CONFIG))
        inactive = self.env.driver.get_xml_desc(self.ref.uuid, drv.XML_INACTIVE)
        self.assertIn("<target dev='vdb' bus='virtio'/>", inactive)
        self.assertNotIn("vdb", self.env.driver.get_xml_desc(self.ref.uuid))
        with self.assertRaises(DeviceMissingError) as e:
            self.env.driver.detach_device(self.ref.uuid, DISK, drv.AFFECT_LIVE)
        self.assertEqual(e.exception.message, "device not found: no target device vdb")
        self.assertEqual(e.exception.code, 99)

    def test_live_attach_to_inactive_refused(self) -> None:
        """A live attach to a domain that does not run is refused."""
        ref = self.env.define("vm2", "0b3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b")
        self.assertRaises(OperationInvalidError, self.env.driver.attach_device, ref.uuid, DISK,
                          drv.AFFECT_LIVE)
        self.assertRaises(OperationInvalidError, self.env.driver.get_job_info,
                          raw("0b3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"))


SCSI_DISK = """<disk type='file' device='disk'>
  <source file='/images/scsi.img'/>
  <target dev='sda' bus='scsi'/>
</disk>
"""
NIC = """<interface type='user'>
  <mac address='52:54:00:11:22:33'/>
  <model type='virtio'/>
</interface>
"""


def _addresses(xml: str) -> list[str]:
    """@return: the C{<address>} lines of a domain XML, in order."""
    return [line.strip() for line in xml.splitlines() if "<address type='pci'" in line]


class PCIAddressTests(_DriverTestCase):
    """PCI addresses through the driver: define, dumpxml, hot-plug, save and restore."""

    def test_define_conflict_changes_nothing(self) -> None:
        """
        A definition with two devices at one address is refused with
        libvirt's XML error; the domain is not defined, and an existing
        domain's config stays as it was.
        """
        clash = ("<interface type='user'><model type='virtio'/>"
                 "<address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>"
                 "</interface><memballoon model='virtio'>"
                 "<address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>"
                 "</memballoon>")
        with self.assertRaises(DomainConfigError) as cm:
            self.env.driver.define_xml(domain_xml(extra=clash))
        self.assertEqual(cm.exception.message,
                         "XML error: Attempted double use of PCI Address 0000:00:05.0")
        self.assertEqual(cm.exception.code, 27)
        self.assertEqual(self.env.driver.list_domains(), [])
        self.assertFalse(os.path.exists(self.env.config_file("vm1")))
        ref = self.env.define()
        with open(self.env.config_file("vm1")) as f:
            before = f.read()
        self.assertRaises(DomainConfigError, self.env.driver.define_xml,
                          domain_xml(extra=clash))
        with open(self.env.config_file("vm1")) as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(self.env.driver.get_xml_desc(ref.uuid), before)

    def test_addresses_stored_and_shown(self) -> None:
        """
        The stored config and both dumpxml forms show every PCI device's
        address; the running guest's command line puts it there.
        """
        ref = self.env.started(extra=NIC)
        with open(self.env.config_file("vm1")) as f:
            stored = f.read()
        want = ["<address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>",
                "<address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>"]
        self.assertEqual(_addresses(stored), want)
        self.assertEqual(_addresses(self.env.driver.get_xml_desc(ref.uuid)), want)
        self.assertEqual(
            _addresses(self.env.driver.get_xml_desc(ref.uuid, drv.XML_INACTIVE)), want)
        argv = self.env.process().argv
        self.assertIn("virtio-net-pci,bus=pci.0,addr=0x2,netdev=hostnet0,id=net0,"
                      "mac=52:54:00:11:22:33", argv)
        self.assertIn("virtio-balloon-pci,bus=pci.0,addr=0x3,id=balloon0", argv)

    def test_attach_config_gets_its_own_slot(self) -> None:
        """
        A disk attached to the config (only) gets the config's first free
        slot, stored with it; the running guest is untouched.
        """
        ref = self.env.started()
        self.successResultOf(self.env.driver.attach_device(ref.uuid, DISK, drv.AFFECT_CONFIG))
        inactive = self.env.driver.get_xml_desc(ref.uuid, drv.XML_INACTIVE)
        self.assertIn("<target dev='vdb' bus='virtio'/>\n      <address type='pci' "
                      "domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>", inactive)
        with open(self.env.config_file("vm1")) as f:
            self.assertEqual(f.read(), inactive)
        self.assertNotIn("vdb", self.env.driver.get_xml_desc(ref.uuid))

    def _attach_live(self, ref: DomainRef, xml: str, commands: list[tuple[str, Any]]) -> None:
        s = self.env.servers["vm1"]
        for command, args in commands:
            s.expect(command, args)
        d = self.env.driver.attach_device(ref.uuid, xml, drv.AFFECT_LIVE)
        s.flush()
        self.successResultOf(d)
        s.assert_done()

    def test_hotplugged_devices_keep_their_slots_across_restore(self) -> None:
        """
        A virtio disk, a SCSI disk (with the SCSI controller it brings) and
        a NIC plugged into a running guest take the free slots; after a
        managed save the restore's command line puts each device (and the
        controller) at the same address, and the live XML is the same.
        """
        ref = self.env.started(extra="<video/>")
        self._attach_live(ref, DISK, [
            ("query-named-block-nodes", None), ("blockdev-add", None), ("blockdev-add", None),
            ("device_add", {"driver": "virtio-blk-pci", "bus": "pci.0", "addr": "0x4",
                            "drive": "libvirt-1-format", "id": "virtio-disk1"})])
        self._attach_live(ref, SCSI_DISK, [
            ("query-named-block-nodes", None),
            ("device_add", {"driver": "lsi53c895a", "bus": "pci.0", "addr": "0x5",
                            "id": "scsi0"}),
            ("blockdev-add", None), ("blockdev-add", None), ("device_add", None)])
        self._attach_live(ref, NIC, [
            ("netdev_add", None),
            ("device_add", {"driver": "virtio-net-pci", "bus": "pci.0", "addr": "0x6",
                            "netdev": "hostnet0", "id": "net0", "mac": "52:54:00:11:22:33"})])
        before = self.env.driver.get_xml_desc(ref.uuid)
        self.assertEqual(len(_addresses(before)), 5)

        s = self.env.servers["vm1"]
        s.expect("stop", events_before=[("STOP", {})])
        for command in SAVE_SCRIPT[1:]:
            s.expect(command)
        s.expect("query-migrate", ret={"status": "completed"})
        s.expect("quit")
        d = self.env.driver.managed_save(ref.uuid)
        s.flush()
        self.env.process().exit(0)
        self.successResultOf(d)

        restored = self.successResultOf(self.restore_start(ref))
        argv = self.env.process().argv
        devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
        for wanted in ("VGA,bus=pci.0,addr=0x2,", "virtio-balloon-pci,bus=pci.0,addr=0x3,",
                       "virtio-blk-pci,bus=pci.0,addr=0x4,", "lsi53c895a,bus=pci.0,addr=0x5,",
                       "virtio-net-pci,bus=pci.0,addr=0x6,"):
            self.assertEqual(len([x for x in devices if x.startswith(wanted)]), 1, wanted)
        after = self.env.driver.get_xml_desc(restored.uuid)
        self.assertEqual(_addresses(after), _addresses(before))
        self.assertEqual(after.replace(f"id='{restored.id}'", ""),
                         before.replace(f"id='{ref.id}'", ""))
