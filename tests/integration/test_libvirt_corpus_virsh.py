"""
libvirt's own test domain XMLs through the real virsh.

For each of the 35 files of C{shared/libvirt-test-xml} (its README says what
is compared): C{virsh define FILE} and then C{virsh dumpxml --inactive NAME}
keep what the file states (names, uuids, memory in KiB, vcpus, os
type/arch/machine, boot order, kernel/initrd/cmdline, each disk's
device/target/bus/source/readonly, each interface's type/mac/model/source,
graphics, serial/console types), and defining the dump again gives the same
dump.  As with libvirtd, C{machine='pc'} may come back as C{pc-i440fx-7.2}
(C{q35} as C{pc-q35-7.2}) and a cdrom may come back read-only.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.daemon import (
    VIRSH,
    DaemonProcess,
    daemon_fixture,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
    require_tools,
    virsh,
    virsh_ok,
)
from tests.shared import shared_dir


def _corpus_dir() -> str | None:
    base = shared_dir()
    if base is None or not os.path.isdir(os.path.join(base, "libvirt-test-xml")):
        return None
    return os.path.join(base, "libvirt-test-xml")


def _corpus_files() -> list[str]:
    directory = _corpus_dir()
    if directory is None:
        return []
    return sorted(f for f in os.listdir(directory) if f.endswith(".xml"))


CORPUS = _corpus_files()

_UNITS = {
    "b": 1, "bytes": 1, "kb": 1000, "k": 1024, "kib": 1024, "mb": 1000 ** 2, "m": 1024 ** 2,
    "mib": 1024 ** 2, "gb": 1000 ** 3, "g": 1024 ** 3, "gib": 1024 ** 3, "tb": 1000 ** 4,
    "t": 1024 ** 4, "tib": 1024 ** 4,
}

#: Machine aliases QEMU 7.2 resolves, as libvirtd writes them back.
_MACHINES = {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}


def kib(element: ET.Element | None) -> int | None:
    """@return: a memory element's value in KiB (C{None} when absent)."""
    if element is None or element.text is None:
        return None
    unit = (element.get("unit") or "KiB").lower()
    return int(element.text.strip()) * _UNITS[unit] // 1024


def stated(root: ET.Element) -> dict[str, Any]:
    """
    @return: the facts of a domain document the README says must survive.
    """
    os_el = root.find("os")
    type_el = os_el.find("type") if os_el is not None else None
    facts: dict[str, Any] = {
        "type": root.get("type"),
        "name": root.findtext("name"),
        "uuid": root.findtext("uuid"),
        "memory": kib(root.find("memory")),
        "currentMemory": kib(root.find("currentMemory")),
        "vcpu": int(root.findtext("vcpu") or 1),
        "os_type": type_el.text.strip() if type_el is not None and type_el.text else None,
        "arch": type_el.get("arch") if type_el is not None else None,
        "machine": type_el.get("machine") if type_el is not None else None,
        "boot": [b.get("dev") for b in root.findall("os/boot")],
        "kernel": root.findtext("os/kernel"),
        "initrd": root.findtext("os/initrd"),
        "cmdline": root.findtext("os/cmdline"),
        "boot_order": {},
        "disks": {},
        "interfaces": [],
        "graphics": [],
        "serials": [s.get("type") for s in root.findall("devices/serial")],
        "consoles": [c.get("type") for c in root.findall("devices/console")],
    }
    for disk in root.findall("devices/disk"):
        target = disk.find("target")
        source = disk.find("source")
        dev = target.get("dev") if target is not None else None
        facts["disks"][dev] = {
            "type": disk.get("type"),
            "device": disk.get("device") or "disk",
            "bus": target.get("bus") if target is not None else None,
            "source": dict(source.attrib) if source is not None else {},
            "readonly": disk.find("readonly") is not None,
        }
        order = disk.find("boot")
        if order is not None:
            facts["boot_order"][dev] = order.get("order")
    for index, iface in enumerate(root.findall("devices/interface")):
        mac = iface.find("mac")
        model = iface.find("model")
        source = iface.find("source")
        facts["interfaces"].append({
            "type": iface.get("type"),
            "mac": mac.get("address") if mac is not None else None,
            "model": model.get("type") if model is not None else None,
            "source": dict(source.attrib) if source is not None else {},
        })
        order = iface.find("boot")
        if order is not None:
            facts["boot_order"][f"interface{index}"] = order.get("order")
    for graphics in root.findall("devices/graphics"):
        facts["graphics"].append({k: v for k, v in graphics.attrib.items()
                                  if k in ("type", "port", "autoport", "listen", "keymap")})
    return facts


def compare(original: dict[str, Any], dumped: dict[str, Any]) -> list[str]:
    """
    @return: a description of every stated fact the dump lost or changed.
    """
    problems = []

    def check(key: str, want: Any, got: Any) -> None:
        if want != got:
            problems.append(f"{key}: file says {want!r}, dump has {got!r}")

    for key in ("type", "name", "memory", "vcpu", "os_type", "arch", "kernel", "initrd",
                "cmdline", "serials", "consoles", "boot_order"):
        if original[key] not in (None, [], {}):
            check(key, original[key], dumped[key])
    if original["uuid"]:
        check("uuid", original["uuid"], dumped["uuid"])
    if original["currentMemory"] is not None:
        check("currentMemory", original["currentMemory"], dumped["currentMemory"])
    if original["machine"]:
        machine = dumped["machine"]
        if machine != original["machine"] and machine != _MACHINES.get(original["machine"]):
            problems.append(f"machine: file says {original['machine']!r}, dump has {machine!r}")
    if original["boot"]:
        check("boot", original["boot"], dumped["boot"])
    check("disk targets", sorted(original["disks"]), sorted(dumped["disks"]))
    for dev, disk in original["disks"].items():
        got = dumped["disks"].get(dev)
        if got is None:
            continue
        for field in ("device", "type"):
            if disk[field] is not None:
                check(f"disk {dev} {field}", disk[field], got[field])
        if disk["bus"] is not None:
            check(f"disk {dev} bus", disk["bus"], got["bus"])
        for attr, value in disk["source"].items():
            if attr in ("file", "dev", "dir", "name", "protocol", "pool", "volume"):
                check(f"disk {dev} source {attr}", value, got["source"].get(attr))
        if disk["readonly"] and not got["readonly"]:
            problems.append(f"disk {dev}: readonly lost")
        if got["readonly"] and not disk["readonly"] and got["device"] != "cdrom":
            problems.append(f"disk {dev}: became readonly")
    check("interface count", len(original["interfaces"]), len(dumped["interfaces"]))
    for i, (want, got) in enumerate(zip(original["interfaces"], dumped["interfaces"], strict=False)):
        check(f"interface {i} type", want["type"], got["type"])
        if want["mac"]:
            check(f"interface {i} mac", want["mac"].lower(), (got["mac"] or "").lower())
        if want["model"]:
            check(f"interface {i} model", want["model"], got["model"])
        for attr, value in want["source"].items():
            check(f"interface {i} source {attr}", value, got["source"].get(attr))
    check("graphics types", [g["type"] for g in original["graphics"]],
          [g["type"] for g in dumped["graphics"]])
    for i, (want, got) in enumerate(zip(original["graphics"], dumped["graphics"], strict=False)):
        for attr in ("port", "autoport", "listen", "keymap"):
            if attr in want:
                check(f"graphics {i} {attr}", want[attr], got.get(attr))
    return problems


@pytest.fixture(scope="module")
def daemon(request: Any) -> Iterator[DaemonProcess]:
    """One daemon for the corpus; each file is defined and undefined in turn."""
    require_tools(VIRSH)
    yield from daemon_fixture(request)


class CorpusTests:
    """
    Every corpus file survives define → dumpxml --inactive → define again.
    """

    def test_corpus_present(self) -> None:
        """
        The corpus is found (a failure in CI when missing) and has 35 files.
        """
        from tests.shared import require_shared

        require_shared("libvirt-test-xml")
        assert len(CORPUS) == 35, CORPUS

    @pytest.mark.parametrize("filename", CORPUS)
    def test_define_dump_round_trip(self, daemon: DaemonProcess, filename: str) -> None:
        """
        The dump keeps what the file states; defining the dump again gives
        the same dump.
        """
        directory = _corpus_dir()
        assert directory is not None
        path = os.path.join(directory, filename)
        with open(path, encoding="utf-8") as f:
            original = ET.fromstring(f.read())
        name = original.findtext("name")
        assert name
        proc = virsh(daemon.uri, "define", path)
        assert proc.returncode == 0, proc.stderr
        try:
            assert proc.stdout == f"Domain '{name}' defined from {path}\n\n"
            first = virsh_ok(daemon.uri, "dumpxml", "--inactive", name)
            problems = compare(stated(original), stated(ET.fromstring(first)))
            assert not problems, "\n".join(problems) + "\n--- dump:\n" + first
            again = os.path.join(daemon.root, filename)
            with open(again, "w", encoding="utf-8") as f:
                f.write(first)
            virsh_ok(daemon.uri, "define", again)
            second = virsh_ok(daemon.uri, "dumpxml", "--inactive", name)
            assert second == first
        finally:
            virsh(daemon.uri, "undefine", name)
