#!/usr/bin/env python3
"""
Start latency of a no-OS KVM guest (64 MiB, qboot): through L{Guest.start}
versus QEMU exec'd by hand, measured in the same run, alternating.

Both are timed from just before the exec to the point where QEMU reports
the guest running over QMP:

  - raw: create the listening QMP socket, C{Popen} the same command line
    (the same C{build_argv} output), read the greeting, C{qmp_capabilities},
    C{cont}, C{query-status} says running — blocking sockets, no framework;
  - qemud: C{Guest.start()} (socket, spawn, greeting, capabilities, event
    subscription, C{query-status}, C{cont}) on the Twisted reactor.

Usage: python benchmarks/start_latency.py [ROUNDS]   (default 21)
Prints both medians and their ratio (the target is at most 1.15).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor as _reactor  # noqa: E402

from qemud.domain.xml import parse_domain_xml  # noqa: E402
from qemud.qemu.argv import Launch, LaunchPaths, build_argv  # noqa: E402
from qemud.qemu.caps import CapsCache  # noqa: E402
from qemud.qemu.guest import Guest, GuestPaths  # noqa: E402
from qemud.qemu.process import create_qmp_listener  # noqa: E402
from tests.integration.guests import noos_guest_domain_xml  # noqa: E402

reactor: Any = _reactor
BINARY = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"


def raw_start(launch_for: Any, workdir: str) -> float:
    """
    @return: seconds from exec to "running", QEMU driven by hand.
    """
    qmp_path = os.path.join(workdir, "raw.sock")
    log = open(os.path.join(workdir, "raw.log"), "ab")
    t0 = time.perf_counter()
    fd = create_qmp_listener(qmp_path)
    launch = launch_for(fd)
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


async def guest_start(domain: Any, caps: Any, workdir: str) -> float:
    """
    @return: seconds from C{Guest.start()} to running.
    """
    paths = GuestPaths(workdir, os.path.join(workdir, "g.sock"), os.path.join(workdir, "g.log"))
    guest = Guest(reactor, domain, paths,
                  lambda fd: build_argv(domain, caps, LaunchPaths(fd, workdir)))
    t0 = time.perf_counter()
    await guest.start()
    elapsed = time.perf_counter() - t0
    assert guest.state == (1, 1), guest.state
    await guest.destroy()
    return elapsed


async def main(rounds: int) -> None:
    caps = CapsCache().get(BINARY)
    domain = parse_domain_xml(noos_guest_domain_xml("bench-start", memory_mib=64))
    workdir = tempfile.mkdtemp(prefix="qb", dir="/tmp")
    try:
        def raw_launch(fd: int) -> Launch:
            return build_argv(domain, caps, LaunchPaths(fd, workdir))

        raw: list[float] = []
        ours: list[float] = []
        raw_start(raw_launch, workdir)  # warm-up (page cache)
        await guest_start(domain, caps, workdir)
        for _ in range(rounds):
            raw.append(raw_start(raw_launch, workdir))
            ours.append(await guest_start(domain, caps, workdir))
        r, o = statistics.median(raw), statistics.median(ours)
        print(f"rounds: {rounds} (alternating), no-OS KVM guest, 64 MiB, qboot")
        print(f"raw QEMU by hand   median {r * 1000:7.1f} ms  (min {min(raw) * 1000:.1f}, "
              f"max {max(raw) * 1000:.1f})")
        print(f"qemud Guest.start  median {o * 1000:7.1f} ms  (min {min(ours) * 1000:.1f}, "
              f"max {max(ours) * 1000:.1f})")
        print(f"ratio qemud/raw    {o / r:.3f}  (target <= 1.15)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    from twisted.internet.defer import Deferred

    def go() -> None:
        d = Deferred.fromCoroutine(main(rounds))
        d.addErrback(lambda f: f.printTraceback())
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()


if __name__ == "__main__":
    run()
