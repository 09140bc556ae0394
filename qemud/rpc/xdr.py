# -*- test-case-name: tests.rpc.test_xdr -*-
"""
A small, fast XDR (RFC 4506) codec for libvirt's remote protocol.

Types are combinators: primitives (L{Int}, L{UInt}, L{Hyper}, L{UHyper},
L{Double}, L{Bool}, L{Enum}), sized data (L{String}, L{Opaque},
L{VarOpaque}, L{CharArray}, L{VarCharArray}), containers (L{Optional},
L{Array}, L{VarArray}, L{Union}) and L{Struct}, which decodes into a named
tuple.  Every type has C{encode(value) -> bytes} and
C{decode(buf, offset) -> (value, offset)}; both raise L{WireError} and
nothing else for bad input (truncated data, a length beyond its maximum, an
out-of-range number).

Speed: a L{Struct} merges runs of fixed-size numeric fields into one
precompiled C{struct.Struct}, so a C{remote_nonnull_domain} costs three
calls and the 24-byte header costs one.

This module is pure (standard library only).
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "WireError", "XDRType", "Void", "VOID", "Int", "UInt", "Hyper", "UHyper", "Double", "Bool",
    "Enum", "String", "Opaque", "VarOpaque", "CharArray", "VarCharArray", "Optional", "Array",
    "VarArray", "Union", "Struct",
]


class WireError(Exception):
    """
    Bytes from the peer (or a value to send) do not fit the protocol: a
    truncated or oversized item, a length beyond its limit, a bad
    discriminant.  The connection that produced it cannot be trusted.
    """


_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_ZERO = b"\0\0\0\0"
_ONE = b"\0\0\0\1"

_Out = list[bytes]


class XDRType:
    """
    Base of every XDR type.

    Subclasses implement L{_enc} (append the encoding of a value to a list of
    byte strings) and L{_dec} (decode at an offset, may raise C{struct.error},
    C{IndexError}, C{UnicodeError} or L{WireError}); the public methods wrap
    them so that callers only ever see L{WireError}.

    @ivar fmt: the C{struct} format characters of a fixed-size numeric type
        (merged into a parent L{Struct}'s precompiled format), else C{None}.
    """

    fmt: str | None = None

    def _enc(self, out: _Out, value: Any) -> None:
        raise NotImplementedError

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        """
        @param value: the Python value to encode.
        @return: its XDR encoding.
        @raise WireError: if C{value} does not fit the type.
        """
        out: _Out = []
        try:
            self._enc(out, value)
        except WireError:
            raise
        except (struct.error, TypeError, ValueError, IndexError, OverflowError,
                AttributeError) as e:
            raise WireError(f"cannot encode {value!r:.80} as {self!r}: {e}") from e
        return b"".join(out)

    def decode(self, buf: bytes, offset: int = 0) -> tuple[Any, int]:
        """
        @param buf: the bytes to decode from.
        @param offset: where the value starts.
        @return: C{(value, offset just after it)}.
        @raise WireError: if the bytes are truncated or invalid.
        """
        try:
            return self._dec(buf, offset)
        except WireError:
            raise
        except (struct.error, IndexError, UnicodeError, ValueError, TypeError) as e:
            raise WireError(f"cannot decode {self!r} at offset {offset}: {e}") from e

    def unpack(self, buf: bytes) -> Any:
        """
        Decode a whole buffer, refusing trailing bytes.

        @param buf: exactly one encoded value.
        @return: the value.
        @raise WireError: if the bytes are invalid or not all consumed.
        """
        value, end = self.decode(buf, 0)
        if end != len(buf):
            raise WireError(f"{len(buf) - end} trailing bytes after {self!r}")
        return value

    def __repr__(self) -> str:
        return type(self).__name__


class Void(XDRType):
    """The empty type: no bytes, value C{None}."""

    def _enc(self, out: _Out, value: Any) -> None:
        pass

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        return None, offset

    def encode(self, value: Any = None) -> bytes:
        """
        @param value: ignored.
        @return: C{b""}.
        """
        return b""


VOID = Void()


class _Numeric(XDRType):
    """A fixed-size number packed with one C{struct} format character."""

    def __init__(self, fmt: str, name: str) -> None:
        self.fmt = fmt
        self._st = struct.Struct(">" + fmt)
        self._name = name

    def _enc(self, out: _Out, value: Any) -> None:
        out.append(self._st.pack(value))

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        return self._st.unpack_from(buf, offset)[0], offset + self._st.size

    def __repr__(self) -> str:
        return self._name


Int = _Numeric("i", "Int")
"""XDR C{int}: signed 32 bits."""
UInt = _Numeric("I", "UInt")
"""XDR C{unsigned int}: unsigned 32 bits (also C{unsigned char/short} fields)."""
Hyper = _Numeric("q", "Hyper")
"""XDR C{hyper}: signed 64 bits."""
UHyper = _Numeric("Q", "UHyper")
"""XDR C{unsigned hyper}: unsigned 64 bits."""
Double = _Numeric("d", "Double")
"""XDR C{double}: IEEE 754 binary64."""


class _Bool(XDRType):
    """XDR C{bool}: a 4-byte 0 or 1, decoded as a Python C{bool}."""

    def _enc(self, out: _Out, value: Any) -> None:
        out.append(_ONE if value else _ZERO)

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        v = _I32.unpack_from(buf, offset)[0]
        if v == 0:
            return False, offset + 4
        if v == 1:
            return True, offset + 4
        raise WireError(f"bool must be 0 or 1, got {v}")

    def __repr__(self) -> str:
        return "Bool"


Bool = _Bool()


class Enum(XDRType):
    """
    XDR C{enum}: a signed 32-bit int restricted to known values.

    @ivar values: the accepted values.
    """

    def __init__(self, values: Iterable[int], name: str = "Enum") -> None:
        self.values = frozenset(values)
        self._name = name

    def _enc(self, out: _Out, value: Any) -> None:
        if value not in self.values:
            raise WireError(f"{value!r} is not a value of {self._name}")
        out.append(_I32.pack(value))

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        v = _I32.unpack_from(buf, offset)[0]
        if v not in self.values:
            raise WireError(f"{v} is not a value of {self._name}")
        return v, offset + 4

    def __repr__(self) -> str:
        return self._name


def _check_room(buf: bytes, end: int) -> None:
    if end > len(buf):
        raise WireError(f"truncated: need {end} bytes, have {len(buf)}")


class String(XDRType):
    """
    XDR C{string<max>}: length, UTF-8 bytes, zero padding; no NUL.

    Undecodable bytes survive a round trip (C{surrogateescape}).

    @ivar max: the longest accepted byte length.
    """

    def __init__(self, max: int) -> None:
        self.max = max

    def _enc(self, out: _Out, value: Any) -> None:
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        n = len(data)
        if n > self.max:
            raise WireError(f"string of {n} bytes exceeds its maximum {self.max}")
        out.append(_U32.pack(n) + data + _PAD[n & 3])

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        n = _U32.unpack_from(buf, offset)[0]
        if n > self.max:
            raise WireError(f"string length {n} exceeds its maximum {self.max}")
        start = offset + 4
        end = start + n
        _check_room(buf, end)
        return str(buf[start:end], "utf-8", "surrogateescape"), end + (-n & 3)

    def __repr__(self) -> str:
        return f"String({self.max})"


class Opaque(XDRType):
    """
    XDR C{opaque[n]}: exactly C{n} bytes, zero padded; value C{bytes}.

    @ivar size: the byte count.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._padded = size + (-size & 3)

    def _enc(self, out: _Out, value: Any) -> None:
        if len(value) != self.size:
            raise WireError(f"opaque[{self.size}] given {len(value)} bytes")
        out.append(bytes(value) + _PAD[self.size & 3])

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        end = offset + self.size
        _check_room(buf, end)
        return bytes(buf[offset:end]), offset + self._padded

    def __repr__(self) -> str:
        return f"Opaque({self.size})"


class VarOpaque(XDRType):
    """
    XDR C{opaque<max>}: length, bytes, zero padding; value C{bytes}.

    @ivar max: the longest accepted length.
    """

    def __init__(self, max: int) -> None:
        self.max = max

    def _enc(self, out: _Out, value: Any) -> None:
        n = len(value)
        if n > self.max:
            raise WireError(f"opaque of {n} bytes exceeds its maximum {self.max}")
        out.append(_U32.pack(n) + bytes(value) + _PAD[n & 3])

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        n = _U32.unpack_from(buf, offset)[0]
        if n > self.max:
            raise WireError(f"opaque length {n} exceeds its maximum {self.max}")
        start = offset + 4
        end = start + n
        _check_room(buf, end)
        return bytes(buf[start:end]), end + (-n & 3)

    def __repr__(self) -> str:
        return f"VarOpaque({self.max})"


def _chars_to_ints(value: bytes) -> tuple[int, ...]:
    # rpcgen's xdr_char sends a (signed, on x86) C char as an int.
    return tuple(b - 256 if b > 127 else b for b in value)


def _ints_to_chars(ints: Sequence[int]) -> bytes:
    for v in ints:
        if v < -128 or v > 255:
            raise WireError(f"char value {v} out of range")
    return bytes(v & 0xFF for v in ints)


class CharArray(XDRType):
    """
    C{char x[n]}: libvirt's quirk, one 4-byte int per character; value
    C{bytes} of length C{n}.

    @ivar size: the character count.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._st = struct.Struct(f">{size}i")

    def _enc(self, out: _Out, value: Any) -> None:
        if len(value) != self.size:
            raise WireError(f"char[{self.size}] given {len(value)} bytes")
        out.append(self._st.pack(*_chars_to_ints(value)))

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        return _ints_to_chars(self._st.unpack_from(buf, offset)), offset + self._st.size

    def __repr__(self) -> str:
        return f"CharArray({self.size})"


class VarCharArray(XDRType):
    """
    C{char x<max>}: a count, then one 4-byte int per character; value
    C{bytes} (libvirt includes the C string's NUL).

    @ivar max: the longest accepted count.
    """

    def __init__(self, max: int) -> None:
        self.max = max

    def _enc(self, out: _Out, value: Any) -> None:
        n = len(value)
        if n > self.max:
            raise WireError(f"char array of {n} exceeds its maximum {self.max}")
        out.append(_U32.pack(n) + struct.pack(f">{n}i", *_chars_to_ints(value)))

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        n = _U32.unpack_from(buf, offset)[0]
        if n > self.max:
            raise WireError(f"char array length {n} exceeds its maximum {self.max}")
        start = offset + 4
        _check_room(buf, start + 4 * n)
        return _ints_to_chars(struct.unpack_from(f">{n}i", buf, start)), start + 4 * n

    def __repr__(self) -> str:
        return f"VarCharArray({self.max})"


class Optional(XDRType):
    """
    XDR C{T *x}: a 4-byte presence flag (0 or 1), then C{T} if present;
    value C{None} when absent.

    @ivar type: the pointed-to type.
    """

    def __init__(self, type: XDRType) -> None:
        self.type = type

    def _enc(self, out: _Out, value: Any) -> None:
        if value is None:
            out.append(_ZERO)
        else:
            out.append(_ONE)
            self.type._enc(out, value)

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        flag = _U32.unpack_from(buf, offset)[0]
        if flag == 0:
            return None, offset + 4
        if flag != 1:
            raise WireError(f"optional presence flag must be 0 or 1, got {flag}")
        return self.type._dec(buf, offset + 4)

    def __repr__(self) -> str:
        return f"Optional({self.type!r})"


def _dec_items(item: XDRType, n: int, buf: bytes, offset: int) -> tuple[list[Any], int]:
    if item.fmt is not None:
        st = struct.Struct(f">{n}{item.fmt}")
        return list(st.unpack_from(buf, offset)), offset + st.size
    out = []
    dec = item._dec
    for _ in range(n):
        v, offset = dec(buf, offset)
        out.append(v)
    return out, offset


def _enc_items(item: XDRType, out: _Out, value: Sequence[Any]) -> None:
    if item.fmt is not None:
        out.append(struct.pack(f">{len(value)}{item.fmt}", *value))
        return
    enc = item._enc
    for v in value:
        enc(out, v)


class Memo(XDRType):
    """
    An XDR type whose encodings are remembered: for small immutable values
    that recur on the wire (the C{(name, uuid, id)} of a domain appears in
    every list, lookup reply and event), encoding becomes a dictionary look-up.

    @ivar type: the type encoded.
    @ivar max_entries: how many encodings are kept; the memo starts afresh
        when it is full.
    """

    def __init__(self, type: XDRType, max_entries: int = 65536) -> None:
        self.type = type
        self.max_entries = max_entries
        self._memo: dict[Any, bytes] = {}

    def _enc(self, out: _Out, value: Any) -> None:
        data = self._memo.get(value)
        if data is None:
            part: _Out = []
            self.type._enc(part, value)
            data = b"".join(part)
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            self._memo[value] = data
        out.append(data)

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        return self.type._dec(buf, offset)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """
        @return: a value of the memoized type, built like it.
        """
        return self.type(*args, **kwargs)  # type: ignore[operator]

    def __repr__(self) -> str:
        return f"Memo({self.type!r})"


class Array(XDRType):
    """
    XDR C{T x[n]}: exactly C{n} elements, no count; value C{list}.

    @ivar type: the element type.
    @ivar size: the element count.
    """

    def __init__(self, type: XDRType, size: int) -> None:
        self.type = type
        self.size = size

    def _enc(self, out: _Out, value: Any) -> None:
        if len(value) != self.size:
            raise WireError(f"array[{self.size}] given {len(value)} elements")
        _enc_items(self.type, out, value)

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        return _dec_items(self.type, self.size, buf, offset)

    def __repr__(self) -> str:
        return f"Array({self.type!r}, {self.size})"


class VarArray(XDRType):
    """
    XDR C{T x<max>}: a count, then the elements; value C{list}.

    @ivar type: the element type.
    @ivar max: the largest accepted count.
    """

    def __init__(self, type: XDRType, max: int) -> None:
        self.type = type
        self.max = max

    def _enc(self, out: _Out, value: Any) -> None:
        n = len(value)
        if n > self.max:
            raise WireError(f"array of {n} elements exceeds its maximum {self.max}")
        out.append(_U32.pack(n))
        _enc_items(self.type, out, value)

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        n = _U32.unpack_from(buf, offset)[0]
        if n > self.max:
            raise WireError(f"array length {n} exceeds its maximum {self.max}")
        # Every element takes at least 4 bytes: refuse impossible counts
        # before allocating anything.
        _check_room(buf, offset + 4 + 4 * n)
        return _dec_items(self.type, n, buf, offset + 4)

    def __repr__(self) -> str:
        return f"VarArray({self.type!r}, {self.max})"


class Union(XDRType):
    """
    XDR discriminated union; value C{(discriminant, arm value)}.

    @ivar arms: discriminant value to arm type (L{VOID} for a void arm).
    """

    def __init__(self, arms: Mapping[int, XDRType], name: str = "Union") -> None:
        self.arms = dict(arms)
        self._name = name

    def _enc(self, out: _Out, value: Any) -> None:
        disc, arm_value = value
        arm = self.arms.get(disc)
        if arm is None:
            raise WireError(f"{disc!r} is not a discriminant of {self._name}")
        out.append(_I32.pack(disc))
        arm._enc(out, arm_value)

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        disc = _I32.unpack_from(buf, offset)[0]
        arm = self.arms.get(disc)
        if arm is None:
            raise WireError(f"{disc} is not a discriminant of {self._name}")
        v, offset = arm._dec(buf, offset + 4)
        return (disc, v), offset

    def __repr__(self) -> str:
        return self._name


class Struct(XDRType):
    """
    XDR C{struct}: the fields in order; decodes into a named tuple
    (L{cls}) and encodes any sequence of the field values in order.

    @ivar name: the struct's name (also the named tuple's).
    @ivar fields: C{(field name, type)} pairs.
    @ivar cls: the named tuple class values decode into.
    """

    def __init__(self, *fields: tuple[str, XDRType], name: str = "Struct") -> None:
        self.name = name
        self.fields = tuple(fields)
        cls: Any = namedtuple(name, [f for f, _ in fields])  # type: ignore[misc]
        self.cls: Any = cls
        self._make: Callable[[Iterable[Any]], Any] = cls._make
        # Merge runs of fixed-size numbers into precompiled struct formats.
        # A plan step is (start, stop, struct.Struct) or (index, -1, type).
        plan: list[tuple[int, int, Any]] = []
        i = 0
        types = [t for _, t in fields]
        while i < len(types):
            if types[i].fmt is not None:
                j = i
                fmt = ""
                while j < len(types) and types[j].fmt is not None:
                    fmt += types[j].fmt  # type: ignore[operator]
                    j += 1
                plan.append((i, j, struct.Struct(">" + fmt)))
                i = j
            else:
                plan.append((i, -1, types[i]))
                i += 1
        self._plan = plan
        self._single: struct.Struct | None = (
            plan[0][2] if len(plan) == 1 and plan[0][1] != -1 else None
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """
        @return: a value of this struct, built like its named tuple.
        """
        return self.cls(*args, **kwargs)

    def _enc(self, out: _Out, value: Any) -> None:
        if len(value) != len(self.fields):
            raise WireError(f"{self.name} has {len(self.fields)} fields, given {len(value)}")
        for start, stop, step in self._plan:
            if stop == -1:
                step._enc(out, value[start])
            else:
                out.append(step.pack(*value[start:stop]))

    def encode(self, value: Any) -> bytes:  # noqa: D102 - fast path, same contract
        """
        @param value: the field values, in order.
        @return: the encoding.
        @raise WireError: if a field does not fit.
        """
        single = self._single
        if single is not None:
            try:
                return single.pack(*value)
            except (struct.error, TypeError) as e:
                raise WireError(f"cannot encode {value!r:.80} as {self.name}: {e}") from e
        return XDRType.encode(self, value)

    def _dec(self, buf: bytes, offset: int) -> tuple[Any, int]:
        single = self._single
        if single is not None:
            return self._make(single.unpack_from(buf, offset)), offset + single.size
        values: list[Any] = []
        for _start, stop, step in self._plan:
            if stop == -1:
                v, offset = step._dec(buf, offset)
                values.append(v)
            else:
                values.extend(step.unpack_from(buf, offset))
                offset += step.size
        return self._make(values), offset

    def __repr__(self) -> str:
        return self.name
