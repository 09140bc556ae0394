"""
The pure layers (domain model, RPC protocol, QEMU command line) must not
import Twisted, so that they stay usable and testable without a reactor.
"""

import subprocess
import sys
import unittest

PURE_MODULES = ["qemud.errors", "qemud.domain", "qemud.rpc", "qemud.qemu.argv",
                "qemud.qemu.cpumap"]


class PurityTests(unittest.TestCase):
    def test_pure_layers_import_no_twisted(self) -> None:
        """
        Importing every pure module in a fresh interpreter leaves no module
        whose name starts with C{twisted} in C{sys.modules}.
        """
        code = (
            "import importlib, sys\n"
            f"for name in {PURE_MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "    for sub in list(sys.modules):\n"
            "        if sub.startswith(name + '.'):\n"
            "            pass\n"
            "import pkgutil\n"
            "for pkg in ('qemud.domain', 'qemud.rpc'):\n"
            "    mod = importlib.import_module(pkg)\n"
            "    for info in pkgutil.iter_modules(mod.__path__):\n"
            "        importlib.import_module(pkg + '.' + info.name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'twisted')\n"
            "print(','.join(bad))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.assertEqual(out, "", f"pure layers imported Twisted modules: {out}")
