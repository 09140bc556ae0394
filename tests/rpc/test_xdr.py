"""
Tests for L{qemud.rpc.xdr}: round trips, libvirt's quirks, limits, and that
bad input only ever raises L{WireError}.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from qemud.rpc import remote
from qemud.rpc.xdr import (
    VOID,
    Array,
    Bool,
    CharArray,
    Double,
    Enum,
    Hyper,
    Int,
    Opaque,
    Optional,
    String,
    Struct,
    UHyper,
    UInt,
    Union,
    VarArray,
    VarCharArray,
    VarOpaque,
    WireError,
)

UUID = bytes(range(16))


class PrimitiveTests(SynchronousTestCase):
    """Fixed-size numbers, bool and enum."""

    def test_int_is_four_bytes_big_endian(self) -> None:
        """An int is 4 big-endian two's complement bytes."""
        self.assertEqual(Int.encode(-1), b"\xff\xff\xff\xff")
        self.assertEqual(Int.decode(b"\x00\x00\x01\x00", 0), (256, 4))

    def test_hyper_and_double_are_eight_bytes(self) -> None:
        """Hypers and doubles take 8 bytes."""
        self.assertEqual(UHyper.encode(7002022), b"\0\0\0\0\0\x6a\xd7\xa6")
        self.assertEqual(Hyper.decode(Hyper.encode(-2**63), 0), (-2**63, 8))
        self.assertEqual(Double.decode(Double.encode(1.5), 0), (1.5, 8))

    def test_out_of_range_encode_raises_wire_error(self) -> None:
        """Encoding a number that does not fit raises WireError."""
        self.assertRaises(WireError, UInt.encode, -1)
        self.assertRaises(WireError, Int.encode, 2**31)
        self.assertRaises(WireError, UHyper.encode, 2**64)

    def test_truncated_number_raises_wire_error(self) -> None:
        """Three bytes are not an int."""
        self.assertRaises(WireError, Int.decode, b"\0\0\0", 0)
        self.assertRaises(WireError, UHyper.decode, b"\0" * 7, 0)

    def test_bool_accepts_only_zero_and_one(self) -> None:
        """A bool decodes 0/1 and refuses anything else."""
        self.assertEqual(Bool.decode(b"\0\0\0\1", 0), (True, 4))
        self.assertEqual(Bool.encode(False), b"\0\0\0\0")
        self.assertRaises(WireError, Bool.decode, b"\0\0\0\2", 0)

    def test_enum_refuses_unknown_values(self) -> None:
        """An enum only decodes and encodes its declared values."""
        self.assertEqual(remote.AuthType.decode(b"\0\0\0\2", 0), (2, 4))
        self.assertRaises(WireError, remote.AuthType.decode, b"\0\0\0\3", 0)
        self.assertRaises(WireError, Enum((1,)).encode, 2)


class StringTests(SynchronousTestCase):
    """Strings and opaque data."""

    def test_string_is_length_bytes_padding(self) -> None:
        """C{rt1}: length 3, the bytes, one zero of padding, no NUL."""
        self.assertEqual(String(10).encode("rt1"), b"\0\0\0\3rt1\0")
        self.assertEqual(String(10).decode(b"\0\0\0\3rt1\0", 0), ("rt1", 8))

    def test_string_aligned_needs_no_padding(self) -> None:
        """A 4-byte string has no padding."""
        self.assertEqual(String(10).encode("abcd"), b"\0\0\0\4abcd")

    def test_string_maximum_is_inclusive(self) -> None:
        """A string exactly at its maximum passes; one byte more fails both ways."""
        s = String(4)
        self.assertEqual(s.decode(s.encode("abcd"), 0)[0], "abcd")
        self.assertRaises(WireError, s.encode, "abcde")
        self.assertRaises(WireError, s.decode, b"\0\0\0\5abcde\0\0\0", 0)

    def test_huge_string_length_fails_before_reading(self) -> None:
        """A length of 2**32-1 is refused by the maximum, not by allocation."""
        self.assertRaises(WireError, String(remote.STRING_MAX).decode, b"\xff" * 8, 0)

    def test_truncated_string_raises_wire_error(self) -> None:
        """A string shorter than its length raises WireError."""
        self.assertRaises(WireError, String(100).decode, b"\0\0\0\x10abc", 0)

    def test_non_utf8_bytes_round_trip(self) -> None:
        """Undecodable bytes survive decode then encode."""
        raw = b"\0\0\0\2\xff\xfe\0\0"
        value, _ = String(10).decode(raw, 0)
        self.assertEqual(String(10).encode(value), raw)

    def test_opaque_fixed_and_variable(self) -> None:
        """Fixed opaque has no count; variable opaque has one; both pad."""
        self.assertEqual(Opaque(16).encode(UUID), UUID)
        self.assertEqual(Opaque(3).encode(b"abc"), b"abc\0")
        self.assertRaises(WireError, Opaque(16).encode, b"short")
        self.assertEqual(VarOpaque(8).encode(b"ab"), b"\0\0\0\2ab\0\0")
        self.assertRaises(WireError, VarOpaque(1).decode, b"\0\0\0\2ab\0\0", 0)


class CharArrayTests(SynchronousTestCase):
    """libvirt's one-int-per-char arrays (spec §1.6)."""

    def test_fixed_char_array_is_an_int_per_char(self) -> None:
        """C{char model[32]} takes 128 bytes."""
        model = b"x86_64".ljust(32, b"\0")
        data = CharArray(32).encode(model)
        self.assertEqual(len(data), 128)
        self.assertEqual(data[:8], b"\0\0\0x\0\0\x008")
        self.assertEqual(CharArray(32).decode(data, 0), (model, 128))

    def test_variable_char_array_includes_nul(self) -> None:
        """C{char model<257>} = C{"none"} + NUL is a count of 5 and 5 ints."""
        data = VarCharArray(257).encode(b"none\0")
        self.assertEqual(data, struct.pack(">6i", 5, 110, 111, 110, 101, 0))
        self.assertEqual(VarCharArray(257).decode(data, 0), (b"none\0", 24))

    def test_high_bytes_are_signed_chars(self) -> None:
        """Bytes above 127 travel as negative ints (x86 C char) and come back."""
        data = VarCharArray(4).encode(b"\xff")
        self.assertEqual(data, b"\0\0\0\1\xff\xff\xff\xff")
        self.assertEqual(VarCharArray(4).decode(data, 0)[0], b"\xff")

    def test_char_out_of_range_raises(self) -> None:
        """An int that is no char raises WireError."""
        self.assertRaises(WireError, VarCharArray(4).decode, b"\0\0\0\1\0\0\1\0", 0)

    def test_char_array_maximum(self) -> None:
        """A count beyond the maximum raises WireError."""
        self.assertRaises(WireError, VarCharArray(2).decode, struct.pack(">4i", 3, 1, 2, 3), 0)


class ContainerTests(SynchronousTestCase):
    """Optional, arrays, unions, structs."""

    def test_optional_absent_and_present(self) -> None:
        """An optional is a 0 flag, or a 1 flag and the value."""
        t = Optional(Int)
        self.assertEqual(t.encode(None), b"\0\0\0\0")
        self.assertEqual(t.encode(5), b"\0\0\0\1\0\0\0\5")
        self.assertEqual(t.decode(b"\0\0\0\1\0\0\0\5", 0), (5, 8))

    def test_optional_flag_must_be_boolean(self) -> None:
        """A presence flag of 2 raises WireError."""
        self.assertRaises(WireError, Optional(Int).decode, b"\0\0\0\2\0\0\0\5", 0)

    def test_var_array_count_and_limit(self) -> None:
        """A variable array carries its count and refuses more than its maximum."""
        t = VarArray(Int, 2)
        self.assertEqual(t.encode([1, 2]), b"\0\0\0\2\0\0\0\1\0\0\0\2")
        self.assertRaises(WireError, t.encode, [1, 2, 3])
        self.assertRaises(WireError, t.decode, b"\0\0\0\3" + b"\0" * 12, 0)

    def test_var_array_impossible_count_fails_fast(self) -> None:
        """A count larger than the remaining bytes can hold raises at once."""
        t = VarArray(remote.NonnullDomain, remote.DOMAIN_LIST_MAX)
        self.assertRaises(WireError, t.decode, b"\0\0\x40\0", 0)

    def test_fixed_array(self) -> None:
        """A fixed array has no count."""
        self.assertEqual(Array(Int, 2).encode([1, 2]), b"\0\0\0\1\0\0\0\2")
        self.assertRaises(WireError, Array(Int, 2).encode, [1])

    def test_union_typed_param(self) -> None:
        """A typed parameter value is a discriminant and its arm."""
        t = remote.TypedParamValue
        self.assertEqual(t.encode((remote.TYPED_PARAM_ULLONG, 39)),
                         b"\0\0\0\4" + b"\0" * 7 + b"\x27")
        self.assertEqual(t.decode(t.encode((7, "x")), 0), ((7, "x"), 12))
        self.assertRaises(WireError, t.decode, b"\0\0\0\x09\0\0\0\0", 0)
        self.assertRaises(WireError, Union({1: Int}).encode, (2, 0))

    def test_struct_decodes_named_tuple(self) -> None:
        """A struct decodes into a named tuple with its field names."""
        dom, end = remote.NonnullDomain.decode(
            b"\0\0\0\3rt1\0" + UUID + b"\0\0\0\1", 0)
        self.assertEqual((dom.name, dom.uuid, dom.id, end), ("rt1", UUID, 1, 28))

    def test_struct_merges_numeric_runs(self) -> None:
        """Adjacent numeric fields encode like one packed format."""
        t = Struct(("a", Int), ("b", UHyper), ("c", UInt))
        self.assertEqual(t.encode((1, 2, 3)), struct.pack(">iQI", 1, 2, 3))
        self.assertEqual(t.decode(struct.pack(">iQI", -1, 2, 3), 0), ((-1, 2, 3), 16))

    def test_struct_wrong_arity_raises(self) -> None:
        """Encoding the wrong number of fields raises WireError."""
        self.assertRaises(WireError, remote.NonnullDomain.encode, ("rt1", UUID))
        self.assertRaises(WireError, remote.GetStateRet.encode, (1,))

    def test_unpack_refuses_trailing_bytes(self) -> None:
        """unpack() insists on consuming the whole buffer."""
        self.assertEqual(Int.unpack(b"\0\0\0\1"), 1)
        self.assertRaises(WireError, Int.unpack, b"\0\0\0\1\0")

    def test_void(self) -> None:
        """Void is no bytes."""
        self.assertEqual(VOID.encode(None), b"")
        self.assertEqual(VOID.decode(b"abc", 1), (None, 1))


# -- property tests ---------------------------------------------------------

_names = st.text(max_size=40)
_uuids = st.binary(min_size=16, max_size=16)
_i32 = st.integers(-2**31, 2**31 - 1)
_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_doms = st.builds(remote.NonnullDomain, _names, _uuids, _i32)
_params = st.builds(remote.TypedParam, _names, st.one_of(
    st.tuples(st.just(1), _i32), st.tuples(st.just(2), _u32),
    st.tuples(st.just(3), st.integers(-2**63, 2**63 - 1)), st.tuples(st.just(4), _u64),
    st.tuples(st.just(5), st.floats(allow_nan=False)), st.tuples(st.just(6), _i32),
    st.tuples(st.just(7), _names)))
_opt_str = st.none() | _names

_CASES = [
    (remote.NonnullDomain, _doms),
    (remote.ListAllDomainsRet, st.builds(remote.ListAllDomainsRet,
                                         st.lists(_doms, max_size=5), _u32)),
    (remote.RemoteErrorStruct, st.builds(
        remote.RemoteErrorStruct, _i32, _i32, _opt_str, _i32, st.none() | _doms, _opt_str,
        _opt_str, _opt_str, _i32, _i32,
        st.none() | st.builds(remote.NonnullNetwork, _names, _uuids))),
    (remote.NodeGetInfoRet, st.builds(
        remote.NodeGetInfoRet, st.binary(min_size=32, max_size=32), _u64, _i32, _i32, _i32,
        _i32, _i32, _i32)),
    (remote.GetInfoRet, st.builds(remote.GetInfoRet, _u32, _u64, _u64, _u32, _u64)),
    (remote.CallbackRegisterAnyArgs, st.builds(remote.CallbackRegisterAnyArgs, _i32,
                                               st.none() | _doms)),
    (remote.CallbackLifecycleMsg, st.builds(
        remote.CallbackLifecycleMsg, _i32, st.builds(remote.LifecycleMsg, _doms, _i32, _i32))),
    (remote.CallbackJobCompletedMsg, st.builds(
        remote.CallbackJobCompletedMsg, _i32, _doms, st.lists(_params, max_size=4))),
    (remote.NodeGetSecurityModelRet, st.builds(
        remote.NodeGetSecurityModelRet, st.binary(max_size=20), st.binary(max_size=20))),
    (remote.OpenArgs, st.builds(remote.OpenArgs, _opt_str, _u32)),
]


class PropertyTests(SynchronousTestCase):
    """decode(encode(x)) == x, and garbage only ever raises WireError."""

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_round_trip(self, data: st.DataObject) -> None:
        """Every main struct decodes back to what was encoded."""
        for t, strategy in _CASES:
            value = data.draw(strategy)
            self.assertEqual(t.unpack(t.encode(value)), value)

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_truncation_raises_wire_error(self, data: st.DataObject) -> None:
        """Every proper prefix of an encoding raises WireError, nothing else."""
        for t, strategy in _CASES:
            raw = t.encode(data.draw(strategy))
            cut = data.draw(st.integers(0, max(len(raw) - 1, 0)))
            if cut < len(raw):
                self.assertRaises(WireError, t.unpack, raw[:cut])

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=200))
    def test_random_bytes_raise_only_wire_error(self, raw: bytes) -> None:
        """Random input either decodes or raises WireError."""
        for t, _ in _CASES:
            try:
                t.decode(raw, 0)
            except WireError:
                pass
