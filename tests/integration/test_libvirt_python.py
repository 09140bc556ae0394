"""
Unmodified libvirt-python (Debian 12 python3-libvirt 9.0) against qemud.

libvirt-python is importable only from C{/usr/bin/python3}, so each client
is a script under C{clients/} run as its own process; it prints JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.daemon import (
    CLIENTS_DIR,
    SYSTEM_PYTHON,
    DaemonProcess,
    clean_env,
    daemon_fixture,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
    free_tcp_port,
    require_libvirt_python,
    virsh_ok,
)
from tests.integration.guests import noos_guest_domain_xml

#: libvirt's numbers (include/libvirt/libvirt-domain.h, virterror.h).
DEFINED, UNDEFINED, STARTED, SUSPENDED, RESUMED, STOPPED, SHUTDOWN = 0, 1, 2, 3, 4, 5, 6
VIR_ERR_OPERATION_DENIED = 29
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_INVALID = 55


def run_client(script: str, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    """
    Run C{clients/SCRIPT} with /usr/bin/python3.

    @return: exit code, its JSON output, its stderr.
    """
    proc = subprocess.run([SYSTEM_PYTHON, os.path.join(CLIENTS_DIR, script), *args],
                          capture_output=True, text=True, timeout=timeout, env=clean_env())
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"{script}: no JSON (rc {proc.returncode})\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}") from None
    return proc.returncode, data, proc.stderr


@pytest.fixture(scope="module")
def daemon(request: Any) -> Iterator[DaemonProcess]:
    """A system-layout daemon with a TCP listener too."""
    require_libvirt_python()
    yield from daemon_fixture(request, tcp_port=free_tcp_port())


def _xml_files(daemon: DaemonProcess, tag: str) -> tuple[str, str, str, str]:
    name, tname = f"py{tag}", f"pyt{tag}"
    paths = []
    for n in (name, tname):
        path = os.path.join(daemon.root, n + ".xml")
        with open(path, "w") as f:
            f.write(noos_guest_domain_xml(n))
        paths.append(path)
    return name, tname, paths[0], paths[1]


def _strip_optional(events: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """
    Drop the events libvirtd sends around the essential ones, which the
    traces show but a daemon need not send: (RESUMED, 0) right before
    (STARTED, 0), and (SHUTDOWN, HOST) right before (STOPPED, DESTROYED)
    (QEMU's SHUTDOWN event on the SIGTERM of destroy).
    """
    out = []
    for i, ev in enumerate(events):
        following = events[i + 1] if i + 1 < len(events) else None
        if ev == (RESUMED, 0) and following == (STARTED, 0):
            continue
        if ev == (SHUTDOWN, 2) and following == (STOPPED, 1):
            continue
        out.append(ev)
    return out


class LifecycleTests:
    """
    The lifecycle script of the wire traces (python-lifecycle.txt) runs
    unchanged, over UNIX and TCP, and sees every lifecycle event in order.
    """

    @pytest.mark.parametrize("transport", ["unix", "tcp"])
    def test_lifecycle(self, daemon: DaemonProcess, transport: str) -> None:
        """
        open → host calls → define → lookups → create → suspend → resume →
        destroy → createXML (transient) → undefine: every call succeeds
        with libvirt's values, and the events are define (0,0), start
        (2,0), suspend (3,0), resume (4,0), destroy (5,1), the transient's
        start and destroy, undefine (1,0).
        """
        uri = daemon.uri if transport == "unix" else daemon.tcp_uri()
        name, tname, xml, xml2 = _xml_files(daemon, transport)
        rc, out, err = run_client("lifecycle.py", uri, xml, xml2)
        assert rc == 0, (out.get("error"), err)
        assert out["libversion"] == 9000000
        assert 7002000 <= out["version"] < 7003000
        assert out["hostname"] == socket.gethostname()
        model, mem_mib, cpus, mhz, nodes, sockets_, cores, threads = out["info"]
        assert model == "x86_64" and cpus == os.cpu_count() and mem_mib > 0
        assert nodes * sockets_ * cores * threads == cpus
        assert ET.fromstring(out["caps"]).find("guest/arch[@name='x86_64']") is not None
        assert name not in out["list_before"]
        dname, uuid, domid = out["defined"]
        assert dname == name and len(uuid) == 36 and domid == -1
        assert out["byname"] == name and out["byuuid"] == name
        assert out["info_inactive"] == [5, 65536, 65536, 1, 0]
        assert out["state_inactive"] == [5, 0]
        assert out["is_active_before"] == 0 and out["persistent"] == 1
        running_id, state = out["after_create"]
        assert running_id > 0 and state == [1, 1]
        assert out["byid"] == name
        assert out["create_running"] == [VIR_ERR_OPERATION_INVALID,
                                         "Requested operation is not valid: "
                                         "domain is already running"]
        state_, maxmem, mem, vcpus, _cpu_time = out["info_running"]
        assert (state_, maxmem, mem, vcpus) == (1, 65536, 65536, 1)
        live = ET.fromstring(out["xml_running"])
        assert live.get("id") == str(running_id)
        assert ET.fromstring(out["xml_inactive"]).get("id") is None
        assert [name, running_id] in out["list_running"]
        assert out["suspended"] == [3, 1]
        assert out["resumed"] == [1, 5]
        assert out["destroyed"] == [5, 2]
        tn, positive_id, persistent, tstate = out["transient"]
        assert (tn, positive_id, persistent, tstate) == (tname, True, 0, [1, 1])
        assert out["transient_after_destroy"][0] == VIR_ERR_NO_DOMAIN
        assert out["nosuch"] == [VIR_ERR_NO_DOMAIN, out["nosuch"][1],
                                 "Domain not found: no domain with matching name 'nosuch'"]
        assert out["resume_stopped"] == [VIR_ERR_OPERATION_INVALID,
                                         "Requested operation is not valid: "
                                         "domain is not running"]
        assert name not in out["list_after"] and tname not in out["list_after"]
        mine = [(e, d) for n, e, d in out["events"] if n == name]
        theirs = [(e, d) for n, e, d in out["events"] if n == tname]
        assert _strip_optional(mine) == [
            (DEFINED, 0), (STARTED, 0), (SUSPENDED, 0), (RESUMED, 0), (STOPPED, 1),
            (UNDEFINED, 0)], out["events"]
        assert _strip_optional(theirs) == [(STARTED, 0), (STOPPED, 1)], out["events"]


class ReadOnlyTests:
    """
    Read-only libvirt-python connections refuse every change.
    """

    @pytest.mark.parametrize("how", ["openReadOnly-rw", "openReadOnly-ro", "open-ro"])
    def test_refused(self, daemon: DaemonProcess, how: str) -> None:
        """
        create(), destroy(), undefine(), setAutostart() and defineXML() fail
        with VIR_ERR_OPERATION_DENIED (29) "read only access"; queries work.
        With open() on the ro socket, the daemon itself refuses.
        """
        name = f"pyro{how.replace('-', '')}"
        daemon.define(noos_guest_domain_xml(name), name)
        uri = daemon.uri if how.endswith("-rw") else daemon.ro_uri
        args = [uri, name] + (["open"] if how.startswith("open-") else [])
        rc, out, err = run_client("readonly.py", *args)
        assert rc == 0, err
        assert name in out["list"]
        assert out["state"] == [5, 0]
        for label in ("create", "destroy", "undefine", "autostart", "define"):
            assert out[label] != "ok", label
            code, message = out[label]
            assert code == VIR_ERR_OPERATION_DENIED, (label, out[label])
            assert "read only access" in message, (label, message)
        assert "shut off" in virsh_ok(daemon.uri, "domstate", name)
        virsh_ok(daemon.uri, "undefine", name)
