#!/usr/bin/env python3
"""
The long socket fuzz run: the same fuzzer as C{tests/integration/test_fuzz_socket.py}
(random bytes and mutated real frames from C{shared/wire-traces}, typed
calls with odd values, mutated domain XML; one short connection per input)
against a fresh C{twistd -n qemud}, while a control client keeps calling.

Usage: python benchmarks/fuzz_socket.py [--seconds 180] [--seed N] [--keep]

Prints progress every 10 s, then the inputs tried, inputs per second, the
control client's calls and worst latency, and every finding (unhandled
error or traceback in the daemon log, with the input that caused it; a dead
daemon; a failed control call).  Exits 1 when there are findings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.join(ROOT, "clients")):
    if _path not in sys.path:
        sys.path.insert(0, _path)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [ROOT, os.path.join(ROOT, "clients")]
    + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

from tests.integration.daemon import DaemonProcess  # noqa: E402
from tests.integration.faults import (  # noqa: E402
    FrameCorpus,
    FuzzRun,
    FuzzStats,
    Mutator,
    RPCClient,
    domain_xml,
)


def main(argv: list[str] | None = None) -> int:
    """
    @return: the exit status (0: no findings).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="RNG seed")
    parser.add_argument("--keep", action="store_true",
                        help="keep the daemon's root (logs) after the run")
    args = parser.parse_args(argv)

    corpus = FrameCorpus.from_shared()
    daemon = DaemonProcess("--no-autostart")
    print(f"seed {args.seed}, {args.seconds:g} s, {len(corpus.frames)} trace frames, "
          f"root {daemon.root}", flush=True)
    try:
        daemon.start()
        with RPCClient(daemon.socket).open() as c:
            c.define(domain_xml("fuzz-control", "6f1b8a52-4c1e-4d7a-9a57-1c0ffee00001"))
            c.define(Mutator.target_xml_for("fuzz-target"))

        def progress(stats: FuzzStats) -> None:
            print(f"  {stats.seconds:6.0f} s  {stats.inputs:8d} inputs  {stats.rate:6.0f}/s  "
                  f"findings {len(stats.findings)}", flush=True)

        run = FuzzRun(daemon.socket, daemon.root, corpus, args.seed, alive=daemon.alive)
        stats = run.run(args.seconds, progress=progress)
        alive = daemon.alive()
    finally:
        if args.keep:
            if daemon.alive():
                daemon.stop()
            print(f"root kept: {daemon.root}")
        else:
            daemon.cleanup()

    print(f"\ninputs tried: {stats.inputs} in {stats.seconds:.1f} s ({stats.rate:.0f}/s)")
    print("by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.kinds.items())))
    print(f"answered: {stats.replies}, closed by the daemon: {stats.closed_by_daemon}")
    print(f"control client: {stats.control_calls} calls, {len(stats.control_failures)} failed, "
          f"max latency {stats.control_max_latency * 1000:.0f} ms")
    print(f"daemon alive at the end: {alive}")
    for failure in stats.control_failures:
        print(f"control failure: {failure}")
    print(f"findings: {len(stats.findings)}")
    for i, finding in enumerate(stats.findings, 1):
        print(f"\n--- finding {i}: {finding.what}\ninput: {finding.input}\n{finding.detail}")
    return 1 if stats.findings or stats.control_failures or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
