#!/usr/bin/env python3
"""
50 concurrent starts of no-OS KVM guests (64 MiB, qboot) through a real qemud.

  - define 50 guests, then start them from 8 libvirt-python client processes
    at once; time from "go" until every create() returned (all running);
  - meanwhile another client calls getVersion() in a loop: latency median,
    p99, max during the starts (the event loop must stay responsive);
  - daemon RSS before/after, sum of QEMU RSS; RSS per guest;
  - destroy all (8 clients), check that no QEMU process is left;
  - baseline in the same run: the same 50 command lines exec'd by hand at
    once (threads doing greeting, qmp_capabilities, cont, query-status).

Targets: all running in under half libvirtd's 8.1 s; getVersion max < 50 ms
(libvirtd p90 1.8 ms, max 108 ms).

Usage: .venv/bin/python benchmarks/many_guests.py [--quick] [--guests N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    Client,
    Daemon,
    cleanup,
    header,
    kill_and_wait,
    loadavg,
    make_root,
    median,
    pct,
    pid_alive,
    proc_rss_kib,
    qemu_pids_below,
    run_clients,
    status_pids,
    verdict,
    write_template,
)

LIBVIRTD_ALL_RUNNING_S = 8.1
LIBVIRTD_PING = "p90 1.8 ms, max 108 ms"
TARGET_PING_MAX_MS = 50.0
NCLIENTS = 8


def raw_concurrent(root: str, live_xmls: list[str]) -> tuple[float, int]:
    """
    Exec the guests' command lines by hand, all at once.

    @return: seconds until every one answered query-status "running", and
        the sum of their RSS (KiB) then.
    """
    from qemud.domain.xml import parse_domain_xml
    from qemud.qemu.argv import LaunchPaths, build_argv
    from qemud.qemu.caps import CapsCache, find_emulator
    from qemud.qemu.process import create_qmp_listener

    caps_cache = CapsCache()
    launches = []
    for i, xml in enumerate(live_xmls):
        domain = parse_domain_xml(xml)
        caps = caps_cache.get(find_emulator(domain))
        workdir = os.path.join(root, "raw", str(i))
        os.makedirs(workdir)
        launches.append((domain, caps, workdir))
    procs: list[subprocess.Popen[bytes]] = []
    errors: list[BaseException] = []

    def handshake(path: str) -> None:
        try:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(60)
            sock.connect(path)
            f = sock.makefile("rwb")
            f.readline()
            for cmd in ("qmp_capabilities", "cont", "query-status"):
                f.write(json.dumps({"execute": cmd}).encode() + b"\n")
                f.flush()
                while True:
                    msg = json.loads(f.readline())
                    if "return" in msg or "error" in msg:
                        break
            assert msg.get("return", {}).get("status") == "running", msg
            sock.close()
        except BaseException as e:
            errors.append(e)

    threads = []
    try:
        t0 = time.monotonic()
        for domain, caps, workdir in launches:
            path = os.path.join(workdir, "qmp.sock")
            fd = create_qmp_listener(path)
            launch = build_argv(domain, caps, LaunchPaths(qmp_fd=fd, domain_dir=workdir))
            with open(os.path.join(workdir, "log"), "ab") as log:
                procs.append(subprocess.Popen(launch.argv, env=launch.env, cwd=workdir,
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                              pass_fds=(fd,)))
            os.close(fd)
            t = threading.Thread(target=handshake, args=(path,))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        if errors:
            raise errors[0]
        rss = sum(proc_rss_kib(p.pid) for p in procs)
        return elapsed, rss
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 guests")
    parser.add_argument("--guests", type=int, default=None)
    args = parser.parse_args()
    n = args.guests or (16 if args.quick else 50)
    header(f"{n} concurrent guest starts from {NCLIENTS} clients, getVersion pinger alongside")
    root = make_root()
    daemon = Daemon(root)
    clients: list[Client] = []
    try:
        daemon.start()
        template = write_template(root)
        run_clients([Client(daemon.uri, "define", template, "g", 0, n)])
        names = [f"g{i}" for i in range(n)]
        rss_before = daemon.rss_kib()
        pinger = Client(daemon.uri, "ping")
        starters = [Client(daemon.uri, "start", *names[i::NCLIENTS]) for i in range(NCLIENTS)]
        clients = [pinger, *starters]
        for c in clients:
            c.wait_ready()
        pinger.go()
        time.sleep(0.3)
        t0 = time.monotonic()
        for c in starters:
            c.go()
        results = [c.result() for c in starters]
        t_all = max(r["end"] for r in results)
        all_running = t_all - t0
        time.sleep(0.2)
        assert pinger.proc.stdin is not None
        pinger.proc.stdin.write("stop\n")
        pinger.proc.stdin.flush()
        ping = pinger.result()
        during = [lat / 1000 for lat, at in zip(ping["lat"], ping["stamps"], strict=True)
                  if t0 <= at <= t_all]
        idle = [lat / 1000 for lat, at in zip(ping["lat"], ping["stamps"], strict=True) if at < t0]
        start_lat = [x / 1000 for r in results for x in r["lat"]]

        pids = status_pids(root)
        assert len(pids) == n, f"{len(pids)} status files for {n} guests"
        rss_after = daemon.rss_kib()
        qemu_rss = sum(proc_rss_kib(p) for p in pids.values())
        live_xmls = []
        for name in names:
            with open(os.path.join(root, "run", "qemud", "qemu", name + ".xml")) as f:
                live_xmls.append(json.load(f)["live_xml"])

        t1 = time.monotonic()
        run_clients([Client(daemon.uri, "destroy", *names[i::NCLIENTS])
                     for i in range(NCLIENTS)])
        destroy_s = time.monotonic() - t1
        time.sleep(0.2)
        left = [p for p in pids.values() if pid_alive(p)] + sorted(qemu_pids_below(root))
        kill_and_wait(set(left))

        raw_s, raw_rss = raw_concurrent(root, live_xmls)

        print(f"   all {n} running: qemud {all_running:.2f} s  vs raw QEMU by hand "
              f"{raw_s:.2f} s ({all_running / raw_s:.2f}x raw; libvirtd {LIBVIRTD_ALL_RUNNING_S} s"
              f" for 50 = {all_running / LIBVIRTD_ALL_RUNNING_S:.2f}x)")
        print(f"   per create() as the clients saw it: median {median(start_lat):.0f} ms  "
              f"p90 {pct(start_lat, 90):.0f} ms  max {max(start_lat):.0f} ms")
        print(f"   getVersion during the starts ({len(during)} calls): median "
              f"{median(during):.2f} ms  p99 {pct(during, 99):.2f} ms  max {max(during):.1f} ms"
              f"  (idle before: median {median(idle):.2f} ms; libvirtd {LIBVIRTD_PING})")
        print(f"   daemon RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB "
              f"(+{(rss_after - rss_before) / n:.0f} KiB per guest); QEMU RSS sum "
              f"{qemu_rss / 1024:.0f} MiB = {qemu_rss / n / 1024:.1f} MiB per guest "
              f"(raw: {raw_rss / n / 1024:.1f} MiB)")
        print(f"   destroy all from {NCLIENTS} clients: {destroy_s:.2f} s; QEMU left afterwards: "
              f"{len(left)}")
        print(f"   load average after: {loadavg()}")
        target = LIBVIRTD_ALL_RUNNING_S / 2 * n / 50
        checks = [
            (all_running < target, f"all running {all_running:.2f} s (< {target:.2f} s)"),
            (max(during) < TARGET_PING_MAX_MS,
             f"getVersion max {max(during):.1f} ms (< {TARGET_PING_MAX_MS:.0f} ms)"),
            (not left, f"{len(left)} QEMU left"),
        ]
        print(verdict(all(ok for ok, _ in checks), "; ".join(
            ("ok " if ok else "MISS ") + text for ok, text in checks)))
    finally:
        left = cleanup(root, daemon, clients)
        if left:
            print(f"   cleanup killed {left} QEMU process(es)")


if __name__ == "__main__":
    main()
