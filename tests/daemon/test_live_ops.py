"""
Tests for the live operations of L{qemud.daemon.driver.DomainDriver}: save,
restore, managed save, device attach/detach/update and job info, on a
L{FakeProcessReactor} and scripted L{FakeQMPServer}s.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.test.iosim import FakeTransport
from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon import driver as drv
from qemud.errors import OperationFailedError, OperationInvalidError
from qemud.qemu import saveimage
from qemud.qemu.hotplug import DeviceMissingError
from qemud.testing import FakeQMPServer
from tests.daemon.fakedriver import DriverEnv, raw

SAVE_SCRIPT = ("stop", "migrate-set-parameters", "getfd", "migrate")
DISK = """<disk type='file' device='disk'>
  <driver name='qemu' type='raw'/>
  <source file='/images/extra.img'/>
  <target dev='vdb' bus='virtio'/>
</disk>
"""


class LiveOpsTests(SynchronousTestCase):
    """Save, restore and devices through the driver."""

    def setUp(self) -> None:
        self.sent: list[int] = []
        transport: Any = FakeTransport
        transport.sendFileDescriptor = lambda _self, fd: self.sent.append(fd)
        self.addCleanup(delattr, transport, "sendFileDescriptor")
        self.env = DriverEnv(self)
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

        d = self.env.driver.create(self.ref.uuid)
        server = FakeQMPServer()
        server.expect("query-status", ret={"status": "inmigrate", "running": False})
        server.expect("getfd")
        server.expect("migrate-incoming")
        server.expect("query-migrate", ret={"status": "completed"})
        server.expect("cont", events_before=[("RESUME", {})])
        self.env.reactor.accept_unix(server)
        self.successResultOf(d)
        server.assert_done()
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
