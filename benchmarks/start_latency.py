#!/usr/bin/env python3
"""
Start latency of a no-OS KVM guest (64 MiB, qboot): through the domain
manager (L{DomainDriver.create}) versus QEMU exec'd by hand, interleaved, in
the same run.  Target: qemud median <= 1.15 x raw.

  - raw: create the listening QMP socket, C{Popen} the same command line
    (C{build_argv} output), read the greeting, C{qmp_capabilities}, C{cont},
    C{query-status} says running - blocking sockets, no framework;
  - qemud: C{driver.create(uuid)} until its Deferred fires and the state is
    running (argv, spawn, QMP negotiation, events, query-status, cont, the
    fsync'ed status file); the domain is destroyed between runs.

Usage: .venv/bin/python benchmarks/start_latency.py [--quick] [--rounds N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    cleanup,
    header,
    loadavg,
    make_root,
    median,
    pct,
    verdict,
)
from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402

from qemud.daemon.manager import build_driver  # noqa: E402
from qemud.daemon.paths import DaemonPaths  # noqa: E402
from qemud.domain.defaults import assign_aliases  # noqa: E402
from qemud.qemu.argv import LaunchPaths, build_argv  # noqa: E402
from qemud.qemu.caps import CapsCache, find_emulator  # noqa: E402
from qemud.qemu.process import create_qmp_listener  # noqa: E402
from qemud.qemu.states import DomainState  # noqa: E402
from tests.integration.guests import noos_guest_domain_xml  # noqa: E402

reactor: Any = _reactor
TARGET = 1.15


def raw_start(domain: Any, caps: Any, workdir: str) -> float:
    """
    @return: seconds from just before the exec to "running", QEMU driven by hand.
    """
    qmp_path = os.path.join(workdir, "raw.sock")
    log = open(os.path.join(workdir, "raw.log"), "ab")
    t0 = time.perf_counter()
    fd = create_qmp_listener(qmp_path)
    launch = build_argv(domain, caps, LaunchPaths(qmp_fd=fd, domain_dir=workdir))
    proc = subprocess.Popen(launch.argv, env=launch.env, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, pass_fds=(fd,))
    os.close(fd)
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(30)
        sock.connect(qmp_path)
        f = sock.makefile("rwb")

        def command(name: str) -> Any:
            f.write(json.dumps({"execute": name}).encode() + b"\n")
            f.flush()
            while True:
                msg = json.loads(f.readline())
                if "return" in msg:
                    return msg["return"]
                if "error" in msg:
                    raise RuntimeError(msg)

        json.loads(f.readline())  # greeting
        command("qmp_capabilities")
        command("cont")
        status = command("query-status")
        elapsed = time.perf_counter() - t0
        assert status["status"] == "running", status
        sock.close()
        return elapsed
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        log.close()
        os.unlink(qmp_path)


async def driver_start(driver: Any, uuid: bytes, profiler: cProfile.Profile | None) -> float:
    """
    @return: seconds from C{driver.create()} until it fired and the state is running.
    """
    if profiler is not None:
        profiler.enable()
    t0 = time.perf_counter()
    await driver.create(uuid)
    elapsed = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()
    state = driver.get_state(uuid)
    assert state[0] == DomainState.RUNNING, state
    await driver.destroy(uuid)
    return elapsed


async def main(args: argparse.Namespace, root: str) -> None:
    paths = DaemonPaths.system(root)
    driver = build_driver(reactor, paths)
    await driver.load()
    xml = noos_guest_domain_xml("bench-start", memory_mib=64)
    uuid = driver.define_xml(xml).uuid
    # The same definition the driver launches: defaulted, canonical machine, aliases.
    domain = assign_aliases(driver._get(uuid).config)
    caps = CapsCache().get(find_emulator(domain))
    workdir = os.path.join(root, "raw")
    os.makedirs(workdir)
    profiler = cProfile.Profile() if args.profile else None

    raw_start(domain, caps, workdir)  # warm-up (page cache, caps)
    await driver_start(driver, uuid, None)
    raw: list[float] = []
    ours: list[float] = []
    for i in range(args.rounds):
        if i % 2:
            raw.append(raw_start(domain, caps, workdir))
            ours.append(await driver_start(driver, uuid, profiler))
        else:
            ours.append(await driver_start(driver, uuid, profiler))
            raw.append(raw_start(domain, caps, workdir))

    r, o = median(raw), median(ours)
    ms = 1000
    print(f"   rounds: {args.rounds} each, interleaved; no-OS KVM guest, 64 MiB, qboot")
    print(f"   raw QEMU by hand     median {r * ms:6.1f} ms  p90 {pct(raw, 90) * ms:6.1f} ms  "
          f"min {min(raw) * ms:.1f}  max {max(raw) * ms:.1f}")
    print(f"   qemud driver.create  median {o * ms:6.1f} ms  p90 {pct(ours, 90) * ms:6.1f} ms  "
          f"min {min(ours) * ms:.1f}  max {max(ours) * ms:.1f}")
    print(f"   ratio qemud/raw      median {o / r:.3f}  p90 {pct(ours, 90) / pct(raw, 90):.3f}  "
          f"(libvirtd 9.0 here: ~305 ms vs ~45 ms raw = 6.8x)")
    print(f"   load average after: {loadavg()}")
    print(verdict(o / r <= TARGET, f"qemud start median {o * ms:.1f} ms = {o / r:.2f}x raw "
                  f"{r * ms:.1f} ms (target <= {TARGET}x)"))
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(20)
        print(out.getvalue())


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 20")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the qemud starts (the reactor's work in this process)")
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 5 if args.quick else 20
    header("start latency: qemud domain manager vs raw QEMU")
    root = make_root()
    failed: list[Any] = []

    def go() -> None:
        d = Deferred.fromCoroutine(main(args, root))
        d.addErrback(lambda f: (failed.append(f), f.printTraceback()))
        d.addBoth(lambda _: reactor.stop())

    try:
        reactor.callWhenRunning(go)
        reactor.run()
    finally:
        left = cleanup(root)
        if left:
            print(f"   cleanup killed {left} QEMU process(es) left behind")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    run()
