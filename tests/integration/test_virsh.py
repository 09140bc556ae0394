"""
The real C{virsh} (Debian 12, libvirt 9.0) against C{twistd -n qemud}.

Over the system read-write UNIX socket, the read-only socket, the session
layout and plain TCP on loopback, every command of libvirt-rpc.md §3.1 that
the daemon covers must behave, and print, as it does against libvirtd: the
expected outputs come from C{shared/wire-traces/}.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cpudata import trace_capabilities
from tests.integration.daemon import (
    VIRSH,
    DaemonProcess,
    clean_env,
    daemon_fixture,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
    event_lines,
    free_tcp_port,
    require_tools,
    trace_output,
    virsh,
    virsh_ok,
    wait_until,
)
from tests.integration.guests import (
    linux_guest_domain_xml,
    noos_guest_domain_xml,
    wait_for_serial,
)

#: The domain of the wire traces.
RT1_UUID = "8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"

_names = itertools.count(1)


def unique(prefix: str = "vg") -> str:
    """@return: a domain name no other test of this run uses."""
    return f"{prefix}{os.getpid() % 1000}n{next(_names)}"


def with_uuid(xml: str, uuid: str) -> str:
    """@return: domain XML with a C{<uuid>} after its C{<name>}."""
    return xml.replace("</name>", f"</name>\n  <uuid>{uuid}</uuid>", 1)


def expected(trace: str, name: str = "rt1", uuid: str = RT1_UUID) -> str:
    """
    @return: the output libvirtd's virsh printed in C{trace}, with the
        trace's domain name and uuid replaced by ours.
    """
    text = trace_output(trace)
    return text.replace(RT1_UUID, uuid).replace("'rt1'", f"'{name}'").replace(
        " rt1 ", f" {name} ")


def combined(proc: subprocess.CompletedProcess[str]) -> str:
    """@return: stdout and stderr, stripped, as one text."""
    return (proc.stdout.strip() + "\n" + proc.stderr.strip()).strip()


@pytest.fixture(scope="module")
def daemon(request: Any) -> Iterator[DaemonProcess]:
    """A system-layout daemon with rw, ro and TCP listeners, shared by the module."""
    require_tools(VIRSH)
    yield from daemon_fixture(request, tcp_port=free_tcp_port())


@pytest.fixture(scope="module")
def session_daemon(request: Any) -> Iterator[DaemonProcess]:
    """A session-layout daemon (no read-only socket)."""
    require_tools(VIRSH)
    yield from daemon_fixture(request, session=True)


@pytest.fixture
def fresh(request: Any) -> Iterator[DaemonProcess]:
    """A daemon of its own for one test (exact tables and ids)."""
    require_tools(VIRSH)
    yield from daemon_fixture(request)


@pytest.fixture(params=["unix", "unix-ro", "tcp", "session"])
def any_uri(request: Any) -> str:
    """Each way virsh reaches a daemon: rw socket, ro socket, TCP, session."""
    if request.param == "session":
        session: DaemonProcess = request.getfixturevalue("session_daemon")
        return session.uri
    system: DaemonProcess = request.getfixturevalue("daemon")
    if request.param == "unix-ro":
        return system.ro_uri
    if request.param == "tcp":
        return system.tcp_uri()
    return system.uri


def define_noos(daemon: DaemonProcess, name: str | None = None, *, start: bool = False,
                uuid: str | None = None, serial: bool = False) -> str:
    """
    Define (and optionally start) a no-OS KVM guest, with a pty serial port
    when C{serial} (a device that gets an alias).

    @return: its name.
    """
    name = name or unique()
    xml = noos_guest_domain_xml(name).replace(
        "    <memballoon", "    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n"
        "    <memballoon", 1) if serial else noos_guest_domain_xml(name)
    if uuid:
        xml = with_uuid(xml, uuid)
    daemon.define(xml, name)
    if start:
        virsh_ok(daemon.uri, "start", name)
    return name


def host_memory_kib() -> int:
    """
    @return: what libvirt reports as the host's memory: the sum of the NUMA
        nodes' C{MemTotal} when sysfs lists nodes, else C{/proc/meminfo}'s.
    """
    base = "/sys/devices/system/node"
    nodes = sorted(n for n in os.listdir(base) if n.startswith("node") and n[4:].isdigit()) \
        if os.path.isdir(base) else []
    if nodes:
        total = 0
        for node in nodes:
            with open(os.path.join(base, node, "meminfo")) as f:
                for line in f:
                    if "MemTotal:" in line:
                        total += int(line.split()[-2])
        return total
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    raise AssertionError("no MemTotal in /proc/meminfo")


class HostTests:
    """
    Connection-level commands work on every transport.
    """

    def test_version(self, any_uri: str) -> None:
        """
        C{virsh version} names libvirt 9.0.0, API QEMU 9.0.0 and the real
        QEMU version (7.2.x).
        """
        out = virsh_ok(any_uri, "version")
        assert "Using library: libvirt 9.0.0" in out
        assert "Using API: QEMU 9.0.0" in out
        assert "Running hypervisor: QEMU 7.2." in out

    def test_version_daemon(self, any_uri: str) -> None:
        """
        C{virsh version --daemon} prints the same lines as against libvirtd,
        with the daemon's version 9.0.0.
        """
        out = virsh_ok(any_uri, "version", "--daemon")
        want = trace_output("version-daemon.txt")
        qemu_line = [x for x in out.splitlines() if x.startswith("Running hypervisor:")]
        assert qemu_line and qemu_line[0].startswith("Running hypervisor: QEMU 7.2.")
        assert out == want.replace("Running hypervisor: QEMU 7.2.22", qemu_line[0])

    def test_hostname(self, any_uri: str) -> None:
        """
        C{virsh hostname} prints this machine's host name.
        """
        assert virsh_ok(any_uri, "hostname").strip() == socket.gethostname()

    def test_nodeinfo(self, any_uri: str) -> None:
        """
        C{virsh nodeinfo} prints every field libvirtd prints, in the same
        layout, with sane values; CPU(s) is the host's CPU count.
        """
        out = virsh_ok(any_uri, "nodeinfo")
        want = trace_output("nodeinfo.txt")
        got_labels = [line[:21] for line in out.splitlines() if line]
        want_labels = [line[:21] for line in want.splitlines() if line]
        assert got_labels == want_labels
        fields = {k.strip(): v.strip() for k, v in
                  (line.split(":", 1) for line in out.splitlines() if ":" in line)}
        assert fields["CPU model"] == "x86_64"
        assert int(fields["CPU(s)"]) == os.cpu_count()
        assert int(fields["CPU frequency"].split()[0]) > 0
        sockets, cores, threads = (int(fields[k]) for k in
                                   ("CPU socket(s)", "Core(s) per socket", "Thread(s) per core"))
        assert sockets * cores * threads * int(fields["NUMA cell(s)"]) == os.cpu_count()
        kib = int(fields["Memory size"].split()[0])
        assert fields["Memory size"].endswith(" KiB")
        assert kib == host_memory_kib()

    def test_capabilities(self, any_uri: str) -> None:
        """
        C{virsh capabilities} is XML with a host section and an x86_64 hvm
        guest.
        """
        root = ET.fromstring(virsh_ok(any_uri, "capabilities"))
        assert root.tag == "capabilities"
        assert root.find("host/cpu/arch") is not None
        arches = [g.find("arch") for g in root.findall("guest")]
        assert any(a is not None and a.get("name") == "x86_64" for a in arches)
        x86 = [g for g in root.findall("guest") if g.find("arch[@name='x86_64']") is not None]
        assert x86[0].findtext("os_type") == "hvm"

    def test_capabilities_guests_like_libvirtd(self, any_uri: str) -> None:
        """
        With Debian 12's QEMU 7.2 installed, the C{<guest>} sections of
        C{virsh capabilities} are line for line what libvirtd 9.0 printed
        (machines in libvirt's order, features, domain types).
        """
        pattern = re.compile(r"^  <guest>\n.*?^  </guest>\n", re.M | re.S)
        ours = pattern.findall(virsh_ok(any_uri, "capabilities"))
        theirs = pattern.findall(trace_capabilities())
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            theirs = [g.replace("      <domain type='kvm'/>\n", "") for g in theirs]
        assert ours == theirs

    def test_list_all(self, any_uri: str) -> None:
        """
        C{virsh list --all} succeeds and prints the table header.
        """
        out = virsh_ok(any_uri, "list", "--all")
        assert out.splitlines()[0] == " Id   Name   State" or out.startswith(" Id   Name")


def _host_cpu_data() -> Any:
    """
    @return: this machine's CPUID (with C{IA32_ARCH_CAPABILITIES} when it
        applies) read the way the daemon reads it, and libvirt's map;
        either may be C{None}.
    """
    from qemud.daemon.hostcpu import read_host_cpuid, with_arch_capabilities
    from qemud.qemu.cpumap import load_cpu_map

    cpu_map = load_cpu_map()
    data = read_host_cpuid()
    if data is not None and cpu_map is not None:
        data = with_arch_capabilities(data, cpu_map)
    return data, cpu_map


def _cpuinfo_field(name: str) -> str | None:
    """@return: the first value of C{name} in C{/proc/cpuinfo}."""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, sep, value = line.partition(":")
            if sep and key.strip() == name:
                return value.strip()
    return None


class CapabilitiesHostTests:
    """
    The host section of C{virsh capabilities} against a real daemon on this
    machine, checked against this machine's facts and, on the traced
    machine type, against what libvirtd 9.0 printed.
    """

    def test_cpu_consistent_with_map(self, daemon: DaemonProcess) -> None:
        """
        On any machine: the model is a map model, the host has every
        feature of it, and the model's features plus the listed ones are
        exactly the host's features (listed once each, in map order);
        without CPUID or the map there is neither model nor feature.  The
        signature is CPUID's, the microcode and physical address size
        cpuinfo's, the page sizes the base page and the huge page sizes.
        """
        from qemud.qemu.cpumap import cpu_signature, features_in, model_features

        cpu = ET.fromstring(virsh_ok(daemon.uri, "capabilities")).find("host/cpu")
        assert cpu is not None
        listed = [f.get("name") for f in cpu.findall("feature")]
        data, cpu_map = _host_cpu_data()
        if data is None or cpu_map is None:
            assert cpu.find("model") is None and listed == []
            return
        model = cpu.findtext("model")
        assert model in {m.name for m in cpu_map.models}
        host_features = features_in(data, cpu_map)
        own = set(model_features(cpu_map, model))
        assert own <= set(host_features), f"disabled: {own - set(host_features)}"
        assert own | set(listed) == set(host_features)
        assert len(listed) == len(set(listed))
        order = [f.name for f in cpu_map.features]
        assert listed == sorted(listed, key=order.index)
        signature = cpu.find("signature")
        assert signature is not None
        assert tuple(int(signature.get(k, "-1")) for k in ("family", "model", "stepping")) \
            == cpu_signature(data)
        microcode = _cpuinfo_field("microcode")
        if microcode:
            assert cpu.find("microcode").get("version") == str(int(microcode, 16))  # type: ignore
        bits = (_cpuinfo_field("address sizes") or "").split(" ")[0]
        assert cpu.find("maxphysaddr").get("bits") == bits  # type: ignore[union-attr]
        huge = os.listdir("/sys/kernel/mm/hugepages") if os.path.isdir(
            "/sys/kernel/mm/hugepages") else []
        sizes = sorted({os.sysconf("SC_PAGE_SIZE") // 1024,
                        *(int(n[10:-2]) for n in huge if n.startswith("hugepages-"))})
        assert [int(p.get("size", "0")) for p in cpu.findall("pages")] == sizes
        counter = cpu.find("counter")
        if counter is not None:
            assert "invtsc" in host_features
            assert int(counter.get("frequency", "0")) > 0
            assert counter.get("scaling") in ("yes", "no")

    def test_rest_of_host_section(self, daemon: DaemonProcess) -> None:
        """
        On any machine: libvirt's order of host elements without
        C{migration_features}; IOMMU support as C{/sys/kernel/iommu_groups}
        says; one NUMA cell per sysfs node holding every online CPU; cache
        banks of level 3 or more; security models C{none} then C{dac}
        labelled with the daemon's uid and gid.
        """
        host = ET.fromstring(virsh_ok(daemon.uri, "capabilities")).find("host")
        assert host is not None
        tags = [child.tag for child in host]
        assert tags[:4] == ["uuid", "cpu", "power_management", "iommu"]
        assert "migration_features" not in tags
        assert tags[-2:] == ["secmodel", "secmodel"]
        groups = "/sys/kernel/iommu_groups"
        iommu = os.path.isdir(groups) and bool(os.listdir(groups))
        assert host.find("iommu").get("support") == ("yes" if iommu else "no")  # type: ignore
        nodes = [n for n in os.listdir("/sys/devices/system/node")
                 if n.startswith("node") and n[4:].isdigit()]
        cells = host.findall("topology/cells/cell")
        assert len(cells) == max(1, len(nodes))
        with open("/sys/devices/system/cpu/online") as f:
            online_text = f.read().strip()
        from qemud.daemon.node import parse_cpu_list
        cell_cpus = sorted(int(c.get("id", "-1")) for c in host.findall(
            "topology/cells/cell/cpus/cpu"))
        assert cell_cpus == parse_cpu_list(online_text)
        assert all(int(b.get("level", "0")) >= 3 for b in host.findall("cache/bank"))
        secmodels = host.findall("secmodel")
        assert [m.findtext("model") for m in secmodels] == ["none", "dac"]
        label = f"+{os.getuid()}:+{os.getgid()}"
        assert [(b.get("type"), b.text) for b in secmodels[1].findall("baselabel")] == [
            ("kvm", label), ("qemu", label)]

    def test_like_libvirtd_on_traced_machine(self, daemon: DaemonProcess) -> None:
        """
        On the traced machine type (its signature and microcode): the whole
        C{<cpu>} element is libvirtd's, line for line, except the TSC
        frequency (KVM measures it at each boot); and the host section is
        libvirtd's once the host's UUID, memory sizes and the
        C{<migration_features>} qemud does not offer are set aside.
        """
        from tests.cpudata import TRACE_MICROCODE, TRACE_SIGNATURE, trace_element

        out = virsh_ok(daemon.uri, "capabilities")
        cpu = ET.fromstring(out).find("host/cpu")
        assert cpu is not None
        signature = cpu.find("signature")
        microcode = cpu.find("microcode")
        here = (tuple(int(signature.get(k, "-1")) for k in ("family", "model", "stepping"))
                if signature is not None else None,
                int(microcode.get("version", "0")) if microcode is not None else None)
        if here != (TRACE_SIGNATURE, TRACE_MICROCODE):
            pytest.skip(f"not the traced machine type: (signature, microcode) = {here}")

        def normal(text: str) -> str:
            text = re.sub(r"frequency='\d+'", "frequency='F'", text)
            text = re.sub(r"<uuid>[^<]*</uuid>", "<uuid>U</uuid>", text)
            text = re.sub(r"(<memory unit='KiB'>)\d+<", r"\1M<", text)
            text = re.sub(r"(<pages unit='KiB' size='4'>)\d+<", r"\1P<", text)
            return re.sub(r" *<migration_features>\n.*? *</migration_features>\n", "", text,
                          flags=re.S)

        assert normal(trace_element("cpu", out)) == normal(trace_element("cpu"))
        assert normal(trace_element("host", out)) == normal(trace_element("host"))


class ListTableTests:
    """
    C{virsh list --all} prints exactly what it prints against libvirtd.
    """

    def test_list_tables(self, fresh: DaemonProcess) -> None:
        """
        Empty, defined, running and final tables equal the traces, byte
        for byte (the trace's domain rt1 with its uuid, id 1).
        """
        assert virsh_ok(fresh.uri, "list", "--all") == trace_output("list-all-empty.txt")
        define_noos(fresh, "rt1", uuid=RT1_UUID)
        assert virsh_ok(fresh.uri, "list", "--all") == trace_output("list-all-defined.txt")
        virsh_ok(fresh.uri, "start", "rt1")
        assert virsh_ok(fresh.uri, "list", "--all") == trace_output("list-all-running.txt")
        assert virsh_ok(fresh.uri, "list") == trace_output("list-all-running.txt")
        assert virsh_ok(fresh.uri, "domid", "rt1") == trace_output("domid-running.txt")
        assert virsh_ok(fresh.uri, "domname", "1") == trace_output("domname-by-id.txt")
        assert virsh_ok(fresh.uri, "domname", RT1_UUID) == trace_output("domname-by-uuid.txt")
        assert virsh_ok(fresh.uri, "domuuid", "rt1") == trace_output("domuuid.txt")
        virsh_ok(fresh.uri, "destroy", "rt1")
        assert virsh_ok(fresh.uri, "domid", "rt1") == trace_output("domid-inactive.txt")
        virsh_ok(fresh.uri, "undefine", "rt1")
        assert virsh_ok(fresh.uri, "list", "--all") == trace_output("list-all-final.txt")

    def test_dominfo_exact(self, fresh: DaemonProcess) -> None:
        """
        C{virsh dominfo} prints libvirtd's field lines, inactive and running
        (CPU time only while running; no taint message required).
        """
        define_noos(fresh, "rt1", uuid=RT1_UUID)
        assert virsh_ok(fresh.uri, "dominfo", "rt1") == trace_output("dominfo-inactive.txt")
        virsh_ok(fresh.uri, "start", "rt1")
        got = virsh_ok(fresh.uri, "dominfo", "rt1").splitlines()
        want = [line for line in trace_output("dominfo-running.txt").splitlines()
                if not line.startswith("Messages:")]
        cpu = [line for line in got if line.startswith("CPU time:")]
        assert len(cpu) == 1 and cpu[0].endswith("s")
        float(cpu[0].split()[-1][:-1])
        assert [cpu[0] if x.startswith("CPU time:") else x for x in want] == got
        virsh_ok(fresh.uri, "destroy", "rt1")


class LifecycleTests:
    """
    define, start, suspend, resume, reset, destroy, create, undefine: what
    virsh prints and the states and reasons it reports afterwards.
    """

    def test_define_start_destroy_undefine(self, daemon: DaemonProcess) -> None:
        """
        Each command prints libvirtd's message; domstate follows with
        libvirt's reasons.
        """
        name = unique()
        path = os.path.join(daemon.root, name + ".xml")
        with open(path, "w") as f:
            f.write(noos_guest_domain_xml(name))
        out = virsh_ok(daemon.uri, "define", path)
        assert out == expected("define.txt", name).replace("xml/rt1.xml", path)
        assert daemon.domstate(name) == "shut off (unknown)"
        assert daemon.domstate(name, reason=False) == "shut off"
        assert virsh_ok(daemon.uri, "start", name) == expected("start.txt", name)
        assert daemon.domstate(name) == "running (booted)"
        assert daemon.domstate(name, reason=False) == "running"
        assert virsh_ok(daemon.uri, "destroy", name) == expected("destroy.txt", name)
        assert daemon.domstate(name) == "shut off (destroyed)"
        assert virsh_ok(daemon.uri, "undefine", name) == expected("undefine.txt", name)
        proc = virsh(daemon.uri, "domstate", name)
        assert proc.returncode == 1

    def test_suspend_resume(self, daemon: DaemonProcess) -> None:
        """
        suspend → "paused (user)"; resume → "running (unpaused)".
        """
        name = define_noos(daemon, start=True)
        assert virsh_ok(daemon.uri, "suspend", name) == expected("suspend.txt", name)
        assert daemon.domstate(name) == "paused (user)"
        assert virsh_ok(daemon.uri, "list", "--all").splitlines()[2].split()[2] in ("paused",)
        assert virsh_ok(daemon.uri, "resume", name) == expected("resume.txt", name)
        assert daemon.domstate(name) == "running (unpaused)"
        virsh_ok(daemon.uri, "destroy", name)
        virsh_ok(daemon.uri, "undefine", name)

    def test_reset(self, daemon: DaemonProcess) -> None:
        """
        reset prints "was reset" and leaves the guest running with the same id.
        """
        name = define_noos(daemon, start=True)
        domid = virsh_ok(daemon.uri, "domid", name).strip()
        assert virsh_ok(daemon.uri, "reset", name) == expected("reset.txt", name)
        assert daemon.domstate(name, reason=False) == "running"
        assert virsh_ok(daemon.uri, "domid", name).strip() == domid
        virsh_ok(daemon.uri, "destroy", name)
        virsh_ok(daemon.uri, "undefine", name)

    def test_create_transient(self, daemon: DaemonProcess) -> None:
        """
        create starts a transient guest: listed while running, not
        persistent, gone from list --all after destroy.
        """
        name = unique("tr")
        path = os.path.join(daemon.root, name + ".xml")
        with open(path, "w") as f:
            f.write(noos_guest_domain_xml(name))
        out = virsh_ok(daemon.uri, "create", path)
        assert out == expected("create.txt", name).replace("'tr2'", f"'{name}'").replace(
            "xml/tr2.xml", path)
        assert name in virsh_ok(daemon.uri, "list", "--all")
        assert "Persistent:     no" in virsh_ok(daemon.uri, "dominfo", name)
        assert daemon.domstate(name) == "running (booted)"
        out = virsh_ok(daemon.uri, "destroy", name)
        assert out == f"Domain '{name}' destroyed\n\n"
        assert name not in virsh_ok(daemon.uri, "list", "--all")
        assert virsh(daemon.uri, "dominfo", name).returncode == 1

    def test_ids_and_names(self, daemon: DaemonProcess) -> None:
        """
        domid, domuuid and domname (by id and by uuid) agree with each other
        and with dominfo.
        """
        name = define_noos(daemon, start=True)
        domid = virsh_ok(daemon.uri, "domid", name).strip()
        uuid = virsh_ok(daemon.uri, "domuuid", name).strip()
        assert int(domid) > 0
        assert virsh_ok(daemon.uri, "domname", domid) == f"{name}\n\n"
        assert virsh_ok(daemon.uri, "domname", uuid) == f"{name}\n\n"
        assert virsh_ok(daemon.uri, "domuuid", domid).strip() == uuid
        info = virsh_ok(daemon.uri, "dominfo", domid)
        assert f"Id:             {domid}\n" in info and f"UUID:           {uuid}\n" in info
        virsh_ok(daemon.uri, "destroy", name)
        assert virsh_ok(daemon.uri, "domid", name) == "-\n\n"
        assert virsh(daemon.uri, "domname", domid).returncode == 1
        virsh_ok(daemon.uri, "undefine", name)

    def test_dumpxml(self, daemon: DaemonProcess) -> None:
        """
        dumpxml of a running guest carries id= and device aliases; --inactive
        and the XML of a stopped guest carry neither.
        """
        name = define_noos(daemon, serial=True)
        inactive = virsh_ok(daemon.uri, "dumpxml", name)
        root = ET.fromstring(inactive)
        assert root.get("id") is None and root.findtext("name") == name
        virsh_ok(daemon.uri, "start", name)
        domid = virsh_ok(daemon.uri, "domid", name).strip()
        live = ET.fromstring(virsh_ok(daemon.uri, "dumpxml", name))
        assert live.get("id") == domid
        assert live.findall(".//alias"), "no <alias> in the running XML"
        again = ET.fromstring(virsh_ok(daemon.uri, "dumpxml", "--inactive", name))
        assert again.get("id") is None and not again.findall(".//alias")
        assert virsh_ok(daemon.uri, "dumpxml", "--inactive", name) == inactive
        virsh_ok(daemon.uri, "destroy", name)
        virsh_ok(daemon.uri, "undefine", name)

    def test_autostart(self, daemon: DaemonProcess) -> None:
        """
        autostart / autostart --disable print libvirtd's messages and show
        in dominfo and in list --all --autostart / --no-autostart.
        """
        name = define_noos(daemon)
        assert virsh_ok(daemon.uri, "autostart", name) == expected("autostart.txt", name)
        assert "Autostart:      enable\n" in virsh_ok(daemon.uri, "dominfo", name)
        assert name in virsh_ok(daemon.uri, "list", "--all", "--autostart")
        assert name not in virsh_ok(daemon.uri, "list", "--all", "--no-autostart")
        out = virsh_ok(daemon.uri, "autostart", "--disable", name)
        assert out == expected("autostart-disable.txt", name)
        assert "Autostart:      disable\n" in virsh_ok(daemon.uri, "dominfo", name)
        assert name not in virsh_ok(daemon.uri, "list", "--all", "--autostart")
        assert name in virsh_ok(daemon.uri, "list", "--all", "--no-autostart")
        virsh_ok(daemon.uri, "undefine", name)

    def test_undefine_running(self, daemon: DaemonProcess) -> None:
        """
        undefine of a running guest leaves it running but transient; it
        vanishes once destroyed.
        """
        name = define_noos(daemon, start=True)
        virsh_ok(daemon.uri, "undefine", name)
        assert daemon.domstate(name) == "running (booted)"
        assert "Persistent:     no" in virsh_ok(daemon.uri, "dominfo", name)
        virsh_ok(daemon.uri, "destroy", name)
        assert name not in virsh_ok(daemon.uri, "list", "--all")

    def test_session_lifecycle(self, session_daemon: DaemonProcess) -> None:
        """
        The session layout runs the same define/start/destroy/undefine.
        """
        name = define_noos(session_daemon, start=True)
        assert session_daemon.domstate(name) == "running (booted)"
        virsh_ok(session_daemon.uri, "destroy", name)
        virsh_ok(session_daemon.uri, "undefine", name)

    def test_tcp_lifecycle(self, daemon: DaemonProcess) -> None:
        """
        Over plain TCP on loopback: define, start, list, destroy, undefine.
        """
        name = unique()
        path = os.path.join(daemon.root, name + ".xml")
        with open(path, "w") as f:
            f.write(noos_guest_domain_xml(name))
        uri = daemon.tcp_uri()
        virsh_ok(uri, "define", path)
        virsh_ok(uri, "start", name)
        assert "running" in virsh_ok(uri, "list").split(name, 1)[1].splitlines()[0]
        virsh_ok(uri, "destroy", name)
        virsh_ok(uri, "undefine", name)


class ErrorTests:
    """
    Failures exit 1 with libvirtd's messages.
    """

    def test_unknown_domain(self, daemon: DaemonProcess) -> None:
        """
        A name nobody defined: exit 1 and virsh's lookup error, as with
        libvirtd (virsh 9.0 prints only the "failed to get domain" line).
        """
        for command in ("dominfo", "start", "domstate", "destroy"):
            proc = virsh(daemon.uri, command, "nosuch")
            assert proc.returncode == 1
            assert combined(proc) == expected("error-no-domain.txt").strip().replace(
                "nosuchdomain", "nosuch")

    def test_start_running(self, daemon: DaemonProcess) -> None:
        """
        start of a running guest fails: virsh 9.0 sees the id from the
        lookup and says "Domain is already active" as against libvirtd (the
        daemon's own "domain is already running" error is checked through
        libvirt-python and through C{create} of a running name).
        """
        name = define_noos(daemon, start=True)
        proc = virsh(daemon.uri, "start", name)
        assert proc.returncode == 1
        assert combined(proc) == "error: Domain is already active"
        virsh_ok(daemon.uri, "destroy", name)
        virsh_ok(daemon.uri, "undefine", name)

    def test_stopped_operations(self, daemon: DaemonProcess) -> None:
        """
        destroy/suspend of a stopped guest: "domain is not running".
        """
        name = define_noos(daemon)
        for command in ("destroy", "suspend", "resume", "reset"):
            proc = virsh(daemon.uri, command, name)
            assert proc.returncode == 1, command
            assert "Requested operation is not valid: domain is not running" in proc.stderr
        virsh_ok(daemon.uri, "undefine", name)

    def test_define_bad_xml(self, daemon: DaemonProcess) -> None:
        """
        Unparsable XML and XML without a name are refused with an XML error
        that says what is wrong.
        """
        bad = os.path.join(daemon.root, "bad.xml")
        with open(bad, "w") as f:
            f.write("<domain type='kvm'><name>x</name><memory>")
        proc = virsh(daemon.uri, "define", bad)
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"error: Failed to define domain from {bad}\n")
        assert "XML" in proc.stderr or "xml" in proc.stderr
        noname = os.path.join(daemon.root, "noname.xml")
        with open(noname, "w") as f:
            f.write("<domain type='kvm'><memory unit='MiB'>64</memory>"
                    "<os><type>hvm</type></os></domain>")
        proc = virsh(daemon.uri, "define", noname)
        assert proc.returncode == 1
        assert "name" in proc.stderr.lower()

    def test_define_same_name_other_uuid(self, daemon: DaemonProcess) -> None:
        """
        Defining an existing name with a different uuid is refused, and the
        original definition stays.
        """
        name = define_noos(daemon, uuid="11111111-2222-3333-4444-555555555555")
        path = os.path.join(daemon.root, name + "-2.xml")
        with open(path, "w") as f:
            f.write(with_uuid(noos_guest_domain_xml(name), "99999999-2222-3333-4444-555555555555"))
        proc = virsh(daemon.uri, "define", path)
        assert proc.returncode == 1
        assert "already exists" in proc.stderr or "already defined" in proc.stderr
        assert virsh_ok(daemon.uri, "domuuid", name).strip() == \
            "11111111-2222-3333-4444-555555555555"
        virsh_ok(daemon.uri, "undefine", name)


MUTATING = [
    ("start", "Failed to start domain"),
    ("destroy", "Failed to destroy domain"),
    ("suspend", "Failed to suspend domain"),
    ("resume", "Failed to resume domain"),
    ("reset", "Failed to reset domain"),
    ("shutdown", "Failed to shutdown domain"),
    ("reboot", "Failed to reboot domain"),
    ("undefine", "Failed to undefine domain"),
    ("autostart", "Failed to mark domain"),
    ("autostart --disable", "Failed to unmark domain"),
]


class ReadOnlyTests:
    """
    Read-only connections refuse every change and allow every query.
    """

    @pytest.fixture(params=["ro-socket", "ro-socket-r", "rw-socket-r", "tcp-r"])
    def ro(self, request: Any, daemon: DaemonProcess) -> tuple[str, bool]:
        """(URI, pass -r): the ro socket with and without -r, and -r on rw/TCP."""
        return {
            "ro-socket": (daemon.ro_uri, False),
            "ro-socket-r": (daemon.ro_uri, True),
            "rw-socket-r": (daemon.uri, True),
            "tcp-r": (daemon.tcp_uri(), True),
        }[request.param]

    def test_mutations_refused(self, daemon: DaemonProcess, ro: tuple[str, bool]) -> None:
        """
        start, destroy, suspend, resume, reset, shutdown, reboot, undefine,
        autostart, define and create fail with "read only access", and the
        guests are untouched.
        """
        uri, flag = ro
        stopped = define_noos(daemon)
        running = define_noos(daemon, start=True)
        for command, failure in MUTATING:
            target = stopped if command == "start" else running
            proc = virsh(uri, *command.split(), target, readonly=flag)
            assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
            assert failure in proc.stderr, (command, proc.stderr)
            assert "read only access" in proc.stderr, (command, proc.stderr)
        path = os.path.join(daemon.root, unique("ro") + ".xml")
        with open(path, "w") as f:
            f.write(noos_guest_domain_xml(os.path.basename(path)[:-4]))
        for command in ("define", "create"):
            proc = virsh(uri, command, path, readonly=flag)
            assert proc.returncode == 1, command
            assert "read only access" in proc.stderr, (command, proc.stderr)
        assert daemon.domstate(stopped, reason=False) == "shut off"
        assert daemon.domstate(running) == "running (booted)"
        assert "Autostart:      disable" in virsh_ok(daemon.uri, "dominfo", running)
        virsh_ok(daemon.uri, "destroy", running)
        for name in (stopped, running):
            virsh_ok(daemon.uri, "undefine", name)

    def test_server_side_message(self, daemon: DaemonProcess) -> None:
        """
        The ro socket without -r: the daemon itself refuses, with
        libvirtd's exact message.
        """
        name = define_noos(daemon)
        proc = virsh(daemon.ro_uri, "start", name)
        assert proc.returncode == 1
        assert combined(proc) == expected("unix-ro-socket-start-denied-serverside.txt",
                                          name).strip()
        virsh_ok(daemon.uri, "undefine", name)

    def test_queries_allowed(self, daemon: DaemonProcess, ro: tuple[str, bool]) -> None:
        """
        list, dominfo, domstate, dumpxml, domid, domuuid work read-only.
        """
        uri, flag = ro
        name = define_noos(daemon, start=True)
        for args in (("list", "--all"), ("dominfo", name), ("domstate", "--reason", name),
                     ("dumpxml", name), ("dumpxml", "--inactive", name), ("domid", name),
                     ("domuuid", name), ("version",), ("hostname",), ("nodeinfo",)):
            proc = virsh(uri, *args, readonly=flag)
            assert proc.returncode == 0, (args, proc.stderr)
        assert name in virsh(uri, "list", readonly=flag).stdout
        virsh_ok(daemon.uri, "destroy", name)
        virsh_ok(daemon.uri, "undefine", name)


class EventTests:
    """
    C{virsh event --all --loop} sees what a libvirtd user would see.
    """

    def test_lifecycle_events(self, daemon: DaemonProcess) -> None:
        """
        While another virsh defines, starts, suspends, resumes and destroys
        a guest, the event loop prints each lifecycle event in order and
        exits 0 at its timeout with the count.
        """
        name = unique("ev")
        path = os.path.join(daemon.root, name + ".xml")
        with open(path, "w") as f:
            f.write(with_uuid(noos_guest_domain_xml(name), "0e0e0e0e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"))
        out_path = os.path.join(daemon.root, name + ".events")
        with open(out_path, "w") as out:
            proc = subprocess.Popen(
                ["stdbuf", "-oL", VIRSH, "-c", daemon.uri, "event", "--all", "--loop",
                 "--timeout", "10"],
                stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        try:
            def mine() -> list[str]:
                return [line for line in event_lines(out_path) if f"domain '{name}'" in line]

            def registered() -> bool:
                # Redefine until the loop has seen one: it is subscribed then.
                virsh_ok(daemon.uri, "define", path)
                return bool(mine())

            wait_until(registered, 8, interval=0.2, message="first event")
            virsh_ok(daemon.uri, "start", name)
            virsh_ok(daemon.uri, "suspend", name)
            virsh_ok(daemon.uri, "resume", name)
            virsh_ok(daemon.uri, "destroy", name)
            wait_until(lambda: any("Stopped Destroyed" in x for x in mine()), 8,
                       message="destroy event")
            rc = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        virsh_ok(daemon.uri, "undefine", name)
        with open(out_path) as f:
            text = f.read()
        assert rc == 0, text
        prefix = f"event 'lifecycle' for domain '{name}': "
        seen = [line[len(prefix):] for line in mine()]
        assert all(x.startswith("Defined ") for x in seen[:1])
        seen = [x for x in seen if not x.startswith("Defined ")]
        # libvirtd also sends "Resumed Unpaused" just before "Started Booted",
        # and "Shutdown Finished after host request" just before "Stopped
        # Destroyed" (QEMU reports the SIGTERM); both are optional here.
        if seen and seen[0] == "Resumed Unpaused":
            seen = seen[1:]
        seen = [x for i, x in enumerate(seen)
                if not (x == "Shutdown Finished after host request"
                        and seen[i + 1:i + 2] == ["Stopped Destroyed"])]
        assert seen == ["Started Booted", "Suspended Paused", "Resumed Unpaused",
                        "Stopped Destroyed"], text
        count = len(event_lines(out_path))
        assert text.endswith(f"event loop timed out\nevents received: {count}\n\n"), text


class GracefulTests:
    """
    Graceful shutdown and reboot with the tiny Linux guest (TCG).
    """

    def _boot(self, daemon: DaemonProcess, image: Any) -> tuple[str, str, int]:
        name = unique("lx")
        serial = os.path.join(daemon.root, name + ".serial")
        daemon.define(linux_guest_domain_xml(name, image, serial_log=serial), name)
        virsh_ok(daemon.uri, "start", name)
        offset = wait_for_serial(serial, "GUEST-READY", 90)
        return name, serial, offset

    def test_shutdown(self, daemon: DaemonProcess, linux_guest_image: Any) -> None:
        """
        virsh shutdown presses the power button: the guest powers off and
        domstate --reason becomes "shut off (shutdown)".
        """
        name, serial, _ = self._boot(daemon, linux_guest_image)
        assert virsh_ok(daemon.uri, "shutdown", name) == expected("shutdown.txt", name)
        daemon.wait_state(name, "shut off (shutdown)", 60)
        assert "GUEST-POWEROFF" in open(serial, errors="replace").read()
        virsh_ok(daemon.uri, "undefine", name)

    def test_reboot(self, daemon: DaemonProcess, linux_guest_image: Any) -> None:
        """
        virsh reboot makes the guest boot again (GUEST-READY a second time)
        while the domain stays running with the same id.
        """
        name, serial, offset = self._boot(daemon, linux_guest_image)
        domid = virsh_ok(daemon.uri, "domid", name)
        assert virsh_ok(daemon.uri, "reboot", name) == expected("reboot.txt", name)
        wait_for_serial(serial, "GUEST-READY", 90, after_offset=offset)
        assert daemon.domstate(name, reason=False) == "running"
        assert virsh_ok(daemon.uri, "domid", name) == domid
        virsh_ok(daemon.uri, "destroy", name)
        virsh_ok(daemon.uri, "undefine", name)
