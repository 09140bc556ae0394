# -*- test-case-name: tests.domain.test_validate -*-
"""
Tests for L{qemud.domain.validate}: checks on typed definitions.
"""

from __future__ import annotations

import unittest
from dataclasses import replace

from qemud.domain.model import CharDev, Devices, Disk, Domain, Input, Interface
from qemud.domain.validate import check_name, validate_device, validate_domain
from qemud.errors import ConfigUnsupportedError, DomainConfigError

DOMAIN = Domain(type="kvm", name="ok", uuid="4dea23b3-1d52-d8f3-2516-782e98a23fa0",
                memory_kib=65536, current_memory_kib=65536)


class CheckNameTests(unittest.TestCase):
    """
    L{check_name}: a name must be usable as a file name.
    """

    def assertBadName(self, name: str, message: str) -> None:
        """
        C{check_name(name)} raises L{DomainConfigError} with C{message}.
        """
        with self.assertRaises(DomainConfigError) as cm:
            check_name(name)
        self.assertEqual(cm.exception.message, message)

    def test_good(self) -> None:
        """
        Ordinary names, spaces, non-ASCII letters and exactly 255 bytes pass.
        """
        for name in ("demo1", "QEMUGuest1", "my vm", "caf\u00e9", "a.b", "x" * 255,
                     "\u00e9" * 127):
            check_name(name)

    def test_bad(self) -> None:
        """
        Empty, slash, leading dot, control characters and over-long names fail.
        """
        self.assertBadName("", "XML error: missing domain name")
        self.assertBadName("../etc", "XML error: domain name '../etc' must not contain '/'")
        self.assertBadName(".hidden", "XML error: domain name '.hidden' must not start with '.'")
        self.assertBadName("a\nb", "XML error: domain name 'a\\nb' contains non-printable "
                                   "characters")
        self.assertBadName("x" * 256, f"XML error: domain name '{'x' * 40}...' is 256 bytes "
                                      "long; the limit is 255 bytes")
        self.assertBadName("\u00e9" * 128, f"XML error: domain name '{chr(233) * 40}...' is "
                                           "256 bytes long; the limit is 255 bytes")


class ValidateDomainTests(unittest.TestCase):
    """
    L{validate_domain} on definitions built in code (as the driver does).
    """

    def assertInvalid(self, domain: Domain, message: str,
                      cls: type[DomainConfigError] = DomainConfigError) -> None:
        """
        Validating C{domain} raises exactly C{cls} with C{message}.
        """
        with self.assertRaises(DomainConfigError) as cm:
            validate_domain(domain)
        self.assertIs(type(cm.exception), cls)
        self.assertEqual(cm.exception.message, message)

    def test_valid(self) -> None:
        """
        A minimal complete definition passes.
        """
        validate_domain(DOMAIN)

    def test_uuid_not_normalised(self) -> None:
        """
        An upper-case UUID in the model is refused: the model holds lower case.
        """
        self.assertInvalid(replace(DOMAIN, uuid=DOMAIN.uuid.upper()),
                           f"XML error: malformed uuid element '{DOMAIN.uuid.upper()}'")

    def test_current_memory_minimum(self) -> None:
        """
        Current memory below 1 MiB is refused.
        """
        self.assertInvalid(replace(DOMAIN, current_memory_kib=512),
                           "XML error: currentMemory size 512 KiB is below the minimum "
                           "of 1024 KiB")

    def test_title_newline(self) -> None:
        """
        A title may not span lines.
        """
        self.assertInvalid(replace(DOMAIN, title="a\nb"),
                           "XML error: title must not contain newlines")

    def test_coredump_only_on_crash(self) -> None:
        """
        C{coredump-destroy} is allowed for C{on_crash} only.
        """
        validate_domain(replace(DOMAIN, on_crash="coredump-destroy"))
        self.assertInvalid(replace(DOMAIN, on_poweroff="coredump-destroy"),
                           "XML error: unknown lifecycle action 'coredump-destroy' "
                           "for <on_poweroff>")

    def test_floppy_bus(self) -> None:
        """
        A floppy must sit on fdc and fdc holds only floppies; cdroms cannot be virtio.
        """
        def with_disk(disk: Disk) -> Domain:
            return replace(DOMAIN, devices=Devices(disks=(disk,)))
        self.assertInvalid(with_disk(Disk(target_dev="fda", target_bus="fdc", source="/a")),
                           "unsupported configuration: disk 'fda' on bus 'fdc' must be a "
                           "floppy, not device 'disk'", ConfigUnsupportedError)
        self.assertInvalid(with_disk(Disk(target_dev="hda", target_bus="ide",
                                          device="floppy")),
                           "unsupported configuration: floppy 'hda' must use bus 'fdc', "
                           "not 'ide'", ConfigUnsupportedError)
        self.assertInvalid(with_disk(Disk(target_dev="vda", target_bus="virtio",
                                          device="cdrom")),
                           "unsupported configuration: cdrom 'vda' cannot use bus 'virtio'",
                           ConfigUnsupportedError)

    def test_disk_serial(self) -> None:
        """
        A disk serial with characters that would break the QEMU command line is refused.
        """
        disk = Disk(target_dev="vda", target_bus="virtio", source="/a", serial="x,drive=y")
        with self.assertRaises(DomainConfigError) as cm:
            validate_device(disk)
        self.assertEqual(cm.exception.message, "XML error: disk serial 'x,drive=y' of disk "
                                               "'vda' contains invalid characters")

    def test_interface_model_chars(self) -> None:
        """
        An interface model name with odd characters is refused.
        """
        iface = Interface(type="user", mac="52:54:00:00:00:01", model="e1000,x=1")
        with self.assertRaises(DomainConfigError) as cm:
            validate_device(iface)
        self.assertEqual(cm.exception.message, "XML error: interface model name 'e1000,x=1' "
                                               "contains invalid characters")

    def test_tablet_ps2(self) -> None:
        """
        A tablet cannot be a PS/2 device.
        """
        self.assertInvalid(replace(DOMAIN, devices=Devices(inputs=(Input("tablet", "ps2"),))),
                           "XML error: ps2 bus does not support tablet input device")

    def test_serial_ports_unique(self) -> None:
        """
        Two serial devices on one target port are refused.
        """
        serials = (CharDev(type="pty", target_port=0), CharDev(type="null", target_port=0))
        self.assertInvalid(replace(DOMAIN, devices=Devices(serials=serials)),
                           "XML error: serial target port 0 is used by more than one <serial>")
