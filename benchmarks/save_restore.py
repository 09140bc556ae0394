#!/usr/bin/env python3
"""
Save and restore time of a 256 MiB no-OS KVM guest (qboot) through qemud
versus the same QMP migration done by hand, interleaved, in the same run.

  - qemud: C{virDomainSave} / C{virDomainRestore} through libvirt-python (or
    virsh when the module is missing) against a qemud started with twistd:
    pause, header, C{getfd} + C{migrate fd:} to a temporary file, fsync,
    rename, quit; restore spawns QEMU with C{-incoming defer}, C{getfd} +
    C{migrate-incoming}, C{cont}.
  - raw: QEMU started by hand with the same kind of command line; save is
    C{stop}, C{getfd} (SCM_RIGHTS on blocking sockets), C{migrate fd:},
    polling C{query-migrate} every 50 ms (as qemud does), fsync, C{quit} and
    wait for the exit; restore is spawn with C{-incoming defer}, greeting,
    C{getfd}, C{migrate-incoming}, poll, C{cont}.

The guest has no OS, so its RAM is mostly zero pages: the figures measure the
machinery (spawn, QMP, file handling), not disk bandwidth.

Usage: /usr/bin/python3 benchmarks/save_restore.py [--rounds N]
(the daemon itself runs under the project's virtualenv Python.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import time
from typing import Any

from _common import qemu_pids_below  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
QBOOT = "/usr/share/qemu/qboot.rom"
MEMORY_MIB = 256

DOMAIN_XML = f"""<domain type='kvm'>
  <name>bench</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><loader type='rom'>{QBOOT}</loader></os>
  <features><acpi/></features>
  <devices><memballoon model='none'/></devices>
</domain>
"""


# ----------------------------------------------------------------------------- raw QEMU

class QMP:
    """A blocking QMP client that can pass a descriptor."""

    def __init__(self, path: str) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        self.file = self.sock.makefile("rb")
        self.file.readline()
        self.execute("qmp_capabilities")

    def execute(self, command: str, args: dict[str, Any] | None = None,
                fd: int | None = None) -> Any:
        msg = json.dumps({"execute": command, **({"arguments": args} if args else {})})
        data = msg.encode() + b"\n"
        if fd is not None:
            socket.send_fds(self.sock, [data], [fd])
        else:
            self.sock.sendall(data)
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")

    def wait_migration(self) -> None:
        while True:
            status = self.execute("query-migrate").get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise RuntimeError(f"migration {status}")
            time.sleep(0.05)


def raw_argv(qmp: str, incoming: bool) -> list[str]:
    argv = [QEMU, "-name", "guest=rawbench", "-S", "-machine", "pc,accel=kvm,usb=off",
            "-bios", QBOOT, "-m", str(MEMORY_MIB), "-smp", "1", "-display", "none",
            "-no-user-config", "-nodefaults", "-qmp", f"unix:{qmp},server=on,wait=off"]
    return argv + (["-incoming", "defer"] if incoming else [])


def raw_start(qmp: str, incoming: bool) -> tuple[subprocess.Popen[bytes], QMP]:
    if os.path.exists(qmp):
        os.unlink(qmp)
    proc = subprocess.Popen(raw_argv(qmp, incoming), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, QMP(qmp)


def raw_save(proc: subprocess.Popen[bytes], qmp: QMP, path: str) -> float:
    t0 = time.perf_counter()
    qmp.execute("stop")
    qmp.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    qmp.execute("getfd", {"fdname": "f"}, fd=fd)
    qmp.execute("migrate", {"uri": "fd:f"})
    qmp.wait_migration()
    os.fsync(fd)
    os.close(fd)
    qmp.execute("quit")
    proc.wait(30)
    return time.perf_counter() - t0


def raw_restore(qmp_path: str, path: str) -> tuple[float, subprocess.Popen[bytes]]:
    t0 = time.perf_counter()
    proc, qmp = raw_start(qmp_path, incoming=True)
    fd = os.open(path, os.O_RDONLY)
    qmp.execute("getfd", {"fdname": "f"}, fd=fd)
    qmp.execute("migrate-incoming", {"uri": "fd:f"})
    qmp.wait_migration()
    qmp.execute("cont")
    os.close(fd)
    elapsed = time.perf_counter() - t0
    qmp.execute("quit")
    proc.wait(30)
    return elapsed, proc


# ----------------------------------------------------------------------------- qemud

class Qemud:
    def __init__(self, root: str) -> None:
        self.root = root
        self.uri = f"qemu+unix:///system?socket={root}/run/qemud/qemud-sock"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "clients")])}
        self.proc = subprocess.Popen(
            [VENV_PY, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             f"--logfile={root}/qemud.log", "qemud", "--root", root],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(f"{root}/run/qemud/qemud-sock"):
            if time.monotonic() > deadline:
                raise RuntimeError("qemud did not start")
            time.sleep(0.05)
        try:
            import libvirt  # type: ignore[import-not-found]
            self.conn: Any = libvirt.open(self.uri)
        except ImportError:
            self.conn = None
        self.virsh("define", self._xml())

    def _xml(self) -> str:
        path = os.path.join(self.root, "bench.xml")
        with open(path, "w") as f:
            f.write(DOMAIN_XML)
        return path

    def virsh(self, *args: str) -> None:
        subprocess.run(["virsh", "-q", "-c", self.uri, *args], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self.virsh("start", "bench")

    def save(self, path: str) -> float:
        t0 = time.perf_counter()
        if self.conn is not None:
            self.conn.lookupByName("bench").save(path)
        else:
            self.virsh("save", "bench", path)
        return time.perf_counter() - t0

    def restore(self, path: str) -> float:
        t0 = time.perf_counter()
        if self.conn is not None:
            self.conn.restore(path)
        else:
            self.virsh("restore", path)
        return time.perf_counter() - t0

    def destroy(self) -> None:
        self.virsh("destroy", "bench")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="qd", dir="/tmp")
    qemud = Qemud(root)
    raw_qmp = os.path.join(root, "raw.qmp")
    samples: dict[str, list[float]] = {"qemud save": [], "raw save": [],
                                       "qemud restore": [], "raw restore": []}
    sizes: dict[str, int] = {}
    try:
        print(f"# save/restore of a {MEMORY_MIB} MiB no-OS KVM guest, {args.rounds} rounds, "
              f"client: {'libvirt-python' if qemud.conn is not None else 'virsh'}, "
              f"load {os.getloadavg()[0]:.2f}")
        for _ in range(args.rounds):
            image = os.path.join(root, "q.save")
            qemud.start()
            time.sleep(0.2)
            samples["qemud save"].append(qemud.save(image))
            sizes["qemud"] = os.path.getsize(image)
            samples["qemud restore"].append(qemud.restore(image))
            qemud.destroy()
            os.unlink(image)

            raw_image = os.path.join(root, "r.save")
            proc, qmp = raw_start(raw_qmp, incoming=False)
            qmp.execute("cont")
            time.sleep(0.2)
            samples["raw save"].append(raw_save(proc, qmp, raw_image))
            sizes["raw"] = os.path.getsize(raw_image)
            elapsed, _proc = raw_restore(raw_qmp, raw_image)
            samples["raw restore"].append(elapsed)
            os.unlink(raw_image)
        for op in ("save", "restore"):
            q = statistics.median(samples[f"qemud {op}"])
            r = statistics.median(samples[f"raw {op}"])
            print(f"{op:8s} qemud median {q * 1000:7.1f} ms   raw median {r * 1000:7.1f} ms   "
                  f"ratio {q / r:5.2f}   (qemud min {min(samples[f'qemud {op}']) * 1000:.1f}, "
                  f"raw min {min(samples[f'raw {op}']) * 1000:.1f})")
        print(f"image size: qemud {sizes['qemud']} B (header 4 KiB + stream), "
              f"raw {sizes['raw']} B")
    finally:
        qemud.close()
        for pid in qemu_pids_below(root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
