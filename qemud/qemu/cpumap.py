# -*- test-case-name: tests.qemu.test_cpumap -*-
"""
Name the host CPU the way libvirtd 9.0 does: decode raw CPUID (and MSR)
data against libvirt's x86 CPU map.

Pure: stdlib and xmltodict only, no I/O besides reading the map's files.
What it models, from libvirt's C{src/cpu/cpu_map.c} and C{cpu_x86.c}:

  - B{the map} (C{/usr/share/libvirt/cpu_map/index.xml} and the files its
    C{<arch name='x86'>} includes): vendors (a 12-byte CPUID vendor string),
    features (CPUID leaf/subleaf/register bits or MSR bits; aliases ignored)
    and models (optional C{<model name=...>} ancestor whose vendor,
    signatures and features are inherited, C{<decode host= guest=>},
    C{<signature family model [stepping]>} replacing inherited ones,
    C{<vendor>}, C{<feature>}s; C{removed='yes'} features are not part of
    the model).  Each file contributes its vendors, then its features, then
    its models, in the order the index includes them; that order is the
    order features are listed in and models are tried in (newest last).
  - B{the CPU data}: a set of CPUID items keyed by (leaf, subleaf) and MSR
    items keyed by index, as libvirt's C{cpuidSet} gathers them
    (L{collect_cpuid}).
  - B{the decode} (L{decode_host}, libvirt's C{x86Decode} for a host CPU):
    the vendor is the map vendor whose string is in leaf 0; broken TSX is
    dropped on some Intel CPUs; models are tried newest first, skipping
    models of another vendor and models with C{decode host='off'}; a model
    is usable only if the host has every feature it needs (no feature would
    have to be disabled); among usable models one whose signature matches
    the host's family/model/stepping wins over one that does not, and
    otherwise the one leaving the fewest extra features wins (ties keep the
    newer model).  The extra features are the host's bits the model does
    not cover, named in map order, each feature's bits removed once named.

Raw data comes from L{qemud.daemon.hostcpu} (the real CPU) or from a JSON
fixture (L{cpu_data_from_dict}), so the decode is unit-testable anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import xmltodict

__all__ = [
    "DEFAULT_CPU_MAP_DIR",
    "CPUData",
    "CPUMap",
    "CPUMapError",
    "CPUModel",
    "CPUSignature",
    "DecodedCPU",
    "Feature",
    "Registers",
    "collect_cpuid",
    "cpu_data_from_dict",
    "cpu_data_to_dict",
    "cpu_signature",
    "decode_host",
    "features_in",
    "has_feature",
    "load_cpu_map",
    "model_features",
]

#: Where Debian's C{libvirt0} installs the map (libvirt's C{PKGDATADIR/cpu_map}).
DEFAULT_CPU_MAP_DIR = "/usr/share/libvirt/cpu_map"

#: CPUID registers of one item: eax, ebx, ecx, edx.
Registers = tuple[int, int, int, int]

# Internal bit sets: (kind, a, b) -> four 32-bit words.  kind 0 is CPUID with
# (a, b) = (leaf, subleaf) and words (eax, ebx, ecx, edx); kind 1 is an MSR
# with a = index, b = 0 and words (eax, 0, 0, edx).
_Key = tuple[int, int, int]
_Bits = dict[_Key, Registers]
_CPUID = 0
_MSR = 1
_MASK32 = 0xFFFFFFFF
_ZERO: Registers = (0, 0, 0, 0)

# libvirt's SIGNATURE_MASK: leaf 1 eax without the reserved bits.
_SIGNATURE_MASK = 0x0FFF3FFF

# A bound libvirt's cpuidSet does not have, against a CPU (or a hypervisor)
# reporting an absurd maximum leaf or endless subleaves: real CPUs stay far
# below it.
_MAX_LEAVES_PER_RANGE = 256


class CPUMapError(ValueError):
    """
    The CPU map exists but cannot be used (malformed XML, a model naming an
    unknown feature or ancestor, ...).
    """


# ---------------------------------------------------------------- bit algebra

def _or(a: Registers, b: Registers) -> Registers:
    return (a[0] | b[0], a[1] | b[1], a[2] | b[2], a[3] | b[3])


def _andnot(a: Registers, b: Registers) -> Registers:
    return (a[0] & ~b[0], a[1] & ~b[1], a[2] & ~b[2], a[3] & ~b[3])


def _covers(have: Registers, need: Registers) -> bool:
    return all(h & n == n for h, n in zip(have, need, strict=True))


def _add(target: _Bits, other: Mapping[_Key, Registers]) -> None:
    """libvirt's C{x86DataAdd}: OR C{other} into C{target}."""
    for key, regs in other.items():
        if regs != _ZERO:
            target[key] = _or(target.get(key, _ZERO), regs)


def _subtract(target: _Bits, other: Mapping[_Key, Registers]) -> None:
    """libvirt's C{x86DataSubtract}: clear C{other}'s bits in C{target}."""
    for key, regs in target.items():
        if key in other:
            target[key] = _andnot(regs, other[key])


def _is_subset(data: Mapping[_Key, Registers], subset: Mapping[_Key, Registers]) -> bool:
    """libvirt's C{x86DataIsSubset}: every non-zero item of C{subset} is in C{data}."""
    for key, need in subset.items():
        if need == _ZERO:
            continue
        have = data.get(key)
        if have is None or not _covers(have, need):
            return False
    return True


# ---------------------------------------------------------------- CPU data

@dataclass(frozen=True)
class CPUData:
    """
    Raw CPU identification data, as libvirt gathers it for the host.

    @ivar cpuid: (leaf, subleaf) -> (eax, ebx, ecx, edx).
    @ivar msr: MSR index -> its 64-bit value.
    """

    cpuid: Mapping[tuple[int, int], Registers]
    msr: Mapping[int, int]

    def bits(self) -> _Bits:
        """
        @return: a fresh mutable bit set of all items (for the decode).
        """
        out: _Bits = {(_CPUID, leaf, sub): regs for (leaf, sub), regs in self.cpuid.items()}
        for index, value in self.msr.items():
            out[(_MSR, index, 0)] = (value & _MASK32, 0, 0, (value >> 32) & _MASK32)
        return out


def collect_cpuid(call: Callable[[int, int], Registers]) -> CPUData:
    """
    Gather CPUID the way libvirt's C{cpuidSet} does for the basic
    (C{0x0}...) and extended (C{0x80000000}...) ranges: every leaf up to the
    range's maximum with subleaf 0, plus the subleaves that leaves 0x4,
    0x7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14 and 0x17 define.  Hypervisor
    leaves (C{0x40000000}...) are not read, as libvirt does not.  Unlike
    libvirt, the number of leaves and subleaves read is bounded.

    @param call: executes CPUID for (eax, ecx) and returns the registers.
    @return: the data (no MSRs).
    """
    items: dict[tuple[int, int], Registers] = {}

    def add(leaf: int, sub: int, regs: Registers) -> None:
        items[(leaf, sub)] = _or(items.get((leaf, sub), _ZERO), regs)

    for base in (0x0, 0x80000000):
        top = call(base, 0)[0]
        last = min(top, base + _MAX_LEAVES_PER_RANGE - 1)
        for leaf in range(base, last + 1):
            regs = call(leaf, 0)
            if leaf == 0x4:
                add(leaf, 0, regs)
                sub, current = 0, regs
                while current[0] & 0x1F and sub < 64:
                    sub += 1
                    current = call(leaf, sub)
                    add(leaf, sub, current)
            elif leaf in (0x7, 0x14):
                add(leaf, 0, regs)
                for sub in range(1, min(regs[0], 63) + 1):
                    add(leaf, sub, call(leaf, sub))
            elif leaf == 0xB:
                sub, current = 0, regs
                while current[2] & 0xFF00 and sub < 64:
                    add(leaf, sub, current)
                    sub += 1
                    current = call(leaf, sub)
            elif leaf == 0xD:
                add(leaf, 0, regs)
                sub1 = call(leaf, 1)
                add(leaf, 1, sub1)
                for sub in range(2, 64):
                    if sub < 32 and not (regs[0] >> sub) & 1 and not (sub1[2] >> sub) & 1:
                        continue
                    if sub >= 32 and not (regs[3] >> (sub - 32)) & 1 \
                            and not (sub1[3] >> (sub - 32)) & 1:
                        continue
                    add(leaf, sub, call(leaf, sub))
            elif leaf in (0xF, 0x10):
                add(leaf, 0, regs)
                res = regs[3] if leaf == 0xF else regs[1]
                for sub in range(1, 32):
                    if (res >> sub) & 1:
                        add(leaf, sub, call(leaf, sub))
            elif leaf == 0x12:
                leaf7 = items.get((0x7, 0))
                if leaf7 is None or not (leaf7[1] >> 2) & 1:  # no SGX
                    continue
                add(leaf, 0, regs)
                add(leaf, 1, call(leaf, 1))
                sub, current = 2, call(leaf, 2)
                while current[0] & 0xF and sub < 64:
                    add(leaf, sub, current)
                    sub += 1
                    current = call(leaf, sub)
            elif leaf == 0x17:
                if regs[0] < 3:
                    continue
                add(leaf, 0, regs)
                for sub in range(1, min(regs[0], 63) + 1):
                    add(leaf, sub, call(leaf, sub))
            else:
                add(leaf, 0, regs)
    return CPUData(cpuid=items, msr={})


def cpu_signature(data: CPUData) -> tuple[int, int, int] | None:
    """
    @param data: raw CPU data.
    @return: (family, model, stepping) from leaf 1, as libvirt computes them
        (family = base + extended, model = extended << 4 + base), or C{None}
        without leaf 1.
    """
    leaf1 = data.cpuid.get((1, 0))
    if leaf1 is None:
        return None
    return _signature_fields(leaf1[0] & _SIGNATURE_MASK)


def _signature_fields(sig: int) -> tuple[int, int, int]:
    family = ((sig >> 20) & 0xFF) + ((sig >> 8) & 0xF)
    model = ((sig >> 12) & 0xF0) + ((sig >> 4) & 0xF)
    return family, model, sig & 0xF


def _hex(value: int) -> str:
    return f"0x{value:08x}"


def cpu_data_to_dict(data: CPUData) -> dict[str, Any]:
    """
    @return: the data as a JSON-ready dict (hex strings, sorted), the
        format of the fixtures in C{tests/data/cpuid/}.
    """
    return {
        "cpuid": [{"eax_in": _hex(leaf), "ecx_in": _hex(sub), "eax": _hex(r[0]),
                   "ebx": _hex(r[1]), "ecx": _hex(r[2]), "edx": _hex(r[3])}
                  for (leaf, sub), r in sorted(data.cpuid.items())],
        "msr": [{"index": f"0x{index:x}", "value": f"0x{value:016x}"}
                for index, value in sorted(data.msr.items())],
    }


def cpu_data_from_dict(document: Mapping[str, Any]) -> CPUData:
    """
    @param document: what L{cpu_data_to_dict} produced (other keys ignored).
    @return: the data.
    @raise ValueError: a malformed document.
    """
    try:
        cpuid = {(int(i["eax_in"], 16), int(i["ecx_in"], 16)):
                 (int(i["eax"], 16), int(i["ebx"], 16), int(i["ecx"], 16), int(i["edx"], 16))
                 for i in document.get("cpuid", [])}
        msr = {int(i["index"], 16): int(i["value"], 16) for i in document.get("msr", [])}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed CPU data: {e}") from e
    return CPUData(cpuid=cpuid, msr=msr)


# ---------------------------------------------------------------- the map

@dataclass(frozen=True)
class Feature:
    """
    One named CPU feature of the map.

    @ivar name: e.g. C{sse4.2}.
    @ivar bits: the CPUID/MSR bits that make it up.
    @ivar migratable: C{False} for C{migratable='no'} (C{invtsc}, ...).
    """

    name: str
    bits: Mapping[_Key, Registers]
    migratable: bool = True


@dataclass(frozen=True)
class CPUSignature:
    """
    A model's C{<signature>}.

    @ivar steppings: the allowed steppings, C{None} for any.
    """

    family: int
    model: int
    steppings: frozenset[int] | None = None

    def matches(self, family: int, model: int, stepping: int) -> bool:
        """@return: whether the host's (family, model, stepping) is this one."""
        return (self.family == family and self.model == model
                and (self.steppings is None or stepping in self.steppings))


@dataclass(frozen=True)
class CPUModel:
    """
    One CPU model of the map, with its ancestor's data merged in.

    @ivar vendor: the vendor's name (C{AMD}), or C{None} for generic models.
    @ivar bits: every feature the model has.
    @ivar features: the names behind C{bits}, in map order.
    @ivar removed: C{removed='yes'} features (not in C{bits}).
    """

    name: str
    decode_host: bool
    vendor: str | None
    signatures: tuple[CPUSignature, ...]
    bits: Mapping[_Key, Registers]
    features: tuple[str, ...]
    removed: tuple[str, ...] = ()

    def matches_signature(self, signature: tuple[int, int, int]) -> bool:
        """@return: whether any of the model's signatures is the host's."""
        return any(s.matches(*signature) for s in self.signatures)


@dataclass(frozen=True)
class CPUMap:
    """
    libvirt's x86 CPU map.

    @ivar vendors: name -> leaf-0 bits of its vendor string, in map order.
    @ivar features: in map order.
    @ivar models: in map order (oldest first).
    """

    vendors: Mapping[str, Mapping[_Key, Registers]]
    features: tuple[Feature, ...]
    models: tuple[CPUModel, ...]

    def feature(self, name: str) -> Feature | None:
        """@return: the feature called C{name}, if the map has one."""
        for feature in self.features:
            if feature.name == name:
                return feature
        return None


def _vendor_bits(string: str) -> dict[_Key, Registers]:
    raw = string.encode("ascii", errors="strict")
    if len(raw) != 12:
        raise CPUMapError(f"invalid CPU vendor string '{string}'")
    ebx, edx, ecx = (int.from_bytes(raw[i:i + 4], "little") for i in (0, 4, 8))
    return {(_CPUID, 0, 0): (0, ebx, ecx, edx)}


def _number(value: Any, what: str) -> int:
    try:
        number = int(str(value), 0)
    except ValueError:
        raise CPUMapError(f"invalid {what} '{value}'") from None
    if not 0 <= number <= _MASK32:
        raise CPUMapError(f"{what} '{value}' out of range")
    return number


def _feature_bits(name: str, element: Mapping[str, Any]) -> dict[_Key, Registers]:
    bits: _Bits = {}
    for item in element.get("cpuid") or []:
        if "@eax_in" not in item:
            raise CPUMapError(f"feature {name}: cpuid without eax_in")
        key = (_CPUID, _number(item["@eax_in"], "eax_in"),
               _number(item.get("@ecx_in", "0"), "ecx_in"))
        regs = tuple(_number(item.get(f"@{r}", "0"), r) for r in ("eax", "ebx", "ecx", "edx"))
        _add(bits, {key: (regs[0], regs[1], regs[2], regs[3])})
    for item in element.get("msr") or []:
        try:
            key = (_MSR, _number(item["@index"], "index"), 0)
            regs = (_number(item["@eax"], "eax"), 0, 0, _number(item["@edx"], "edx"))
        except KeyError as e:
            raise CPUMapError(f"feature {name}: msr without {e}") from None
        _add(bits, {key: regs})
    if not bits:
        raise CPUMapError(f"feature {name}: no x86 CPU data found")
    return bits


_FORCE_LIST = ("arch", "include", "vendor", "feature", "model", "signature", "cpuid", "msr")


def _parse(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            document: dict[str, Any] = xmltodict.parse(f.read(), force_list=_FORCE_LIST)
    except OSError as e:
        raise CPUMapError(f"cannot read {path}: {e.strerror}") from e
    except Exception as e:  # expat's errors have no common public base
        raise CPUMapError(f"cannot parse {path}: {e}") from e
    root = document.get("cpus")
    if not isinstance(root, dict):
        raise CPUMapError(f"{path}: the root element is not <cpus>")
    return root


def _steppings(text: str) -> frozenset[int]:
    """Parse a libvirt bitmap (C{0-4}, C{5-7,10}) of steppings 0..15."""
    out: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise CPUMapError(f"invalid stepping '{text}'") from None
        if not 0 <= first <= last <= 15:
            raise CPUMapError(f"invalid stepping '{text}'")
        out.update(range(first, last + 1))
    return frozenset(out)


class _MapBuilder:
    def __init__(self) -> None:
        self.vendors: dict[str, dict[_Key, Registers]] = {}
        self.features: list[Feature] = []
        self.models: list[CPUModel] = []

    def load(self, element: Mapping[str, Any]) -> None:
        """libvirt's per-file order: vendors, then features, then models."""
        for vendor in element.get("vendor") or []:
            self.vendor(vendor)
        for feature in element.get("feature") or []:
            self.feature(feature)
        for model in element.get("model") or []:
            self.model(model)

    def vendor(self, element: Mapping[str, Any]) -> None:
        name = element.get("@name")
        if not name:
            raise CPUMapError("vendor without a name")
        if name in self.vendors:
            raise CPUMapError(f"CPU vendor {name} already defined")
        if not element.get("@string"):
            raise CPUMapError(f"missing vendor string for CPU vendor {name}")
        self.vendors[name] = _vendor_bits(element["@string"])

    def feature(self, element: Mapping[str, Any]) -> None:
        name = element.get("@name")
        if not name:
            raise CPUMapError("feature without a name")
        if any(f.name == name for f in self.features):
            raise CPUMapError(f"CPU feature {name} already defined")
        self.features.append(Feature(name=name, bits=_feature_bits(name, element),
                                     migratable=element.get("@migratable") != "no"))

    def model(self, element: Mapping[str, Any]) -> None:
        name = element.get("@name")
        if not name:
            raise CPUMapError("model without a name")
        if any(m.name == name for m in self.models):
            raise CPUMapError(f"multiple definitions of CPU model '{name}'")
        decode = element.get("decode")
        if not isinstance(decode, dict) or "@host" not in decode or "@guest" not in decode:
            raise CPUMapError(f"missing decode element in CPU model {name}")
        vendor: str | None = None
        signatures: tuple[CPUSignature, ...] = ()
        bits: _Bits = {}
        names: list[str] = []
        ancestors = element.get("model") or []
        if ancestors:
            parent_name = ancestors[0].get("@name") if isinstance(ancestors[0], dict) else None
            parent = next((m for m in self.models if m.name == parent_name), None)
            if parent is None:
                raise CPUMapError(f"ancestor model {parent_name} not found for CPU model {name}")
            vendor, signatures = parent.vendor, parent.signatures
            _add(bits, parent.bits)
            names.extend(parent.features)
        if element.get("signature"):
            signatures = tuple(self.signature(name, s) for s in element["signature"])
        vendors = element.get("vendor") or []
        if vendors:
            vendor = vendors[0].get("@name") if isinstance(vendors[0], dict) else None
            if vendor not in self.vendors:
                raise CPUMapError(f"unknown vendor {vendor} referenced by CPU model {name}")
        removed: list[str] = []
        for item in element.get("feature") or []:
            fname = item.get("@name") if isinstance(item, dict) else None
            feature = next((f for f in self.features if f.name == fname), None)
            if feature is None:
                raise CPUMapError(f"feature {fname} required by CPU model {name} not found")
            if item.get("@removed") == "yes":
                removed.append(feature.name)
                continue
            _add(bits, feature.bits)
            names.append(feature.name)
        order = {f.name: i for i, f in enumerate(self.features)}
        self.models.append(CPUModel(
            name=name, decode_host=decode["@host"] == "on",
            vendor=vendor, signatures=signatures, bits=bits,
            features=tuple(sorted(set(names), key=order.__getitem__)), removed=tuple(removed)))

    def signature(self, model: str, element: Any) -> CPUSignature:
        if not isinstance(element, dict):
            raise CPUMapError(f"invalid CPU signature in model {model}")
        family = _number(element.get("@family", ""), "signature family")
        if family == 0:
            raise CPUMapError(f"invalid CPU signature family in model {model}")
        number = _number(element.get("@model", ""), "signature model")
        stepping = element.get("@stepping")
        return CPUSignature(family=family, model=number,
                            steppings=_steppings(stepping) if stepping else None)

    def build(self) -> CPUMap:
        return CPUMap(vendors=self.vendors, features=tuple(self.features),
                      models=tuple(self.models))


def load_cpu_map(directory: str = DEFAULT_CPU_MAP_DIR, arch: str = "x86") -> CPUMap | None:
    """
    Read libvirt's CPU map: C{index.xml}'s C{<arch name=arch>} and, in order,
    the files it includes (libvirt's C{cpuMapLoad}).

    @param directory: the map's directory.
    @param arch: the map's arch name (C{x86}).
    @return: the map, or C{None} when C{index.xml} is not there (libvirt's
        map is not installed).
    @raise CPUMapError: the map is there but unusable.
    """
    index = os.path.join(directory, "index.xml")
    if not os.path.exists(index):
        return None
    root = _parse(index)
    section = next((a for a in root.get("arch") or []
                    if isinstance(a, dict) and a.get("@name") == arch), None)
    if section is None:
        raise CPUMapError(f"{index}: no <arch name='{arch}'>")
    builder = _MapBuilder()
    builder.load(section)
    for include in section.get("include") or []:
        filename = include.get("@filename") if isinstance(include, dict) else None
        if not filename:
            raise CPUMapError(f"{index}: <include> without a filename")
        path = os.path.join(directory, filename)
        try:
            builder.load(_parse(path))
        except CPUMapError:
            raise
        except (AttributeError, TypeError, KeyError, ValueError) as e:
            # Elements of an unexpected shape (text where attributes were due,
            # a non-ASCII vendor string, ...).
            raise CPUMapError(f"{path}: unusable: {e}") from e
    return builder.build()


# ---------------------------------------------------------------- the decode

@dataclass(frozen=True)
class DecodedCPU:
    """
    The host CPU as libvirt names it.

    @ivar model: the model's name (C{kvm64}, C{EPYC-Milan}, ...).
    @ivar vendor: the vendor's name, C{None} if the map does not know it.
    @ivar features: the host's features beyond the model, in map order.
    @ivar signature: (family, model, stepping) from leaf 1.
    """

    model: str
    vendor: str | None
    features: tuple[str, ...]
    signature: tuple[int, int, int]


def _features_of(bits: _Bits, cpu_map: CPUMap) -> list[str]:
    """libvirt's C{x86DataToCPUFeatures}: name and remove features in map order."""
    names: list[str] = []
    for feature in cpu_map.features:
        if _is_subset(bits, feature.bits):
            _subtract(bits, feature.bits)
            names.append(feature.name)
    return names


def _find_vendor(bits: _Bits, cpu_map: CPUMap) -> str | None:
    """libvirt's C{x86DataToVendor}; also removes the vendor's bits."""
    for name, vendor_bits in cpu_map.vendors.items():
        if _is_subset(bits, vendor_bits):
            _subtract(bits, vendor_bits)
            return name
    return None


def _drop_broken_tsx(bits: _Bits, vendor: str | None, signature: tuple[int, int, int],
                     cpu_map: CPUMap) -> None:
    """libvirt's C{x86DataFilterTSX}: Haswell/Broadwell TSX errata."""
    family, model, stepping = signature
    if vendor != "Intel" or family != 6:
        return
    if (model == 63 and stepping < 4) or model in (60, 69, 70):
        for name in ("hle", "rtm"):
            feature = cpu_map.feature(name)
            if feature is not None:
                _subtract(bits, feature.bits)


def _better(current: tuple[CPUModel, list[str]] | None, candidate: CPUModel,
            extra: list[str], raw_signature: int, signature: tuple[int, int, int]) -> bool:
    """
    libvirt's C{x86DecodeUseCandidate} for a host CPU (no preferred model,
    candidates that would disable features already rejected).
    """
    if current is None:
        return True
    model, current_extra = current
    if raw_signature:
        if model.matches_signature(signature) and not candidate.matches_signature(signature):
            return False
        if not model.matches_signature(signature) and candidate.matches_signature(signature):
            return True
    return len(extra) < len(current_extra)


def decode_host(data: CPUData, cpu_map: CPUMap) -> DecodedCPU | None:
    """
    Name the host CPU described by C{data} (libvirt's C{x86Decode} for
    C{virCPUx86GetHost}).

    @param data: the host's raw CPUID (and MSR) data.
    @param cpu_map: libvirt's x86 CPU map.
    @return: the model, vendor and extra features; C{None} when no model
        fits (libvirt: "Cannot find suitable CPU model for given data").
    """
    bits = data.bits()
    vendor = _find_vendor(bits, cpu_map)
    leaf1 = bits.get((_CPUID, 1, 0))
    raw_signature = leaf1[0] & _SIGNATURE_MASK if leaf1 else 0
    signature = _signature_fields(raw_signature)
    _drop_broken_tsx(bits, vendor, signature, cpu_map)
    best: tuple[CPUModel, list[str]] | None = None
    for candidate in reversed(cpu_map.models):
        if vendor is not None and candidate.vendor is not None and vendor != candidate.vendor:
            continue
        if not candidate.decode_host:
            continue
        missing = dict(candidate.bits)
        _subtract(missing, bits)
        if _features_of(missing, cpu_map):
            continue  # the model needs a feature the host lacks
        extra_bits = dict(bits)
        _subtract(extra_bits, candidate.bits)
        extra = _features_of(extra_bits, cpu_map)
        if _better(best, candidate, extra, raw_signature, signature):
            best = (candidate, extra)
    if best is None:
        return None
    return DecodedCPU(model=best[0].name, vendor=vendor, features=tuple(best[1]),
                      signature=signature)


def has_feature(data: CPUData, name: str, cpu_map: CPUMap) -> bool:
    """
    @return: whether the data has every bit of the map's feature C{name}
        (libvirt's C{virCPUx86DataCheckFeature}); C{False} for a name the
        map does not define.
    """
    feature = cpu_map.feature(name)
    return feature is not None and _is_subset(data.bits(), feature.bits)


def model_features(cpu_map: CPUMap, name: str) -> tuple[str, ...]:
    """
    @return: the features of model C{name} (inherited ones included), in map
        order; empty for an unknown model.
    """
    model = next((m for m in cpu_map.models if m.name == name), None)
    return model.features if model is not None else ()


def features_in(data: CPUData, cpu_map: CPUMap) -> tuple[str, ...]:
    """
    @return: every map feature whose bits are all set in C{data}, in map
        order (without removing bits, unlike the decode).
    """
    bits = data.bits()
    return tuple(f.name for f in cpu_map.features if _is_subset(bits, f.bits))
