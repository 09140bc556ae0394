"""
Helpers for running C{twistd -n qemud} with C{--listen-tls} in integration
tests, on top of L{tests.integration.daemon.DaemonProcess}:

 - L{TLSDaemon}: a daemon with TLS listeners on 127.0.0.1 and/or C{::1};
   waits (bounded) until every TLS port is in LISTEN state, builds
   C{qemu+tls://} URIs, and also kills the QEMUs named in its JSON status
   files at clean-up;
 - L{tls_probe}: a blocking client (Python's C{ssl}, i.e. OpenSSL) that
   does the TLS handshake with a chosen certificate and reads what the
   server sends first (C{0x01} when accepted);
 - L{wait_for_log}: wait, bounded, for a daemon log line;
 - L{run_daemon_expecting_failure}: start the daemon and expect it to exit;
 - L{LIBVIRT_PYTHON_POLLER}: a libvirt-python script that keeps one
   connection busy with calls until told to stop.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from tests.integration.daemon import (
    DaemonProcess,
    daemon_env,
    kill_pids,
    pid_alive,
    wait_until,
)

#: The loopback addresses the test server certificate is made for.
LOCALHOST_V4 = "127.0.0.1"
LOCALHOST_V6 = "::1"

_TWISTD = "from twisted.scripts.twistd import run; run()"


def free_port(host: str = LOCALHOST_V4) -> int:
    """
    @param host: C{127.0.0.1} or C{::1}.
    @return: a TCP port on C{host} that was free a moment ago.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def tcp_listening(host: str, port: int) -> bool:
    """
    Whether something listens on C{host:port}, read from C{/proc/net/tcp*}
    without connecting (a probe connection would count as a failed TLS
    handshake in the daemon's log).

    @param host: C{127.0.0.1} or C{::1}.
    """
    v6 = ":" in host
    table = "/proc/net/tcp6" if v6 else "/proc/net/tcp"
    try:
        with open(table) as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        fields = row.split()
        local, state = fields[1], fields[3]
        addr_hex, port_hex = local.split(":")
        if state != "0A" or int(port_hex, 16) != port:
            continue
        raw = bytes.fromhex(addr_hex)
        # /proc prints each 32-bit word in host (little-endian) order.
        words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]
        packed = b"".join(words)
        family = socket.AF_INET6 if v6 else socket.AF_INET
        if socket.inet_ntop(family, packed) == host:
            return True
    return False


def json_status_pids(status_dir: str) -> set[int]:
    """
    @return: the C{"pid"} of every JSON status file in C{status_dir}.
    """
    pids: set[int] = set()
    try:
        names = os.listdir(status_dir)
    except OSError:
        return pids
    for name in names:
        try:
            with open(os.path.join(status_dir, name), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        pid = data.get("pid") if isinstance(data, dict) else None
        if isinstance(pid, int) and pid > 1:
            pids.add(pid)
    return pids


def _is_qemu(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0", 1)[0]
    except OSError:
        return False
    return b"qemu-system" in os.path.basename(argv0)


class TLSDaemon(DaemonProcess):
    """
    A qemud with TLS listeners.

    @ivar pki_dir: the C{--pki-dir}.
    @ivar tls: the C{(host, port)} pairs it listens on with TLS.
    """

    def __init__(self, pki_dir: str, *extra: str, v4: bool = True, v6: bool = False,
                 handshake_timeout: float | None = None) -> None:
        """
        @param pki_dir: the server's C{--pki-dir}.
        @param extra: more daemon options.
        @param v4: listen with TLS on 127.0.0.1 (a free port).
        @param v6: listen with TLS on C{[::1]} (a free port).
        @param handshake_timeout: C{--tls-handshake-timeout}, if given.
        """
        self.pki_dir = pki_dir
        self.tls: list[tuple[str, int]] = []
        options = ["--pki-dir", pki_dir]
        if v4:
            self.tls.append((LOCALHOST_V4, free_port(LOCALHOST_V4)))
        if v6:
            self.tls.append((LOCALHOST_V6, free_port(LOCALHOST_V6)))
        for host, port in self.tls:
            shown = f"[{host}]" if ":" in host else host
            options += ["--listen-tls", f"{shown}:{port}"]
        if handshake_timeout is not None:
            options += ["--tls-handshake-timeout", str(handshake_timeout)]
        super().__init__(*options, *extra)

    def start(self) -> TLSDaemon:
        """
        Start, wait for the UNIX sockets (L{DaemonProcess.start}) and then
        for every TLS port, bounded.
        """
        super().start()
        for host, port in self.tls:
            try:
                wait_until(lambda h=host, p=port: tcp_listening(h, p), self.start_timeout,  # type: ignore[misc]
                           message=f"TLS listener {host}:{port}")
            except TimeoutError as e:
                raise RuntimeError(f"{e}\n{self.log_tail()}") from None
        return self

    def port(self, host: str = LOCALHOST_V4) -> int:
        """@return: the TLS port on C{host}."""
        return next(p for h, p in self.tls if h == host)

    def tls_uri(self, client_dir: str, host: str = "localhost", *, query: str = "") -> str:
        """
        @param client_dir: virsh's C{pkipath}.
        @param host: the URI host (C{localhost}, C{127.0.0.1}, C{::1}).
        @param query: more URI parameters, e.g. C{"no_verify=1"}.
        @return: C{qemu+tls://HOST:PORT/system?pkipath=DIR[&query]}.
        """
        port = self.port(LOCALHOST_V6 if ":" in host else LOCALHOST_V4)
        shown = f"[{host}]" if ":" in host else host
        uri = f"qemu+tls://{shown}:{port}/system?pkipath={client_dir}"
        return uri + ("&" + query if query else "")

    def remember_qemus(self) -> set[int]:
        """Also record the QEMU pids named in the JSON status files."""
        found = super().remember_qemus()
        for pid in json_status_pids(self.status_dir):
            if pid_alive(pid) and _is_qemu(pid):
                found.add(pid)
        self.known_qemu_pids |= found
        return found


def wait_for_log(daemon: DaemonProcess, pattern: str, timeout: float = 15.0) -> re.Match[str]:
    """
    Wait (bounded) for a line of the daemon log matching C{pattern}.

    @return: the match.
    @raise AssertionError: none within C{timeout} s (with the log tail).
    """
    regex = re.compile(pattern)

    def find() -> re.Match[str] | None:
        for line in daemon.log_text().splitlines():
            match = regex.search(line)
            if match:
                return match
        return None

    try:
        return wait_until(find, timeout, message=f"log line {pattern!r}")
    except TimeoutError:
        raise AssertionError(f"no daemon log line matches {pattern!r} within {timeout} s:\n"
                             f"{daemon.log_tail()}") from None


@dataclass
class ProbeResult:
    """
    What a L{tls_probe} saw.

    @ivar local_port: the client's own TCP port (the daemon logs it).
    @ivar handshake_error: why the TLS handshake failed, or C{None}.
    @ivar first: what the server sent first after the handshake
        (C{b"\\x01"} when it accepted us; C{b""} when it closed).
    """

    local_port: int
    handshake_error: str | None
    first: bytes

    @property
    def confirmed(self) -> bool:
        """Whether the server sent the confirmation byte."""
        return self.first == b"\x01"


def tls_probe(host: str, port: int, client_dir: str | None, cacert: str,
              timeout: float = 10.0) -> ProbeResult:
    """
    Connect with TLS as a libvirt client would (verifying the server
    against C{cacert}, presenting C{client_dir}'s certificate if given) and
    read the server's first byte.  Unlike GnuTLS/virsh, OpenSSL does not
    refuse to present an expired or foreign certificate of its own.

    @param client_dir: holds C{clientcert.pem} and C{clientkey.pem}, or
        C{None} for no client certificate.
    @param cacert: the CA that signed the server certificate.
    @param timeout: bound on every blocking step.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cacert)
    if client_dir is not None:
        ctx.load_cert_chain(os.path.join(client_dir, "clientcert.pem"),
                            os.path.join(client_dir, "clientkey.pem"))
    raw = socket.create_connection((host, port), timeout=timeout)
    local_port = raw.getsockname()[1]
    try:
        tls = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:
            return ProbeResult(local_port, str(e) or type(e).__name__, b"")
        try:
            first = tls.recv(1)
        except (ssl.SSLError, OSError):
            first = b""
        return ProbeResult(local_port, None, first)
    finally:
        raw.close()


def raw_connection_closed_by_server(host: str, port: int, payload: bytes,
                                    timeout: float = 15.0) -> bytes:
    """
    Open a plain TCP connection, send C{payload} (maybe nothing: a stalled
    handshake), and read until the server closes.

    @return: everything the server sent.
    @raise TimeoutError: the server kept the connection open for
        C{timeout} s.
    """
    received = b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        if payload:
            s.sendall(payload)
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                return received
            except TimeoutError:
                raise TimeoutError(f"server kept {host}:{port} open for {timeout} s") from None
            if not chunk:
                return received
            received += chunk


@dataclass
class Failed:
    """
    A daemon that exited at start-up.

    @ivar returncode: its exit status.
    @ivar output: stdout and stderr together.
    @ivar log: its log file, if any.
    """

    returncode: int
    output: str
    log: str


def run_daemon_expecting_failure(*options: str, timeout: float = 30.0) -> Failed:
    """
    Run C{twistd -n qemud --root ROOT OPTIONS} and wait for it to exit
    (bounded; killed by PID on timeout, then the caller's assertion fails).

    @return: how it failed.
    """
    root = tempfile.mkdtemp(prefix="qd", dir="/tmp")
    log_path = os.path.join(root, "qemud.log")
    argv = [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", f"--logfile={log_path}",
            "qemud", "--root", root, *options]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=root, env=daemon_env(), text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_pids([proc.pid])
        out, _ = proc.communicate(timeout=10)
        out = f"(still running after {timeout} s; killed)\n{out}"
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
    except OSError:
        log = ""
    shutil.rmtree(root, ignore_errors=True)
    return Failed(proc.returncode, out, log)


#: Run by C{/usr/bin/python3} (libvirt-python): C{argv[1]} URI, C{argv[2]}
#: ready file, C{argv[3]} stop file, C{argv[4]} time limit in seconds.  It
#: opens one connection, writes the ready file after its first calls, then
#: calls getVersion + listAllDomains until the stop file appears; it prints
#: one JSON line: calls made, errors, the longest gap between two calls.
LIBVIRT_PYTHON_POLLER = r"""
import json, os, sys, time
import libvirt
uri, ready, stop, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
libvirt.registerErrorHandler(lambda ctx, err: None, None)
conn = libvirt.open(uri)
calls, errors, gap = 0, [], 0.0
last = time.monotonic()
deadline = last + limit
while True:
    try:
        conn.getVersion()
        conn.listAllDomains(0)
        calls += 2
    except libvirt.libvirtError as e:
        errors.append(str(e))
    now = time.monotonic()
    gap, last = max(gap, now - last), now
    if calls == 2:
        open(ready, "w").close()
    if os.path.exists(stop) or now > deadline or len(errors) > 5:
        break
    time.sleep(0.02)
alive = conn.isAlive()
conn.close()
print(json.dumps({"calls": calls, "errors": errors, "max_gap": gap, "alive": alive}))
"""


def start_poller(uri: str, workdir: str, limit: float = 120.0) -> tuple[Any, str, str]:
    """
    Start L{LIBVIRT_PYTHON_POLLER} in C{/usr/bin/python3}.

    @return: the process, its ready file, its stop file.
    """
    from tests.integration.daemon import SYSTEM_PYTHON, clean_env

    ready = os.path.join(workdir, "poller.ready")
    stop = os.path.join(workdir, "poller.stop")
    proc = subprocess.Popen([SYSTEM_PYTHON, "-c", LIBVIRT_PYTHON_POLLER, uri, ready, stop,
                             str(limit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=clean_env())
    return proc, ready, stop
