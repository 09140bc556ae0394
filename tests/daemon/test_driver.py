"""
Tests for L{qemud.daemon.driver}: the domain registry and its operations,
with a real store in a temporary directory and guests running on fakes
(L{FakeProcessReactor}, L{FakeQMPServer}, L{FakeProcFS}); no real process,
socket, clock or QEMU probe.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from qemud.daemon import driver as drv
from qemud.daemon.driver import DomainInfo
from qemud.daemon.fsutil import is_temp_name
from qemud.domain.xml import parse_domain_xml
from qemud.errors import (
    ConfigUnsupportedError,
    DomainConfigError,
    DomainExistsError,
    NoDomainError,
    OperationFailedError,
    OperationInvalidError,
)
from qemud.qemu.guest import GuestStatus
from qemud.testing import FakeQMPServer
from tests.daemon.fakedriver import (
    UUID1,
    UUID2,
    UUID3,
    DriverEnv,
    domain_xml,
    raw,
)

# libvirt's lifecycle (event, detail) pairs
DEFINED_ADDED = (0, 0)
DEFINED_UPDATED = (0, 1)
UNDEFINED_REMOVED = (1, 0)
STARTED_BOOTED = (2, 0)
SUSPENDED_PAUSED = (3, 0)
RESUMED_UNPAUSED = (4, 0)
STOPPED_SHUTDOWN = (5, 0)
STOPPED_DESTROYED = (5, 1)
STOPPED_FAILED = (5, 5)
SHUTDOWN_GUEST = (6, 1)
SHUTDOWN_HOST = (6, 2)

# libvirt's (state, reason) pairs
RUNNING_BOOTED = (1, 1)
RUNNING_UNPAUSED = (1, 5)
PAUSED_USER = (3, 1)
SHUTOFF_UNKNOWN = (5, 0)
SHUTOFF_SHUTDOWN = (5, 1)
SHUTOFF_DESTROYED = (5, 2)
SHUTOFF_CRASHED = (5, 3)
SHUTOFF_FAILED = (5, 6)

VNC_AUTO = "<graphics type='vnc' autoport='yes' passwd='s3cret'/>"


def call(f: Any, *args: Any) -> Deferred[Any]:
    """
    Call a driver method whether it raises or returns a (failed) Deferred.
    """
    return maybeDeferred(f, *args)


class DefineTests(SynchronousTestCase):
    """define_xml: new domains, redefinition, conflicts, bad XML."""

    def test_define_new(self) -> None:
        """
        Defining a new domain returns its ref with id -1, emits (DEFINED,
        ADDED) and leaves it inactive, persistent, shut off.
        """
        env = DriverEnv(self)
        ref = env.define()
        self.assertEqual(ref, drv.DomainRef("vm1", raw(UUID1), -1))
        self.assertEqual(env.lifecycle(), [DEFINED_ADDED])
        self.assertEqual(env.events[0].ref, ref)
        self.assertFalse(env.driver.is_active(ref.uuid))
        self.assertTrue(env.driver.is_persistent(ref.uuid))
        self.assertEqual(env.driver.get_state(ref.uuid), SHUTOFF_UNKNOWN)

    def test_config_file_written(self) -> None:
        """
        The config file C{NAME.xml} holds the inactive definition (secrets
        included), parses back to the same domain, and no temporary file is
        left behind.
        """
        env = DriverEnv(self)
        ref = env.define(vnc=VNC_AUTO)
        with open(env.config_file("vm1")) as f:
            text = f.read()
        self.assertNotIn(" id=", text.splitlines()[0])
        self.assertIn("passwd='s3cret'", text)
        self.assertEqual(parse_domain_xml(text), parse_domain_xml(
            env.driver.get_xml_desc(ref.uuid, drv.XML_INACTIVE | drv.XML_SECURE)))
        self.assertEqual(parse_domain_xml(text).name, "vm1")
        self.assertEqual(
            [n for n in os.listdir(env.paths.config_dir) if is_temp_name(n)], [])

    def test_redefine_updates(self) -> None:
        """
        Defining the same name and UUID again replaces the config (file
        and memory) and emits (DEFINED, UPDATED).
        """
        env = DriverEnv(self)
        env.define()
        ref = env.define(memory_kib=131072)
        self.assertEqual(env.lifecycle(), [DEFINED_ADDED, DEFINED_UPDATED])
        self.assertEqual(env.driver.get_info(ref.uuid).max_mem_kib, 131072)
        with open(env.config_file("vm1")) as f:
            self.assertEqual(parse_domain_xml(f.read()).memory_kib, 131072)
        self.assertEqual(len(env.driver.list_domains()), 1)

    def test_same_name_other_uuid(self) -> None:
        """
        A second domain with a taken name is refused with libvirt's text;
        the existing config is unchanged.
        """
        env = DriverEnv(self)
        env.define()
        with open(env.config_file("vm1")) as f:
            before = f.read()
        e = self.assertRaises(DomainExistsError, env.define, "vm1", UUID2)
        self.assertEqual(
            e.message, f"operation failed: domain 'vm1' already exists with uuid {UUID1}")
        with open(env.config_file("vm1")) as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(env.lifecycle(), [DEFINED_ADDED])

    def test_same_uuid_other_name(self) -> None:
        """
        A taken UUID under another name is refused with libvirt's text, and
        no file is written for the new name.
        """
        env = DriverEnv(self)
        env.define()
        e = self.assertRaises(DomainExistsError, env.define, "other", UUID1)
        self.assertEqual(
            e.message, f"operation failed: domain 'vm1' is already defined with uuid {UUID1}")
        self.assertFalse(os.path.exists(env.config_file("other")))

    def test_bad_xml_writes_nothing(self) -> None:
        """
        XML that is not a valid domain fails with L{DomainConfigError};
        nothing is written to the config directory and no event is sent.
        """
        env = DriverEnv(self)
        for xml in ["<domain type='kvm'><name>x</name>", "<network/>",
                    "<domain type='kvm'><name>vm1</name><memory>-5</memory></domain>"]:
            self.assertRaises(DomainConfigError, env.driver.define_xml, xml)
        self.assertEqual(
            [n for n in os.listdir(env.paths.config_dir) if n != "autostart"], [])
        self.assertEqual(env.events, [])
        self.assertEqual(env.driver.list_domains(), [])

    def test_bad_redefine_keeps_config(self) -> None:
        """
        A failed redefinition leaves the previous config file and definition
        untouched.
        """
        env = DriverEnv(self)
        ref = env.define()
        with open(env.config_file("vm1")) as f:
            before = f.read()
        self.assertRaises(DomainConfigError, env.driver.define_xml,
                          domain_xml().replace("<vcpu>1</vcpu>", "<vcpu>zero</vcpu>"))
        with open(env.config_file("vm1")) as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(env.driver.get_info(ref.uuid).vcpus, 1)

    def test_missing_emulator(self) -> None:
        """
        An emulator that does not exist is an unsupported configuration;
        nothing is written.
        """
        env = DriverEnv(self)
        xml = domain_xml().replace("/usr/bin/qemu-system-x86_64", "/nonexistent/qemu")
        e = self.assertRaises(ConfigUnsupportedError, env.driver.define_xml, xml)
        self.assertIn("/nonexistent/qemu", e.message)
        self.assertFalse(os.path.exists(env.config_file("vm1")))

    def test_capabilities_from_the_cache(self) -> None:
        """
        The machine type is canonicalised with the capabilities of the
        domain's emulator, asked of the caps cache (never probed here).
        """
        env = DriverEnv(self)
        ref = env.define()
        self.assertIn("/usr/bin/qemu-system-x86_64", env.caps.asked)
        self.assertIn("machine='pc-i440fx-7.2'",
                      env.driver.get_xml_desc(ref.uuid, drv.XML_INACTIVE))

    def test_define_running_transient_makes_persistent(self) -> None:
        """
        Defining the XML of a running transient domain makes it persistent
        (DEFINED, ADDED); it keeps running and stays after it stops.
        """
        env = DriverEnv(self)
        d = env.driver.create_xml(domain_xml())
        env.accept("vm1")
        ref = self.successResultOf(d)
        env.clear()
        self.assertFalse(env.driver.is_persistent(ref.uuid))
        env.driver.define_xml(domain_xml())
        self.assertEqual(env.lifecycle(), [DEFINED_ADDED])
        self.assertTrue(env.driver.is_persistent(ref.uuid))
        self.assertTrue(env.driver.is_active(ref.uuid))
        self.successResultOf(env.destroy(ref))
        self.assertEqual(env.driver.lookup_by_name("vm1").id, -1)
        self.assertTrue(os.path.exists(env.config_file("vm1")))


class LookupTests(SynchronousTestCase):
    """lookup_by_name, lookup_by_uuid, lookup_by_id."""

    def test_inactive(self) -> None:
        """
        An inactive domain is found by name and UUID with id -1; never by id.
        """
        env = DriverEnv(self)
        ref = env.define()
        self.assertEqual(env.driver.lookup_by_name("vm1"), ref)
        self.assertEqual(env.driver.lookup_by_uuid(raw(UUID1)), ref)
        self.assertEqual(ref.id, -1)
        self.assertRaises(NoDomainError, env.driver.lookup_by_id, -1)

    def test_running(self) -> None:
        """
        A running domain is found by name, UUID and its id, each giving the
        same ref with the id.
        """
        env = DriverEnv(self)
        ref = env.started()
        self.assertEqual(ref.id, 1)
        self.assertEqual(env.driver.lookup_by_name("vm1"), ref)
        self.assertEqual(env.driver.lookup_by_uuid(raw(UUID1)), ref)
        self.assertEqual(env.driver.lookup_by_id(1), ref)

    def test_not_found_texts(self) -> None:
        """
        Unknown names, UUIDs and ids raise L{NoDomainError} with libvirt's
        wording.
        """
        env = DriverEnv(self)
        env.define()
        e = self.assertRaises(NoDomainError, env.driver.lookup_by_name, "x")
        self.assertEqual(e.message, "Domain not found: no domain with matching name 'x'")
        e = self.assertRaises(NoDomainError, env.driver.lookup_by_uuid, raw(UUID2))
        self.assertEqual(e.message, f"Domain not found: no domain with matching uuid '{UUID2}'")
        e = self.assertRaises(NoDomainError, env.driver.lookup_by_id, 7)
        self.assertEqual(e.message, "Domain not found: no domain with matching id 7")
        e = self.assertRaises(NoDomainError, env.driver.get_state, raw(UUID2))
        self.assertEqual(e.code, 42)


class ListTests(SynchronousTestCase):
    """list_domains with each flag family."""

    def setUp(self) -> None:
        """
        vm1 running, persistent, autostart; vm2 inactive, persistent;
        vm3 transient, paused.
        """
        self.env = env = DriverEnv(self)
        env.started("vm1", UUID1)
        env.driver.set_autostart(raw(UUID1), True)
        env.define("vm2", UUID2)
        d = env.driver.create_xml(domain_xml("vm3", UUID3), drv.START_PAUSED)
        env.accept("vm3", paused=True)
        self.successResultOf(d)

    def names(self, flags: int) -> list[str]:
        return sorted(r.name for r in self.env.driver.list_domains(flags))

    def test_all(self) -> None:
        """
        Flags 0 lists every domain, with their current ids.
        """
        refs = sorted(self.env.driver.list_domains(0))
        self.assertEqual([(r.name, r.id) for r in refs], [("vm1", 1), ("vm2", -1), ("vm3", 2)])

    def test_active_inactive(self) -> None:
        """
        ACTIVE lists running and paused domains, INACTIVE the others, both
        together all.
        """
        self.assertEqual(self.names(drv.LIST_ACTIVE), ["vm1", "vm3"])
        self.assertEqual(self.names(drv.LIST_INACTIVE), ["vm2"])
        self.assertEqual(self.names(drv.LIST_ACTIVE | drv.LIST_INACTIVE), ["vm1", "vm2", "vm3"])

    def test_persistent_transient(self) -> None:
        """
        PERSISTENT and TRANSIENT split on whether a config exists.
        """
        self.assertEqual(self.names(drv.LIST_PERSISTENT), ["vm1", "vm2"])
        self.assertEqual(self.names(drv.LIST_TRANSIENT), ["vm3"])

    def test_autostart(self) -> None:
        """
        AUTOSTART and NO_AUTOSTART split on the autostart flag.
        """
        self.assertEqual(self.names(drv.LIST_AUTOSTART), ["vm1"])
        self.assertEqual(self.names(drv.LIST_NO_AUTOSTART), ["vm2", "vm3"])

    def test_states(self) -> None:
        """
        RUNNING, PAUSED and SHUTOFF select by state, and combine as a union.
        """
        self.assertEqual(self.names(drv.LIST_RUNNING), ["vm1"])
        self.assertEqual(self.names(drv.LIST_PAUSED), ["vm3"])
        self.assertEqual(self.names(drv.LIST_SHUTOFF), ["vm2"])
        self.assertEqual(self.names(drv.LIST_RUNNING | drv.LIST_SHUTOFF), ["vm1", "vm2"])
        self.assertEqual(self.names(drv.LIST_OTHER), [])

    def test_families_intersect(self) -> None:
        """
        Flags of different families narrow each other down.
        """
        self.assertEqual(self.names(drv.LIST_ACTIVE | drv.LIST_PERSISTENT), ["vm1"])
        self.assertEqual(self.names(drv.LIST_TRANSIENT | drv.LIST_RUNNING), [])
        self.assertEqual(self.names(drv.LIST_NO_MANAGEDSAVE | drv.LIST_NO_SNAPSHOT),
                         ["vm1", "vm2", "vm3"])
        self.assertEqual(self.names(drv.LIST_MANAGEDSAVE), [])


class UndefineTests(SynchronousTestCase):
    """undefine of inactive, running and transient domains."""

    def test_inactive(self) -> None:
        """
        An inactive domain is gone: lookups fail, its config file and
        autostart link are removed, (UNDEFINED, REMOVED) is sent.
        """
        env = DriverEnv(self)
        ref = env.define()
        env.driver.set_autostart(ref.uuid, True)
        env.driver.undefine(ref.uuid)
        self.assertRaises(NoDomainError, env.driver.lookup_by_uuid, ref.uuid)
        self.assertFalse(os.path.exists(env.config_file("vm1")))
        self.assertFalse(os.path.lexists(env.autostart_link("vm1")))
        self.assertEqual(env.lifecycle(), [DEFINED_ADDED, UNDEFINED_REMOVED])
        self.assertEqual(env.driver.list_domains(), [])

    def test_running(self) -> None:
        """
        A running domain keeps running, transient, with its id; once it
        stops it is gone.
        """
        env = DriverEnv(self)
        ref = env.started()
        env.driver.undefine(ref.uuid)
        self.assertEqual(env.lifecycle(), [UNDEFINED_REMOVED])
        self.assertEqual(env.events[0].ref, ref)
        self.assertFalse(os.path.exists(env.config_file("vm1")))
        self.assertEqual(env.driver.lookup_by_name("vm1"), ref)
        self.assertTrue(env.driver.is_active(ref.uuid))
        self.assertFalse(env.driver.is_persistent(ref.uuid))
        self.assertEqual(env.driver.get_state(ref.uuid), RUNNING_BOOTED)
        self.assertTrue(os.path.exists(env.status_file("vm1")))
        self.successResultOf(env.destroy(ref))
        self.assertRaises(NoDomainError, env.driver.lookup_by_name, "vm1")
        self.assertFalse(os.path.exists(env.status_file("vm1")))
        self.assertEqual(env.lifecycle(), [UNDEFINED_REMOVED, STOPPED_DESTROYED])

    def test_transient_refused(self) -> None:
        """
        Undefining a transient domain is an invalid operation.
        """
        env = DriverEnv(self)
        d = env.driver.create_xml(domain_xml())
        env.accept("vm1")
        ref = self.successResultOf(d)
        e = self.assertRaises(OperationInvalidError, env.driver.undefine, ref.uuid)
        self.assertEqual(e.message,
                         "Requested operation is not valid: cannot undefine transient domain")
        self.assertTrue(env.driver.is_active(ref.uuid))

    def test_managed_save_image(self) -> None:
        """
        A managed-save image blocks undefine unless flag 1 is given, which
        removes the image too.
        """
        env = DriverEnv(self)
        ref = env.define()
        image = env.paths.managed_save_file("vm1")
        with open(image, "w") as f:
            f.write("x")
        self.assertTrue(env.driver.has_managed_save(ref.uuid))
        self.assertRaises(OperationInvalidError, env.driver.undefine, ref.uuid)
        env.driver.undefine(ref.uuid, drv.UNDEFINE_MANAGED_SAVE)
        self.assertFalse(os.path.exists(image))


class CreateTests(SynchronousTestCase):
    """create (start a defined domain) and create_xml (transient)."""


    def test_starts_wait_for_a_free_slot(self) -> None:
        """
        At most one QEMU per host CPU initialises at once: with one CPU a
        second start spawns nothing until the first guest runs; a start of a
        domain already waiting for its slot is refused.
        """
        self.patch(drv.os, "cpu_count", lambda: 1)
        env = DriverEnv(self)
        first = env.define("vm1", UUID1)
        second = env.define("vm2", UUID2)
        d1 = env.driver.create(first.uuid)
        d2 = env.driver.create(second.uuid)
        self.assertEqual(len(env.reactor.spawned), 1)
        self.assertFalse(env.driver.is_active(second.uuid))
        with self.assertRaises(OperationInvalidError):
            env.driver.create(second.uuid)
        env.accept("vm1")
        self.successResultOf(d1)
        self.assertEqual(len(env.reactor.spawned), 2)
        env.accept("vm2")
        self.assertEqual(self.successResultOf(d2).name, "vm2")
    def test_start(self) -> None:
        """
        Starting runs the guest: running/booted, id 1, (RESUMED, UNPAUSED)
        then (STARTED, BOOTED) carrying the id, and a status file that
        re-attach can read.
        """
        env = DriverEnv(self)
        ref = env.define()
        env.clear()
        running = self.successResultOf(env.start(ref))
        self.assertEqual(running, drv.DomainRef("vm1", raw(UUID1), 1))
        self.assertEqual(env.driver.get_state(ref.uuid), RUNNING_BOOTED)
        self.assertEqual(env.lifecycle(), [RESUMED_UNPAUSED, STARTED_BOOTED])
        self.assertEqual([e.ref for e in env.events], [running, running])
        with open(env.status_file("vm1")) as f:
            status = GuestStatus.from_document(f.read())
        self.assertEqual(status.pid, env.process().original_pid)
        self.assertEqual(status.domain_id, 1)
        self.assertEqual((status.state, status.reason), RUNNING_BOOTED)
        self.assertIn("id='1'", status.live_xml)
        self.assertIn("guest=vm1", ",".join(env.process().argv))
        env.servers["vm1"].assert_done()

    def test_start_paused(self) -> None:
        """
        START_PAUSED leaves the guest paused/user with (STARTED, BOOTED),
        (SUSPENDED, PAUSED); C{cont} is never sent.
        """
        env = DriverEnv(self)
        ref = env.define()
        env.clear()
        self.successResultOf(env.start(ref, paused=True))
        self.assertEqual(env.driver.get_state(ref.uuid), PAUSED_USER)
        self.assertEqual(env.lifecycle(), [STARTED_BOOTED, SUSPENDED_PAUSED])
        self.assertNotIn("cont", env.servers["vm1"].commands)

    def test_start_twice(self) -> None:
        """
        Starting a running domain, or one still starting, fails with
        "domain is already running" and spawns nothing.
        """
        env = DriverEnv(self)
        ref = env.define()
        starting = env.driver.create(ref.uuid)
        f = self.failureResultOf(call(env.driver.create, ref.uuid), OperationInvalidError)
        self.assertEqual(f.value.message,
                         "Requested operation is not valid: domain is already running")
        env.accept("vm1")
        self.successResultOf(starting)
        self.failureResultOf(call(env.driver.create, ref.uuid), OperationInvalidError)
        self.assertEqual(len(env.reactor.spawned), 1)

    def test_start_failure(self) -> None:
        """
        QEMU dying during start-up fails the create; the domain is inactive,
        shut off with reason failed, no status file, its VNC port is free
        again, and no id stays assigned.
        """
        env = DriverEnv(self)
        ref = env.define(vnc=VNC_AUTO)
        env.clear()
        d = env.driver.create(ref.uuid)
        self.assertEqual(env.vnc.reserved, {5900})
        env.process().exit(1)
        self.failureResultOf(d, OperationFailedError)
        self.assertEqual(env.driver.get_state(ref.uuid), SHUTOFF_FAILED)
        self.assertFalse(env.driver.is_active(ref.uuid))
        self.assertEqual(env.driver.lookup_by_name("vm1").id, -1)
        self.assertRaises(NoDomainError, env.driver.lookup_by_id, 1)
        self.assertFalse(os.path.exists(env.status_file("vm1")))
        self.assertEqual(env.vnc.reserved, set())
        self.assertEqual(env.lifecycle(), [])

    def test_spawn_failure(self) -> None:
        """
        A QEMU that cannot be executed fails the create the same way.
        """
        env = DriverEnv(self)
        ref = env.define(vnc=VNC_AUTO)
        env.reactor.spawn_exception = PermissionError(13, "Permission denied")
        f = self.failureResultOf(env.driver.create(ref.uuid), OperationFailedError)
        self.assertIn("Permission denied", f.value.message)
        self.assertEqual(env.driver.get_state(ref.uuid), SHUTOFF_FAILED)
        self.assertFalse(os.path.exists(env.status_file("vm1")))
        self.assertEqual(env.vnc.reserved, set())

    def test_destroy_while_starting(self) -> None:
        """
        Destroying a domain that is still starting fails the start and
        leaves it shut off/destroyed, as the guest itself reports.
        """
        env = DriverEnv(self)
        ref = env.define()
        starting = env.driver.create(ref.uuid)
        destroyed = env.driver.destroy(ref.uuid)
        env.reactor.advance(0)
        self.successResultOf(destroyed)
        self.failureResultOf(starting, OperationFailedError)
        self.assertFalse(env.driver.is_active(ref.uuid))
        self.assertEqual(env.driver.get_state(ref.uuid), SHUTOFF_DESTROYED)

    def test_start_again_after_failure(self) -> None:
        """
        After a failed start the domain can be started again.
        """
        env = DriverEnv(self)
        ref = env.define()
        d = env.driver.create(ref.uuid)
        env.process().exit(1)
        self.failureResultOf(d, OperationFailedError)
        running = self.successResultOf(env.start(ref))
        self.assertEqual(env.driver.get_state(ref.uuid), RUNNING_BOOTED)
        self.assertEqual(running.id, 2)

    def test_create_xml_transient(self) -> None:
        """
        create_xml starts a transient domain (no config file, no DEFINED
        event) that vanishes from the list once destroyed.
        """
        env = DriverEnv(self)
        d = env.driver.create_xml(domain_xml())
        env.accept("vm1")
        ref = self.successResultOf(d)
        self.assertEqual(ref.id, 1)
        self.assertFalse(env.driver.is_persistent(ref.uuid))
        self.assertFalse(os.path.exists(env.config_file("vm1")))
        self.assertTrue(os.path.exists(env.status_file("vm1")))
        self.assertEqual(env.driver.list_domains(drv.LIST_TRANSIENT), [ref])
        self.successResultOf(env.destroy(ref))
        self.assertEqual(env.driver.list_domains(), [])
        self.assertRaises(NoDomainError, env.driver.lookup_by_uuid, ref.uuid)
        self.assertFalse(os.path.exists(env.status_file("vm1")))
        self.assertEqual(env.lifecycle(),
                         [RESUMED_UNPAUSED, STARTED_BOOTED, STOPPED_DESTROYED])
        self.assertEqual(env.events[-1].ref.id, -1)

    def test_create_xml_failure_forgets(self) -> None:
        """
        A transient domain whose start fails is not left behind.
        """
        env = DriverEnv(self)
        d = env.driver.create_xml(domain_xml())
        env.process().exit(1)
        self.failureResultOf(d, OperationFailedError)
        self.assertEqual(env.driver.list_domains(), [])

    def test_create_xml_of_active_domain(self) -> None:
        """
        create_xml with the name and UUID of a running domain is refused;
        with only its name, too.
        """
        env = DriverEnv(self)
        env.started()
        self.failureResultOf(call(env.driver.create_xml, domain_xml()), DomainExistsError)
        self.failureResultOf(call(env.driver.create_xml, domain_xml("vm1", UUID2)),
                             DomainExistsError)
        self.assertEqual(len(env.reactor.spawned), 1)

    def test_create_xml_of_inactive_persistent(self) -> None:
        """
        create_xml for an inactive defined domain runs it with the given
        definition; the domain stays persistent, its config unchanged.
        """
        env = DriverEnv(self)
        ref = env.define()
        d = env.driver.create_xml(domain_xml(memory_kib=131072))
        env.accept("vm1")
        self.successResultOf(d)
        self.assertTrue(env.driver.is_persistent(ref.uuid))
        self.assertEqual(env.driver.get_info(ref.uuid).max_mem_kib, 131072)
        inactive = env.driver.get_xml_desc(ref.uuid, drv.XML_INACTIVE)
        self.assertEqual(parse_domain_xml(inactive).memory_kib, 65536)


class LifecycleTests(SynchronousTestCase):
    """suspend, resume, destroy, shutdown and wrong-state operations."""

    def test_suspend_resume_destroy(self) -> None:
        """
        suspend → paused/user, resume → running/unpaused, destroy →
        shutoff/destroyed; listeners hear each event once, in order, and
        the status file follows the state until it is removed.
        """
        env = DriverEnv(self)
        ref = env.started()
        server = env.servers["vm1"]
        server.expect("stop", events_before=[("STOP", {})])
        d = env.driver.suspend(ref.uuid)
        server.flush()
        self.successResultOf(d)
        self.assertEqual(env.driver.get_state(ref.uuid), PAUSED_USER)
        with open(env.status_file("vm1")) as f:
            self.assertEqual(GuestStatus.from_document(f.read()).state, 3)
        server.expect("cont", events_before=[("RESUME", {})])
        d = env.driver.resume(ref.uuid)
        server.flush()
        self.successResultOf(d)
        self.assertEqual(env.driver.get_state(ref.uuid), RUNNING_UNPAUSED)
        env.process().signal_behaviour["TERM"] = 0.5
        d = env.driver.destroy(ref.uuid)
        server.send_event("SHUTDOWN", {"guest": False, "reason": "host-signal"})
        self.assertNoResult(d)
        env.reactor.advance(0.5)
        self.successResultOf(d)
        self.assertEqual(env.driver.get_state(ref.uuid), SHUTOFF_DESTROYED)
        self.assertEqual(env.lifecycle(), [SUSPENDED_PAUSED, RESUMED_UNPAUSED,
                                           SHUTDOWN_HOST, STOPPED_DESTROYED])
        self.assertEqual([e.ref.id for e in env.events], [1, 1, 1, -1])
        self.assertFalse(os.path.exists(env.status_file("vm1")))
        self.assertEqual(env.driver.lookup_by_name("vm1").id, -1)
        self.assertRaises(NoDomainError, env.driver.lookup_by_id, 1)

    def test_guest_shutdown(self) -> None:
        """
        shutdown presses the power button; when the guest powers off the
        domain ends shut off/shutdown with (SHUTDOWN, GUEST), (STOPPED,
        SHUTDOWN).
        """
        env = DriverEnv(self)
        ref = env.started()
        env.servers["vm1"].expect("system_powerdown")
        d = env.driver.shutdown(ref.uuid)
        env.servers["vm1"].flush()
        self.successResultOf(d)
        self.assertEqual(env.driver.get_state(ref.uuid), RUNNING_BOOTED)
        env.power_off()
        self.assertEqual(env.driver.get_state(ref.uuid), SHUTOFF_SHUTDOWN)
        self.assertEqual(env.lifecycle(), [SHUTDOWN_GUEST, STOPPED_SHUTDOWN])

    def test_crash(self) -> None:
        """
        QEMU dying unasked leaves the domain shut off/crashed with
        (STOPPED, FAILED), as libvirt reports a monitor EOF without a
        SHUTDOWN event; its status file is removed.
        """
        env = DriverEnv(self)
        ref = env.started()
        env.process().kill_by_signal(9)
        self.assertEqual(env.driver.get_state(ref.uuid), SHUTOFF_CRASHED)
        self.assertEqual(env.lifecycle(), [STOPPED_FAILED])
        self.assertFalse(os.path.exists(env.status_file("vm1")))

    def test_operations_on_inactive_domain(self) -> None:
        """
        Every lifecycle operation on a shut-off domain fails with
        "domain is not running".
        """
        env = DriverEnv(self)
        ref = env.define()
        for op in (env.driver.destroy, env.driver.shutdown, env.driver.reboot,
                   env.driver.reset, env.driver.suspend, env.driver.resume):
            f = self.failureResultOf(call(op, ref.uuid), OperationInvalidError)
            self.assertEqual(f.value.message,
                             "Requested operation is not valid: domain is not running")
            self.assertEqual(f.value.code, 55)

    def test_operations_on_unknown_domain(self) -> None:
        """
        Operations on an unknown UUID fail with L{NoDomainError}.
        """
        env = DriverEnv(self)
        for op in (env.driver.create, env.driver.destroy, env.driver.suspend,
                   env.driver.get_xml_desc, env.driver.get_info, env.driver.undefine):
            self.failureResultOf(call(op, raw(UUID2)), NoDomainError)

    def test_suspend_paused_and_resume_running_do_nothing(self) -> None:
        """
        As in libvirt, suspending a paused guest and resuming a running one
        succeed without QMP commands or events.
        """
        env = DriverEnv(self)
        ref = env.started()
        server = env.servers["vm1"]
        self.successResultOf(env.driver.resume(ref.uuid))
        server.expect("stop")
        d = env.driver.suspend(ref.uuid)
        server.flush()
        self.successResultOf(d)
        self.successResultOf(env.driver.suspend(ref.uuid))
        self.assertEqual(server.commands[-1:], ["stop"])
        self.assertEqual(server.commands.count("stop"), 1)
        self.assertEqual(env.lifecycle(), [SUSPENDED_PAUSED])

    def test_listener_removed_and_failing(self) -> None:
        """
        A removed listener hears nothing more; one that raises does not
        stop the others from hearing the event.
        """
        env = DriverEnv(self)
        heard: list[Any] = []

        def broken(event: Any) -> None:
            raise RuntimeError("boom")

        env.driver.add_event_listener(broken)
        env.driver.add_event_listener(heard.append)
        env.define()
        env.driver.remove_event_listener(heard.append)
        env.driver.remove_event_listener(heard.append)
        env.define()
        self.assertEqual(len(heard), 1)
        self.assertEqual(env.lifecycle(), [DEFINED_ADDED, DEFINED_UPDATED])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class AutostartTests(SynchronousTestCase):
    """set_autostart / get_autostart and the link."""

    def test_set_and_clear(self) -> None:
        """
        Enabling autostart creates the relative link C{../vm1.xml};
        disabling removes it.
        """
        env = DriverEnv(self)
        ref = env.define()
        self.assertFalse(env.driver.get_autostart(ref.uuid))
        env.driver.set_autostart(ref.uuid, True)
        self.assertTrue(env.driver.get_autostart(ref.uuid))
        link = env.autostart_link("vm1")
        self.assertEqual(os.readlink(link), "../vm1.xml")
        self.assertTrue(os.path.samefile(link, env.config_file("vm1")))
        env.driver.set_autostart(ref.uuid, True)
        env.driver.set_autostart(ref.uuid, False)
        self.assertFalse(env.driver.get_autostart(ref.uuid))
        self.assertFalse(os.path.lexists(link))

    def test_transient_refused(self) -> None:
        """
        A transient domain cannot be marked for autostart.
        """
        env = DriverEnv(self)
        d = env.driver.create_xml(domain_xml())
        env.accept("vm1")
        ref = self.successResultOf(d)
        self.assertRaises(OperationInvalidError, env.driver.set_autostart, ref.uuid, True)
        self.assertFalse(os.path.lexists(env.autostart_link("vm1")))

    def test_loaded(self) -> None:
        """
        load() reads the autostart links.
        """
        env = DriverEnv(self)
        ref = env.define()
        env.driver.set_autostart(ref.uuid, True)
        env.define("vm2", UUID2)
        env2 = DriverEnv(self, root=env.root)
        self.successResultOf(env2.driver.load())
        self.assertTrue(env2.driver.get_autostart(raw(UUID1)))
        self.assertFalse(env2.driver.get_autostart(raw(UUID2)))


class CapabilitiesTests(SynchronousTestCase):
    """capabilities_xml: the host's slow facts are probed off the reactor."""

    def env(self) -> DriverEnv:
        """@return: a driver whose fake host has one CPU and some memory."""
        env = DriverEnv(self)
        proc = os.path.join(env.root, "host", "proc")
        os.makedirs(proc, exist_ok=True)
        with open(os.path.join(proc, "cpuinfo"), "w") as f:
            f.write("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu MHz\t\t: 2596.146\n\n")
        with open(os.path.join(proc, "meminfo"), "w") as f:
            f.write("MemTotal:        1024000 kB\nMemFree:          512000 kB\n")
        return env

    def test_probe_in_thread_once(self) -> None:
        """
        The first call hands the slow host probe to a thread and answers
        once it is done; a call made meanwhile waits for the same probe;
        later calls answer at once without probing again.
        """
        env = self.env()
        first = env.driver.capabilities_xml()
        second = env.driver.capabilities_xml()
        self.assertNoResult(first)
        self.assertEqual(len(env.threads), 1)
        env.run_threads()
        texts = [self.successResultOf(d) for d in (first, second)]
        self.assertIn("<host>", texts[0])
        self.assertIn("<emulator>", texts[0])
        self.assertEqual(texts[1], texts[0])
        third = env.driver.capabilities_xml()
        self.assertEqual(env.threads, [])
        self.assertEqual(self.successResultOf(third), texts[0])

    def test_failed_probe_is_retried(self) -> None:
        """
        A probe that raises fails the call that waited for it with the
        cause, and the next call probes again.
        """
        env = self.env()
        d = env.driver.capabilities_xml()
        work, waiting = env.threads.pop()
        waiting.errback(OSError("cpuid unreadable"))
        self.failureResultOf(d, OSError)
        again = env.driver.capabilities_xml()
        self.assertEqual(len(env.threads), 1)
        env.run_threads()
        self.assertIn("<host>", self.successResultOf(again))


class DescriptionTests(SynchronousTestCase):
    """get_xml_desc and get_info."""

    def test_xml_flags(self) -> None:
        """
        Live XML has C{id='1'}, aliases and the chosen VNC port; INACTIVE
        is the config without id; the VNC password appears only with SECURE.
        """
        env = DriverEnv(self)
        ref = env.define(vnc=VNC_AUTO)
        d = env.start(ref, setup=("set_password",))
        self.successResultOf(d)
        live = env.driver.get_xml_desc(ref.uuid)
        self.assertTrue(live.startswith("<domain type='kvm' id='1'>"))
        self.assertIn("<alias name=", live)
        self.assertIn("port='5900'", live)
        self.assertNotIn("passwd", live)
        self.assertIn("passwd='s3cret'", env.driver.get_xml_desc(ref.uuid, drv.XML_SECURE))
        inactive = env.driver.get_xml_desc(ref.uuid, drv.XML_INACTIVE)
        self.assertTrue(inactive.startswith("<domain type='kvm'>"))
        self.assertNotIn("<alias", inactive)
        self.assertNotIn("passwd", inactive)
        self.assertNotIn("port='5900'", inactive)
        self.assertIn("passwd='s3cret'",
                      env.driver.get_xml_desc(ref.uuid, drv.XML_INACTIVE | drv.XML_SECURE))
        set_password = [m for m in env.servers["vm1"].received
                        if m["execute"] == "set_password"]
        self.assertEqual(set_password[0]["arguments"],
                         {"protocol": "vnc", "password": "s3cret"})

    def test_xml_of_inactive(self) -> None:
        """
        Without a running guest, flags 0 and INACTIVE give the same config.
        """
        env = DriverEnv(self)
        ref = env.define()
        self.assertEqual(env.driver.get_xml_desc(ref.uuid),
                         env.driver.get_xml_desc(ref.uuid, drv.XML_INACTIVE))
        self.assertNotIn(" id=", env.driver.get_xml_desc(ref.uuid))

    def test_info(self) -> None:
        """
        get_info reports state, memory, vCPUs, and QEMU's CPU time from
        /proc while running (0 when shut off).
        """
        env = DriverEnv(self)
        ref = env.define(memory_kib=131072)
        self.assertEqual(env.driver.get_info(ref.uuid), DomainInfo(5, 131072, 131072, 1, 0))
        self.successResultOf(env.start(ref))
        entry = env.reactor.procfs.entries[env.process().original_pid]
        entry.stat = dataclasses.replace(entry.stat, utime=150, stime=50)
        self.assertEqual(env.driver.get_info(ref.uuid),
                         DomainInfo(1, 131072, 131072, 1, 2_000_000_000))
        self.assertEqual(env.driver.get_os_type(ref.uuid), "hvm")


class ReloadTests(SynchronousTestCase):
    """reload_configs: the SIGHUP path."""

    def test_picks_up_new_and_skips_corrupt(self) -> None:
        """
        A config file added to the directory is loaded; a corrupt one is
        logged and skipped; known domains are kept as they are.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        env = DriverEnv(self)
        env.define()
        with open(env.config_file("vm2"), "w") as f:
            f.write(domain_xml("vm2", UUID2))
        with open(env.config_file("bad"), "w") as f:
            f.write("<domain type='kvm'><name>bad</nam")
        env.driver.reload_configs()
        self.assertEqual(env.driver.lookup_by_name("vm2"),
                         drv.DomainRef("vm2", raw(UUID2), -1))
        self.assertRaises(NoDomainError, env.driver.lookup_by_name, "bad")
        self.assertEqual(sorted(r.name for r in env.driver.list_domains()), ["vm1", "vm2"])
        errors = [e for e in observer if e.get("name") == "bad"]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["log_format"], "skipping config of {name}: {error}")

    def test_skips_name_mismatch_and_duplicate_uuid(self) -> None:
        """
        A file whose domain name differs from the file name, or whose UUID
        belongs to a known domain, is skipped.
        """
        env = DriverEnv(self)
        env.define()
        with open(env.config_file("vm2"), "w") as f:
            f.write(domain_xml("vm3", UUID3))
        with open(env.config_file("vm4"), "w") as f:
            f.write(domain_xml("vm4", UUID1))
        env.driver.reload_configs()
        self.assertEqual([r.name for r in env.driver.list_domains()], ["vm1"])

    def test_reads_autostart_of_new_domain(self) -> None:
        """
        A domain picked up by reload with an autostart link is marked for
        autostart, as libvirt's reload (virDomainObjListLoadAllConfigs with
        the autostart directory) does.
        """
        env = DriverEnv(self)
        with open(env.config_file("vm2"), "w") as f:
            f.write(domain_xml("vm2", UUID2))
        os.symlink("../vm2.xml", env.autostart_link("vm2"))
        env.driver.reload_configs()
        self.assertTrue(env.driver.get_autostart(raw(UUID2)))


class ReattachTests(SynchronousTestCase):
    """load() after a daemon restart: status files and re-attach."""

    def restart(self, env: DriverEnv, **kw: Any) -> DriverEnv:
        """
        A second daemon on the same directories and the same (fake) host.
        """
        return DriverEnv(self, root=env.root, reactor=env.reactor, **kw)

    def test_reattach_running(self) -> None:
        """
        A guest that still runs is re-attached: running, same id, same pid;
        it can then be operated and its exit is noticed.
        """
        env = DriverEnv(self)
        ref = env.started()
        pid = env.process().original_pid
        env2 = self.restart(env)
        loaded = env2.driver.load()
        self.assertNoResult(loaded)
        server = FakeQMPServer()
        server.expect("query-status", ret={"status": "running", "running": True})
        env.reactor.accept_unix(server)
        self.successResultOf(loaded)
        self.assertEqual(env2.driver.lookup_by_name("vm1"), ref)
        self.assertEqual(env2.driver.lookup_by_id(1), ref)
        self.assertEqual(env2.driver.get_state(ref.uuid), RUNNING_BOOTED)
        self.assertTrue(env2.driver.is_persistent(ref.uuid))
        self.assertIn("id='1'", env2.driver.get_xml_desc(ref.uuid))
        status = GuestStatus.from_document(open(env2.status_file("vm1")).read())
        self.assertEqual(status.pid, pid)
        server.expect("stop", events_before=[("STOP", {})])
        d = env2.driver.suspend(ref.uuid)
        server.flush()
        self.successResultOf(d)
        self.assertEqual(env2.lifecycle(), [SUSPENDED_PAUSED])
        env.reactor.procfs.remove(pid)
        env.reactor.advance(1)
        self.assertEqual(env2.driver.get_state(ref.uuid), SHUTOFF_CRASHED)
        self.assertFalse(os.path.exists(env2.status_file("vm1")))

    def test_interrupted_start_is_stopped(self) -> None:
        """
        QEMU is recorded in a status file as soon as it runs; a daemon killed
        before the start completes leaves it paused/starting-up, and the next
        daemon stops that QEMU and shows the domain shut off/failed instead
        of leaving an orphan that a new start would run twice.
        """
        env = DriverEnv(self)
        ref = env.define()
        self.assertNoResult(env.driver.create(ref.uuid))  # no QMP greeting yet
        pid = env.process().original_pid
        status = GuestStatus.from_document(open(env.status_file("vm1")).read())
        self.assertEqual((status.pid, status.state, status.reason), (pid, 3, 11))
        env2 = self.restart(env)
        loaded = env2.driver.load()
        server = FakeQMPServer()
        server.expect("query-status", ret={"status": "prelaunch", "running": False})
        env.reactor.procfs.entries[pid].on_signal[signal.SIGTERM] = "exit"
        env.reactor.accept_unix(server)
        env.reactor.advance(1)
        self.successResultOf(loaded)
        self.assertIn((pid, signal.SIGTERM), env.reactor.procfs.signals)
        self.assertEqual(env2.driver.get_state(ref.uuid), (5, 6))
        self.assertFalse(os.path.exists(env2.status_file("vm1")))

    def test_start_interrupted_before_the_pid_was_recorded(self) -> None:
        """
        The status is written before QEMU is spawned (pid 0, starting up): a
        daemon killed between the spawn and the next status write leaves a
        QEMU that the next daemon finds by its UUID and HOME, kills, and the
        domain is shut off/failed; another daemon's QEMU with the same UUID
        (another HOME) is left alone.
        """
        env = DriverEnv(self)
        ref = env.define()
        self.assertNoResult(env.driver.create(ref.uuid))
        pid = env.process().original_pid
        document = open(env.status_file("vm1")).read()
        spawned = GuestStatus.from_document(document)
        unrecorded = dataclasses.replace(spawned, pid=0, start_time=0)
        with open(env.status_file("vm1"), "w") as f:
            f.write(unrecorded.to_document())
        procfs = env.reactor.procfs
        foreign = procfs.add(pid + 100, procfs.entries[pid].cmdline)
        foreign.environ = {"HOME": "/elsewhere"}
        env2 = self.restart(env)
        self.successResultOf(env2.driver.load())
        self.assertIn((pid, signal.SIGKILL), procfs.signals)
        self.assertNotIn(pid + 100, [p for p, _ in procfs.signals])
        self.assertEqual(env2.driver.get_state(ref.uuid), (5, 6))
        self.assertFalse(os.path.exists(env2.status_file("vm1")))

    def test_injected_attach(self) -> None:
        """
        load() hands the parsed live definition and the status to the
        injected guest_attach.
        """
        env = DriverEnv(self)
        env.started()
        seen: list[Any] = []

        def attach(reactor: Any, live: Any, status: GuestStatus) -> Deferred[Any]:
            seen.append((reactor, live.name, status.domain_id, status.pid))
            return fail(OperationFailedError("nope"))

        env2 = self.restart(env, guest_attach=attach)
        self.successResultOf(env2.driver.load())
        self.assertEqual(seen, [(env.reactor, "vm1", 1, env.process().original_pid)])

    def test_attach_failure(self) -> None:
        """
        A failed re-attach leaves a persistent domain shut off/crashed and
        removes its status file.
        """
        env = DriverEnv(self)
        ref = env.started(vnc=VNC_AUTO, setup=("set_password",))

        def attach(reactor: Any, live: Any, status: GuestStatus) -> Deferred[Any]:
            return fail(OperationFailedError("QEMU process is gone"))

        env2 = self.restart(env, guest_attach=attach)
        self.successResultOf(env2.driver.load())
        self.assertEqual(env2.driver.lookup_by_name("vm1").id, -1)
        self.assertEqual(env2.driver.get_state(ref.uuid), SHUTOFF_CRASHED)
        self.assertFalse(os.path.exists(env2.status_file("vm1")))
        self.assertEqual(env2.vnc.reserved, set())

    def test_transient_dead(self) -> None:
        """
        A transient domain whose QEMU died while the daemon was away is
        gone after load(), and so is its status file.
        """
        env = DriverEnv(self)
        d = env.driver.create_xml(domain_xml())
        env.accept("vm1")
        ref = self.successResultOf(d)
        env.reactor.procfs.remove(env.process().original_pid)
        env2 = self.restart(env)
        self.successResultOf(env2.driver.load())
        self.assertRaises(NoDomainError, env2.driver.lookup_by_uuid, ref.uuid)
        self.assertEqual(env2.driver.list_domains(), [])
        self.assertFalse(os.path.exists(env2.status_file("vm1")))

    def test_transient_reattached(self) -> None:
        """
        A live transient domain is re-attached as transient and running.
        """
        env = DriverEnv(self)
        d = env.driver.create_xml(domain_xml())
        env.accept("vm1")
        ref = self.successResultOf(d)
        env2 = self.restart(env)
        loaded = env2.driver.load()
        server = FakeQMPServer()
        server.expect("query-status", ret={"status": "running", "running": True})
        env.reactor.accept_unix(server)
        self.successResultOf(loaded)
        self.assertEqual(env2.driver.lookup_by_uuid(ref.uuid), ref)
        self.assertFalse(env2.driver.is_persistent(ref.uuid))
        self.assertEqual(env2.driver.list_domains(drv.LIST_TRANSIENT | drv.LIST_ACTIVE), [ref])

    def test_unreadable_status_dropped(self) -> None:
        """
        A status file that does not parse is removed; the domain stays
        defined and shut off.
        """
        env = DriverEnv(self)
        env.define()
        with open(env.status_file("vm1"), "w") as f:
            f.write("{not json")
        self.successResultOf(env.driver.load())
        self.assertFalse(os.path.exists(env.status_file("vm1")))
        self.assertEqual(env.driver.get_state(raw(UUID1))[0], 5)

    def test_ids_not_reused(self) -> None:
        """
        After re-attaching to the guest with id 2, the next start gets id
        3, not an id already handed out.
        """
        env = DriverEnv(self)
        first = env.started("vm1", UUID1)
        second = env.started("vm2", UUID2)
        self.assertEqual((first.id, second.id), (1, 2))
        self.successResultOf(env.destroy(first))
        env2 = self.restart(env)
        loaded = env2.driver.load()
        server = FakeQMPServer()
        server.expect("query-status", ret={"status": "running", "running": True})
        env.reactor.accept_unix(server)
        self.successResultOf(loaded)
        self.assertEqual(env2.driver.lookup_by_name("vm2").id, 2)
        third = self.successResultOf(env2.start(env2.driver.lookup_by_name("vm1")))
        self.assertEqual(third.id, 3)
        env2.define("vm3", UUID3)
        fourth = self.successResultOf(env2.start(env2.driver.lookup_by_name("vm3")))
        self.assertEqual(fourth.id, 4)

    def test_vnc_port_kept_reserved(self) -> None:
        """
        A re-attached guest keeps its autoport VNC port: the next guest gets
        another one.
        """
        env = DriverEnv(self)
        env.started("vm1", UUID1, vnc=VNC_AUTO, setup=("set_password",))
        env2 = self.restart(env)
        loaded = env2.driver.load()
        server = FakeQMPServer()
        server.expect("query-status", ret={"status": "running", "running": True})
        env.reactor.accept_unix(server)
        self.successResultOf(loaded)
        self.assertEqual(env2.vnc.reserved, {5900})
        ref = env2.define("vm2", UUID2, vnc=VNC_AUTO)
        self.successResultOf(env2.start(ref, setup=("set_password",)))
        self.assertEqual(env2.vnc.reserved, {5900, 5901})

    def test_query_while_transient_attach_pending(self) -> None:
        """
        While a transient guest is being re-attached, other domains can be
        defined and the pending one is described and shown running from its
        status file.
        """
        env = DriverEnv(self)
        d = env.driver.create_xml(domain_xml())
        env.accept("vm1")
        self.successResultOf(d)
        pending: Deferred[Any] = Deferred()
        env2 = self.restart(env, guest_attach=lambda *a: pending)
        env2.driver.load()
        env2.define("vm2", UUID2)
        self.assertIn("<name>vm1</name>", env2.driver.get_xml_desc(raw(UUID1)))
        self.assertEqual(env2.driver.get_state(raw(UUID1)), (1, 1))

    def test_status_without_id_gets_one(self) -> None:
        """
        A status document without C{domain_id} (accepted by
        L{GuestStatus.from_document}) re-attaches the guest with a fresh id:
        a running domain never has id -1.
        """
        env = DriverEnv(self)
        ref = env.started()
        with open(env.status_file("vm1")) as f:
            status = GuestStatus.from_document(f.read())
        with open(env.status_file("vm1"), "w") as f:
            f.write(dataclasses.replace(status, domain_id=-1).to_document())
        env2 = self.restart(env)
        loaded = env2.driver.load()
        server = FakeQMPServer()
        server.expect("query-status", ret={"status": "running", "running": True})
        env.reactor.accept_unix(server)
        self.successResultOf(loaded)
        self.assertTrue(env2.driver.is_active(ref.uuid))
        self.assertGreater(env2.driver.lookup_by_uuid(ref.uuid).id, 0)
        self.assertRaises(NoDomainError, env2.driver.lookup_by_id, -1)


class VncPortTests(SynchronousTestCase):
    """VNC autoport allocation across guests."""

    def test_distinct_ports_freed_on_exit(self) -> None:
        """
        Two autoport guests get 5900 and 5901; when the first exits its port
        is free and the next guest gets it back.
        """
        env = DriverEnv(self)
        a = env.define("vm1", UUID1, vnc=VNC_AUTO)
        b = env.define("vm2", UUID2, vnc=VNC_AUTO)
        self.successResultOf(env.start(a, setup=("set_password",)))
        self.successResultOf(env.start(b, setup=("set_password",)))
        self.assertIn("port='5900'", env.driver.get_xml_desc(a.uuid))
        self.assertIn("port='5901'", env.driver.get_xml_desc(b.uuid))
        self.assertEqual(env.vnc.reserved, {5900, 5901})
        vnc_args = [p.argv[p.argv.index("-vnc") + 1] for p in env.reactor.spawned]
        self.assertNotEqual(vnc_args[0], vnc_args[1])
        self.successResultOf(env.destroy(a))
        self.assertEqual(env.vnc.reserved, {5901})
        env.power_off("vm2")
        self.assertEqual(env.vnc.reserved, set())
        self.successResultOf(env.start(b, setup=("set_password",)))
        self.assertIn("port='5900'", env.driver.get_xml_desc(b.uuid))

    def test_fixed_port_not_allocated(self) -> None:
        """
        A guest with a fixed VNC port takes nothing from the allocator.
        """
        env = DriverEnv(self)
        ref = env.define(vnc="<graphics type='vnc' port='5907' autoport='no'/>")
        self.successResultOf(env.start(ref))
        self.assertEqual(env.vnc.reserved, set())
        self.assertIn("port='5907'", env.driver.get_xml_desc(ref.uuid))
