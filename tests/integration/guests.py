# -*- test-case-name: tests.integration.test_guestimage -*-
"""
Helpers for tests and benchmarks that run real test guests.

Plain functions (no pytest needed), so benchmarks can import them too:

 - L{linux_guest_domain_xml}: libvirt domain XML for the tiny Linux guest
   built by L{tests.guestimage} (TCG, serial console to a file);
 - L{noos_guest_domain_xml}: libvirt domain XML for the no-OS KVM guest
   (qboot, no disks: starts in tens of milliseconds);
 - L{wait_for_serial}: wait, with a bound, for a marker in a serial log;
 - L{direct_boot_argv}: the verified QEMU command line of
   C{shared/docs/test-guest.md}, for booting the image without qemud;
 - L{SimpleQMP}: a blocking QMP client with timeouts;
 - L{ProcessReaper}: kill by PID every process a test started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from typing import Any, Protocol
from xml.sax.saxutils import escape, quoteattr

from tests.guestimage import GUEST_CMDLINE

#: The firmware of the no-OS guest (package qemu-system-data).
QBOOT_ROM = "/usr/share/qemu/qboot.rom"

#: The QEMU binary the tests boot guests with.
QEMU_BINARY = "qemu-system-x86_64"


class KernelImage(Protocol):
    """What the helpers need of a built guest (L{tests.guestimage.GuestImage})."""

    @property
    def vmlinux(self) -> str: ...

    @property
    def initramfs(self) -> str: ...


def linux_guest_domain_xml(
    name: str,
    image: KernelImage,
    *,
    serial_log: str,
    memory_mib: int = 128,
    extra_devices: str = "",
) -> str:
    """
    Build libvirt domain XML for the tiny Linux guest under TCG.

    The guest boots the PVH C{vmlinux} directly (C{-kernel}), has ACPI on
    (so C{virsh shutdown} presses its power button), writes its serial
    console to C{serial_log} and restarts on reboot.

    @param name: the domain name.
    @param image: the built guest (its C{vmlinux} and C{initramfs}).
    @param serial_log: the file the serial console is written to.
    @param memory_mib: guest RAM; the kernel needs at least 88 MiB.
    @param extra_devices: XML inserted inside C{<devices>}, e.g. a
        C{<disk>} or an C{<interface>}.
    @return: the XML text.
    """
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(image.vmlinux)}</kernel>
    <initrd>{escape(image.initramfs)}</initrd>
    <cmdline>{escape(GUEST_CMDLINE)}</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path={quoteattr(serial_log)}/>
      <target port='0'/>
    </serial>
{extra_devices}    <memballoon model='none'/>
  </devices>
</domain>
"""


def noos_guest_domain_xml(name: str, *, memory_mib: int = 64, domain_type: str = "kvm") -> str:
    """
    Build libvirt domain XML for the no-OS guest under KVM.

    It runs qboot with nothing to boot: it starts in about 45 ms, answers
    QMP, and can be paused, resumed, reset and saved; use it wherever the
    guest OS need not act.

    @param name: the domain name.
    @param memory_mib: guest RAM.
    @param domain_type: C{kvm}, or C{qemu} for TCG (no access to C{/dev/kvm}).
    @return: the XML text.
    """
    return f"""<domain type='{domain_type}'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <loader type='rom'>{QBOOT_ROM}</loader>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def read_serial(path: str, after_offset: int = 0) -> str:
    """
    @param path: a serial log.
    @param after_offset: where to start reading (bytes).
    @return: the text from there on (empty when the file does not exist).
    """
    try:
        with open(path, "rb") as f:
            f.seek(after_offset)
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def wait_for_serial(path: str, marker: str, timeout: float, after_offset: int = 0) -> int:
    """
    Wait until a complete line containing C{marker} appears in a serial log.

    Only text after C{after_offset} is searched, and only whole lines
    (newline-terminated), so a caller can wait for the I{next} occurrence of
    a marker by passing the offset this function returned last time.

    @param path: the serial log file (it may not exist yet).
    @param marker: text to find within one line, e.g. C{"GUEST-READY"}.
    @param timeout: seconds to wait at most.
    @param after_offset: byte offset to search from.
    @return: the byte offset just after the matching line.
    @raise TimeoutError: when the marker did not come in time; the message
        shows the end of the log.
    """
    needle = marker.encode()
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(after_offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if needle in data[start:end]:
                return after_offset + end + 1
            start = end + 1
        if time.monotonic() >= deadline:
            tail = data[-600:].decode("utf-8", errors="replace")
            raise TimeoutError(f"{marker!r} not seen in {path} within {timeout} s; "
                               f"log ends with: {tail!r}")
        time.sleep(0.05)


def ticks(path: str, after_offset: int = 0) -> list[int]:
    """
    @param path: a serial log of the Linux guest.
    @param after_offset: byte offset to read from.
    @return: the numbers of the C{TICK n} lines, in order.
    """
    found = []
    for line in read_serial(path, after_offset).splitlines():
        idx = line.find("TICK ")
        if idx >= 0:
            word = line[idx + 5:].strip()
            if word.isdigit():
                found.append(int(word))
    return found


def direct_boot_argv(
    image: KernelImage,
    *,
    serial_log: str,
    qmp_socket: str,
    memory_mib: int = 128,
    no_reboot: bool = True,
    extra_args: tuple[str, ...] = (),
) -> list[str]:
    """
    The verified command line for booting the test guest without qemud.

    @param image: the built guest.
    @param serial_log: file for the serial console.
    @param qmp_socket: path of the QMP UNIX socket QEMU listens on.
    @param memory_mib: guest RAM.
    @param no_reboot: add C{-no-reboot} (a reset or panic ends QEMU).
    @param extra_args: device arguments to append.
    @return: argv for C{qemu-system-x86_64}.
    """
    argv = [
        QEMU_BINARY, "-accel", "tcg", "-M", "pc", "-m", str(memory_mib), "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", image.vmlinux, "-initrd", image.initramfs, "-append", GUEST_CMDLINE,
        "-serial", f"file:{serial_log}",
        "-qmp", f"unix:{qmp_socket},server=on,wait=off",
    ]
    if no_reboot:
        argv.append("-no-reboot")
    return argv + list(extra_args)


class SimpleQMP:
    """
    A blocking QMP client for tests, with a timeout on every read.

    @ivar events: the events received so far, in order.
    """

    def __init__(self, path: str, *, timeout: float = 10.0) -> None:
        """
        Connect, read the greeting and negotiate capabilities.

        @param path: the QMP UNIX socket; retried until C{timeout}.
        @param timeout: seconds allowed for connecting and for each reply.
        """
        self.events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except OSError:
                sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(timeout)
        self._sock = sock
        self._file = sock.makefile("rwb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise RuntimeError(f"not a QMP greeting: {greeting!r}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise EOFError("QMP connection closed")
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """
        Run one command and return its C{return} value.

        @param command: the QMP command name.
        @param arguments: its arguments, if any.
        @return: the command's C{return} member.
        @raise RuntimeError: when QEMU answers with an error.
        """
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")
            elif "return" in reply:
                return reply["return"]

    def close(self) -> None:
        """Close the connection."""
        self._file.close()
        self._sock.close()


class ProcessReaper:
    """
    Remember the processes a test starts and kill each one by PID.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """
        Start a process and track it.

        @param argv: the command.
        @param kwargs: passed to L{subprocess.Popen}.
        @return: the process.
        """
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)
        self._procs.append(proc)
        return proc

    def kill_all(self, grace: float = 2.0) -> None:
        """
        TERM every tracked process still running, then KILL it after
        C{grace} seconds, and reap it.

        @param grace: seconds between TERM and KILL.
        """
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self._procs:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self._procs.clear()
