# -*- test-case-name: tests.domain.test_xml,tests.domain.test_xml2xml,tests.domain.test_corpus -*-
"""
Domain XML: libvirt's C{<domain>} document to and from L{Domain}.

Reading a document is three separate steps, as in libvirt: L{read_domain_xml}
turns the text into a L{Domain} (syntax, types and enumerations are checked
here), L{qemud.domain.defaults.fill_defaults} fills in what was left out, and
L{qemud.domain.validate.validate_domain} checks the meaning.
L{parse_domain_xml} runs all three.

Only this module touches raw XML, through C{xmltodict} with
C{force_list=True} (every child is a list, so a repeated element never
changes the shape of the tree) and C{disable_entities=True}.  The dicts it
returns are consumed (popped) while the dataclasses are built, so whatever is
left over afterwards is exactly what qemud does not support: it is dropped and
reported in the caller's C{warnings} list.  No dict leaves this module.

The empty string marks "not given, the defaults step fills it" in the few
required model fields that have a default (C{Domain.uuid}, C{Interface.mac},
C{Disk.target_bus}, C{Video.model}).

Formatting is deterministic: libvirt's element order and layout (two-space
indentation, single-quoted attributes), as C{virsh dumpxml} prints it.

This module is pure (standard library and C{xmltodict} only).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from xml.parsers.expat import ErrorString, ExpatError

import xmltodict

from qemud.domain import defaults, pci, validate
from qemud.domain.model import (
    CPU,
    OS,
    RNG,
    CharDev,
    Clock,
    Controller,
    CPUFeature,
    Devices,
    Disk,
    Domain,
    Features,
    Graphics,
    Input,
    Interface,
    Loader,
    MemBalloon,
    PCIAddress,
    Timer,
    Video,
    Watchdog,
)
from qemud.domain.units import parse_kib
from qemud.errors import ConfigUnsupportedError, DomainConfigError

#: Documents larger than this (in UTF-8 bytes) are refused before parsing.
MAX_XML_BYTES = 4 * 1024 * 1024

_Node = dict[str, Any]

_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_DASHED = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# Enumerations checked while reading, as libvirt's parser does.  The second
# tuple of each pair holds values libvirt knows but qemud does not support.
_DOMAIN_TYPES = ("qemu", "kvm")
_OTHER_HYPERVISORS = ("xen", "lxc", "uml", "openvz", "test", "vmware", "hyperv", "vbox",
                      "phyp", "parallels", "bhyve", "vz", "none")
_DISK_TYPES = ("file", "block")
_OTHER_DISK_TYPES = ("dir", "network", "volume", "nvme", "vhostuser", "vhostvdpa")
_DISK_DEVICES = ("disk", "cdrom", "floppy")
_OTHER_DISK_DEVICES = ("lun",)
_DISK_BUSES = ("ide", "fdc", "virtio", "scsi", "sata", "usb")
_OTHER_DISK_BUSES = ("xen", "uml", "sd")
_IFACE_TYPES = ("user", "network", "bridge", "ethernet", "server", "client", "mcast", "udp")
_OTHER_IFACE_TYPES = ("direct", "hostdev", "vhostuser", "vdpa", "internal", "mcast-udp",
                      "null", "vds", "vlan")
_SOCKET_IFACES = ("server", "client", "mcast", "udp")
_CHR_TYPES = ("pty", "file", "unix", "tcp", "udp", "null", "stdio", "vc")
_OTHER_CHR_TYPES = ("dev", "pipe", "spicevmc", "spiceport", "nmdm", "qemu-vdagent", "dbus")
_INPUT_TYPES = ("tablet", "mouse", "keyboard")
_OTHER_INPUT_TYPES = ("passthrough", "evdev")
_INPUT_BUSES = ("usb", "ps2", "virtio")
_OTHER_INPUT_BUSES = ("xen", "parallels", "none")
_VIDEO_MODELS = ("vga", "cirrus", "vmvga", "qxl", "virtio", "bochs", "ramfb", "none")
_OTHER_VIDEO_MODELS = ("xen", "vbox", "parallels", "gop")
_BALLOON_MODELS = ("virtio", "virtio-transitional", "virtio-non-transitional", "none")
_WATCHDOG_MODELS = ("i6300esb", "ib700", "diag288", "itco")
_WATCHDOG_ACTIONS = ("reset", "shutdown", "poweroff", "pause", "none", "dump", "inject-nmi")
_RNG_MODELS = ("virtio", "virtio-transitional", "virtio-non-transitional")
_RNG_BACKENDS = ("random", "builtin")
_OTHER_RNG_BACKENDS = ("egd",)
# Controller types qemud models, with the models it can build.
_CONTROLLER_MODELS: dict[str, tuple[str, ...]] = {
    "usb": ("piix3-uhci", "qemu-xhci", "none"),
    "sata": (),
    "scsi": ("lsilogic", "virtio-scsi"),
    "virtio-serial": (),
    "pci": (pci.ROOT_PORT,),
}
_GRAPHICS_TYPES = ("vnc",)
_OTHER_GRAPHICS_TYPES = ("sdl", "rdp", "desktop", "spice", "egl-headless", "dbus")
_BOOT_DEVS = ("hd", "cdrom", "fd", "network")
_OS_TYPES = ("hvm",)
_OTHER_OS_TYPES = ("xen", "linux", "xenpvh", "exe", "uml")
_LOADER_TYPES = ("rom", "pflash")
_CPU_MODES = ("custom", "host-model", "host-passthrough", "maximum")
_CLOCK_OFFSETS = ("utc", "localtime")
_OTHER_CLOCK_OFFSETS = ("timezone", "variable", "absolute")


# --- reading ----------------------------------------------------------------


def _el(value: Any) -> _Node:
    """
    Normalise one xmltodict child (C{None}, text or dict) to a dict.
    """
    if value is None:
        return {}
    if isinstance(value, str):
        return {"#text": value}
    node: _Node = value
    return node


def _enum(value: str, known: tuple[str, ...], other: tuple[str, ...], what: str) -> str:
    """
    Check an enumerated value.

    @raise ConfigUnsupportedError: for a value libvirt knows but qemud does not support.
    @raise DomainConfigError: for a value nobody knows.
    """
    if value in known:
        return value
    if value in other:
        raise ConfigUnsupportedError(f"{what} '{value}' is not supported")
    raise DomainConfigError(f"unknown {what} '{value}'")


def _int(value: str, what: str) -> int:
    """
    Parse a decimal integer strictly (ASCII digits, optional sign).

    @raise DomainConfigError: naming C{what} and the value.
    """
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise DomainConfigError(f"invalid value '{value}' for {what}: expected an integer")
    return int(text)


def _yesno(value: str, what: str) -> bool:
    """
    Parse libvirt's C{yes}/C{no} (also C{on}/C{off}).

    @raise DomainConfigError: naming C{what} and the value.
    """
    if value in ("yes", "on"):
        return True
    if value in ("no", "off"):
        return False
    raise DomainConfigError(f"invalid value '{value}' for {what}: expected 'yes' or 'no'")


def parse_uuid(value: str) -> str:
    """
    Normalise a UUID written dashed or as 32 plain hex digits.

    @return: the lower-case dashed form.
    @raise DomainConfigError: when C{value} is neither.
    """
    text = value.strip()
    if _DASHED.fullmatch(text):
        return text.lower()
    if _HEX32.fullmatch(text):
        t = text.lower()
        return f"{t[:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:]}"
    raise DomainConfigError(f"malformed uuid element '{value}'")


def parse_mac(value: str) -> str:
    """
    Check and normalise a unicast MAC address.

    @return: the lower-case colon form.
    @raise DomainConfigError: when it is malformed or multicast.
    """
    if not _MAC.fullmatch(value):
        raise DomainConfigError(f"unable to parse mac address '{value}'")
    mac = value.lower()
    if int(mac[:2], 16) & 1:
        raise DomainConfigError(f"expected unicast mac address, found multicast '{value}'")
    return mac


class _Reader:
    """
    Builds model objects from an xmltodict tree, consuming it as it goes.

    @ivar ignored: what was dropped, mapped to how often, in document order.
    """

    def __init__(self) -> None:
        self.ignored: dict[str, int] = {}

    def done(self, node: _Node, path: str) -> None:
        """
        Record whatever is left in C{node} as ignored.
        """
        for key in node:
            if key[0] == "@":
                what = f"attribute '{key[1:]}' of <{path}>"
            elif key == "#text":
                what = f"text content of <{path}>"
            else:
                what = f"element <{path}/{key}>"
            self.ignored[what] = self.ignored.get(what, 0) + 1

    def warnings(self) -> list[str]:
        """
        @return: one warning text per distinct ignored item.
        """
        out = []
        for what, count in self.ignored.items():
            times = f" ({count} times)" if count > 1 else ""
            out.append(f"ignoring unsupported {what}{times}")
        return out

    def one(self, parent: _Node, key: str, path: str) -> _Node | None:
        """
        Take the single child C{key} of C{parent}.

        @raise DomainConfigError: when it appears more than once.
        """
        children = parent.pop(key, None)
        if children is None:
            return None
        if len(children) > 1:
            raise DomainConfigError(
                f"element <{path}/{key}> may appear only once, found {len(children)}"
            )
        return _el(children[0])

    def many(self, parent: _Node, key: str) -> list[_Node]:
        """
        Take every child C{key} of C{parent}, in document order.
        """
        children = parent.pop(key, None)
        if children is None:
            return []
        return [_el(c) for c in children]

    def text(self, parent: _Node, key: str, path: str) -> str | None:
        """
        Take the text of the single child C{key}; C{None} when absent or empty.
        """
        node = self.one(parent, key, path)
        if node is None:
            return None
        value = _text(node)
        if node:
            self.done(node, f"{path}/{key}")
        return value

    def alias(self, parent: _Node, path: str) -> str | None:
        """
        Take C{<alias name=...>} (present in live and status XML).
        """
        node = self.one(parent, "alias", path)
        if node is None:
            return None
        name: str | None = node.pop("@name", None)
        self.done(node, f"{path}/alias")
        return name

    def address(self, parent: _Node, path: str) -> PCIAddress | None:
        """
        Take a device's C{<address type='pci' .../>}.  Addresses of other
        types (C{drive}, C{usb}, ...) are left in place, so they are
        reported as ignored.  An all-zero address (or C{<address
        type='pci'/>}) means "assign one", as in libvirt.

        @raise DomainConfigError: a malformed or out-of-range value (libvirt's texts).
        """
        nodes = parent.get("address")
        if not nodes:
            return None
        if len(nodes) > 1:
            raise DomainConfigError(
                f"element <{path}/address> may appear only once, found {len(nodes)}")
        node = _el(nodes[0])
        if node.get("@type") != "pci":
            return None
        del parent["address"]
        node.pop("@type")
        values = {key: _address_number(node.pop(f"@{key}", None), key)
                  for key in ("domain", "bus", "slot", "function")}
        multi = node.pop("@multifunction", None)
        self.done(node, f"{path}/address")
        for key, limit, spelling in (("domain", 0xFFFF, "0xFFFF"), ("bus", 0xFF, "0xFF"),
                                     ("slot", pci.MAX_SLOT, "0x1F")):
            if values[key] > limit:
                raise DomainConfigError(
                    f"Invalid PCI address {key}='0x{values[key]:x}', must be <= {spelling}")
        if values["function"] > pci.MAX_FUNCTION:
            raise DomainConfigError(
                f"Invalid PCI address function=0x{values['function']:x}, "
                f"must be <= {pci.MAX_FUNCTION}")
        if not (values["domain"] or values["bus"] or values["slot"]):
            return None
        multifunction = None
        if multi is not None:
            if multi not in ("on", "off"):
                raise DomainConfigError(
                    f"Invalid value for attribute 'multifunction' in element 'address': "
                    f"'{multi}'. Expected 'on' or 'off'")
            multifunction = multi == "on"
        return PCIAddress(multifunction=multifunction, **values)

    def boot_order(self, parent: _Node, path: str) -> int | None:
        """
        Take a device's C{<boot order=N>}.
        """
        node = self.one(parent, "boot", path)
        if node is None:
            return None
        order = node.pop("@order", None)
        self.done(node, f"{path}/boot")
        if order is None:
            raise DomainConfigError(f"missing 'order' attribute in <{path}/boot>")
        return _int(order, f"<{path}/boot order>")


_NUMBER = re.compile(r"0[xX][0-9a-fA-F]{1,8}|[0-9]{1,10}")


def _address_number(value: str | None, key: str, element: str = "address") -> int:
    """
    Parse one attribute of a PCI address as libvirt does (C{strtoul} with
    base 0: C{0x} hexadecimal, a leading C{0} octal, otherwise decimal).

    @param value: the attribute, C{None} when absent (0).
    @param key: its name, for the message.
    @param element: the element's name, for the message.
    @raise DomainConfigError: not a non-negative integer.
    """
    if value is None:
        return 0
    text = value.strip()
    try:
        if not _NUMBER.fullmatch(text):
            raise ValueError(text)
        if text[:2] in ("0x", "0X"):
            return int(text[2:], 16)
        return int(text, 8) if len(text) > 1 and text[0] == "0" else int(text)
    except ValueError:
        raise DomainConfigError(
            f"Invalid value for attribute '{key}' in element '{element}': '{value}'. "
            "Expected non-negative integer value") from None


def _text(node: _Node) -> str | None:
    """
    Pop the text of an element; xmltodict gives a list when there are attributes.
    """
    value = node.pop("#text", None)
    if isinstance(value, list):
        value = "".join(value)
    return value or None


def _load(text: str, *roots: str) -> tuple[str, _Node]:
    """
    Parse C{text} and return its root element's name and content; the root
    must be one of C{roots}.

    @raise DomainConfigError: for an oversized or malformed document, entity
        declarations, or the wrong root element.
    """
    if len(text) > MAX_XML_BYTES // 4:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_XML_BYTES:
            raise DomainConfigError(
                f"XML document of {size} bytes exceeds the limit of {MAX_XML_BYTES} bytes"
            )
    try:
        doc = xmltodict.parse(text, force_list=True, disable_entities=True)
    except ExpatError as e:
        raise DomainConfigError(
            f"malformed XML at line {e.lineno}, column {e.offset + 1}: {ErrorString(e.code)}"
        ) from e
    except ValueError as e:
        if "entities" in str(e):
            raise DomainConfigError("entity declarations are not allowed in domain XML") from e
        raise DomainConfigError(f"malformed XML: {e}") from e
    except UnicodeError as e:
        raise DomainConfigError(f"malformed XML: {e}") from e
    if not doc:
        raise DomainConfigError("empty XML document")
    ((name, elements),) = doc.items()
    if name not in roots:
        expected = " or ".join(f"<{root}>" for root in roots)
        raise DomainConfigError(f"unexpected root element <{name}>, expecting {expected}")
    return name, _el(elements[0])


def _memory(r: _Reader, node: _Node, key: str) -> int | None:
    el = r.one(node, key, "domain")
    if el is None:
        return None
    unit = el.pop("@unit", None)
    value = _text(el)
    r.done(el, f"domain/{key}")
    return parse_kib(value, unit, key)


def _read_os(r: _Reader, node: _Node | None) -> OS:
    if node is None:
        raise DomainConfigError("missing <os> element")
    p = "domain/os"
    t = r.one(node, "type", p)
    if t is None:
        raise DomainConfigError("missing <os><type> element")
    arch = t.pop("@arch", None)
    machine = t.pop("@machine", None)
    ostype = _text(t)
    r.done(t, f"{p}/type")
    if ostype is None:
        raise DomainConfigError("missing OS type in <os><type>")
    ostype = _enum(ostype.strip(), _OS_TYPES, _OTHER_OS_TYPES, "OS type")
    loader = None
    ln = r.one(node, "loader", p)
    if ln is not None:
        ltype = ln.pop("@type", None)
        if ltype is not None:
            ltype = _enum(ltype, _LOADER_TYPES, (), "loader type")
        ro = ln.pop("@readonly", None)
        lpath = _text(ln)
        r.done(ln, f"{p}/loader")
        if lpath is None:
            raise ConfigUnsupportedError("<os><loader> without a firmware path is not supported")
        loader = Loader(path=lpath, type=ltype,
                        readonly=None if ro is None else _yesno(ro, "<os><loader readonly>"))
    boots = []
    for b in r.many(node, "boot"):
        dev = b.pop("@dev", None)
        r.done(b, f"{p}/boot")
        if dev is None:
            raise DomainConfigError("missing 'dev' attribute in <os><boot>")
        if dev not in _BOOT_DEVS:
            raise DomainConfigError(f"unknown boot device '{dev}' in <os><boot>")
        boots.append(dev)
    bootmenu = None
    bm = r.one(node, "bootmenu", p)
    if bm is not None:
        enable = bm.pop("@enable", None)
        r.done(bm, f"{p}/bootmenu")
        if enable is not None:
            bootmenu = _yesno(enable, "<os><bootmenu enable>")
    useserial = None
    bios = r.one(node, "bios", p)
    if bios is not None:
        us = bios.pop("@useserial", None)
        r.done(bios, f"{p}/bios")
        if us is not None:
            useserial = _yesno(us, "<os><bios useserial>")
    kernel = r.text(node, "kernel", p)
    initrd = r.text(node, "initrd", p)
    cmdline = r.text(node, "cmdline", p)
    r.done(node, p)
    return OS(type=ostype, arch=arch, machine=machine, loader=loader, kernel=kernel,
              initrd=initrd, cmdline=cmdline, boot_devs=tuple(boots), bootmenu=bootmenu,
              bios_useserial=useserial)


def _read_features(r: _Reader, node: _Node | None) -> Features:
    if node is None:
        return Features()
    flags = {}
    for key in ("acpi", "apic", "pae"):
        el = r.one(node, key, "domain/features")
        flags[key] = el is not None
        if el:
            r.done(el, f"domain/features/{key}")
    r.done(node, "domain/features")
    return Features(**flags)


def _read_cpu(r: _Reader, node: _Node | None) -> CPU | None:
    if node is None:
        return None
    p = "domain/cpu"
    mode = node.pop("@mode", None) or "custom"
    if mode not in _CPU_MODES:
        raise DomainConfigError(f"unknown CPU mode '{mode}' in <cpu>")
    match = node.pop("@match", None)
    check = node.pop("@check", None)
    model = fallback = None
    mn = r.one(node, "model", p)
    if mn is not None:
        fallback = mn.pop("@fallback", None)
        model = _text(mn)
        r.done(mn, f"{p}/model")
    feats = []
    for f in r.many(node, "feature"):
        fname = f.pop("@name", None)
        policy = f.pop("@policy", None) or "require"
        r.done(f, f"{p}/feature")
        if not fname:
            raise DomainConfigError("missing 'name' attribute in <cpu><feature>")
        feats.append(CPUFeature(name=fname, policy=policy))
    r.done(node, p)
    return CPU(mode=mode, model=model, match=match, check=check, fallback=fallback,
               features=tuple(feats))


def _read_clock(r: _Reader, node: _Node | None) -> Clock:
    if node is None:
        return Clock()
    p = "domain/clock"
    offset = node.pop("@offset", None) or "utc"
    offset = _enum(offset, _CLOCK_OFFSETS, _OTHER_CLOCK_OFFSETS, "clock offset")
    timers = []
    for t in r.many(node, "timer"):
        tname = t.pop("@name", None)
        present = t.pop("@present", None)
        tick = t.pop("@tickpolicy", None)
        r.done(t, f"{p}/timer")
        if not tname:
            raise DomainConfigError("missing 'name' attribute in <clock><timer>")
        timers.append(Timer(name=tname, tickpolicy=tick,
                            present=None if present is None
                            else _yesno(present, f"<timer name='{tname}' present>")))
    r.done(node, p)
    return Clock(offset=offset, timers=tuple(timers))


def _read_disk(r: _Reader, d: _Node, p: str) -> Disk:
    dtype = _enum(d.pop("@type", None) or "file", _DISK_TYPES, _OTHER_DISK_TYPES, "disk type")
    device = _enum(d.pop("@device", None) or "disk", _DISK_DEVICES, _OTHER_DISK_DEVICES,
                   "disk device")
    driver_name = driver_type = cache = None
    drv = r.one(d, "driver", p)
    if drv is not None:
        driver_name = drv.pop("@name", None)
        driver_type = drv.pop("@type", None)
        cache = drv.pop("@cache", None)
        r.done(drv, f"{p}/driver")
    source = None
    src = r.one(d, "source", p)
    if src is not None:
        source = src.pop("@file" if dtype == "file" else "@dev", None) or None
        r.done(src, f"{p}/source")
    tgt = r.one(d, "target", p)
    if tgt is None or not tgt.get("@dev"):
        raise DomainConfigError(f"missing <target dev=...> in <disk> with source '{source}'")
    dev = tgt.pop("@dev")
    bus = tgt.pop("@bus", None)
    if bus is not None and bus not in _DISK_BUSES:
        if bus in _OTHER_DISK_BUSES:
            raise ConfigUnsupportedError(f"disk bus '{bus}' of target '{dev}' is not supported")
        raise DomainConfigError(f"unknown disk bus '{bus}' for target '{dev}'")
    tray = tgt.pop("@tray", None)
    r.done(tgt, f"{p}/target")
    ro = r.one(d, "readonly", p)
    if ro:
        r.done(ro, f"{p}/readonly")
    sh = r.one(d, "shareable", p)
    if sh:
        r.done(sh, f"{p}/shareable")
    boot = r.boot_order(d, p)
    serial = r.text(d, "serial", p)
    alias = r.alias(d, p)
    address = r.address(d, p)
    r.done(d, p)
    return Disk(target_dev=dev, target_bus=bus or "", type=dtype, device=device,
                driver_name=driver_name, driver_type=driver_type, driver_cache=cache,
                source=source, readonly=ro is not None, shareable=sh is not None,
                boot_order=boot, serial=serial, tray=tray, alias=alias, address=address)


def _port(value: str | None, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _read_interface(r: _Reader, i: _Node, p: str) -> Interface:
    itype = i.pop("@type", None)
    if itype is None:
        raise DomainConfigError("missing 'type' attribute in <interface>")
    itype = _enum(itype, _IFACE_TYPES, _OTHER_IFACE_TYPES, "interface type")
    mac = ""
    mn = r.one(i, "mac", p)
    if mn is not None:
        address = mn.pop("@address", None)
        r.done(mn, f"{p}/mac")
        if address is None:
            raise DomainConfigError("missing 'address' attribute in <interface><mac>")
        mac = parse_mac(address)
    network = bridge = address = local_address = None
    port = local_port = None
    src = None
    if itype != "user" and itype != "ethernet":
        src = r.one(i, "source", p)
    if src is not None:
        if itype == "network":
            network = src.pop("@network", None)
        elif itype == "bridge":
            bridge = src.pop("@bridge", None)
        else:
            address = src.pop("@address", None)
            port = _port(src.pop("@port", None), f"<interface type='{itype}'><source port>")
            if itype == "udp":
                local = r.one(src, "local", f"{p}/source")
                if local is not None:
                    local_address = local.pop("@address", None)
                    local_port = _port(local.pop("@port", None),
                                       "<interface type='udp'><source><local port>")
                    r.done(local, f"{p}/source/local")
        r.done(src, f"{p}/source")
    target = script = None
    if itype in ("network", "bridge", "ethernet"):
        tn = r.one(i, "target", p)
        if tn is not None:
            target = tn.pop("@dev", None)
            r.done(tn, f"{p}/target")
    if itype in ("bridge", "ethernet"):
        sn = r.one(i, "script", p)
        if sn is not None:
            script = sn.pop("@path", None)
            r.done(sn, f"{p}/script")
    model = None
    md = r.one(i, "model", p)
    if md is not None:
        model = md.pop("@type", None)
        r.done(md, f"{p}/model")
    boot = r.boot_order(i, p)
    alias = r.alias(i, p)
    pci_address = r.address(i, p)
    r.done(i, p)
    return Interface(type=itype, mac=mac, model=model, source_network=network,
                     source_bridge=bridge, source_address=address, source_port=port,
                     local_address=local_address, local_port=local_port, target_dev=target,
                     script=script, boot_order=boot, alias=alias, address=pci_address)


def _read_graphics(r: _Reader, g: _Node, p: str) -> Graphics:
    gtype = g.pop("@type", None)
    if gtype is None:
        raise DomainConfigError("missing 'type' attribute in <graphics>")
    gtype = _enum(gtype, _GRAPHICS_TYPES, _OTHER_GRAPHICS_TYPES, "graphics type")
    port = _port(g.pop("@port", None), "<graphics port>")
    ap = g.pop("@autoport", None)
    autoport_attr = None if ap is None else _yesno(ap, "<graphics autoport>")
    listen = g.pop("@listen", None)
    passwd = g.pop("@passwd", None)
    keymap = g.pop("@keymap", None)
    listens = r.many(g, "listen")
    if len(listens) > 1:
        raise ConfigUnsupportedError("only one <listen> per <graphics> is supported")
    if listens:
        ln = listens[0]
        ltype = ln.pop("@type", None) or "address"
        if ltype != "address":
            raise ConfigUnsupportedError(f"graphics listen type '{ltype}' is not supported")
        laddr = ln.pop("@address", None)
        r.done(ln, f"{p}/listen")
        if listen is not None and laddr is not None and listen != laddr:
            raise DomainConfigError(
                f"graphics 'listen' attribute '{listen}' must match 'address' attribute "
                f"of first listen element (found '{laddr}')"
            )
        listen = listen or laddr
    r.done(g, p)
    # libvirt: no port, or the legacy port='-1', means autoport.
    autoport = port is None or port == -1 or autoport_attr is True
    if port is None or (autoport and port < 0):
        port = -1
    return Graphics(type=gtype, port=port, autoport=autoport, listen=listen or None,
                    passwd=passwd, keymap=keymap)


def _read_chardev(r: _Reader, c: _Node, p: str) -> CharDev:
    ctype = c.pop("@type", None)
    if ctype is None:
        raise DomainConfigError(f"missing 'type' attribute in <{p.rsplit('/', 1)[1]}>")
    ctype = _enum(ctype, _CHR_TYPES, _OTHER_CHR_TYPES, "character device type")
    fields: dict[str, Any] = {}
    tty = c.pop("@tty", None)
    sources = r.many(c, "source") if ctype not in ("null", "stdio", "vc") else []
    if len(sources) > (2 if ctype == "udp" else 1):
        raise DomainConfigError(f"element <{p}/source> may appear only once for type '{ctype}'")
    for s in sources:
        if ctype in ("pty", "file"):
            fields["source_path"] = s.pop("@path", None)
        elif ctype == "unix":
            fields["source_mode"] = s.pop("@mode", None)
            fields["source_path"] = s.pop("@path", None)
        elif ctype == "tcp":
            fields["source_mode"] = s.pop("@mode", None)
            fields["source_host"] = s.pop("@host", None)
            fields["source_service"] = s.pop("@service", None)
        else:  # udp: a 'bind' (local) and a 'connect' (remote) source
            mode = s.pop("@mode", None)
            if mode == "bind":
                fields["bind_host"] = s.pop("@host", None)
                fields["bind_service"] = s.pop("@service", None)
            else:
                if mode not in (None, "connect"):
                    raise DomainConfigError(f"unknown source mode '{mode}' in <{p}/source>")
                fields["source_host"] = s.pop("@host", None)
                fields["source_service"] = s.pop("@service", None)
        r.done(s, f"{p}/source")
    if ctype == "pty" and tty and not fields.get("source_path"):
        fields["source_path"] = tty
    if ctype == "tcp":
        pr = r.one(c, "protocol", p)
        if pr is not None:
            fields["protocol"] = pr.pop("@type", None)
            r.done(pr, f"{p}/protocol")
    tg = r.one(c, "target", p)
    if tg is not None:
        fields["target_type"] = tg.pop("@type", None)
        fields["target_port"] = _port(tg.pop("@port", None), f"<{p}/target port>")
        r.done(tg, f"{p}/target")
    fields["alias"] = r.alias(c, p)
    r.done(c, p)
    return CharDev(type=ctype, **fields)


def _read_input(r: _Reader, n: _Node, p: str) -> Input:
    itype = n.pop("@type", None)
    if itype is None:
        raise DomainConfigError("missing 'type' attribute in <input>")
    itype = _enum(itype, _INPUT_TYPES, _OTHER_INPUT_TYPES, "input type")
    bus = n.pop("@bus", None)
    if bus is not None:
        bus = _enum(bus, _INPUT_BUSES, _OTHER_INPUT_BUSES, "input bus")
    alias = r.alias(n, p)
    address = r.address(n, p)
    r.done(n, p)
    return Input(type=itype, bus=bus, alias=alias, address=address)


def _read_video(r: _Reader, v: _Node, p: str) -> Video:
    model = ""
    vram = heads = None
    mn = r.one(v, "model", p)
    if mn is not None:
        mtype = mn.pop("@type", None)
        if mtype is not None:
            model = _enum(mtype, _VIDEO_MODELS, _OTHER_VIDEO_MODELS, "video model")
        vram = _port(mn.pop("@vram", None), "<video><model vram>")
        heads = _port(mn.pop("@heads", None), "<video><model heads>")
        r.done(mn, f"{p}/model")
    alias = r.alias(v, p)
    address = r.address(v, p)
    r.done(v, p)
    return Video(model=model, vram=vram, heads=heads, alias=alias, address=address)


def _read_memballoon(r: _Reader, b: _Node, p: str) -> MemBalloon:
    model = b.pop("@model", None)
    if model is None:
        raise DomainConfigError("missing 'model' attribute in <memballoon>")
    model = _enum(model, _BALLOON_MODELS, (), "memballoon model")
    alias = r.alias(b, p)
    address = r.address(b, p)
    r.done(b, p)
    return MemBalloon(model=model, alias=alias, address=address)


def _read_watchdog(r: _Reader, w: _Node, p: str) -> Watchdog:
    model = w.pop("@model", None)
    if model is None:
        raise DomainConfigError("missing 'model' attribute in <watchdog>")
    model = _enum(model, _WATCHDOG_MODELS, (), "watchdog model")
    action = w.pop("@action", None)
    if action is not None:
        action = _enum(action, _WATCHDOG_ACTIONS, (), "watchdog action")
    alias = r.alias(w, p)
    address = r.address(w, p)
    r.done(w, p)
    return Watchdog(model=model, action=action, alias=alias, address=address)


def _read_rng(r: _Reader, n: _Node, p: str) -> RNG:
    model = n.pop("@model", None)
    if model is None:
        raise DomainConfigError("missing 'model' attribute in <rng>")
    model = _enum(model, _RNG_MODELS, (), "rng model")
    be = r.one(n, "backend", p)
    if be is None:
        raise DomainConfigError("missing <backend> element in <rng>")
    bmodel = be.pop("@model", None)
    if bmodel is None:
        raise DomainConfigError("missing 'model' attribute in <rng><backend>")
    bmodel = _enum(bmodel, _RNG_BACKENDS, _OTHER_RNG_BACKENDS, "rng backend model")
    path = _text(be)
    r.done(be, f"{p}/backend")
    alias = r.alias(n, p)
    address = r.address(n, p)
    r.done(n, p)
    return RNG(model=model, backend_model=bmodel, backend_path=path, alias=alias,
               address=address)


def _read_controller(r: _Reader, c: _Node, p: str) -> Controller | None:
    """
    @return: the controller, or C{None} for a type or model qemud does not
        model (the board's own IDE, floppy and PCI root controllers, USB2
        companions, ...): the caller leaves those to be reported as ignored.
    """
    ctype = c.get("@type")
    model = c.get("@model")
    if ctype not in _CONTROLLER_MODELS or (model is not None
                                           and model not in _CONTROLLER_MODELS[ctype]):
        return None
    if ctype == "pci" and model is None:
        return None  # the root bus, or a model libvirt would choose
    c.pop("@type")
    c.pop("@model", None)
    raw = c.pop("@index", None)
    index = -1
    if raw is not None:
        index = _int(raw, "<controller index>")
        if index < 0:
            raise DomainConfigError(
                f"invalid value '{raw}' for <controller index>: expected 0 or more")
    chassis = port = None
    if ctype == "pci":
        chassis, port = _read_root_port(r, c, p)
    alias = r.alias(c, p)
    address = r.address(c, p)
    r.done(c, p)
    return Controller(type=ctype, index=index, model=model, alias=alias, address=address,
                      target_chassis=chassis, target_port=port)


def _read_root_port(r: _Reader, c: _Node, p: str) -> tuple[int | None, int | None]:
    """
    Take a root port's C{<model name=>} and C{<target chassis= port=>}.

    @return: C{(chassis, port)}, C{None} for those not given.
    @raise DomainConfigError: a value that is not a number from 0 to 255.
    @raise ConfigUnsupportedError: a model name other than C{pcie-root-port}.
    """
    mn = r.one(c, "model", p)
    if mn is not None:
        name = mn.pop("@name", None)
        if name is not None and name != pci.ROOT_PORT:
            raise ConfigUnsupportedError(
                f"PCI controller model name '{name}' is not supported for model "
                f"'{pci.ROOT_PORT}'")
        r.done(mn, f"{p}/model")
    tn = r.one(c, "target", p)
    if tn is None:
        return None, None
    values: list[int | None] = []
    for key in ("chassis", "port"):
        raw = tn.pop(f"@{key}", None)
        value = None if raw is None else _address_number(raw, key, "target")
        if value is not None and value > 255:
            raise DomainConfigError(
                f"PCI controller {key} '{value}' out of range - must be 0-255")
        values.append(value)
    r.done(tn, f"{p}/target")
    return values[0], values[1]


def _read_controllers(r: _Reader, node: _Node, p: str) -> tuple[Controller, ...]:
    """
    Take the C{<controller>} elements qemud models; the others stay in
    C{node} (reported as ignored).  A controller without an index gets the
    lowest one free for its type, as in libvirt.
    """
    kept: list[_Node] = []
    found: list[Controller] = []
    for c in r.many(node, "controller"):
        controller = _read_controller(r, c, p)
        if controller is None:
            kept.append(c)
        else:
            found.append(controller)
    if kept:
        node["controller"] = kept
    out: list[Controller] = []
    for controller in found:
        if controller.index < 0:
            used = {c.index for c in (*found, *out) if c.type == controller.type}
            if controller.type == "pci":
                used.add(0)  # the root bus
            index = next(i for i in range(len(used) + 1) if i not in used)
            controller = replace(controller, index=index)
        out.append(controller)
    return tuple(out)


def _read_devices(r: _Reader, node: _Node | None) -> Devices:
    if node is None:
        return Devices()
    p = "domain/devices"
    emulator = r.text(node, "emulator", p)
    disks = tuple(_read_disk(r, d, f"{p}/disk") for d in r.many(node, "disk"))
    ifaces = tuple(_read_interface(r, i, f"{p}/interface") for i in r.many(node, "interface"))
    graphics = tuple(_read_graphics(r, g, f"{p}/graphics") for g in r.many(node, "graphics"))
    serials = tuple(_read_chardev(r, c, f"{p}/serial") for c in r.many(node, "serial"))
    consoles = tuple(_read_chardev(r, c, f"{p}/console") for c in r.many(node, "console"))
    inputs = tuple(_read_input(r, n, f"{p}/input") for n in r.many(node, "input"))
    videos = tuple(_read_video(r, v, f"{p}/video") for v in r.many(node, "video"))
    bn = r.one(node, "memballoon", p)
    balloon = None if bn is None else _read_memballoon(r, bn, f"{p}/memballoon")
    watchdogs = tuple(_read_watchdog(r, w, f"{p}/watchdog") for w in r.many(node, "watchdog"))
    rngs = tuple(_read_rng(r, n, f"{p}/rng") for n in r.many(node, "rng"))
    controllers = _read_controllers(r, node, f"{p}/controller")
    r.done(node, p)
    return Devices(emulator=emulator, disks=disks, interfaces=ifaces, graphics=graphics,
                   serials=serials, consoles=consoles, inputs=inputs, videos=videos,
                   memballoon=balloon, watchdogs=watchdogs, rngs=rngs,
                   controllers=controllers)


def _read_domain(r: _Reader, node: _Node) -> Domain:
    dtype = node.pop("@type", None)
    node.pop("@id", None)  # live XML: the running id is not part of the definition
    if dtype is None:
        raise DomainConfigError("missing 'type' attribute in <domain>")
    if dtype == "kqemu":
        raise ConfigUnsupportedError(
            "domain type 'kqemu' is not supported: QEMU dropped kqemu support in "
            "version 0.12 (2009); use type='qemu' or type='kvm'"
        )
    dtype = _enum(dtype, _DOMAIN_TYPES, _OTHER_HYPERVISORS, "domain type")
    p = "domain"
    name = r.text(node, "name", p) or ""
    uuid = r.text(node, "uuid", p)
    title = r.text(node, "title", p)
    description = r.text(node, "description", p)
    memory = _memory(r, node, "memory")
    if memory is None:
        raise DomainConfigError("missing <memory> element")
    current = _memory(r, node, "currentMemory")
    vcpus = 1
    current_vcpus = None
    cpuset = placement = None
    vn = r.one(node, "vcpu", p)
    if vn is not None:
        placement = vn.pop("@placement", None)
        cpuset = vn.pop("@cpuset", None)
        cur = vn.pop("@current", None)
        count = _text(vn)
        r.done(vn, f"{p}/vcpu")
        if count is None:
            raise DomainConfigError("missing vcpu count in <vcpu>")
        vcpus = _int(count, "<vcpu>")
        current_vcpus = None if cur is None else _int(cur, "<vcpu current>")
    os = _read_os(r, r.one(node, "os", p))
    features = _read_features(r, r.one(node, "features", p))
    cpu = _read_cpu(r, r.one(node, "cpu", p))
    clock = _read_clock(r, r.one(node, "clock", p))
    actions = {}
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        value = r.text(node, key, p)
        if value is not None:
            actions[key] = value.strip()
    devices = _read_devices(r, r.one(node, "devices", p))
    r.done(node, p)
    return Domain(type=dtype, name=name, uuid="" if uuid is None else parse_uuid(uuid),
                  memory_kib=memory, vcpus=vcpus, current_memory_kib=current,
                  current_vcpus=current_vcpus, cpuset=cpuset, title=title,
                  description=description, os=os, features=features, cpu=cpu, clock=clock,
                  devices=devices, vcpu_placement=placement, **actions)


def read_domain_xml(text: str, *, warnings: list[str] | None = None) -> Domain:
    """
    The parse step alone: turn a C{<domain>} document into a L{Domain}.

    Nothing is filled in and only syntax, types and enumerations are checked;
    see L{parse_domain_xml} for the complete pipeline.

    @param text: the XML document.
    @param warnings: if given, a text naming each unsupported (dropped)
        element or attribute is appended to it.
    @return: the definition as written.
    @raise DomainConfigError: for malformed or unacceptable input.
    """
    r = _Reader()
    domain = _read_domain(r, _load(text, "domain")[1])
    if warnings is not None:
        warnings.extend(r.warnings())
    return domain


def parse_domain_xml(
    text: str,
    *,
    existing_macs: frozenset[str] = frozenset(),
    warnings: list[str] | None = None,
) -> Domain:
    """
    Parse, fill in defaults and validate a C{<domain>} document, then add
    the implicit controllers and assign PCI addresses (L{pci.complete}).

    @param text: the XML document, at most L{MAX_XML_BYTES} bytes.
    @param existing_macs: MAC addresses in use elsewhere; generated MACs avoid them.
    @param warnings: if given, a text naming each unsupported (dropped)
        element or attribute is appended to it.
    @return: the complete, valid definition.
    @raise DomainConfigError: for malformed or invalid input.
    @raise ConfigUnsupportedError: for configurations qemud cannot run.
    """
    domain = read_domain_xml(text, warnings=warnings)
    domain = defaults.fill_defaults(domain, existing_macs=existing_macs)
    validate.validate_domain(domain)
    return pci.complete(domain, pci.machine_kind(domain.os.machine, domain.os.arch))


def parse_device_xml(
    text: str,
    *,
    existing_macs: frozenset[str] = frozenset(),
    warnings: list[str] | None = None,
) -> Disk | Interface:
    """
    Parse, fill in defaults and validate a single C{<disk>} or C{<interface>}.

    @param text: the XML document (root C{<disk>} or C{<interface>}).
    @param existing_macs: MAC addresses in use; a generated MAC avoids them.
    @param warnings: receives texts naming dropped elements and attributes.
    @return: the device.
    @raise DomainConfigError: for malformed or invalid input, or another root.
    """
    r = _Reader()
    device: Disk | Interface
    root, node = _load(text, "disk", "interface")
    if root == "disk":
        device = _read_disk(r, node, "disk")
    else:
        device = _read_interface(r, node, "interface")
    if warnings is not None:
        warnings.extend(r.warnings())
    device = defaults.fill_device_defaults(device, existing_macs=existing_macs)
    validate.validate_device(device)
    return device


# --- formatting -------------------------------------------------------------

_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;",
    "\r": "&#13;", "\n": "&#10;", "\t": "&#9;",
})
_TEXT_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;", "\r": "&#13;",
})


def escape_attribute(value: str) -> str:
    """
    @return: C{value} escaped for a single-quoted attribute (libvirt's way:
        line breaks and tabs as character references).
    """
    return value.translate(_ESCAPES)


def escape_text(value: str) -> str:
    """
    @return: C{value} escaped for element text.
    """
    return value.translate(_TEXT_ESCAPES)


def _a(name: str, value: object) -> str:
    """
    Render one attribute, or nothing when C{value} is C{None}.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "yes" if value else "no"
    return f" {name}='{escape_attribute(str(value))}'"


def _alias(out: list[str], ind: str, alias: str | None, inactive: bool,
           address: PCIAddress | None = None) -> None:
    """
    A device's C{<alias>} (live XML only), then its C{<address>} (always).
    """
    if alias is not None and not inactive:
        out.append(f"{ind}<alias name='{alias.translate(_ESCAPES)}'/>")
    if address is not None:
        multi = "" if address.multifunction is None else _a(
            "multifunction", "on" if address.multifunction else "off")
        out.append(f"{ind}<address type='pci' domain='0x{address.domain:04x}' "
                   f"bus='0x{address.bus:02x}' slot='0x{address.slot:02x}' "
                   f"function='0x{address.function:x}'{multi}/>")


def _close(out: list[str], ind: str, tag: str, head: str, start: int) -> None:
    """
    Close an element opened at C{out[start]}: self-close it if it got no children.
    """
    if len(out) == start + 1:
        out[start] = f"{ind}<{tag}{head}/>"
    else:
        out.append(f"{ind}</{tag}>")


def _format_disk(out: list[str], ind: str, d: Disk, inactive: bool) -> None:
    head = _a("type", d.type) + _a("device", d.device)
    start = len(out)
    out.append(f"{ind}<disk{head}>")
    i = ind + "  "
    if d.driver_name or d.driver_type or d.driver_cache:
        out.append(f"{i}<driver{_a('name', d.driver_name)}{_a('type', d.driver_type)}"
                   f"{_a('cache', d.driver_cache)}/>")
    if d.source is not None:
        out.append(f"{i}<source{_a('file' if d.type == 'file' else 'dev', d.source)}/>")
    out.append(f"{i}<target{_a('dev', d.target_dev)}{_a('bus', d.target_bus or None)}"
               f"{_a('tray', d.tray)}/>")
    if d.readonly:
        out.append(f"{i}<readonly/>")
    if d.shareable:
        out.append(f"{i}<shareable/>")
    if d.serial is not None:
        out.append(f"{i}<serial>{escape_text(d.serial)}</serial>")
    if d.boot_order is not None:
        out.append(f"{i}<boot order='{d.boot_order}'/>")
    _alias(out, i, d.alias, inactive, d.address)
    _close(out, ind, "disk", head, start)


def _format_interface(out: list[str], ind: str, n: Interface, inactive: bool) -> None:
    head = _a("type", n.type)
    start = len(out)
    out.append(f"{ind}<interface{head}>")
    i = ind + "  "
    if n.mac:
        out.append(f"{i}<mac address='{n.mac}'/>")
    if n.type == "network" and n.source_network is not None:
        out.append(f"{i}<source{_a('network', n.source_network)}/>")
    elif n.type == "bridge" and n.source_bridge is not None:
        out.append(f"{i}<source{_a('bridge', n.source_bridge)}/>")
    elif n.type in _SOCKET_IFACES and (n.source_address is not None or n.source_port is not None
                                       or n.local_address is not None
                                       or n.local_port is not None):
        src = f"{i}<source{_a('address', n.source_address)}{_a('port', n.source_port)}"
        if n.type == "udp" and (n.local_address is not None or n.local_port is not None):
            out.append(src + ">")
            out.append(f"{i}  <local{_a('address', n.local_address)}"
                       f"{_a('port', n.local_port)}/>")
            out.append(f"{i}</source>")
        else:
            out.append(src + "/>")
    if n.script is not None:
        out.append(f"{i}<script{_a('path', n.script)}/>")
    if n.target_dev is not None:
        out.append(f"{i}<target{_a('dev', n.target_dev)}/>")
    if n.model is not None:
        out.append(f"{i}<model{_a('type', n.model)}/>")
    if n.boot_order is not None:
        out.append(f"{i}<boot order='{n.boot_order}'/>")
    _alias(out, i, n.alias, inactive, n.address)
    _close(out, ind, "interface", head, start)


def _format_chardev(out: list[str], ind: str, tag: str, c: CharDev, inactive: bool) -> None:
    head = _a("type", c.type)
    start = len(out)
    out.append(f"{ind}<{tag}{head}>")
    i = ind + "  "
    if c.type == "pty":
        if c.source_path is not None and not inactive:
            out.append(f"{i}<source{_a('path', c.source_path)}/>")
    elif c.type == "file":
        if c.source_path is not None:
            out.append(f"{i}<source{_a('path', c.source_path)}/>")
    elif c.type == "unix":
        out.append(f"{i}<source{_a('mode', c.source_mode)}{_a('path', c.source_path)}/>")
    elif c.type == "tcp":
        out.append(f"{i}<source{_a('mode', c.source_mode)}{_a('host', c.source_host)}"
                   f"{_a('service', c.source_service)}/>")
        if c.protocol is not None:
            out.append(f"{i}<protocol{_a('type', c.protocol)}/>")
    elif c.type == "udp":
        if c.bind_host is not None or c.bind_service is not None:
            out.append(f"{i}<source mode='bind'{_a('host', c.bind_host)}"
                       f"{_a('service', c.bind_service)}/>")
        out.append(f"{i}<source mode='connect'{_a('host', c.source_host)}"
                   f"{_a('service', c.source_service)}/>")
    if c.target_type is not None or c.target_port is not None:
        out.append(f"{i}<target{_a('type', c.target_type)}{_a('port', c.target_port)}/>")
    _alias(out, i, c.alias, inactive)
    _close(out, ind, tag, head, start)


def _format_graphics(out: list[str], ind: str, g: Graphics, inactive: bool,
                     secure: bool) -> None:
    port = -1 if g.autoport and (inactive or g.port < 0) else g.port
    head = (_a("type", g.type) + _a("port", port) + _a("autoport", g.autoport)
            + _a("listen", g.listen) + _a("keymap", g.keymap)
            + ("" if secure else _a("passwd", g.passwd)))
    out.append(f"{ind}<graphics{head}>")
    out.append(f"{ind}  <listen type='address'{_a('address', g.listen)}/>")
    out.append(f"{ind}</graphics>")


def _format_simple(out: list[str], ind: str, tag: str, head: str, alias: str | None,
                   inactive: bool, body: list[str] | None = None,
                   address: PCIAddress | None = None) -> None:
    start = len(out)
    out.append(f"{ind}<{tag}{head}>")
    if body:
        out.extend(body)
    _alias(out, ind + "  ", alias, inactive, address)
    _close(out, ind, tag, head, start)


def _format_device(out: list[str], ind: str, dev: Disk | Interface, inactive: bool) -> None:
    if isinstance(dev, Disk):
        _format_disk(out, ind, dev, inactive)
    else:
        _format_interface(out, ind, dev, inactive)


def _format_os(out: list[str], o: OS) -> None:
    out.append("  <os>")
    out.append(f"    <type{_a('arch', o.arch)}{_a('machine', o.machine)}>{escape_text(o.type)}</type>")
    if o.loader is not None:
        ld = o.loader
        out.append(f"    <loader{_a('readonly', ld.readonly)}{_a('type', ld.type)}>"
                   f"{escape_text(ld.path)}</loader>")
    for tag, value in (("kernel", o.kernel), ("initrd", o.initrd), ("cmdline", o.cmdline)):
        if value is not None:
            out.append(f"    <{tag}>{escape_text(value)}</{tag}>")
    for dev in o.boot_devs:
        out.append(f"    <boot dev='{dev}'/>")
    if o.bootmenu is not None:
        out.append(f"    <bootmenu{_a('enable', o.bootmenu)}/>")
    if o.bios_useserial is not None:
        out.append(f"    <bios{_a('useserial', o.bios_useserial)}/>")
    out.append("  </os>")


def _format_cpu(out: list[str], c: CPU) -> None:
    head = _a("mode", c.mode) + _a("match", c.match) + _a("check", c.check)
    start = len(out)
    out.append(f"  <cpu{head}>")
    if c.model is not None:
        out.append(f"    <model{_a('fallback', c.fallback)}>{escape_text(c.model)}</model>")
    elif c.fallback is not None:
        out.append(f"    <model{_a('fallback', c.fallback)}/>")
    for f in c.features:
        out.append(f"    <feature{_a('policy', f.policy)}{_a('name', f.name)}/>")
    _close(out, "  ", "cpu", head, start)


def format_domain_xml(
    domain: Domain,
    *,
    inactive: bool = True,
    secure: bool = True,
    domain_id: int | None = None,
) -> str:
    """
    Render a definition as libvirt's C{<domain>} XML.

    @param domain: the definition.
    @param inactive: C{True} for the persistent configuration; C{False} for a
        running guest's live XML, which adds C{id='N'} on C{<domain>} and each
        device's C{<alias>}, and shows the VNC port actually chosen.
    @param secure: C{False} includes secrets (the VNC C{passwd}).
    @param domain_id: the running id, shown when C{inactive} is C{False}.
    @return: the document, two-space indented, ending in a newline.
    """
    d = domain
    out: list[str] = []
    idattr = "" if inactive or domain_id is None else f" id='{domain_id}'"
    out.append(f"<domain type='{d.type}'{idattr}>")
    out.append(f"  <name>{escape_text(d.name)}</name>")
    out.append(f"  <uuid>{d.uuid}</uuid>")
    if d.title is not None:
        out.append(f"  <title>{escape_text(d.title)}</title>")
    if d.description is not None:
        out.append(f"  <description>{escape_text(d.description)}</description>")
    out.append(f"  <memory unit='KiB'>{d.memory_kib}</memory>")
    current = d.memory_kib if d.current_memory_kib is None else d.current_memory_kib
    out.append(f"  <currentMemory unit='KiB'>{current}</currentMemory>")
    cur = d.current_vcpus if d.current_vcpus != d.vcpus else None
    out.append(f"  <vcpu{_a('placement', d.vcpu_placement)}{_a('cpuset', d.cpuset)}"
               f"{_a('current', cur)}>{d.vcpus}</vcpu>")
    _format_os(out, d.os)
    f = d.features
    if f.acpi or f.apic or f.pae:
        out.append("  <features>")
        for name, on in (("acpi", f.acpi), ("apic", f.apic), ("pae", f.pae)):
            if on:
                out.append(f"    <{name}/>")
        out.append("  </features>")
    if d.cpu is not None:
        _format_cpu(out, d.cpu)
    if d.clock.timers:
        out.append(f"  <clock{_a('offset', d.clock.offset)}>")
        for t in d.clock.timers:
            out.append(f"    <timer{_a('name', t.name)}{_a('present', t.present)}"
                       f"{_a('tickpolicy', t.tickpolicy)}/>")
        out.append("  </clock>")
    else:
        out.append(f"  <clock{_a('offset', d.clock.offset)}/>")
    out.append(f"  <on_poweroff>{escape_text(d.on_poweroff)}</on_poweroff>")
    out.append(f"  <on_reboot>{escape_text(d.on_reboot)}</on_reboot>")
    out.append(f"  <on_crash>{escape_text(d.on_crash)}</on_crash>")
    _format_devices(out, d.devices, inactive, secure)
    out.append("</domain>")
    out.append("")
    return "\n".join(out)


def _format_devices(out: list[str], dv: Devices, inactive: bool, secure: bool) -> None:
    start = len(out)
    out.append("  <devices>")
    ind = "    "
    if dv.emulator is not None:
        out.append(f"{ind}<emulator>{escape_text(dv.emulator)}</emulator>")
    for disk in dv.disks:
        _format_disk(out, ind, disk, inactive)
    for ctl in dv.controllers:
        body = None
        if ctl.type == "pci":
            body = [f"{ind}  <model{_a('name', ctl.model)}/>"]
            if ctl.target_chassis is not None or ctl.target_port is not None:
                port = None if ctl.target_port is None else f"0x{ctl.target_port:x}"
                body.append(f"{ind}  <target{_a('chassis', ctl.target_chassis)}"
                            f"{_a('port', port)}/>")
        _format_simple(out, ind, "controller", _a("type", ctl.type) + _a("index", ctl.index)
                       + _a("model", ctl.model), ctl.alias, inactive, body, ctl.address)
    for iface in dv.interfaces:
        _format_interface(out, ind, iface, inactive)
    for c in dv.serials:
        _format_chardev(out, ind, "serial", c, inactive)
    for c in dv.consoles:
        _format_chardev(out, ind, "console", c, inactive)
    for n in dv.inputs:
        _format_simple(out, ind, "input", _a("type", n.type) + _a("bus", n.bus), n.alias,
                       inactive, address=n.address)
    for g in dv.graphics:
        _format_graphics(out, ind, g, inactive, secure)
    for v in dv.videos:
        body = [f"{ind}  <model{_a('type', v.model or None)}{_a('vram', v.vram)}"
                f"{_a('heads', v.heads)}/>"]
        _format_simple(out, ind, "video", "", v.alias, inactive, body, v.address)
    for w in dv.watchdogs:
        _format_simple(out, ind, "watchdog", _a("model", w.model) + _a("action", w.action),
                       w.alias, inactive, address=w.address)
    if dv.memballoon is not None:
        b = dv.memballoon
        _format_simple(out, ind, "memballoon", _a("model", b.model), b.alias, inactive,
                       address=b.address)
    for rng in dv.rngs:
        be = f"{ind}  <backend{_a('model', rng.backend_model)}"
        be += "/>" if rng.backend_path is None else f">{escape_text(rng.backend_path)}</backend>"
        _format_simple(out, ind, "rng", _a("model", rng.model), rng.alias, inactive, [be],
                       rng.address)
    _close(out, "  ", "devices", "", start)


def format_device_xml(device: Disk | Interface, *, inactive: bool = True) -> str:
    """
    Render a single C{<disk>} or C{<interface>} (as for C{virsh attach-device}).

    @param device: the device.
    @param inactive: C{False} includes the device's C{<alias>}.
    @return: the document, two-space indented, ending in a newline.
    """
    out: list[str] = []
    _format_device(out, "", device, inactive)
    out.append("")
    return "\n".join(out)
