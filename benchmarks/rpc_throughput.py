#!/usr/bin/env python3
"""
RPC throughput of a real qemud over its UNIX socket, driven by libvirt-python
clients (separate /usr/bin/python3 processes), 100 domains defined first.

Workloads: getVersion(), lookupByName().info(), listAllDomains(); with one
client and with 8 client processes at once.  For each: calls/s, client-side
latency p50/p99, and the daemon's CPU time per call (utime+stime from
/proc/PID/stat over the measured window).  The baseline is libvirtd 9.0 on
this machine with the same client (figures below); the in-run reference is
the client's own CPU per call, so a daemon-bound result can be told from a
client-bound one.

Usage: .venv/bin/python benchmarks/rpc_throughput.py [--quick] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
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
    proc_cpu_seconds,
    run_clients,
    verdict,
    write_template,
)

# libvirtd 9.0, this machine, same client: calls/s for 1 and 8 clients.
LIBVIRTD = {
    "getversion": (5676, 11250),
    "lookupinfo": (4390, 9180),
    "listall": (2294, 4720),
}
LIBVIRTD_GETVERSION_P99_US = 268
LIBVIRTD_CPU_PER_GETVERSION_US = 147
LABELS = {
    "getversion": "getVersion()",
    "lookupinfo": "lookupByName().info()",
    "listall": "listAllDomains() [100]",
}


def measure(daemon: Daemon, op: str, nclients: int, seconds: float) -> dict[str, float]:
    clients = [Client(daemon.uri, "loop", op, seconds, f"bench{i % 100}")
               for i in range(nclients)]
    try:
        for c in clients:
            c.wait_ready()
        cpu0 = daemon.cpu_seconds()
        ccpu0 = sum(proc_cpu_seconds(c.proc.pid) for c in clients)
        for c in clients:
            c.go()
        # Sample the clients' CPU just before they exit.
        time.sleep(seconds)
        ccpu1 = sum(proc_cpu_seconds(c.proc.pid) for c in clients)
        results = [c.result() for c in clients]
        cpu1 = daemon.cpu_seconds()
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    finally:
        for c in clients:
            c.kill()
    calls = sum(r["calls"] for r in results)
    return {
        "calls": calls,
        "rate": calls / wall,
        "p50": max(r["p50"] for r in results),
        "p99": max(r["p99"] for r in results),
        "cpu_us": (cpu1 - cpu0) / calls * 1e6,
        "client_cpu_us": (ccpu1 - ccpu0) / calls * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per measurement")
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    header("RPC throughput: qemud vs libvirtd 9.0 figures (same libvirt-python client)")
    root = make_root()
    daemon = Daemon(root)
    try:
        daemon.start()
        template = write_template(root)
        run_clients([Client(daemon.uri, "define", template, "bench", 0, 100)])
        print(f"   100 domains defined; {seconds:g} s per measurement; daemon pid {daemon.pid}")
        print(f"   {'workload':24} {'clients':>7} {'calls/s':>9} {'p50 us':>8} {'p99 us':>8} "
              f"{'daemon CPU us/call':>19} {'client CPU us/call':>19} {'vs libvirtd':>11}")
        results = {}
        for nclients in (1, 8):
            for op in ("getversion", "lookupinfo", "listall"):
                r = measure(daemon, op, nclients, seconds)
                results[(op, nclients)] = r
                ref = LIBVIRTD[op][0 if nclients == 1 else 1]
                print(f"   {LABELS[op]:24} {nclients:7} {r['rate']:9.0f} {r['p50']:8.0f} "
                      f"{r['p99']:8.0f} {r['cpu_us']:19.1f} {r['client_cpu_us']:19.1f} "
                      f"{r['rate'] / ref:10.2f}x")
        print("   libvirtd reference calls/s (1 / 8 clients): "
              + ", ".join(f"{LABELS[k]} {v[0]} / {v[1]}" for k, v in LIBVIRTD.items())
              + f"; getVersion p99 {LIBVIRTD_GETVERSION_P99_US} us, "
              f"< {LIBVIRTD_CPU_PER_GETVERSION_US} us CPU/call")
        print(f"   load average after: {loadavg()}")
        failing = []
        for (op, n), r in results.items():
            ref = LIBVIRTD[op][0 if n == 1 else 1]
            if r["rate"] < ref:
                failing.append(f"{LABELS[op]} x{n} {r['rate'] / ref:.2f}x")
        gv = results[("getversion", 1)]
        if gv["cpu_us"] > LIBVIRTD_CPU_PER_GETVERSION_US:
            failing.append(f"CPU/getVersion {gv['cpu_us']:.0f} us > "
                           f"{LIBVIRTD_CPU_PER_GETVERSION_US}")
        print(verdict(not failing, "all at or above libvirtd" if not failing
                      else "below libvirtd: " + "; ".join(failing)))
    finally:
        cleanup(root, daemon)


if __name__ == "__main__":
    main()
