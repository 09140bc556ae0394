# -*- test-case-name: tests.qemu.test_caps -*-
"""
What a QEMU binary can do, probed once and kept as a pure value.

L{probe} runs the binary a few times (C{-version}, C{-machine help},
C{-accel help}, C{-cpu help}, C{-device help}, C{-help} and one short QMP
session over stdio with C{-machine none}), all at once, and turns the output
into a frozen L{QemuCaps}.  L{CapsCache} keeps one per (path, mtime), so a
binary upgraded in place is probed again.  Probing is synchronous: it runs at
daemon start-up or on first use of a binary and takes a few tens of
milliseconds.

L{QemuCaps} round-trips through JSON (L{QemuCaps.to_dict} /
L{QemuCaps.from_dict}); the test suite builds command lines under recorded
probes (C{tests/data/caps/*.json}), never the installed QEMU.

The host-dependent parts live here too: L{check_kvm_usable} (can C{/dev/kvm}
be opened read-write), L{host_native_archs}, L{find_emulator} (which binary
runs a domain) and L{capabilities_xml} (C{virsh capabilities}).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from qemud.domain.model import Domain
from qemud.domain.xml import escape_attribute, escape_text
from qemud.errors import ConfigUnsupportedError, HostSystemError

__all__ = [
    "BINARY_FOR_ARCH",
    "CacheBank",
    "CapsCache",
    "CellCPU",
    "HostCPU",
    "HostCaps",
    "NUMACell",
    "QemuCaps",
    "SecModel",
    "TSCCounter",
    "arch_of_binary",
    "capabilities_xml",
    "check_kvm_usable",
    "find_emulator",
    "host_native_archs",
    "parse_accel_help",
    "parse_cpu_help",
    "parse_device_help",
    "libvirt_machine_order",
    "parse_machine_help",
    "parse_version",
    "probe",
]

# libvirt arch name -> the QEMU system emulator that runs it.
BINARY_FOR_ARCH: Mapping[str, str] = {
    "i686": "qemu-system-i386",
    "i386": "qemu-system-i386",
    "x86_64": "qemu-system-x86_64",
    "aarch64": "qemu-system-aarch64",
    "armv7l": "qemu-system-arm",
    "armv6l": "qemu-system-arm",
    "arm": "qemu-system-arm",
    "ppc64": "qemu-system-ppc64",
    "ppc64le": "qemu-system-ppc64",
    "ppc": "qemu-system-ppc",
    "riscv64": "qemu-system-riscv64",
    "riscv32": "qemu-system-riscv32",
    "s390x": "qemu-system-s390x",
    "mips": "qemu-system-mips",
    "mipsel": "qemu-system-mipsel",
    "mips64": "qemu-system-mips64",
    "mips64el": "qemu-system-mips64el",
    "sparc": "qemu-system-sparc",
    "sparc64": "qemu-system-sparc64",
}

# QEMU target name (the binary's suffix) -> libvirt's arch name.
_ARCH_FOR_TARGET: Mapping[str, str] = {
    "i386": "i686",
    "arm": "armv7l",
}

# Word size of each arch, for <wordsize> in the capabilities XML.
_WORDSIZE: Mapping[str, int] = {
    "i686": 32,
    "armv7l": 32,
    "armv6l": 32,
    "ppc": 32,
    "riscv32": 32,
    "mips": 32,
    "mipsel": 32,
    "sparc": 32,
}

# Host arch -> guest archs its KVM runs natively.
_NATIVE: Mapping[str, frozenset[str]] = {
    "x86_64": frozenset({"x86_64", "i686"}),
    "i686": frozenset({"i686"}),
    "aarch64": frozenset({"aarch64", "armv7l"}),
    "ppc64le": frozenset({"ppc64le", "ppc64"}),
    "ppc64": frozenset({"ppc64", "ppc64le"}),
    "s390x": frozenset({"s390x"}),
    "riscv64": frozenset({"riscv64"}),
}

PROBE_TIMEOUT = 10.0
"""Seconds one probe of one binary may take before it is abandoned."""


def host_arch() -> str:
    """
    @return: the host's architecture in libvirt's spelling (C{x86_64}, C{i686}, ...).
    """
    machine = platform.machine()
    if machine in ("i386", "i486", "i586"):
        return "i686"
    if machine == "amd64":
        return "x86_64"
    if machine == "arm64":
        return "aarch64"
    return machine


def host_native_archs(host: str | None = None) -> frozenset[str]:
    """
    @param host: the host arch; C{None} for this machine's.
    @return: the guest archs KVM on that host can run without emulation.
    """
    arch = host if host is not None else host_arch()
    return _NATIVE.get(arch, frozenset({arch}))


def arch_of_binary(binary: str) -> str:
    """
    @param binary: a path such as C{/usr/bin/qemu-system-x86_64}.
    @return: the guest arch it emulates, in libvirt's spelling (C{i686} for
        C{qemu-system-i386}).
    @raise ConfigUnsupportedError: the name is not C{qemu-system-TARGET[-...]}.
    """
    name = os.path.basename(binary)
    match = re.match(r"qemu-system-([a-z0-9_]+)", name)
    if match is None:
        if name in ("qemu-kvm", "kvm"):
            return host_arch()
        raise ConfigUnsupportedError(
            f"cannot tell the guest architecture of emulator '{binary}'")
    target = match.group(1)
    return _ARCH_FOR_TARGET.get(target, target)


def check_kvm_usable(device: str = "/dev/kvm") -> str | None:
    """
    Find out whether this process can use KVM.

    @param device: the KVM device node.
    @return: C{None} when C{device} opens read-write, otherwise why not
        (e.g. C{"/dev/kvm: Permission denied"}).
    """
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return f"{device}: {err.strerror}"
    os.close(fd)
    return None


@dataclass(frozen=True)
class QemuCaps:
    """
    The capabilities of one QEMU binary: a pure value.

    @ivar binary: absolute path of the emulator.
    @ivar version: C{(major, minor, micro)}.
    @ivar arch: the guest arch it emulates, libvirt's spelling.
    @ivar machines: canonical machine type names in libvirt's order (the default
        first, then as QEMU's C{query-machines} lists them).
    @ivar default_machine: the canonical name of the default machine, if any.
    @ivar machine_aliases: alias -> canonical name (C{pc} -> C{pc-i440fx-7.2}).
    @ivar machine_max_cpus: canonical name -> most vCPUs it takes (from QMP).
    @ivar deprecated_machines: canonical names QEMU marks deprecated.
    @ivar accelerators: C{tcg}, C{kvm}, ... as the binary lists them.
    @ivar cpu_models: named CPU models (C{-cpu help}).
    @ivar devices: device names and aliases (C{-device help}).
    @ivar has_sandbox: whether C{-sandbox} (seccomp) is built in.
    @ivar kvm_problem: C{None} when this binary can run C{type='kvm'}
        guests on this host; otherwise why it cannot.
    """

    binary: str
    version: tuple[int, int, int]
    arch: str
    machines: tuple[str, ...]
    default_machine: str | None
    machine_aliases: Mapping[str, str]
    accelerators: tuple[str, ...]
    cpu_models: tuple[str, ...]
    has_sandbox: bool
    kvm_problem: str | None = "not probed"
    devices: frozenset[str] = frozenset()
    machine_max_cpus: Mapping[str, int] = field(default_factory=dict)
    deprecated_machines: frozenset[str] = frozenset()

    @property
    def kvm_usable(self) -> bool:
        """
        @return: whether C{type='kvm'} guests can run with this binary here.
        """
        return self.kvm_problem is None

    @property
    def has_kvm(self) -> bool:
        """
        @return: the same as L{kvm_usable} (the name C{docs/internals.md} uses).
        """
        return self.kvm_usable

    def supports_machine(self, name: str) -> bool:
        """
        @param name: a machine type name or alias.
        @return: whether the binary knows it.
        """
        return name in self.machine_aliases or name in self.machines

    def canonical_machine(self, name: str | None) -> str:
        """
        Resolve a machine type the way libvirt does.

        @param name: a name (C{pc-i440fx-7.2}), an alias (C{pc}, C{q35}) or
            C{None} for the binary's default.
        @return: the canonical (versioned) name.
        @raise ConfigUnsupportedError: the binary has no such machine, or no
            default when C{name} is C{None}.
        """
        if name is None:
            if self.default_machine is None:
                raise ConfigUnsupportedError(
                    f"Emulator '{self.binary}' has no default machine type; "
                    "name one in <os><type machine=...>")
            return self.default_machine
        if name in self.machine_aliases:
            return self.machine_aliases[name]
        if name in self.machines:
            return name
        raise ConfigUnsupportedError(
            f"Emulator '{self.binary}' does not support machine type '{name}'")

    def has_device(self, driver: str) -> bool:
        """
        @param driver: a C{-device} driver name.
        @return: whether the binary has it (C{True} when devices were not probed).
        """
        return not self.devices or driver in self.devices

    def to_dict(self) -> dict[str, Any]:
        """
        @return: a JSON-ready dict, the inverse of L{from_dict}.
        """
        return {
            "binary": self.binary,
            "version": list(self.version),
            "arch": self.arch,
            "machines": list(self.machines),
            "default_machine": self.default_machine,
            "machine_aliases": dict(sorted(self.machine_aliases.items())),
            "machine_max_cpus": dict(self.machine_max_cpus),
            "deprecated_machines": sorted(self.deprecated_machines),
            "accelerators": list(self.accelerators),
            "cpu_models": list(self.cpu_models),
            "devices": sorted(self.devices),
            "has_sandbox": self.has_sandbox,
            "kvm_problem": self.kvm_problem,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QemuCaps:
        """
        @param data: what L{to_dict} produced (e.g. loaded from a JSON fixture).
        @return: the caps it describes.
        @raise InvalidArgError: a required key is missing or has the wrong type.
        """
        from qemud.errors import InvalidArgError

        try:
            version = tuple(int(v) for v in data["version"])
            if len(version) != 3:
                raise ValueError("version needs three numbers")
            return cls(
                binary=str(data["binary"]),
                version=(version[0], version[1], version[2]),
                arch=str(data["arch"]),
                machines=tuple(str(m) for m in data["machines"]),
                default_machine=(None if data.get("default_machine") is None
                                 else str(data["default_machine"])),
                machine_aliases={str(k): str(v) for k, v in data["machine_aliases"].items()},
                machine_max_cpus={str(k): int(v)
                                  for k, v in data.get("machine_max_cpus", {}).items()},
                deprecated_machines=frozenset(str(m)
                                              for m in data.get("deprecated_machines", ())),
                accelerators=tuple(str(a) for a in data["accelerators"]),
                cpu_models=tuple(str(c) for c in data["cpu_models"]),
                devices=frozenset(str(d) for d in data.get("devices", ())),
                has_sandbox=bool(data["has_sandbox"]),
                kvm_problem=(None if data.get("kvm_problem") is None
                             else str(data["kvm_problem"])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InvalidArgError(f"malformed QEMU capabilities record: {err!r}") from err

    def to_json(self) -> str:
        """
        @return: L{to_dict} as indented, key-sorted JSON text.
        """
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> QemuCaps:
        """
        @param text: what L{to_json} produced.
        @return: the caps it describes.
        """
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------- parsers

def parse_version(text: str) -> tuple[int, int, int]:
    """
    @param text: C{qemu-system-* -version} output.
    @return: C{(major, minor, micro)}.
    @raise HostSystemError: no version in the text.
    """
    match = re.search(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        raise HostSystemError(f"cannot parse QEMU version from {text[:200]!r}")
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def libvirt_machine_order(machines: Sequence[str], listed: Sequence[str],
                          default: str | None) -> tuple[str, ...]:
    """
    The order libvirt keeps machine types in (and prints them in
    capabilities): the default first, then as C{query-machines} lists them,
    then any that only C{-machine help} showed.

    @param machines: the canonical names, as C{-machine help} lists them.
    @param listed: the names in C{query-machines} order.
    @param default: the canonical default machine, if any.
    @return: C{machines}, reordered.
    """
    known = set(machines)
    first = [default] if default in known else []
    ordered = first + [name for name in listed if name in known and name not in first]
    return tuple(ordered + [name for name in machines if name not in set(ordered)])


def parse_machine_help(text: str) -> tuple[tuple[str, ...], str | None, dict[str, str]]:
    """
    @param text: C{-machine help} output.
    @return: (canonical names in listed order, canonical default, alias -> canonical).
    """
    machines: list[str] = []
    aliases: dict[str, str] = {}
    default: str | None = None
    alias_of: dict[str, bool] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("Supported machines"):
            continue
        parts = line.split(None, 1)
        name, desc = parts[0], (parts[1] if len(parts) > 1 else "")
        match = re.search(r"\(alias of ([^)]+)\)", desc)
        is_default = "(default)" in desc
        if match is not None:
            aliases[name] = match.group(1)
            alias_of[name] = is_default
        else:
            machines.append(name)
            if is_default:
                default = name
    for alias, was_default in alias_of.items():
        if was_default:
            default = aliases[alias]
    return tuple(machines), default, aliases


def parse_accel_help(text: str) -> tuple[str, ...]:
    """
    @param text: C{-accel help} output.
    @return: accelerator names (C{tcg}, C{kvm}, ...).
    """
    return tuple(line.strip() for line in text.splitlines()
                 if line.strip() and not line.endswith(":") and " " not in line.strip())


def parse_cpu_help(text: str) -> tuple[str, ...]:
    """
    @param text: C{-cpu help} output.
    @return: CPU model names in listed order (the C{x86 NAME} lines, or the
        first word of each entry for other targets), without the feature list.
    """
    models: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            if models:
                break
            continue
        if line.startswith(("Available CPUs", " ", "\t")) or line.endswith(":"):
            continue
        words = line.split()
        name = words[1] if len(words) > 1 and words[0] in ("x86", "s390", "ppc") else words[0]
        name = name.strip("'")
        if name not in models:
            models.append(name)
    return tuple(models)


def parse_device_help(text: str) -> frozenset[str]:
    """
    @param text: C{-device help} output.
    @return: every device name and alias.
    """
    names: set[str] = set()
    for match in re.finditer(r'name "([^"]+)"(?:, bus [^,\n]+)?(?:, alias "([^"]+)")?', text):
        names.add(match.group(1))
        if match.group(2):
            names.add(match.group(2))
    return frozenset(names)


_QMP_SCRIPT = (
    b'{"execute":"qmp_capabilities"}\n'
    b'{"execute":"query-machines","id":"machines"}\n'
    b'{"execute":"query-command-line-options","arguments":{"option":"sandbox"},"id":"sandbox"}\n'
    b'{"execute":"quit"}\n'
)


def _parse_qmp_probe(text: str) -> tuple[dict[str, int], frozenset[str], bool | None]:
    """
    @param text: stdout of the QMP-over-stdio probe.
    @return: (max vCPUs per machine, in the order C{query-machines} lists
        them; deprecated machines; sandbox built in, C{None} when QMP did
        not answer that question).
    """
    max_cpus: dict[str, int] = {}
    deprecated: set[str] = set()
    sandbox: bool | None = None
    for line in text.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict):
            continue
        if message.get("id") == "machines" and isinstance(message.get("return"), list):
            for machine in message["return"]:
                max_cpus[machine["name"]] = int(machine.get("cpu-max", 1))
                if machine.get("deprecated"):
                    deprecated.add(machine["name"])
        elif message.get("id") == "sandbox":
            sandbox = "return" in message
    return max_cpus, frozenset(deprecated), sandbox


# ---------------------------------------------------------------- probing

def probe(binary: str, *, kvm_device: str = "/dev/kvm",
          host: str | None = None, timeout: float = PROBE_TIMEOUT) -> QemuCaps:
    """
    Run the probes of one binary concurrently and build its caps.

    @param binary: path of a C{qemu-system-*} binary.
    @param kvm_device: the KVM device node to try.
    @param host: the host arch (C{None}: this machine's).
    @param timeout: seconds for all probes together.
    @return: the binary's capabilities.
    @raise HostSystemError: the binary cannot be run or its output parsed.
    """
    commands: dict[str, list[str]] = {
        "version": ["-version"],
        "machine": ["-machine", "help"],
        "accel": ["-accel", "help"],
        "cpu": ["-cpu", "help"],
        "device": ["-device", "help"],
        "help": ["-help"],
        "qmp": ["-machine", "none", "-accel", "tcg", "-nodefaults", "-display", "none",
                "-no-user-config", "-qmp", "stdio"],
    }
    env = {"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    outputs: dict[str, str] = {}
    try:
        for key, args in commands.items():
            procs[key] = subprocess.Popen(
                [binary, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=env, close_fds=True)
        deadline = time.monotonic() + timeout
        for key, proc in procs.items():
            stdin = _QMP_SCRIPT if key == "qmp" else b""
            remaining = max(0.1, deadline - time.monotonic())
            out, _ = proc.communicate(stdin, timeout=remaining)
            outputs[key] = out.decode("utf-8", "replace")
    except OSError as err:
        raise HostSystemError(f"cannot run QEMU binary '{binary}': {err.strerror}") from err
    except subprocess.TimeoutExpired as err:
        raise HostSystemError(
            f"probing QEMU binary '{binary}' took more than {timeout} s") from err
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    version = parse_version(outputs["version"])
    machines, default, aliases = parse_machine_help(outputs["machine"])
    accelerators = parse_accel_help(outputs["accel"])
    max_cpus, deprecated, qmp_sandbox = _parse_qmp_probe(outputs["qmp"])
    machines = libvirt_machine_order(machines, tuple(max_cpus), default)
    has_sandbox = (qmp_sandbox if qmp_sandbox is not None
                   else re.search(r"^-sandbox ", outputs["help"], re.M) is not None)
    arch = arch_of_binary(binary)
    return QemuCaps(
        binary=binary, version=version, arch=arch, machines=machines,
        default_machine=default, machine_aliases=aliases, accelerators=accelerators,
        cpu_models=parse_cpu_help(outputs["cpu"]), devices=parse_device_help(outputs["device"]),
        has_sandbox=has_sandbox, machine_max_cpus=max_cpus, deprecated_machines=deprecated,
        kvm_problem=kvm_problem(binary, arch, accelerators, kvm_device=kvm_device, host=host),
    )


def kvm_problem(binary: str, arch: str, accelerators: Iterable[str], *,
                kvm_device: str = "/dev/kvm", host: str | None = None) -> str | None:
    """
    Why C{type='kvm'} guests cannot run with a binary here, if they cannot.

    @param binary: the emulator path (for the message).
    @param arch: the arch it emulates.
    @param accelerators: what C{-accel help} listed.
    @param kvm_device: the KVM device node.
    @param host: the host arch (C{None}: this machine's).
    @return: C{None} when KVM is usable, else a reason naming what is missing.
    """
    if "kvm" not in accelerators:
        return f"emulator '{binary}' was built without the kvm accelerator"
    native = host_native_archs(host)
    if arch not in native:
        return (f"guest arch '{arch}' cannot run natively on a "
                f"'{host if host is not None else host_arch()}' host")
    device_problem = check_kvm_usable(kvm_device)
    if device_problem is not None:
        return f"KVM is not available ({device_problem})"
    return None


# Bump when what a probe records changes, so that cached probes are redone.
CAPS_CACHE_FORMAT = 2


class CapsCache:
    """
    Probe each binary once; probe again when the file changes.

    With a C{cache_dir} (libvirt keeps one too), probe results survive a
    daemon restart: a restarted daemon does not run QEMU seven times before
    it can answer.  Whether KVM is usable is checked afresh on every load.

    @ivar probe_seconds: how long each probe took, by binary path.
    """

    def __init__(self, *, kvm_device: str = "/dev/kvm", cache_dir: str | None = None) -> None:
        """
        @param kvm_device: the KVM device node the probes try.
        @param cache_dir: where probe results are kept between runs.
        """
        self._kvm_device = kvm_device
        self._cache_dir = cache_dir
        self._entries: dict[str, tuple[tuple[int, int, int], QemuCaps]] = {}
        self.probe_seconds: dict[str, float] = {}

    def get(self, binary: str) -> QemuCaps:
        """
        @param binary: path of the emulator.
        @return: its caps, probed now or taken from the cache.
        @raise ConfigUnsupportedError: the binary does not exist.
        @raise HostSystemError: it cannot be probed.
        """
        try:
            st = os.stat(binary)
        except OSError as err:
            raise ConfigUnsupportedError(
                f"Cannot check QEMU binary {binary}: {err.strerror}") from err
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._entries.get(binary)
        if cached is not None and cached[0] == key:
            return cached[1]
        caps = self._load(binary, key)
        if caps is None:
            started = time.monotonic()
            caps = probe(binary, kvm_device=self._kvm_device)
            self.probe_seconds[binary] = time.monotonic() - started
            self._save(binary, key, caps)
        self._entries[binary] = (key, caps)
        return caps

    def _cache_file(self, binary: str) -> str | None:
        if self._cache_dir is None:
            return None
        name = hashlib.sha256(binary.encode()).hexdigest()[:32]
        return os.path.join(self._cache_dir, name + ".json")

    def _load(self, binary: str, key: tuple[int, int, int]) -> QemuCaps | None:
        path = self._cache_file(binary)
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            if (record.get("format") != CAPS_CACHE_FORMAT or record.get("binary") != binary
                    or tuple(record.get("key", ())) != key):
                return None
            caps = QemuCaps.from_dict(record["caps"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return replace(caps, kvm_problem=kvm_problem(
            binary, caps.arch, caps.accelerators, kvm_device=self._kvm_device))

    def _save(self, binary: str, key: tuple[int, int, int], caps: QemuCaps) -> None:
        path = self._cache_file(binary)
        if path is None:
            return
        record = {"format": CAPS_CACHE_FORMAT, "binary": binary, "key": list(key),
                  "caps": caps.to_dict()}
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(record, f)
            os.replace(tmp, path)
        except OSError:
            # Best effort: without the file the next start probes again.
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def forget(self, binary: str) -> None:
        """
        @param binary: a path whose cached caps are dropped.
        """
        self._entries.pop(binary, None)


# ---------------------------------------------------------------- emulator

def find_emulator(domain: Domain, search_path: str | None = None) -> str:
    """
    Choose the emulator binary for a domain, as libvirt does.

    C{<emulator>} wins; otherwise the binary for C{<os><type arch=>} (the
    host's arch when absent) is looked up on C{search_path}.

    @param domain: the definition.
    @param search_path: a C{PATH}-style list; C{None} uses C{$PATH}.
    @return: the absolute path of the binary.
    @raise ConfigUnsupportedError: the named emulator does not exist or is not
        executable, the arch is unknown, or its binary is not installed.
    """
    emulator = domain.devices.emulator
    if emulator is not None:
        if not (os.path.isfile(emulator) and os.access(emulator, os.X_OK)):
            raise ConfigUnsupportedError(
                f"emulator '{emulator}' does not exist or is not executable")
        return emulator
    return emulator_for_arch(domain.os.arch or host_arch(), search_path)


@functools.lru_cache(maxsize=64)
def emulator_for_arch(arch: str, search_path: str | None = None) -> str:
    """
    Memoized: searching C{PATH} costs more than the calls that need it
    (every C{getVersion}, every define); a binary found once is then
    checked by L{CapsCache.get}, which stats it.

    @param arch: a guest architecture (C{x86_64}, C{i686}, C{aarch64}, ...).
    @param search_path: a C{PATH}-style list; C{None} uses C{$PATH}.
    @return: the absolute path of the QEMU binary for C{arch}.
    @raise ConfigUnsupportedError: the arch is unknown or its binary is not
        installed.
    """
    name = BINARY_FOR_ARCH.get(arch)
    if name is None:
        raise ConfigUnsupportedError(f"no QEMU emulator is known for architecture '{arch}'")
    found = shutil.which(name, path=search_path)
    if found is None:
        raise ConfigUnsupportedError(
            f"no emulator for architecture '{arch}': '{name}' was not found on the search path")
    return os.path.abspath(found)


# ---------------------------------------------------------------- capabilities XML

@dataclass(frozen=True)
class TSCCounter:
    """
    The host's invariant TSC as KVM reports it (C{<counter name='tsc'>}).

    @ivar frequency: in Hz.
    @ivar scaling: whether KVM can scale it for guests (C{None}: unknown).
    """

    frequency: int
    scaling: bool | None = None


@dataclass(frozen=True)
class HostCPU:
    """
    The host CPU of C{virsh capabilities} (the C{<cpu>} element), plus the
    host UUID.

    @ivar arch: the host arch.
    @ivar model: CPU model name from libvirt's CPU map, if known.
    @ivar vendor: CPU vendor, if known.
    @ivar sockets: topology, when all four are given.
    @ivar uuid: the host UUID.
    @ivar microcode: the microcode version (C{None} or 0: not shown).
    @ivar signature: (family, model, stepping).
    @ivar tsc: the invariant TSC, when the CPU has one and KVM reports it.
    @ivar maxphysaddr: physical address bits.
    @ivar features: the features beyond C{model}, in the CPU map's order.
    @ivar pages_kib: page sizes in KiB (the base page and each huge page).
    """

    arch: str
    model: str | None = None
    vendor: str | None = None
    sockets: int | None = None
    dies: int | None = None
    cores: int | None = None
    threads: int | None = None
    uuid: str | None = None
    microcode: int | None = None
    signature: tuple[int, int, int] | None = None
    tsc: TSCCounter | None = None
    maxphysaddr: int | None = None
    features: tuple[str, ...] = ()
    pages_kib: tuple[int, ...] = ()


@dataclass(frozen=True)
class CellCPU:
    """
    One CPU of a NUMA cell.

    @ivar siblings: its thread siblings as a CPU list (C{0-1}); C{None}
        when the topology is unknown (then only the id is shown).
    """

    id: int
    socket_id: int = 0
    die_id: int = 0
    core_id: int = 0
    siblings: str | None = None


@dataclass(frozen=True)
class NUMACell:
    """
    One host NUMA cell.

    @ivar memory_kib: its memory (0: not shown).
    @ivar pages: (page size KiB, pages in the pool), by increasing size.
    @ivar distances: (other cell id, distance).
    """

    id: int
    memory_kib: int = 0
    pages: tuple[tuple[int, int], ...] = ()
    distances: tuple[tuple[int, int], ...] = ()
    cpus: tuple[CellCPU, ...] = ()


@dataclass(frozen=True)
class CacheBank:
    """
    One host cache bank (level 3 and up).

    @ivar type: C{both}, C{code} or C{data}.
    @ivar size: in C{unit}s.
    @ivar unit: C{B}, C{KiB}, C{MiB}, ...
    @ivar cpus: the CPUs sharing it, as a CPU list.
    """

    id: int
    level: int
    type: str
    size: int
    unit: str
    cpus: str


@dataclass(frozen=True)
class SecModel:
    """
    A security model (C{<secmodel>}).

    @ivar labels: (type, base label) pairs.
    """

    model: str
    doi: str = "0"
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HostCaps:
    """
    The whole C{<host>} element of C{virsh capabilities}.

    @ivar cpu: the host CPU (and UUID).
    @ivar power_management: suspend targets (C{suspend_mem},
        C{suspend_disk}, C{suspend_hybrid}) the host supports.
    @ivar iommu: whether the host has IOMMU groups.
    @ivar cells: NUMA cells (none: no C{<topology>}).
    @ivar caches: cache banks (none: no C{<cache>}).
    @ivar secmodels: the security models, in order.
    """

    cpu: HostCPU
    power_management: tuple[str, ...] = ()
    iommu: bool = False
    cells: tuple[NUMACell, ...] = ()
    caches: tuple[CacheBank, ...] = ()
    secmodels: tuple[SecModel, ...] = (SecModel("none"),)


@dataclass(frozen=True)
class _Element:
    """One element to print: attributes in order, then text or children."""

    tag: str
    attrs: tuple[tuple[str, object], ...] = ()
    children: tuple[_Element, ...] = ()
    text: str | None = None


def _render(out: list[str], indent: str, element: _Element) -> None:
    """
    Print an element libvirt's way: two-space indentation, single-quoted
    attributes, empty elements self-closed.
    """
    head = element.tag + "".join(f" {name}='{escape_attribute(str(value))}'"
                                 for name, value in element.attrs)
    if element.text is not None:
        out.append(f"{indent}<{head}>{escape_text(element.text)}</{element.tag}>")
    elif element.children:
        out.append(f"{indent}<{head}>")
        for child in element.children:
            _render(out, indent + "  ", child)
        out.append(f"{indent}</{element.tag}>")
    else:
        out.append(f"{indent}<{head}/>")


def _cpu_element(cpu: HostCPU) -> _Element:
    """
    @return: C{<cpu>} in libvirt's order (C{virCPUDefFormatBuf} for a host
        CPU, then the page sizes).
    """
    children = [_Element("arch", text=cpu.arch)]
    if cpu.model is not None:
        children.append(_Element("model", text=cpu.model))
    if cpu.vendor is not None:
        children.append(_Element("vendor", text=cpu.vendor))
    if cpu.microcode:
        children.append(_Element("microcode", (("version", cpu.microcode),)))
    if cpu.signature is not None and cpu.signature[0]:
        family, model, stepping = cpu.signature
        children.append(_Element("signature", (("family", family), ("model", model),
                                               ("stepping", stepping))))
    if cpu.tsc is not None:
        attrs: list[tuple[str, object]] = [("name", "tsc"), ("frequency", cpu.tsc.frequency)]
        if cpu.tsc.scaling is not None:
            attrs.append(("scaling", "yes" if cpu.tsc.scaling else "no"))
        children.append(_Element("counter", tuple(attrs)))
    topology = (cpu.sockets, cpu.dies, cpu.cores, cpu.threads)
    if all(value is not None for value in topology):
        children.append(_Element("topology", (("sockets", cpu.sockets), ("dies", cpu.dies),
                                              ("cores", cpu.cores), ("threads", cpu.threads))))
    if cpu.maxphysaddr is not None:
        children.append(_Element("maxphysaddr", (("mode", "emulate"),
                                                 ("bits", cpu.maxphysaddr))))
    children.extend(_Element("feature", (("name", name),)) for name in cpu.features)
    children.extend(_Element("pages", (("unit", "KiB"), ("size", size)))
                    for size in cpu.pages_kib)
    return _Element("cpu", children=tuple(children))


def _topology_element(cells: Sequence[NUMACell]) -> _Element:
    """
    @return: C{<topology><cells>} (libvirt's C{virCapabilitiesHostNUMAFormat}).
    """
    out = []
    for cell in cells:
        children = []
        if cell.memory_kib:
            children.append(_Element("memory", (("unit", "KiB"),), text=str(cell.memory_kib)))
        children.extend(_Element("pages", (("unit", "KiB"), ("size", size)), text=str(count))
                        for size, count in cell.pages)
        if cell.distances:
            children.append(_Element("distances", children=tuple(
                _Element("sibling", (("id", other), ("value", value)))
                for other, value in cell.distances)))
        cpus = []
        for cpu in cell.cpus:
            attrs: tuple[tuple[str, object], ...] = (("id", cpu.id),)
            if cpu.siblings is not None:
                attrs += (("socket_id", cpu.socket_id), ("die_id", cpu.die_id),
                          ("core_id", cpu.core_id), ("siblings", cpu.siblings))
            cpus.append(_Element("cpu", attrs))
        children.append(_Element("cpus", (("num", len(cell.cpus)),), children=tuple(cpus)))
        out.append(_Element("cell", (("id", cell.id),), children=tuple(children)))
    return _Element("topology", children=(
        _Element("cells", (("num", len(cells)),), children=tuple(out)),))


def _host_element(host: HostCaps) -> _Element:
    """
    @return: C{<host>} in libvirt's order (C{virCapabilitiesFormatHostXML}).
        qemud does not migrate guests, so there is no C{<migration_features>}.
    """
    children = []
    if host.cpu.uuid is not None:
        children.append(_Element("uuid", text=host.cpu.uuid))
    children.append(_cpu_element(host.cpu))
    children.append(_Element("power_management", children=tuple(
        _Element(target) for target in host.power_management)))
    children.append(_Element("iommu", (("support", "yes" if host.iommu else "no"),)))
    if host.cells:
        children.append(_topology_element(host.cells))
    if host.caches:
        children.append(_Element("cache", children=tuple(
            _Element("bank", (("id", b.id), ("level", b.level), ("type", b.type),
                              ("size", b.size), ("unit", b.unit), ("cpus", b.cpus)))
            for b in host.caches)))
    for secmodel in host.secmodels:
        labels = tuple(_Element("baselabel", (("type", kind),), text=label)
                       for kind, label in secmodel.labels)
        children.append(_Element("secmodel", children=(
            _Element("model", text=secmodel.model), _Element("doi", text=secmodel.doi),
            *labels)))
    return _Element("host", children=tuple(children))


def _guest_element(caps: QemuCaps) -> _Element:
    """
    @param caps: one binary's caps.
    @return: the C{<guest>} element.
    """
    canonical_to_aliases: dict[str, list[str]] = {}
    for alias, canonical in caps.machine_aliases.items():
        canonical_to_aliases.setdefault(canonical, []).append(alias)
    machines: list[_Element] = []
    for name in caps.machines:
        if name == "none":
            continue
        attrs: tuple[tuple[str, object], ...] = ()
        if name in caps.machine_max_cpus:
            attrs += (("maxCpus", caps.machine_max_cpus[name]),)
        if name in caps.deprecated_machines:
            attrs += (("deprecated", "yes"),)
        machines.append(_Element("machine", attrs, text=name))
        for alias in sorted(canonical_to_aliases.get(name, ())):
            machines.append(_Element("machine", (("canonical", name), *attrs), text=alias))
    domains = [_Element("domain", (("type", "qemu"),))]
    if caps.kvm_usable:
        domains.append(_Element("domain", (("type", "kvm"),)))
    features: list[_Element] = []
    if caps.arch in ("x86_64", "i686"):
        if caps.arch == "i686":
            features += [_Element("pae"), _Element("nonpae")]
        features += [_Element("acpi", (("default", "on"), ("toggle", "yes"))),
                     _Element("apic", (("default", "on"), ("toggle", "no")))]
    features += [_Element("cpuselection"), _Element("deviceboot"),
                 _Element("disksnapshot", (("default", "on"), ("toggle", "no")))]
    arch = _Element("arch", (("name", caps.arch),), children=(
        _Element("wordsize", text=str(_WORDSIZE.get(caps.arch, 64))),
        _Element("emulator", text=caps.binary), *machines, *domains))
    return _Element("guest", children=(_Element("os_type", text="hvm"), arch,
                                       _Element("features", children=tuple(features))))


def capabilities_xml(host: HostCPU | HostCaps, guests: Sequence[QemuCaps]) -> str:
    """
    Render libvirt's capabilities document (what C{virsh capabilities}
    prints), laid out as libvirtd 9.0 lays it out (C{virCapabilitiesFormatXML}:
    a blank line after the opening tag and after each section).

    @param host: the host section, or only its CPU (then the other host
        facts are empty: no NUMA cells, no caches, no IOMMU, secmodel
        C{none}).
    @param guests: the caps of each emulator, one C{<guest>} each.
    @return: the XML text.
    """
    if isinstance(host, HostCPU):
        host = HostCaps(cpu=host)
    out = ["<capabilities>", ""]
    for section in (_host_element(host), *(_guest_element(caps) for caps in guests)):
        _render(out, "  ", section)
        out.append("")
    out.append("</capabilities>")
    return "\n".join(out) + "\n"


def installed_emulators(search_path: str | None = None) -> list[str]:
    """
    @param search_path: a C{PATH}-style list; C{None} uses C{$PATH}.
    @return: the absolute path of every QEMU system emulator installed, once
        each, in a stable order.
    """
    found: dict[str, None] = {}
    for name in sorted(set(BINARY_FOR_ARCH.values())):
        path = shutil.which(name, path=search_path)
        if path is not None:
            found[os.path.abspath(path)] = None
    return list(found)
