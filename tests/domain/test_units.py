# -*- test-case-name: tests.domain.test_units -*-
"""
Tests for L{qemud.domain.units}: libvirt's scaled memory sizes.
"""

from __future__ import annotations

import unittest

from qemud.domain.units import parse_kib, unit_scale
from qemud.errors import DomainConfigError


class UnitScaleTests(unittest.TestCase):
    """
    L{unit_scale} follows libvirt's C{virScaleInteger} naming rules.
    """

    def test_binary_and_decimal(self) -> None:
        """
        A bare letter or letter+C{iB} is a power of 1024; letter+C{B} is a
        power of 1000; the bytes spellings are 1; case does not matter.
        """
        expected = {
            "b": 1, "bytes": 1, "byte": 1, "B": 1,
            "KB": 1000, "k": 1024, "K": 1024, "KiB": 1024, "kib": 1024,
            "MB": 1000**2, "M": 1024**2, "MiB": 1024**2,
            "GB": 1000**3, "G": 1024**3, "GiB": 1024**3,
            "TB": 1000**4, "T": 1024**4, "TiB": 1024**4,
        }
        for unit, scale in expected.items():
            with self.subTest(unit=unit):
                self.assertEqual(unit_scale(unit), scale)

    def test_unknown(self) -> None:
        """
        Unknown or malformed units give C{None}.
        """
        for unit in ("", "x", "KiBB", "Kb2", "kilobytes", "iB"):
            with self.subTest(unit=unit):
                self.assertIsNone(unit_scale(unit))


class ParseKiBTests(unittest.TestCase):
    """
    L{parse_kib} converts a value and unit to KiB, rounding up.
    """

    def test_default_unit_is_kib(self) -> None:
        """
        Without a unit the value is already KiB.
        """
        self.assertEqual(parse_kib("131072", None, "memory"), 131072)

    def test_scaled(self) -> None:
        """
        Larger units multiply; surrounding whitespace is allowed.
        """
        self.assertEqual(parse_kib(" 512 ", "MiB", "memory"), 524288)
        self.assertEqual(parse_kib("2", "G", "memory"), 2097152)
        self.assertEqual(parse_kib("1", "TiB", "memory"), 1024**3)

    def test_rounds_up(self) -> None:
        """
        Sizes that are not whole KiB round up, as libvirt's C{VIR_DIV_UP}.
        """
        self.assertEqual(parse_kib("1", "b", "memory"), 1)
        self.assertEqual(parse_kib("1025", "bytes", "memory"), 2)
        self.assertEqual(parse_kib("1", "KB", "memory"), 1)
        self.assertEqual(parse_kib("1", "GB", "memory"), 976563)

    def test_not_an_integer(self) -> None:
        """
        Negative, fractional or non-numeric values are refused, naming the element.
        """
        for value in ("-1", "1.5", "abc", "", "0x10", "1_000"):
            with self.subTest(value=value):
                with self.assertRaises(DomainConfigError) as cm:
                    parse_kib(value, None, "memory")
                self.assertEqual(
                    cm.exception.message,
                    f"XML error: invalid value '{value}' in <memory>: "
                    "expected a non-negative integer",
                )

    def test_unknown_unit(self) -> None:
        """
        An unknown unit is refused, naming unit and element.
        """
        with self.assertRaises(DomainConfigError) as cm:
            parse_kib("1", "furlongs", "currentMemory")
        self.assertEqual(cm.exception.message,
                         "XML error: unknown unit 'furlongs' in <currentMemory>")

    def test_too_large(self) -> None:
        """
        Sizes above C{LLONG_MAX} bytes are refused.
        """
        with self.assertRaises(DomainConfigError) as cm:
            parse_kib("9000000", "TiB", "memory")
        self.assertEqual(cm.exception.message,
                         "XML error: size '9000000' TiB in <memory> is too large")

    def test_missing(self) -> None:
        """
        An empty element is refused.
        """
        with self.assertRaises(DomainConfigError) as cm:
            parse_kib(None, None, "memory")
        self.assertEqual(cm.exception.message, "XML error: missing value in <memory>")
