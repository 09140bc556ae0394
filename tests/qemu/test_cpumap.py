"""
Tests for L{qemud.qemu.cpumap}: loading libvirt's CPU map, gathering CPUID
the way libvirt does, and naming the host CPU (model, vendor, extra
features) as libvirtd 9.0 does.

The golden test decodes the recorded CPUID of the traced machine type
(C{tests/data/cpuid/}) with the installed map and must give exactly the
model and feature list libvirtd printed there; the edge cases use small
synthetic maps written to temporary directories.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from collections.abc import Iterable, Mapping

from qemud.qemu.cpumap import (
    CPUData,
    CPUMap,
    CPUMapError,
    Registers,
    collect_cpuid,
    cpu_data_from_dict,
    cpu_data_to_dict,
    cpu_signature,
    decode_host,
    features_in,
    has_feature,
    load_cpu_map,
    model_features,
)
from tests.cpudata import TRACE_SIGNATURE, load_fixture, require_cpu_map, trace_features

# ------------------------------------------------------------ synthetic maps

#: name -> CPUID/MSR XML of a feature (real bit positions).
FEATURES: dict[str, str] = {
    "fpu": "<cpuid eax_in='0x01' edx='0x00000001'/>",
    "sse": "<cpuid eax_in='0x01' edx='0x02000000'/>",
    "sse2": "<cpuid eax_in='0x01' edx='0x04000000'/>",
    "pni": "<cpuid eax_in='0x01' ecx='0x00000001'/>",
    "pni-again": "<cpuid eax_in='0x01' ecx='0x00000001'/>",
    "avx": "<cpuid eax_in='0x01' ecx='0x10000000'/>",
    "hle": "<cpuid eax_in='0x07' ecx_in='0x00' ebx='0x00000010'/>",
    "rtm": "<cpuid eax_in='0x07' ecx_in='0x00' ebx='0x00000800'/>",
    "arch-capabilities": "<cpuid eax_in='0x07' ecx_in='0x00' edx='0x20000000'/>",
    "svm": "<cpuid eax_in='0x80000001' ecx='0x00000004'/>",
    "invtsc": "<cpuid eax_in='0x80000007' edx='0x00000100'/>",
    "mds-no": "<msr index='0x10a' edx='0x00000000' eax='0x00000020'/>",
}

#: name -> (leaf, subleaf, register index, mask), for building host data.
BITS: dict[str, tuple[int, int, int, int]] = {
    "fpu": (1, 0, 3, 0x1), "sse": (1, 0, 3, 1 << 25), "sse2": (1, 0, 3, 1 << 26),
    "pni": (1, 0, 2, 0x1), "avx": (1, 0, 2, 1 << 28), "hle": (7, 0, 1, 1 << 4),
    "rtm": (7, 0, 1, 1 << 11), "arch-capabilities": (7, 0, 3, 1 << 29),
    "svm": (0x80000001, 0, 2, 1 << 2), "invtsc": (0x80000007, 0, 3, 1 << 8),
}

VENDORS = {"Intel": "GenuineIntel", "AMD": "AuthenticAMD"}


def model_xml(name: str, features: Iterable[str] = (), *, vendor: str | None = None,
              signatures: Iterable[str] = (), parent: str | None = None,
              host: str = "on", removed: Iterable[str] = ()) -> str:
    """
    @param signatures: C{"family,model"} or C{"family,model,steppings"}.
    @return: one C{<model>} element.
    """
    lines = [f"  <model name='{name}'>", f"    <decode host='{host}' guest='on'/>"]
    if parent:
        lines.append(f"    <model name='{parent}'/>")
    for sig in signatures:
        parts = sig.split(",", 2)
        stepping = f" stepping='{parts[2]}'" if len(parts) == 3 else ""
        lines.append(f"    <signature family='{parts[0]}' model='{parts[1]}'{stepping}/>")
    if vendor:
        lines.append(f"    <vendor name='{vendor}'/>")
    lines += [f"    <feature name='{f}'/>" for f in features]
    lines += [f"    <feature name='{f}' removed='yes'/>" for f in removed]
    lines.append("  </model>")
    return "\n".join(lines)


def write_map(models: Iterable[str], *, features: Mapping[str, str] = FEATURES,
              vendors: Mapping[str, str] = VENDORS, index_extra: str = "") -> str:
    """
    Write a CPU map laid out like libvirt's: an index including a vendors
    file, a features file and one file per model.

    @return: its directory.
    """
    directory = tempfile.mkdtemp(prefix="cpumap-")
    includes = ["x86_vendors.xml", "x86_features.xml"]

    def write(name: str, body: str) -> None:
        with open(os.path.join(directory, name), "w") as f:
            f.write(f"<cpus>\n{body}\n</cpus>\n")

    write("x86_vendors.xml", "\n".join(f"  <vendor name='{n}' string='{s}'/>"
                                       for n, s in vendors.items()))
    unmigratable = " migratable='no'"
    write("x86_features.xml", "\n".join(
        f"  <feature name='{n}'{unmigratable if n == 'invtsc' else ''}>\n"
        f"    {x}\n  </feature>" for n, x in features.items()))
    for n, model in enumerate(models):
        includes.append(f"x86_m{n}.xml")
        write(includes[-1], model)
    with open(os.path.join(directory, "index.xml"), "w") as f:
        f.write("<cpus>\n  <arch name='x86'>\n" + index_extra
                + "".join(f"    <include filename='{i}'/>\n" for i in includes)
                + "  </arch>\n  <arch name='arm'/>\n</cpus>\n")
    return directory


def make_signature(family: int, model: int, stepping: int) -> int:
    """@return: leaf 1 eax for a CPU (libvirt's C{x86MakeSignature})."""
    sig = 0
    if family > 0xF:
        sig |= (family - 0xF) << 20
        family = 0xF
    return sig | (model >> 4) << 16 | family << 8 | (model & 0xF) << 4 | (stepping & 0xF)


def host(vendor: str, features: Iterable[str], signature: tuple[int, int, int] = (25, 1, 1),
         msr: Mapping[int, int] | None = None) -> CPUData:
    """@return: CPU data of a host with a vendor, a signature and features."""
    raw = VENDORS.get(vendor, vendor).encode()
    words = [int.from_bytes(raw[i:i + 4], "little") for i in (0, 4, 8)]
    regs: dict[tuple[int, int], list[int]] = {
        (0, 0): [0xD, words[0], words[2], words[1]],
        (1, 0): [make_signature(*signature), 0, 0, 0],
        (0x80000000, 0): [0x80000008, 0, 0, 0],
    }
    for name in features:
        leaf, sub, reg, mask = BITS[name]
        regs.setdefault((leaf, sub), [0, 0, 0, 0])[reg] |= mask
    return CPUData(cpuid={k: (v[0], v[1], v[2], v[3]) for k, v in regs.items()},
                   msr=dict(msr or {}))


class SyntheticMapTestCase(unittest.TestCase):
    """Builds maps in temporary directories that are removed afterwards."""

    def load(self, *models: str, features: Mapping[str, str] = FEATURES,
             vendors: Mapping[str, str] = VENDORS, index_extra: str = "") -> CPUMap:
        """@return: the map of these models (see L{write_map})."""
        directory = write_map(models, features=features, vendors=vendors,
                              index_extra=index_extra)
        self.addCleanup(shutil.rmtree, directory)
        cpu_map = load_cpu_map(directory)
        assert cpu_map is not None
        return cpu_map

    def decode(self, data: CPUData, *models: str) -> tuple[str, tuple[str, ...]] | None:
        """@return: (model, extra features) of C{data} with these models, or C{None}."""
        decoded = decode_host(data, self.load(*models))
        return None if decoded is None else (decoded.model, decoded.features)


# ------------------------------------------------------------ the map

class MapLoadingTests(SyntheticMapTestCase):
    """L{load_cpu_map} on synthetic and installed maps."""

    def test_missing_map(self) -> None:
        """Without C{index.xml} there is no map: C{None}, not an error."""
        self.assertIsNone(load_cpu_map(os.path.join(tempfile.gettempdir(), "no-such-map-dir")))

    def test_order_and_inheritance(self) -> None:
        """
        Features keep the map's order; a model inherits its ancestor's
        vendor, signatures and features, its own signature replaces the
        inherited ones, and C{removed='yes'} features are not part of it.
        """
        cpu_map = self.load(
            model_xml("base", ["sse", "fpu", "hle"], vendor="Intel", signatures=["6,60"]),
            model_xml("child", ["avx"], parent="base", removed=["hle"]),
            model_xml("grandchild", ["pni"], parent="child", signatures=["6,61,0-3"]))
        self.assertEqual([f.name for f in cpu_map.features], list(FEATURES))
        self.assertEqual(list(cpu_map.vendors), ["Intel", "AMD"])
        models = {m.name: m for m in cpu_map.models}
        self.assertEqual([m.name for m in cpu_map.models], ["base", "child", "grandchild"])
        self.assertEqual(models["base"].features, ("fpu", "sse", "hle"))
        child = models["child"]
        self.assertEqual(child.vendor, "Intel")
        self.assertEqual(child.features, ("fpu", "sse", "avx", "hle"))
        self.assertEqual(child.removed, ("hle",))
        self.assertEqual([(s.family, s.model) for s in child.signatures], [(6, 60)])
        grandchild = models["grandchild"]
        self.assertEqual(grandchild.features, ("fpu", "sse", "pni", "avx", "hle"))
        self.assertEqual([(s.family, s.model, s.steppings) for s in grandchild.signatures],
                         [(6, 61, frozenset({0, 1, 2, 3}))])
        self.assertEqual(model_features(cpu_map, "child"), ("fpu", "sse", "avx", "hle"))
        self.assertEqual(model_features(cpu_map, "nope"), ())
        invtsc = cpu_map.feature("invtsc")
        self.assertIsNotNone(invtsc)
        self.assertFalse(invtsc.migratable if invtsc else True)

    def test_removed_feature_not_in_model_bits(self) -> None:
        """
        A feature a model lists as removed is not required of the host: a
        host without it can still use the model.
        """
        result = self.decode(host("Intel", ["fpu", "sse"]),
                             model_xml("m", ["fpu", "sse"], removed=["avx"]))
        self.assertEqual(result, ("m", ()))

    def test_errors(self) -> None:
        """An unusable map raises L{CPUMapError} naming the problem."""
        cases = {
            "feature avx2 required by CPU model m not found":
                [model_xml("m", ["avx2"])],
            "missing decode element in CPU model m":
                ["  <model name='m'><feature name='fpu'/></model>"],
            "ancestor model base not found for CPU model m":
                [model_xml("m", ["fpu"], parent="base")],
            "unknown vendor VIA referenced by CPU model m":
                [model_xml("m", ["fpu"], vendor="VIA")],
            "multiple definitions of CPU model 'm'":
                [model_xml("m", ["fpu"]), model_xml("m", ["sse"])],
            "invalid stepping '3-1'":
                [model_xml("m", ["fpu"], signatures=["6,1,3-1"])],
        }
        for message, models in cases.items():
            with self.subTest(message), self.assertRaises(CPUMapError) as ctx:
                self.load(*models)
            self.assertIn(message, str(ctx.exception))
        with self.assertRaises(CPUMapError) as ctx:
            self.load(vendors={"Odd": "TooShort"})
        self.assertIn("invalid CPU vendor string 'TooShort'", str(ctx.exception))
        with self.assertRaises(CPUMapError):
            self.load(features={"x": "<cpuid eax_in='zz'/>"})
        with self.assertRaises(CPUMapError):
            self.load(index_extra="    <include filename='missing.xml'/>\n")

    def test_malformed_xml(self) -> None:
        """A file that is not XML raises L{CPUMapError}, never an expat error."""
        directory = write_map([model_xml("m", ["fpu"])])
        self.addCleanup(shutil.rmtree, directory)
        with open(os.path.join(directory, "x86_m0.xml"), "w") as f:
            f.write("<cpus><model name='m'>")
        with self.assertRaises(CPUMapError):
            load_cpu_map(directory)

    def test_elements_of_the_wrong_shape(self) -> None:
        """
        Elements of an unexpected shape (a vendor given as text, a non-ASCII
        vendor string) raise L{CPUMapError} naming the file, not whatever
        the reader tripped on.
        """
        directory = write_map([model_xml("m", ["fpu"])])
        self.addCleanup(shutil.rmtree, directory)
        for body in ("<vendor>Intel</vendor>", "<vendor name='X' string='GenuineInt\u00e9l'/>"):
            with open(os.path.join(directory, "x86_vendors.xml"), "w") as f:
                f.write(f"<cpus>{body}</cpus>")
            with self.subTest(body), self.assertRaises(CPUMapError) as ctx:
                load_cpu_map(directory)
            self.assertIn("x86_vendors.xml", str(ctx.exception))

    def test_installed_map(self) -> None:
        """
        libvirt's installed map has its vendors, hundreds of features and
        the models the decode needs (C{kvm64} generic, C{EPYC-Milan} AMD
        family 25 model 1).
        """
        cpu_map = require_cpu_map()
        self.assertEqual(list(cpu_map.vendors)[:2], ["Intel", "AMD"])
        self.assertGreater(len(cpu_map.features), 150)
        models = {m.name: m for m in cpu_map.models}
        self.assertTrue(models["kvm64"].decode_host)
        self.assertIsNone(models["kvm64"].vendor)
        milan = models["EPYC-Milan"]
        self.assertEqual(milan.vendor, "AMD")
        self.assertEqual([(s.family, s.model) for s in milan.signatures], [(25, 1)])


# ------------------------------------------------------------ the decode

class DecodeTests(SyntheticMapTestCase):
    """L{decode_host} applies libvirt's choice rules."""

    GENERIC = model_xml("generic", ["fpu", "sse"])
    RICH = model_xml("rich", ["fpu", "sse", "sse2", "pni"])

    def test_fewest_extra_features(self) -> None:
        """
        Among usable models the one leaving the fewest extra features wins;
        the extra features are the host's features the model lacks.
        """
        data = host("AMD", ["fpu", "sse", "sse2", "pni", "avx"])
        self.assertEqual(self.decode(data, self.GENERIC, self.RICH), ("rich", ("avx",)))
        self.assertEqual(self.decode(data, self.RICH, self.GENERIC), ("rich", ("avx",)))

    def test_disabled_feature_rejects_model(self) -> None:
        """
        A model that needs a feature the host lacks is never used, even if
        it would leave fewer extra features.
        """
        data = host("AMD", ["fpu", "sse", "sse2", "avx"])
        self.assertEqual(self.decode(data, self.GENERIC, self.RICH),
                         ("generic", ("sse2", "avx")))

    def test_no_model_fits(self) -> None:
        """When every model needs something the host lacks, there is no model."""
        self.assertIsNone(self.decode(host("AMD", ["fpu"]), self.RICH))

    def test_vendor_mismatch(self) -> None:
        """
        A model of another vendor is skipped however well it fits; models
        without a vendor fit any vendor.
        """
        data = host("AMD", ["fpu", "sse", "sse2", "pni"])
        intel = model_xml("intel", ["fpu", "sse", "sse2", "pni"], vendor="Intel")
        self.assertEqual(self.decode(data, self.GENERIC, intel), ("generic", ("sse2", "pni")))
        amd = model_xml("amd", ["fpu", "sse", "sse2", "pni"], vendor="AMD")
        self.assertEqual(self.decode(data, self.GENERIC, intel, amd), ("amd", ()))

    def test_unknown_vendor(self) -> None:
        """
        A host whose vendor string is not in the map gets no vendor, and
        models of any vendor are candidates.
        """
        cpu_map = self.load(model_xml("intel", ["fpu", "sse"], vendor="Intel"))
        decoded = decode_host(host("CentaurHauls", ["fpu", "sse"]), cpu_map)
        assert decoded is not None
        self.assertEqual((decoded.model, decoded.vendor), ("intel", None))

    def test_decode_host_off(self) -> None:
        """A model marked C{<decode host='off'>} is never the host's model."""
        data = host("AMD", ["fpu", "sse", "sse2", "pni"])
        hidden = model_xml("hidden", ["fpu", "sse", "sse2", "pni"], host="off")
        self.assertEqual(self.decode(data, self.GENERIC, hidden), ("generic", ("sse2", "pni")))

    def test_matching_signature_preferred(self) -> None:
        """
        A model whose signature matches the host's wins over one that does
        not, even with more extra features; once a matching model is found,
        non-matching ones with fewer extra features do not replace it.
        """
        data = host("AMD", ["fpu", "sse", "sse2", "pni"], signature=(23, 49, 0))
        matching = model_xml("matching", ["fpu"], vendor="AMD", signatures=["23,49"])
        other = model_xml("other", ["fpu", "sse", "sse2"], vendor="AMD", signatures=["23,1"])
        for order in ((matching, other), (other, matching)):
            with self.subTest(first=order[0].split("'")[1]):
                self.assertEqual(self.decode(data, self.GENERIC, *order),
                                 ("matching", ("sse", "sse2", "pni")))

    def test_stepping_range(self) -> None:
        """A signature with steppings matches only those steppings."""
        model = model_xml("early", ["fpu"], vendor="Intel", signatures=["6,85,0-4"])
        fewer = model_xml("fewer", ["fpu", "sse"])
        data = host("Intel", ["fpu", "sse"], signature=(6, 85, 4))
        self.assertEqual(self.decode(data, model, fewer), ("early", ("sse",)))
        data = host("Intel", ["fpu", "sse"], signature=(6, 85, 7))
        self.assertEqual(self.decode(data, model, fewer), ("fewer", ()))

    def test_tie_keeps_newer(self) -> None:
        """
        Models are tried newest (last in the map) first and a tie does not
        replace the current one, so the newer model wins a tie.
        """
        data = host("AMD", ["fpu", "sse", "pni"])
        older = model_xml("older", ["fpu", "sse"])
        newer = model_xml("newer", ["fpu", "pni"])
        self.assertEqual(self.decode(data, older, newer), ("newer", ("sse",)))
        self.assertEqual(self.decode(data, newer, older), ("older", ("pni",)))

    def test_feature_order_and_bits_named_once(self) -> None:
        """
        Extra features are listed in the map's feature order, and bits
        named by one feature are not named again by a later feature with
        the same bits (C{pni-again}).
        """
        data = host("AMD", ["invtsc", "avx", "pni", "fpu"])
        self.assertEqual(self.decode(data, model_xml("m", ["fpu"])), ("m", ("pni", "avx",
                                                                           "invtsc")))

    def test_broken_tsx_dropped(self) -> None:
        """
        On Intel family 6 model 60 (Haswell) C{hle} and C{rtm} are dropped
        before the decode, as libvirt does; elsewhere they stay.
        """
        haswell = host("Intel", ["fpu", "hle", "rtm"], signature=(6, 60, 3))
        self.assertEqual(self.decode(haswell, model_xml("m", ["fpu"])), ("m", ()))
        other = host("Intel", ["fpu", "hle", "rtm"], signature=(6, 85, 4))
        self.assertEqual(self.decode(other, model_xml("m", ["fpu"])), ("m", ("hle", "rtm")))

    def test_msr_feature(self) -> None:
        """
        A feature defined by MSR bits is the host's only when the MSR data
        has them.
        """
        cpu_map = self.load(model_xml("m", ["fpu"]))
        plain = host("Intel", ["fpu", "arch-capabilities"])
        with_msr = host("Intel", ["fpu", "arch-capabilities"], msr={0x10A: 0x20})
        self.assertTrue(has_feature(plain, "arch-capabilities", cpu_map))
        self.assertFalse(has_feature(plain, "mds-no", cpu_map))
        self.assertFalse(has_feature(plain, "no-such-feature", cpu_map))
        decoded = decode_host(with_msr, cpu_map)
        assert decoded is not None
        self.assertEqual(decoded.features, ("arch-capabilities", "mds-no"))


class GoldenDecodeTests(unittest.TestCase):
    """The traced machine type decodes as libvirtd 9.0 decoded it."""

    def test_trace_host(self) -> None:
        """
        The recorded CPUID of the traced AMD EPYC (family 25 model 17) with
        the installed map gives C{kvm64}, vendor AMD, that signature and
        exactly the feature list libvirtd printed, in its order.
        """
        decoded = decode_host(load_fixture(), require_cpu_map())
        assert decoded is not None
        self.assertEqual(decoded.model, "kvm64")
        self.assertEqual(decoded.vendor, "AMD")
        self.assertEqual(decoded.signature, TRACE_SIGNATURE)
        self.assertEqual(list(decoded.features), trace_features())

    def test_model_and_features_cover_the_host(self) -> None:
        """
        The model's features and the listed ones together are exactly the
        host's features, and the host has every feature of the model.
        """
        cpu_map = require_cpu_map()
        data = load_fixture()
        decoded = decode_host(data, cpu_map)
        assert decoded is not None
        model = set(model_features(cpu_map, decoded.model))
        host_features = set(features_in(data, cpu_map))
        self.assertLessEqual(model, host_features)
        self.assertEqual(model | set(decoded.features), host_features)
        self.assertTrue(has_feature(data, "invtsc", cpu_map))

    def test_fixture_is_what_libvirt_reads(self) -> None:
        """
        Replaying the fixture as a CPU, L{collect_cpuid} keeps exactly the
        leaves and subleaves the fixture holds (it was recorded with
        libvirt's rules); the others it asks for are the ones libvirt asks
        and drops (leaf 0x12 without SGX, 0x17 below 3, the subleaf ending
        leaf 0xb).
        """
        data = load_fixture()
        asked: list[tuple[int, int]] = []

        def call(leaf: int, sub: int) -> Registers:
            asked.append((leaf, sub))
            return data.cpuid.get((leaf, sub), (0, 0, 0, 0))

        self.assertEqual(collect_cpuid(call).cpuid, data.cpuid)
        self.assertEqual(set(asked) - set(data.cpuid), {(0x12, 0), (0x17, 0), (0xB, 2)})


class CPUDataTests(unittest.TestCase):
    """L{CPUData}, its JSON form and L{collect_cpuid}'s subleaf rules."""

    def test_round_trip(self) -> None:
        """The JSON form reads back to equal data; a broken one raises ValueError."""
        data = host("Intel", ["fpu", "hle"], msr={0x10A: 0x1_0000_0020})
        self.assertEqual(cpu_data_from_dict(cpu_data_to_dict(data)), data)
        for broken in ({"cpuid": [{"eax_in": "1"}]}, {"cpuid": [{"eax_in": "x", "ecx_in": "0",
                        "eax": "0", "ebx": "0", "ecx": "0", "edx": "0"}]}, {"msr": [{}]}):
            with self.subTest(broken), self.assertRaises(ValueError):
                cpu_data_from_dict(broken)

    def test_signature(self) -> None:
        """Family and model add the extended fields; no leaf 1, no signature."""
        self.assertEqual(cpu_signature(host("AMD", [], signature=(25, 17, 1))), (25, 17, 1))
        self.assertEqual(cpu_signature(host("Intel", [], signature=(6, 85, 7))), (6, 85, 7))
        self.assertIsNone(cpu_signature(CPUData(cpuid={}, msr={})))

    def test_collect_rules(self) -> None:
        """
        Leaves up to each range's maximum with subleaf 0; leaf 7's subleaves
        up to its eax; leaf 0xb's while ecx[15:8] is set; leaf 0xd's 0, 1
        and those flagged in subleaf 0 eax/edx or subleaf 1 ecx/edx; leaf
        4's until eax[4:0] is 0; leaf 0x12 only with SGX; no hypervisor
        leaves.
        """
        table: dict[tuple[int, int], Registers] = {
            (0, 0): (0x12, 0, 0, 0),
            (4, 0): (0x121, 0, 0, 0), (4, 1): (0x122, 0, 0, 0), (4, 2): (0, 0, 0, 0),
            (7, 0): (2, 0, 0, 0), (7, 1): (0, 0, 0, 1), (7, 2): (0, 0, 0, 2),
            (0xB, 0): (1, 2, 0x100, 0), (0xB, 1): (4, 4, 0x201, 0), (0xB, 2): (0, 0, 2, 0),
            (0xD, 0): (0x7 | 1 << 9, 0, 0, 1), (0xD, 1): (0xF, 0, 1 << 11, 0),
            (0x80000000, 0): (0x80000002, 0, 0, 0),
            (0x40000000, 0): (0x40000001, 0, 0, 0),
        }
        asked: list[tuple[int, int]] = []

        def call(leaf: int, sub: int) -> Registers:
            asked.append((leaf, sub))
            return table.get((leaf, sub), (0, 0, 0, 0))

        data = collect_cpuid(call)
        keys = set(data.cpuid)
        self.assertEqual({k for k in keys if k[0] == 4}, {(4, 0), (4, 1), (4, 2)})
        self.assertEqual({k for k in keys if k[0] == 7}, {(7, 0), (7, 1), (7, 2)})
        self.assertEqual({k for k in keys if k[0] == 0xB}, {(0xB, 0), (0xB, 1)})
        self.assertEqual({k for k in keys if k[0] == 0xD},
                         {(0xD, 0), (0xD, 1), (0xD, 2), (0xD, 9), (0xD, 11), (0xD, 32)})
        self.assertNotIn(0x12, {k[0] for k in keys})
        self.assertEqual({k for k in keys if k[0] >= 0x80000000},
                         {(0x80000000, 0), (0x80000001, 0), (0x80000002, 0)})
        # 14 plain basic leaves (0x0-0x12 but 4, 7, 0xb, 0xd, 0x12), then 4, 7, 0xb
        # and 0xd with their subleaves, then 3 extended leaves.
        self.assertEqual(len(keys), 14 + 3 + 3 + 2 + 6 + 3)
        self.assertFalse(any(leaf == 0x40000000 for leaf, _ in asked))

    def test_absurd_maximum_leaf(self) -> None:
        """A CPU claiming billions of leaves is read only up to a bound."""
        data = collect_cpuid(lambda leaf, sub: (0xFFFFFFFF if leaf in (0, 0x80000000) else 0,
                                                0, 0, 0))
        self.assertLessEqual(len(data.cpuid), 600)
