"""
Tests for the live operations of L{qemud.qemu.guest.Guest} (save, restore,
hot-plug, media change) against a scripted L{FakeQMPServer}, and for the
pure helpers of L{qemud.qemu.hotplug}, L{qemud.qemu.saveimage} and
L{qemud.qemu.stats}.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from twisted.test.iosim import FakeTransport
from twisted.trial.unittest import SynchronousTestCase

from qemud.domain.model import Controller, Devices, Disk, Interface, MemBalloon, PCIAddress
from qemud.errors import (
    DomainConfigError,
    InternalError,
    OperationFailedError,
    OperationTimeoutError,
    OperationUnsupportedError,
)
from qemud.qemu import hotplug, saveimage, stats
from qemud.qemu.guest import GuestTimeouts
from tests.qemu.test_guest import Env, make_domain

SUSPENDED_PAUSED = (3, 0)
RESUMED_UNPAUSED = (4, 0)
STOPPED_SAVED = (5, 4)
STARTED_RESTORED = (2, 2)
RESUMED_FROM_SNAPSHOT = (4, 2)

VDB = Disk(target_dev="vdb", target_bus="virtio", driver_name="qemu", driver_type="qcow2",
           source="/images/extra.qcow2")
NIC = Interface(type="user", mac="52:54:00:aa:bb:01", model="virtio")
SDA = Disk(target_dev="sda", target_bus="scsi", source="/images/scsi.img")


def running(case: SynchronousTestCase, **domain: Any) -> tuple[Env, list[int]]:
    """
    A started guest whose QMP transport records the descriptors passed.
    """
    env = Env(case, make_domain(**domain) if domain else None)
    env.started()
    sent: list[int] = []
    assert env.server.client_io is not None
    env.server.client_io.sendFileDescriptor = sent.append  # type: ignore[attr-defined]
    return env, sent


class SaveTests(SynchronousTestCase):
    """L{Guest.save}: pause, migrate to a descriptor, stop QEMU."""

    def test_save_sequence(self) -> None:
        """
        A save stops the vCPUs, lifts the bandwidth limit, hands the file over
        with C{getfd}, migrates to C{fd:}, polls C{query-migrate} until it
        completes, calls the commit hook, then quits QEMU: (SUSPENDED,
        PAUSED) then (STOPPED, SAVED), shutoff/saved.
        """
        env, sent = running(self)
        committed: list[bool] = []
        s = env.server
        s.expect("stop", events_before=[("STOP", {})])
        s.expect("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        s.expect("getfd", {"fdname": "qemud-save"})
        s.expect("migrate", {"uri": "fd:qemud-save"})
        s.expect("query-migrate", ret={"status": "active", "ram": {"total": 10}})
        s.expect("query-migrate", ret={"status": "completed"})
        s.expect("quit")
        d = env.guest.save(17, lambda: committed.append(True))
        s.flush()
        self.assertEqual(sent, [17])
        env.reactor.advance(0.05)
        s.flush()
        self.assertEqual(committed, [True])
        self.assertNoResult(d)
        env.process.exit(0)
        self.successResultOf(d)
        s.assert_done()
        self.assertEqual(env.lifecycle(), [SUSPENDED_PAUSED, STOPPED_SAVED])
        self.assertEqual(env.guest.state, (5, 5))

    def test_failed_migration_resumes(self) -> None:
        """
        When QEMU reports the migration failed, the commit hook is not
        called, the guest is resumed and the save fails with QEMU's reason.
        """
        env, _sent = running(self)
        s = env.server
        s.expect("stop", events_before=[("STOP", {})])
        s.expect("migrate-set-parameters")
        s.expect("getfd")
        s.expect("migrate")
        s.expect("query-migrate", ret={"status": "failed", "error-desc": "No space left"})
        s.expect("migrate_cancel")
        s.expect("cont", events_before=[("RESUME", {})])
        d = env.guest.save(17, lambda: self.fail("committed"))
        s.flush()
        failure = self.failureResultOf(d, OperationFailedError)
        self.assertIn("No space left", failure.value.message)
        s.assert_done()
        self.assertEqual(env.guest.state, (1, 7))  # running / save canceled
        self.assertEqual(env.lifecycle(), [SUSPENDED_PAUSED, RESUMED_UNPAUSED])

    def test_commit_failure_resumes(self) -> None:
        """
        A commit hook that raises (the rename failed) leaves the guest
        running: it is resumed and QEMU is not told to quit.
        """
        env, _sent = running(self)
        s = env.server
        s.expect("stop", events_before=[("STOP", {})])
        s.expect("migrate-set-parameters")
        s.expect("getfd")
        s.expect("migrate")
        s.expect("query-migrate", ret={"status": "completed"})
        s.expect("cont", events_before=[("RESUME", {})])

        def commit() -> None:
            raise OperationFailedError("failed to write 'x': disk full")

        d = env.guest.save(17, commit)
        s.flush()
        self.failureResultOf(d, OperationFailedError)
        s.assert_done()
        self.assertEqual(env.guest.state[0], 1)

    def test_refused_migrate_closes_fd(self) -> None:
        """
        A C{migrate} QEMU refuses: the passed descriptor is released with
        C{closefd} and a paused guest stays paused.
        """
        env, _sent = running(self)
        s = env.server
        s.expect("stop", events_before=[("STOP", {})])
        self.successResultOf(self._suspend(env))
        s.expect("migrate-set-parameters")
        s.expect("getfd")
        s.expect("migrate", error=("GenericError", "bad uri"))
        s.expect("closefd", {"fdname": "qemud-save"})
        d = env.guest.save(17, lambda: None)
        s.flush()
        self.failureResultOf(d, OperationFailedError)
        s.assert_done()
        self.assertEqual(env.guest.state, (3, 1))

    def _suspend(self, env: Env) -> Any:
        d = env.guest.suspend()
        env.server.flush()
        return d


class RestoreTests(SynchronousTestCase):
    """L{Guest.start} with an incoming migration stream."""

    def test_restore_sequence(self) -> None:
        """
        A restore expects QEMU in C{inmigrate}, passes the stream with
        C{getfd} + C{migrate-incoming}, waits for completion, then C{cont}:
        (STARTED, RESTORED), (RESUMED, FROM_SNAPSHOT), running/restored.
        """
        env = Env(self)
        d = env.guest.start(False, incoming_fd=23)
        s = env.server
        s.expect("query-status", ret={"status": "inmigrate", "running": False})
        s.expect("getfd", {"fdname": "qemud-restore"})
        s.expect("migrate-incoming", {"uri": "fd:qemud-restore"})
        s.expect("query-migrate", ret={"status": "completed"})
        s.expect("cont", events_before=[("RESUME", {})])
        sent: list[int] = []
        transport_class: Any = FakeTransport
        transport_class.sendFileDescriptor = lambda self, fd: sent.append(fd)
        self.addCleanup(delattr, transport_class, "sendFileDescriptor")
        env.reactor.accept_unix(s)
        s.flush()
        self.successResultOf(d)
        s.assert_done()
        self.assertEqual(sent, [23])
        self.assertEqual(env.lifecycle(), [STARTED_RESTORED, RESUMED_FROM_SNAPSHOT])
        self.assertEqual(env.guest.state, (1, 3))


class HotplugGuestTests(SynchronousTestCase):
    """Attach, detach and media change on a running guest."""

    def test_attach_disk(self) -> None:
        """
        A virtio disk is added with C{blockdev-add} (storage, format) and
        C{device_add}, the properties of the boot command line, a fresh
        node index, at the first free PCI slot; the live definition shows it
        with alias virtio-disk1 and that address, and a device-added event
        follows.
        """
        env, _sent = running(self)
        s = env.server
        s.expect("query-named-block-nodes", {"flat": True},
                 ret=[{"node-name": "libvirt-1-format"}, {"node-name": "libvirt-1-storage"}])
        s.expect("blockdev-add", {"driver": "file", "filename": "/images/extra.qcow2",
                                  "node-name": "libvirt-2-storage", "auto-read-only": True,
                                  "discard": "unmap"})
        s.expect("blockdev-add", {"node-name": "libvirt-2-format", "read-only": False,
                                  "driver": "qcow2", "file": "libvirt-2-storage"})
        s.expect("device_add", {"driver": "virtio-blk-pci", "bus": "pci.0", "addr": "0x2",
                                "drive": "libvirt-2-format", "id": "virtio-disk1"})
        d = env.guest.attach_disk(VDB, kind="i440fx")
        s.flush()
        disk = self.successResultOf(d)
        s.assert_done()
        self.assertEqual(disk.alias, "virtio-disk1")
        self.assertEqual(disk.address, PCIAddress(slot=2))
        self.assertEqual(env.guest.live_domain.devices.disks, (disk,))
        self.assertEqual([(e.kind, e.alias) for e in env.events], [("device-added",
                                                                     "virtio-disk1")])

    def test_attach_rolled_back(self) -> None:
        """
        When C{device_add} fails, the block nodes added are deleted again and
        the live definition is unchanged.
        """
        env, _sent = running(self)
        s = env.server
        s.expect("query-named-block-nodes", ret=[])
        s.expect("blockdev-add")
        s.expect("blockdev-add")
        s.expect("device_add", error=("GenericError", "no free slot"))
        s.expect("blockdev-del", {"node-name": "libvirt-1-format"})
        s.expect("blockdev-del", {"node-name": "libvirt-1-storage"})
        d = env.guest.attach_disk(VDB, kind="i440fx")
        s.flush()
        self.failureResultOf(d, OperationFailedError)
        s.assert_done()
        self.assertEqual(env.guest.live_domain.devices.disks, ())

    def test_attach_nic(self) -> None:
        """
        A NIC is C{netdev_add} + C{device_add} with the builders' properties,
        at the first free PCI slot.
        """
        env, _sent = running(self)
        s = env.server
        s.expect("netdev_add", {"type": "user", "id": "hostnet0"})
        s.expect("device_add", {"driver": "virtio-net-pci", "bus": "pci.0", "addr": "0x2",
                                "netdev": "hostnet0", "id": "net0",
                                "mac": "52:54:00:aa:bb:01"})
        d = env.guest.attach_interface(NIC, driver="virtio-net-pci")
        s.flush()
        self.assertEqual(self.successResultOf(d).alias, "net0")
        s.assert_done()

    def test_attach_scsi_disk_brings_controller(self) -> None:
        """
        The first SCSI disk of a guest brings an lsi53c895a controller,
        plugged first at its own free slot; the live definition then shows
        the controller (with that address) and the disk.  A second SCSI
        disk uses the same controller.
        """
        balloon = MemBalloon(model="virtio", address=PCIAddress(slot=2))
        env, _sent = running(self, devices=Devices(memballoon=balloon))
        s = env.server
        s.expect("query-named-block-nodes", ret=[])
        s.expect("device_add", {"driver": "lsi53c895a", "bus": "pci.0", "addr": "0x3",
                                "id": "scsi0"})
        s.expect("blockdev-add")
        s.expect("blockdev-add")
        s.expect("device_add", {"driver": "scsi-hd", "bus": "scsi0.0", "scsi-id": 0,
                                "drive": "libvirt-1-format", "id": "scsi0-0-0-0"})
        d = env.guest.attach_disk(SDA, kind="i440fx")
        s.flush()
        self.assertIsNone(self.successResultOf(d).address)
        s.assert_done()
        live = env.guest.live_domain.devices
        self.assertEqual(live.controllers, (Controller(type="scsi", index=0, model="lsilogic",
                                                       alias="scsi0",
                                                       address=PCIAddress(slot=3)),))
        s.expect("query-named-block-nodes", ret=[])
        s.expect("blockdev-add")
        s.expect("blockdev-add")
        s.expect("device_add", {"driver": "scsi-hd", "bus": "scsi0.0", "scsi-id": 1,
                                "drive": "libvirt-1-format", "id": "scsi0-0-0-1"})
        d = env.guest.attach_disk(dataclasses.replace(SDA, target_dev="sdb"), kind="i440fx")
        s.flush()
        self.successResultOf(d)
        s.assert_done()
        self.assertEqual(len(env.guest.live_domain.devices.controllers), 1)

    def test_controller_stays_when_disk_fails(self) -> None:
        """
        When the disk fails after its controller went in, the controller
        stays in the live definition (as in QEMU), so the next SCSI disk
        does not plug a second one.
        """
        env, _sent = running(self)
        s = env.server
        s.expect("query-named-block-nodes", ret=[])
        s.expect("device_add", {"driver": "lsi53c895a", "bus": "pci.0", "addr": "0x2",
                                "id": "scsi0"})
        s.expect("blockdev-add", error=("GenericError", "no such file"))
        d = env.guest.attach_disk(SDA, kind="i440fx")
        s.flush()
        self.failureResultOf(d, OperationFailedError)
        s.assert_done()
        self.assertEqual([c.alias for c in env.guest.live_domain.devices.controllers],
                         ["scsi0"])
        self.assertEqual(env.guest.live_domain.devices.disks, ())

    def test_attach_at_address_asked(self) -> None:
        """
        A disk whose XML asks for a free address gets it; one asking for an
        address in use is refused before anything is sent to QEMU.
        """
        nic = dataclasses.replace(NIC, alias="net0", address=PCIAddress(slot=3))
        env, _sent = running(self, devices=Devices(interfaces=(nic,)))
        s = env.server
        s.expect("query-named-block-nodes", ret=[])
        d = env.guest.attach_disk(dataclasses.replace(VDB, address=PCIAddress(slot=3)),
                                  kind="i440fx")
        s.flush()
        failure = self.failureResultOf(d, DomainConfigError)
        self.assertEqual(failure.value.message,
                         "XML error: Attempted double use of PCI Address 0000:00:03.0")
        s.assert_done()
        s.expect("query-named-block-nodes", ret=[])
        s.expect("blockdev-add")
        s.expect("blockdev-add")
        s.expect("device_add", {"driver": "virtio-blk-pci", "bus": "pci.0", "addr": "0x9",
                                "drive": "libvirt-1-format", "id": "virtio-disk1"})
        d = env.guest.attach_disk(dataclasses.replace(VDB, address=PCIAddress(slot=9)),
                                  kind="i440fx")
        s.flush()
        self.assertEqual(self.successResultOf(d).address, PCIAddress(slot=9))
        s.assert_done()

    def test_slot_freed_by_detach(self) -> None:
        """
        A slot freed by a detach (C{DEVICE_DELETED}) is the next one given.
        """
        disk = dataclasses.replace(VDB, alias="virtio-disk1", address=PCIAddress(slot=3))
        env, _sent = running(self, devices=Devices(disks=(disk,), memballoon=MemBalloon(
            model="virtio", address=PCIAddress(slot=2))))
        s = env.server
        s.expect("query-block", ret=[])
        s.expect("device_del", {"id": "virtio-disk1"})
        d = env.guest.detach_device(disk)
        s.flush()
        s.send_event("DEVICE_DELETED", {"device": "virtio-disk1"})
        self.successResultOf(d)
        s.expect("netdev_add")
        s.expect("device_add", {"driver": "virtio-net-pci", "bus": "pci.0", "addr": "0x3",
                                "netdev": "hostnet0", "id": "net0",
                                "mac": "52:54:00:aa:bb:01"})
        d = env.guest.attach_interface(NIC, driver="virtio-net-pci")
        s.flush()
        self.assertEqual(self.successResultOf(d).address, PCIAddress(slot=3))
        s.assert_done()

    def test_q35_root_port(self) -> None:
        """
        On q35 a NIC goes to slot 0 of a free root port's bus
        (C{bus=pci.2,addr=0x0}), never onto C{pcie.0}; the live definition
        records that address.
        """
        ports = tuple(Controller(type="pci", index=n, model="pcie-root-port",
                                 address=PCIAddress(slot=2, function=n - 1))
                      for n in (1, 2))
        env, _sent = running(self, devices=Devices(controllers=ports, memballoon=MemBalloon(
            model="virtio", address=PCIAddress(bus=1))))
        s = env.server
        s.expect("netdev_add")
        s.expect("device_add", {"driver": "virtio-net-pci", "bus": "pci.2", "addr": "0x0",
                                "netdev": "hostnet0", "id": "net0",
                                "mac": "52:54:00:aa:bb:01"})
        d = env.guest.attach_interface(NIC, driver="virtio-net-pci", kind="q35")
        s.flush()
        self.assertEqual(self.successResultOf(d).address, PCIAddress(bus=2))
        self.assertEqual(env.guest.live_domain.devices.interfaces[0].address, PCIAddress(bus=2))
        s.assert_done()

    def test_q35_no_free_root_port(self) -> None:
        """
        On q35 without a free root port the attach fails before any QMP
        command, saying why.
        """
        env, _sent = running(self)
        s = env.server
        d = env.guest.attach_interface(NIC, driver="virtio-net-pci", kind="q35")
        s.flush()
        failure = self.failureResultOf(d, InternalError)
        self.assertIn("every pcie-root-port is in use", failure.value.message)
        s.assert_done()

    def _with_vdb(self) -> tuple[Env, Disk]:
        disk = dataclasses.replace(VDB, alias="virtio-disk1")
        env, _sent = running(self, devices=Devices(disks=(disk,)))
        return env, disk

    def test_detach_disk(self) -> None:
        """
        Detach finds the disk's node, sends C{device_del}, waits for
        C{DEVICE_DELETED}, then deletes both nodes; the disk is gone from the
        live definition and device-removed was emitted.
        """
        env, disk = self._with_vdb()
        s = env.server
        s.expect("query-block", ret=[{"device": "", "qdev": "/machine/peripheral/virtio-disk1/"
                                      "virtio-backend",
                                      "inserted": {"node-name": "libvirt-1-format"}}])
        s.expect("device_del", {"id": "virtio-disk1"})
        s.expect("blockdev-del", {"node-name": "libvirt-1-format"})
        s.expect("blockdev-del", {"node-name": "libvirt-1-storage"})
        d = env.guest.detach_device(disk)
        s.flush()
        self.assertNoResult(d)
        s.send_event("DEVICE_DELETED", {"device": "virtio-disk1",
                                        "path": "/machine/peripheral/virtio-disk1"})
        self.successResultOf(d)
        s.assert_done()
        self.assertEqual(env.guest.live_domain.devices.disks, ())
        self.assertEqual([(e.kind, e.alias) for e in env.events],
                         [("device-removed", "virtio-disk1")])

    def test_detach_timeout(self) -> None:
        """
        A guest that does not release the device: after C{timeouts.detach}
        the detach fails with a clear L{OperationTimeoutError}; when the
        device goes later, its back-end is freed then.
        """
        env, disk = self._with_vdb()
        s = env.server
        s.expect("query-block", ret=[{"qdev": "virtio-disk1",
                                      "inserted": {"node-name": "libvirt-1-format"}}])
        s.expect("device_del")
        d = env.guest.detach_device(disk)
        s.flush()
        env.reactor.advance(GuestTimeouts().detach)
        failure = self.failureResultOf(d, OperationTimeoutError)
        self.assertEqual(failure.value.message,
                         "Timed out during operation: device 'virtio-disk1' was not removed "
                         "in time; the guest did not release it")
        self.assertEqual(len(env.guest.live_domain.devices.disks), 1)
        s.expect("blockdev-del", {"node-name": "libvirt-1-format"})
        s.expect("blockdev-del", {"node-name": "libvirt-1-storage"})
        s.send_event("DEVICE_DELETED", {"device": "virtio-disk1"})
        s.flush()
        s.assert_done()
        self.assertEqual(env.guest.live_domain.devices.disks, ())

    def test_eject_and_insert(self) -> None:
        """
        Ejecting opens the tray (forced), removes the medium, closes the tray
        and frees the old nodes; inserting adds nodes and inserts them.
        """
        cd = Disk(target_dev="hdc", target_bus="ide", device="cdrom", source="/cd1.iso",
                  readonly=True, alias="ide0-1-0")
        env, _sent = running(self, devices=Devices(disks=(cd,)))
        s = env.server
        s.expect("query-block", ret=[{"qdev": "ide0-1-0",
                                      "inserted": {"node-name": "libvirt-1-format"}}])
        s.expect("blockdev-open-tray", {"id": "ide0-1-0", "force": True},
                 events_after=[("DEVICE_TRAY_MOVED", {"id": "ide0-1-0", "tray-open": True})])
        s.expect("blockdev-remove-medium", {"id": "ide0-1-0"})
        s.expect("blockdev-close-tray", {"id": "ide0-1-0"},
                 events_after=[("DEVICE_TRAY_MOVED", {"id": "ide0-1-0", "tray-open": False})])
        s.expect("blockdev-del", {"node-name": "libvirt-1-format"})
        s.expect("blockdev-del", {"node-name": "libvirt-1-storage"})
        d = env.guest.change_media(dataclasses.replace(cd, source=None, alias=None))
        s.flush()
        self.assertIsNone(self.successResultOf(d).source)
        self.assertEqual([(e.kind, e.reason) for e in env.events],
                         [("tray-change", 0), ("tray-change", 1)])
        s.expect("query-block", ret=[{"qdev": "ide0-1-0"}])
        s.expect("query-named-block-nodes", ret=[])
        s.expect("blockdev-open-tray")
        s.expect("blockdev-remove-medium")
        s.expect("blockdev-add", {"driver": "file", "filename": "/cd2.iso",
                                  "node-name": "libvirt-1-storage", "auto-read-only": True,
                                  "discard": "unmap"})
        s.expect("blockdev-add", {"node-name": "libvirt-1-format", "read-only": True,
                                  "driver": "raw", "file": "libvirt-1-storage"})
        s.expect("blockdev-insert-medium", {"id": "ide0-1-0", "node-name": "libvirt-1-format"})
        s.expect("blockdev-close-tray")
        d = env.guest.change_media(dataclasses.replace(cd, source="/cd2.iso", alias=None))
        s.flush()
        self.assertEqual(self.successResultOf(d).source, "/cd2.iso")
        s.assert_done()
        self.assertEqual(env.guest.live_domain.devices.disks[0].source, "/cd2.iso")


class HelperTests(SynchronousTestCase):
    """The pure helpers."""

    def test_save_header_round_trip(self) -> None:
        """
        The header holds the XML and the running flag; the stream starts
        page aligned; other files are refused with a clear error.
        """
        data = saveimage.encode_header("<domain/>", True)
        self.assertEqual(len(data) % 4096, 0)
        header = saveimage.decode_header(data)
        self.assertEqual((header.xml, header.running, header.data_offset),
                         ("<domain/>", True, 4096))
        with self.assertRaises(OperationFailedError) as e:
            saveimage.decode_header(b"LibvirtQemudSave" + b"\0" * 64, "/x.save")
        self.assertIn("'/x.save' is not a save image", e.exception.message)

    def test_create_commit_discard(self) -> None:
        """
        A save writes a hidden temporary file; commit renames it to the final
        name; nothing is left when the directory does not exist.
        """
        base = self.mktemp()
        os.makedirs(base)
        path = os.path.join(base, "g.save")
        tmp, fd = saveimage.create_image(path, "<domain/>", False)
        os.write(fd, b"stream")
        os.close(fd)
        self.assertFalse(os.path.exists(path))
        saveimage.commit_image(tmp, path)
        self.assertEqual(os.listdir(base), ["g.save"])
        header, fd = saveimage.open_stream(path)
        self.assertEqual(os.read(fd, 100), b"stream")
        os.close(fd)
        self.assertFalse(header.running)
        self.assertRaises(OperationFailedError, saveimage.create_image,
                          os.path.join(base, "no", "x.save"), "<domain/>", True)

    def test_node_helpers(self) -> None:
        """
        Node indexes continue after the largest in use; the medium of a
        device is found by id or by QOM path.
        """
        self.assertEqual(hotplug.next_node_index([{"node-name": "libvirt-3-format"},
                                                  {"node-name": "other"}]), 4)
        self.assertEqual(hotplug.next_node_index([]), 1)
        blocks = [{"qdev": "/machine/peripheral/virtio-disk0/virtio-backend",
                   "inserted": {"node-name": "libvirt-2-format"}}]
        self.assertEqual(hotplug.find_block_node(blocks, "virtio-disk0"), "libvirt-2-format")
        self.assertIsNone(hotplug.find_block_node(blocks, "virtio-disk1"))
        self.assertEqual(hotplug.storage_node_of("libvirt-2-format"), "libvirt-2-storage")

    def test_duplicates_refused(self) -> None:
        """
        Attaching a target dev or MAC already present fails with libvirt's text.
        """
        domain = make_domain(devices=Devices(disks=(VDB,), interfaces=(NIC,)))
        with self.assertRaises(OperationFailedError) as e:
            hotplug.check_attachable(domain, VDB)
        self.assertEqual(e.exception.message, "operation failed: target vdb already exists")
        self.assertRaises(OperationFailedError, hotplug.check_attachable, domain, NIC)

    def test_ide_not_hotpluggable(self) -> None:
        """An IDE disk cannot be hot-plugged, as with libvirt."""
        ide = Disk(target_dev="hdb", target_bus="ide", source="/x.img")
        self.assertRaises(OperationUnsupportedError, hotplug.plan_disk_attach, make_domain(), ide, 1,
                          kind="i440fx")

    def test_task_stat(self) -> None:
        """
        A thread's stat line gives its times and the CPU it last ran on.
        """
        line = "42 (CPU 0/KVM) S " + " ".join(str(i) for i in range(4, 53))
        stat = stats.parse_task_stat(line)
        self.assertEqual((stat.state, stat.utime, stat.stime, stat.processor), ("S", 14, 15, 39))

    def test_domstats_params(self) -> None:
        """
        The block group uses libvirt's names and QEMU's counters.
        """
        disk = dataclasses.replace(VDB, alias="virtio-disk1")
        domain = make_domain(devices=Devices(disks=(disk,)))
        counters = stats.block_counters([{"qdev": "/machine/peripheral/virtio-disk1/virtio-"
                                                  "backend",
                                          "stats": {"rd_operations": 5, "rd_bytes": 512}}])
        params = dict(stats.block_params(domain, counters, {}))
        self.assertEqual(params["block.count"], (stats.TP_UINT, 1))
        self.assertEqual(params["block.0.name"], (stats.TP_STRING, "vdb"))
        self.assertEqual(params["block.0.rd.reqs"], (stats.TP_ULLONG, 5))
        self.assertEqual(stats.block_stats(domain, counters, "vdb"), (5, 512, 0, 0, -1))
