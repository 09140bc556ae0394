"""
Locate the project's shared reference material (libvirt test XMLs, wire traces).

CI runs in a fresh clone with a copy of C{shared/} beside it; developers have
it at C{/work/shared}.  C{QEMUD_SHARED_DIR} overrides both.  In CI (C{CI} set)
a missing directory is an error, never a silent skip.
"""

from __future__ import annotations

import os
import unittest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CANDIDATES = [
    os.environ.get("QEMUD_SHARED_DIR", ""),
    os.path.join(os.path.dirname(_ROOT), "shared"),
    "/work/shared",
]


def shared_dir() -> str | None:
    """
    @return: the first existing candidate directory, or C{None}.
    """
    for candidate in _CANDIDATES:
        if candidate and os.path.isdir(os.path.join(candidate, "wire-traces")):
            return candidate
    return None


def require_shared(subdir: str) -> str:
    """
    @param subdir: a directory inside C{shared/}, e.g. C{"libvirt-test-xml"}.
    @return: its absolute path.
    @raise unittest.SkipTest: when it is missing outside CI.
    @raise RuntimeError: when it is missing in CI.
    """
    base = shared_dir()
    if base is not None and os.path.isdir(os.path.join(base, subdir)):
        return os.path.join(base, subdir)
    message = f"shared/{subdir} not found (looked in {_CANDIDATES}); set QEMUD_SHARED_DIR"
    if os.environ.get("CI"):
        raise RuntimeError(message)
    raise unittest.SkipTest(message)
