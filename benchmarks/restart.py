#!/usr/bin/env python3
"""
Daemon restart with N running no-OS KVM guests (N = 10 and 50).

For SIGTERM and then SIGKILL of the daemon: the time from the signal being
sent until a libvirt-python client (already loaded, waiting) has connected to
the new daemon and lists all N domains running - with the same QEMU PIDs and
domain ids as before (checked from the status files).  Includes the old
daemon's exit, the new daemon's exec, imports, config/status load and QMP
re-attach of every guest.

Baselines in the same run: the same restart with no guest (the fixed cost of
a daemon start), and the floor of any daemon on this stack: a fresh Python
process importing Twisted's reactor and exiting.  Targets: 10 guests <= 110 ms (libvirtd 110 ms); 50 guests
<= 500 ms.

Usage: .venv/bin/python benchmarks/restart.py [--quick] [--repeat R]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    Client,
    Daemon,
    cleanup,
    header,
    loadavg,
    make_root,
    median,
    pid_alive,
    run_clients,
    venv_python,
    verdict,
    write_template,
)

TARGETS_MS = {10: 110.0, 50: 500.0}
LIBVIRTD_10_MS = 110.0
NCLIENTS = 8


def guest_identity(root: str) -> dict[str, tuple[int, int]]:
    """
    @return: name -> (QEMU pid, domain id) from the status files.
    """
    found = {}
    for path in glob.glob(os.path.join(root, "run", "qemud", "qemu", "*.xml")):
        with open(path) as f:
            doc = json.load(f)
        found[doc["name"]] = (doc["pid"], doc.get("domain_id", -1))
    return found


def reactor_import_floor(runs: int = 7) -> float:
    """
    @return: median seconds for the venv's Python to start, import Twisted's
        reactor (which loads pyOpenSSL when installed) and exit: the least
        any Twisted daemon's restart can take here.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([venv_python(), "-c", "import twisted.internet.reactor"], env=env,
                       check=True)
        times.append(time.monotonic() - t0)
    return median(times)


def restart(daemon: Daemon, sig: int, n: int) -> tuple[float, float, dict[str, int]]:
    """
    Signal the daemon, start a new one, wait until N guests are listed running.

    @return: seconds from the signal to the socket answering, to all listed
        running, and the domain ids the client saw.
    """
    waiter = Client(daemon.uri, "waitlist", n, "r", 1)
    try:
        waiter.wait_ready()
        t0 = time.monotonic()
        daemon.stop(sig)
        daemon.spawn()
        waiter.go()
        r = waiter.result()
    finally:
        waiter.kill()
    return r["answered"] - t0, r["end"] - t0, r["ids"]


def scenario(root: str, daemon: Daemon, n: int, repeat: int) -> dict[str, list[float]]:
    names = [f"r{i}" for i in range(n)]
    if n:
        template = write_template(root)
        run_clients([Client(daemon.uri, "define", template, "r", 0, n)])
        run_clients([Client(daemon.uri, "start", *names[i::NCLIENTS])
                     for i in range(min(n, NCLIENTS))])
    before = guest_identity(root)
    assert len(before) == n, (len(before), n)
    out: dict[str, list[float]] = {}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for _ in range(repeat):
            answered, listed, ids = restart(daemon, sig, n)
            after = guest_identity(root)
            same = after == before and all(pid_alive(p) for p, _ in after.values())
            same = same and all(ids.get(k) == v[1] for k, v in before.items())
            if not same:
                raise AssertionError(f"guests changed across the restart: {before} -> {after}")
            out.setdefault(f"{sig.name} answered", []).append(answered)
            out.setdefault(f"{sig.name} listed", []).append(listed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 guests only, once each")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    sizes = (10,) if args.quick else (10, 50)
    repeat = args.repeat or (1 if args.quick else 3)
    header(f"daemon restart with running guests ({', '.join(map(str, sizes))}), "
           f"median of {repeat}")
    results: dict[int, dict[str, list[float]]] = {}
    for n in (0, *sizes):
        root = make_root()
        daemon = Daemon(root)
        try:
            daemon.start()
            results[n] = scenario(root, daemon, n, repeat)
        finally:
            left = cleanup(root, daemon)
        if n and left != n:
            print(f"   note: {left} QEMU killed at cleanup for {n} guests")
    base = results[0]
    checks = []
    for n, r in results.items():
        for sig in ("SIGTERM", "SIGKILL"):
            a, t = median(r[f"{sig} answered"]) * 1000, median(r[f"{sig} listed"]) * 1000
            b = median(base[f"{sig} listed"]) * 1000
            line = (f"   {n:3} guests, {sig}: socket answers {a:6.0f} ms, all listed running "
                    f"{t:6.0f} ms  ({t / b:.2f}x the empty daemon's {b:.0f} ms")
            if n in TARGETS_MS:
                line += f"; {t / TARGETS_MS[n]:.2f}x target {TARGETS_MS[n]:.0f} ms"
                checks.append((t <= TARGETS_MS[n], f"{n} guests {sig} {t:.0f} ms "
                               f"(<= {TARGETS_MS[n]:.0f})"))
            print(line + ")")
    print(f"   floor: Python start + Twisted reactor import + exit "
          f"{reactor_import_floor() * 1000:.0f} ms (median of 7)")
    print(f"   libvirtd 9.0 here: 10 guests {LIBVIRTD_10_MS:.0f} ms; PIDs and ids unchanged in "
          f"every run (checked)")
    print(f"   load average after: {loadavg()}")
    print(verdict(all(ok for ok, _ in checks), "; ".join(
        ("ok " if ok else "MISS ") + text for ok, text in checks)))


if __name__ == "__main__":
    main()
