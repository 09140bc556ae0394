# -*- test-case-name: tests.domain.test_fuzz -*-
"""
Property test: random mutations of valid documents never crash the parser.

Elements are deleted and duplicated, attributes deleted, changed or added,
and texts replaced, in the golden inputs.  Parsing the result must give a
L{Domain} or raise L{DomainConfigError} — never any other exception — and a
result that parses must format to a fixed point.
"""

from __future__ import annotations

import copy
import os
import unittest
import xml.etree.ElementTree as ET

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qemud.domain.model import Domain
from qemud.domain.xml import format_domain_xml, parse_domain_xml
from qemud.errors import DomainConfigError

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "data", "xml2xml")


def _seed(name: str) -> ET.Element:
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return ET.fromstring(f.read())


SEEDS = [
    _seed(name)
    for name in sorted(os.listdir(DATA))
    if name.endswith(".xml") and not name.endswith(".out.xml")
]
VALUES = ["", "0", "-1", "1", "2", "65536", "yes", "no", "on", "x", "hd", "vda", "hdz", "sdb",
          "fda", "ide", "sata", "virtio", "fdc", "usb", "scsi", "file", "block", "cdrom",
          "floppy", "disk", "network", "bridge", "user", "udp", "tcp", "pty", "vnc", "KB",
          "GiB", "bytes", "52:54:00:00:00:01", "01:00:00:00:00:00", "a/b", ".x", "&<>'\"",
          "99999999999999999999999", "5900", "65536", "custom", "host-model", "\u00e9\u00e8",
          " 7 ", "\t", "hvm", "kqemu", "kvm", "qemu", "restart", "preserve", "static"]
ATTRS = ["type", "dev", "bus", "device", "file", "port", "autoport", "unit", "current",
         "order", "address", "model", "mode", "path", "name", "policy", "listen", "passwd",
         "placement", "cpuset", "arch", "machine", "offset", "present", "readonly", "bogus"]

value = st.one_of(st.sampled_from(VALUES), st.text(max_size=8))
mutation = st.tuples(
    st.sampled_from(["delete", "duplicate", "drop-attr", "set-attr", "set-text"]),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(ATTRS),
    value,
)


def _legal(text: str) -> str:
    """
    Keep only characters XML 1.0 can carry.
    """
    return "".join(c for c in text if c in "\t\n\r" or (" " <= c <= "\ud7ff")
                   or ("\ue000" <= c <= "\ufffd"))


def mutate(root: ET.Element, mutations: list[tuple[str, int, str, str]]) -> str:
    """
    Apply C{mutations} to a copy of C{root} and serialise it.
    """
    tree = copy.deepcopy(root)
    for op, index, attr, val in mutations:
        pairs = [(parent, child) for parent in tree.iter() for child in parent]
        if not pairs:
            break
        parent, child = pairs[index % len(pairs)]
        val = _legal(val)
        if op == "delete":
            parent.remove(child)
        elif op == "duplicate":
            parent.insert(list(parent).index(child), copy.deepcopy(child))
        elif op == "drop-attr":
            if child.attrib:
                del child.attrib[sorted(child.attrib)[index % len(child.attrib)]]
        elif op == "set-attr":
            if child.attrib and index % 2:
                attr = sorted(child.attrib)[index % len(child.attrib)]
            child.set(attr, val)
        else:
            child.text = val
    return ET.tostring(tree, encoding="unicode")


class MutationTests(unittest.TestCase):
    """
    Mutated documents give a Domain or a DomainConfigError, nothing else.
    """

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.sampled_from(range(len(SEEDS))),
           mutations=st.lists(mutation, min_size=1, max_size=4))
    def test_mutations(self, seed: int, mutations: list[tuple[str, int, str, str]]) -> None:
        """
        Parsing a mutated golden input either succeeds, with a formatted
        form that is a fixed point, or raises L{DomainConfigError}.
        """
        text = mutate(SEEDS[seed], mutations)
        try:
            domain = parse_domain_xml(text)
        except DomainConfigError:
            return
        self.assertIsInstance(domain, Domain)
        out = format_domain_xml(domain, secure=False)
        self.assertEqual(format_domain_xml(parse_domain_xml(out), secure=False), out)
