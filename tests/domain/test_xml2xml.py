# -*- test-case-name: tests.domain.test_xml2xml -*-
"""
Golden XML round trips, after libvirt's qemuxml2xml tests.

Each C{tests/data/xml2xml/<case>.xml} is parsed (with defaults and
validation) and formatted as inactive XML; the result must equal
C{<case>.out.xml}, and formatting the parse of that output must give it back
unchanged (a fixed point).  With C{QEMUD_REGENERATE=1} in the environment the
C{.out.xml} files are rewritten instead of compared; review the diff.
"""

from __future__ import annotations

import difflib
import os
import unittest

from qemud.domain.xml import format_domain_xml, parse_domain_xml

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "data", "xml2xml")
CASES = sorted(
    name[: -len(".xml")]
    for name in os.listdir(DATA)
    if name.endswith(".xml") and not name.endswith(".out.xml")
)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class XML2XMLTests(unittest.TestCase):
    """
    format(parse(input)) equals the golden output, which is a fixed point.
    """

    def test_enough_cases(self) -> None:
        """
        The golden corpus holds at least 15 cases, including the two examples
        from the original qemud design, C{demo1} and C{demo2}.
        """
        self.assertGreaterEqual(len(CASES), 15)
        self.assertIn("demo1", CASES)
        self.assertIn("demo2", CASES)

    def test_goldens(self) -> None:
        """
        Every case's inactive rendering equals its C{.out.xml}, and parsing
        and formatting that output gives it back unchanged.
        """
        regenerate = os.environ.get("QEMUD_REGENERATE") == "1"
        for case in CASES:
            with self.subTest(case=case):
                out = format_domain_xml(parse_domain_xml(_read(os.path.join(DATA, case + ".xml"))))
                golden_path = os.path.join(DATA, case + ".out.xml")
                if regenerate:
                    with open(golden_path, "w", encoding="utf-8") as f:
                        f.write(out)
                golden = _read(golden_path)
                if out != golden:
                    diff = "".join(difflib.unified_diff(
                        golden.splitlines(True), out.splitlines(True),
                        f"{case}.out.xml (expected)", f"{case} (formatted)"))
                    self.fail(f"{case}: output differs from the golden file:\n{diff}")
                again = format_domain_xml(parse_domain_xml(golden))
                self.assertEqual(again, golden, f"{case}: the golden output is not a fixed point")
