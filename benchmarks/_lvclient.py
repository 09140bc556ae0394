#!/usr/bin/python3
"""
libvirt-python benchmark client (run by /usr/bin/python3, Debian's python3-libvirt).

  _lvclient.py MODE URI ARGS...

It connects (except C{waitrunning}), prints READY, waits for a line on
stdin, works, then prints one JSON line.  Latencies are in microseconds,
times are C{time.monotonic()} (system-wide, comparable across processes).

Modes:
  loop URI OP SECONDS [NAME]   call OP (getversion | lookupinfo | listall) for SECONDS
  define URI TEMPLATE PREFIX FIRST COUNT   define PREFIX<i> from TEMPLATE (@NAME@)
  undefine URI PREFIX          undefine every domain whose name starts with PREFIX
  listall URI REPEAT           time listAllDomains() REPEAT times; reports the count
  start URI NAME...            create() each named domain in turn
  destroy URI NAME...          destroy() each named domain in turn
  ping URI                     getVersion() in a loop until stdin closes / gets a line
  waitlist URI N PREFIX RUNNING   after go: reconnect until N domains named PREFIX* are
                               listed (RUNNING=1: listed as running, each state() running)
"""

import json
import os
import select
import sys
import time

import libvirt

libvirt.registerErrorHandler(lambda ctx, err: None, None)
now = time.monotonic


def summary(lat):
    s = sorted(lat)
    n = len(s)

    def q(p):
        return s[max(0, min(n - 1, int(round(p / 100 * n + 0.5)) - 1))] if n else None

    return {"n": n, "p50": q(50), "p90": q(90), "p99": q(99), "max": s[-1] if n else None}


def barrier():
    print("READY", flush=True)
    sys.stdin.readline()


def main():
    mode, uri, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "waitlist":
        return wait_list(uri, int(args[0]), args[1], args[2] == "1")
    conn = libvirt.open(uri)
    out = {}
    if mode == "loop":
        op, seconds = args[0], float(args[1])
        if op == "getversion":
            def call():
                conn.getVersion()
        elif op == "lookupinfo":
            name = args[2]

            def call():
                conn.lookupByName(name).info()
        elif op == "listall":
            def call():
                conn.listAllDomains()
        else:
            raise SystemExit(f"unknown op {op}")
        call()
        barrier()
        lat = []
        t0 = now()
        end = t0 + seconds
        t = t0
        while t < end:
            a = now()
            call()
            t = now()
            lat.append((t - a) * 1e6)
        out = {"calls": len(lat), "start": t0, "end": t, **summary(lat), "lat": None}
    elif mode == "define":
        with open(args[0]) as f:
            template = f.read()
        prefix, first, count = args[1], int(args[2]), int(args[3])
        xmls = [template.replace("@NAME@", f"{prefix}{i}") for i in range(first, first + count)]
        barrier()
        lat = []
        t0 = now()
        for xml in xmls:
            a = now()
            conn.defineXML(xml)
            lat.append((now() - a) * 1e6)
        out = {"start": t0, "end": now(), "lat": lat, **summary(lat)}
    elif mode == "undefine":
        prefix = args[0]
        doms = [d for d in conn.listAllDomains() if d.name().startswith(prefix)]
        barrier()
        lat = []
        t0 = now()
        for d in doms:
            a = now()
            d.undefine()
            lat.append((now() - a) * 1e6)
        out = {"start": t0, "end": now(), "lat": lat, **summary(lat)}
    elif mode == "listall":
        repeat = int(args[0])
        conn.listAllDomains()
        barrier()
        lat = []
        count = 0
        for _ in range(repeat):
            a = now()
            count = len(conn.listAllDomains())
            lat.append((now() - a) * 1e6)
        out = {"count": count, "lat": lat, **summary(lat)}
    elif mode in ("start", "destroy"):
        doms = [conn.lookupByName(n) for n in args]
        barrier()
        lat = []
        t0 = now()
        for d in doms:
            a = now()
            d.create() if mode == "start" else d.destroy()
            lat.append((now() - a) * 1e6)
        out = {"start": t0, "end": now(), "lat": lat, **summary(lat)}
    elif mode == "ping":
        conn.getVersion()
        barrier()
        lat = []
        stamps = []
        t0 = now()
        while True:
            a = now()
            conn.getVersion()
            b = now()
            lat.append((b - a) * 1e6)
            stamps.append(a)
            if select.select([sys.stdin], [], [], 0.001)[0]:
                break
        out = {"start": t0, "end": now(), "lat": lat, "stamps": stamps, **summary(lat)}
    else:
        raise SystemExit(f"unknown mode {mode}")
    conn.close()
    print(json.dumps(out), flush=True)


def wait_list(uri, n, prefix, running):
    """
    Reconnect until the daemon lists C{n} (running) domains named C{prefix}*.
    """
    flags = libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING if running else 0
    barrier()
    t0 = now()
    connects = 0
    answered = None
    while True:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError:
            time.sleep(0.001)
            continue
        connects += 1
        if answered is None:
            answered = now()
        try:
            while now() - t0 < 120:
                doms = [d for d in conn.listAllDomains(flags) if d.name().startswith(prefix)]
                if len(doms) >= n and (not running or all(
                        d.state()[0] == libvirt.VIR_DOMAIN_RUNNING for d in doms)):
                    t = now()
                    ids = {d.name(): d.ID() for d in doms} if running else {}
                    conn.close()
                    print(json.dumps({"start": t0, "answered": answered, "end": t,
                                      "connects": connects, "ids": ids}), flush=True)
                    return
                time.sleep(0.001)
            raise SystemExit("timed out")
        except libvirt.libvirtError:
            time.sleep(0.001)
            continue


if __name__ == "__main__":
    sys.stdout = os.fdopen(sys.stdout.fileno(), "w", buffering=1)
    main()
