# -*- test-case-name: tests.domain.test_units -*-
"""
Scaled integers as libvirt reads them: C{<memory unit='MiB'>512</memory>}.

libvirt's C{virScaleInteger} rules apply: the unit is matched without regard
to case; C{b}, C{byte} and C{bytes} are bytes; a single letter (C{k}, C{M},
C{G}, C{T}, C{P}, C{E}) or the letter followed by C{iB} is a power of 1024;
the letter followed by C{B} (C{KB}, C{MB}, ...) is a power of 1000.  Memory is
kept in KiB, rounded up, as libvirt keeps it.

This module is pure (standard library only).
"""

from __future__ import annotations

import re

from qemud.errors import DomainConfigError

#: The largest byte count libvirt accepts for a memory size (C{LLONG_MAX}).
MAX_MEMORY_BYTES = 2**63 - 1

_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_INTEGER = re.compile(r"[0-9]{1,20}")


def unit_scale(unit: str) -> int | None:
    """
    Look up the byte multiplier of a libvirt unit name.

    @param unit: the unit as written, e.g. C{'KiB'}, C{'MB'}, C{'g'}, C{'bytes'}.
    @return: the number of bytes in one C{unit}, or C{None} if the unit is unknown.
    """
    lower = unit.lower()
    if lower in ("b", "byte", "bytes"):
        return 1
    if not lower:
        return None
    power = _POWERS.get(lower[0])
    if power is None:
        return None
    rest = lower[1:]
    if rest in ("", "ib"):
        return int(1024**power)
    if rest == "b":
        return int(1000**power)
    return None


def parse_kib(value: str | None, unit: str | None, element: str) -> int:
    """
    Convert the text and C{unit} attribute of a memory element to KiB.

    @param value: the element's text, e.g. C{'512'}.
    @param unit: the C{unit} attribute, C{None} meaning KiB.
    @param element: the element's name, for error messages (e.g. C{'memory'}).
    @return: the size in KiB, rounded up to a whole KiB.
    @raise DomainConfigError: when the value is not a non-negative integer,
        the unit is unknown, or the size exceeds L{MAX_MEMORY_BYTES}.
    """
    if value is None:
        raise DomainConfigError(f"missing value in <{element}>")
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise DomainConfigError(
            f"invalid value '{value}' in <{element}>: expected a non-negative integer"
        )
    scale = 1024 if unit is None else unit_scale(unit)
    if scale is None:
        raise DomainConfigError(f"unknown unit '{unit}' in <{element}>")
    size = int(text) * scale
    if size > MAX_MEMORY_BYTES:
        raise DomainConfigError(f"size '{value}' {unit or 'KiB'} in <{element}> is too large")
    return -(-size // 1024)
