"""
Test data for the host CPU: the recorded CPUID fixture, libvirt's installed
CPU map, and the host section libvirtd 9.0 printed in
C{shared/wire-traces/capabilities.txt}.

The fixture C{tests/data/cpuid/amd-epyc-25-17-1-kvm.json} is the CPUID of
the traced machine type (AMD EPYC family 25 model 17 stepping 1, a KVM
guest with 2 vCPUs), recorded with C{python -m qemud.daemon.hostcpu}; it
makes the decode deterministic on any machine.  The map is libvirt's own
data (Debian's C{libvirt0}, which C{libvirt-clients} pulls in): it is used
where it is installed, and its absence is a skip locally but an error in CI
(C{CI} set), like C{tests.shared}.
"""

from __future__ import annotations

import json
import os
import re
import unittest

from qemud.qemu.cpumap import (
    DEFAULT_CPU_MAP_DIR,
    CPUData,
    CPUMap,
    cpu_data_from_dict,
    load_cpu_map,
)
from tests.shared import require_shared

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "cpuid")

#: The traced machine type's CPUID.
TRACE_FIXTURE = os.path.join(DATA_DIR, "amd-epyc-25-17-1-kvm.json")

#: What the traced machine's C{<microcode>} and C{<signature>} say.
TRACE_MICROCODE = 16777317
TRACE_SIGNATURE = (25, 17, 1)


def load_fixture(path: str = TRACE_FIXTURE) -> CPUData:
    """
    @return: the CPU data recorded in a fixture.
    """
    with open(path, encoding="utf-8") as f:
        return cpu_data_from_dict(json.load(f))


_MAP: list[CPUMap] = []


def require_cpu_map() -> CPUMap:
    """
    @return: libvirt's installed x86 CPU map (loaded once).
    @raise unittest.SkipTest: it is not installed (outside CI).
    @raise RuntimeError: it is not installed, in CI.
    """
    if not _MAP:
        cpu_map = load_cpu_map(DEFAULT_CPU_MAP_DIR)
        if cpu_map is None:
            message = (f"libvirt's CPU map is not installed ({DEFAULT_CPU_MAP_DIR}); "
                       "apt install libvirt0")
            if os.environ.get("CI"):
                raise RuntimeError(message)
            raise unittest.SkipTest(message)
        _MAP.append(cpu_map)
    return _MAP[0]


def trace_capabilities() -> str:
    """
    @return: the text C{virsh capabilities} printed against libvirtd 9.0.
    """
    path = os.path.join(require_shared("wire-traces"), "capabilities.txt")
    lines: list[str] = []
    with open(path, encoding="utf-8") as f:
        inside = False
        for line in f:
            line = line.rstrip("\n")
            if line == "# virsh output:":
                inside = True
            elif inside and (line.startswith("#   ") or line == "#"):
                lines.append(line[4:])
    return "\n".join(lines) + "\n"


def trace_element(tag: str, text: str | None = None) -> str:
    """
    @param tag: C{host} or C{cpu} (the host's, the first of that name).
    @return: that element's lines in the trace, from its opening line to its
        closing line, as printed.
    """
    text = trace_capabilities() if text is None else text
    match = re.search(rf"^( *)<{tag}>\n.*?^\1</{tag}>\n", text, re.M | re.S)
    if match is None:
        raise AssertionError(f"no <{tag}> in the text")
    return match.group(0)


def trace_features() -> list[str]:
    """
    @return: the host CPU features libvirtd listed, in order.
    """
    return re.findall(r"<feature name='([^']+)'/>", trace_element("cpu"))
