#!/usr/bin/env python3
"""
Scale to 1000 defined domains, with a libvirt-python client over the UNIX socket:

  - define 1000 no-OS domains one by one (every config written with fsync):
    median and p99 per define;
  - listAllDomains() latency with 1000 defined;
  - daemon RSS with 1000 defined (after defining, and after a fresh start);
  - restart (SIGTERM, then a new daemon): time from the exec until the socket
    answers and until a client lists all 1000;
  - undefine all: median and p99 per undefine.

Baseline: libvirtd 9.0 on this machine (constants below); in the same run,
an empty daemon's start-up time and RSS are measured as the floor.

Usage: .venv/bin/python benchmarks/scale.py [--quick] [--count N]
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
    median,
    pct,
    run_clients,
    verdict,
    write_template,
)

LIBVIRTD_DEFINE_MS = (1.12, 1.18)
LIBVIRTD_LISTALL_MS = (2.9, 3.1)
LIBVIRTD_RSS_MIB = 38
TARGET_DEFINE_MS = 1.2
TARGET_LISTALL_MS = 3.0
TARGET_RSS_MIB = 60


def timed_restart(daemon: Daemon, count: int) -> tuple[float, float, float]:
    """
    Start C{daemon} (stopped) and wait until a client lists C{count} domains.

    @return: seconds from exec to socket answering (per the client), to all
        listed, and the daemon's RSS in MiB then.
    """
    waiter = Client(daemon.uri, "waitlist", count, "bench", 0)
    try:
        waiter.wait_ready()
        t0 = time.monotonic()
        daemon.spawn()
        waiter.go()
        r = waiter.result()
    finally:
        waiter.kill()
    return r["answered"] - t0, r["end"] - t0, daemon.rss_kib() / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 domains, fewer repeats")
    parser.add_argument("--count", type=int, default=None)
    args = parser.parse_args()
    count = args.count or (200 if args.quick else 1000)
    repeats = 50 if args.quick else 200
    header(f"scale: {count} defined domains (libvirt-python client)")
    root = make_root()
    daemon = Daemon(root)
    try:
        # Floor: an empty daemon, started twice (the first warms the page cache).
        daemon.start()
        daemon.stop()
        sock0, list0, rss0 = timed_restart(daemon, 0)
        template = write_template(root)

        define = run_clients([Client(daemon.uri, "define", template, "bench", 0, count)])[0]
        d_lat = [x / 1000 for x in define["lat"]]
        rss_defined = daemon.rss_kib() / 1024
        listing = run_clients([Client(daemon.uri, "listall", repeats)])[0]
        assert listing["count"] == count, listing["count"]
        l_lat = [x / 1000 for x in listing["lat"]]

        daemon.stop()
        sock1, list1, rss1 = timed_restart(daemon, count)

        undef = run_clients([Client(daemon.uri, "undefine", "bench")])[0]
        u_lat = [x / 1000 for x in undef["lat"]]
        assert len(u_lat) == count

        print(f"   define x{count}:       median {median(d_lat):.3f} ms  p99 {pct(d_lat, 99):.3f} ms"
              f"  max {max(d_lat):.1f} ms  ({median(d_lat) / LIBVIRTD_DEFINE_MS[1]:.2f}x "
              f"libvirtd {LIBVIRTD_DEFINE_MS[0]}-{LIBVIRTD_DEFINE_MS[1]} ms)")
        print(f"   listAllDomains [{count}]: median {median(l_lat):.3f} ms  p99 "
              f"{pct(l_lat, 99):.3f} ms  ({median(l_lat) / LIBVIRTD_LISTALL_MS[0]:.2f}x libvirtd "
              f"{LIBVIRTD_LISTALL_MS[0]}-{LIBVIRTD_LISTALL_MS[1]} ms at 1000)")
        print(f"   start-up, empty:        socket answers {sock0 * 1000:.0f} ms, listed "
              f"{list0 * 1000:.0f} ms, RSS {rss0:.1f} MiB")
        print(f"   start-up, {count} defined: socket answers {sock1 * 1000:.0f} ms, all listed "
              f"{list1 * 1000:.0f} ms ({list1 / list0:.2f}x empty), RSS {rss1:.1f} MiB "
              f"({rss1 / LIBVIRTD_RSS_MIB:.2f}x libvirtd {LIBVIRTD_RSS_MIB} MiB)")
        print(f"   RSS after defining {count} over RPC: {rss_defined:.1f} MiB "
              f"(+{rss_defined - rss0:.1f} MiB over empty, "
              f"{(rss_defined - rss0) * 1024 / count:.1f} KiB/domain)")
        print(f"   undefine x{count}:     median {median(u_lat):.3f} ms  p99 {pct(u_lat, 99):.3f} ms")
        print(f"   load average after: {loadavg()}")
        checks = [
            (median(d_lat) <= TARGET_DEFINE_MS, f"define median {median(d_lat):.2f} ms "
             f"(<= {TARGET_DEFINE_MS})"),
            (median(l_lat) <= TARGET_LISTALL_MS or count < 1000,
             f"listAll {median(l_lat):.2f} ms (<= {TARGET_LISTALL_MS})"),
            (max(rss1, rss_defined) <= TARGET_RSS_MIB,
             f"RSS {max(rss1, rss_defined):.1f} MiB (<= {TARGET_RSS_MIB})"),
        ]
        print(verdict(all(ok for ok, _ in checks), "; ".join(
            ("ok " if ok else "MISS ") + text for ok, text in checks)))
    finally:
        cleanup(root, daemon)


if __name__ == "__main__":
    main()
