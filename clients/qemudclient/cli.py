# -*- test-case-name: tests.client.test_cli -*-
"""
C{qemuctl}: a virsh-like command line for qemud (and libvirtd).

Commands take virsh's names and arguments, and their text output has
virsh's layout.  Global options: C{-c/--connect URI} (default
C{$QEMUD_DEFAULT_URI}, else C{qemud:///system} for root and
C{qemud:///session} for anyone else) and C{-r/--readonly}.  Errors print
C{error: <message>} lines on stderr and exit 1; usage errors exit 2.  Long
operations (C{save}, C{restore}, C{managedsave}, C{shutdown --wait}) draw a
progress line on stderr when it is a terminal.

JSON output
===========

Every query command takes C{--json} and then prints one JSON document on
stdout instead of text.  The keys are stable:

  - C{list}: an array of C{{"id": int|null, "name": str, "uuid": str,
    "state": str, "state_code": int, "reason": str, "reason_code": int}};
    C{id} is null for an inactive domain, C{state}/C{reason} are virsh's
    words (C{"shut off"}, C{"booted"}), the codes libvirt's numbers.
  - C{dominfo}: C{{"id": int|null, "name", "uuid", "os_type": str,
    "state": str, "state_code": int, "cpus": int, "cpu_time_ns": int,
    "max_memory_kib": int, "used_memory_kib": int, "persistent": bool,
    "autostart": bool, "managed_save": bool|null}}.
  - C{domstate}: C{{"state": str, "state_code": int, "reason": str,
    "reason_code": int}}.
  - C{domid}: C{{"id": int|null}}; C{domuuid}: C{{"uuid": str}};
    C{domname}: C{{"name": str}}.
  - C{dumpxml}: C{{"name": str, "xml": str}}; C{capabilities}:
    C{{"capabilities": str}}.
  - C{nodeinfo}: C{{"cpu_model": str, "cpus": int, "mhz": int,
    "sockets": int, "cores_per_socket": int, "threads_per_core": int,
    "numa_cells": int, "memory_kib": int}}.
  - C{version}: C{{"library": str, "hypervisor_type": str,
    "hypervisor_version": str, "daemon_version": str}} (versions as
    C{"major.minor.micro"}).
  - C{hostname}: C{{"hostname": str}}; C{uri}: C{{"uri": str}}.
  - C{events --json}: one object per line, per event:
    C{{"timestamp": "YYYY-MM-DDTHH:MM:SS.mmm+00:00", "event": str (virsh's
    event name, e.g. "lifecycle"), "event_id": int, "domain": {"id":
    int|null, "name": str, "uuid": str}}} plus, for lifecycle events,
    C{"type": str, "type_code": int, "detail": str, "detail_code": int}
    (e.g. C{"Started"}/C{"Booted"}), and for other events their fields
    (C{"dev_alias"}, C{"reason"}, C{"iteration"}).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater, react

from qemudclient import __version__
from qemudclient.errors import NoDomainError, QemudClientError
from qemudclient.model import (
    EVENT_IDS,
    STATE_SHUTOFF,
    DomainEvent,
    DomainInfo,
    DomainRef,
    JobInfo,
    NodeInfo,
    lifecycle_names,
    reason_name,
    state_name,
)
from qemudclient.uri import default_uri

# -- pure formatting ---------------------------------------------------------


def format_version_number(number: int) -> str:
    """
    @param number: libvirt's C{major * 1000000 + minor * 1000 + micro}.
    @return: C{"major.minor.micro"}.
    """
    return f"{number // 1000000}.{number // 1000 % 1000}.{number % 1000}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """
    Lay out a table the way virsh's C{vshTable} does: each cell left
    aligned in a column as wide as its widest cell, one space before and two
    after each cell, trailing blanks trimmed, and a line of dashes as long
    as every column plus three.

    @return: the table, each line ending in a newline.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "".join(f" {c:<{w}}  " for c, w in zip(cells, widths, strict=True)).rstrip() + "\n"

    out = [line(headers), "-" * sum(w + 3 for w in widths) + "\n"]
    out.extend(line(row) for row in rows)
    return "".join(out)


def format_id(domain_id: int) -> str:
    """
    @return: virsh's rendering of a domain id: C{"-"} when inactive.
    """
    return "-" if domain_id < 0 else str(domain_id)


def json_id(domain_id: int) -> int | None:
    """
    @return: the id for JSON output: C{None} when inactive.
    """
    return None if domain_id < 0 else domain_id


def format_list(entries: Sequence[tuple[DomainRef, tuple[int, int]]]) -> str:
    """
    @param entries: C{(domain, (state, reason))} pairs, already sorted.
    @return: C{virsh list}'s table.
    """
    rows = [(format_id(ref.id), ref.name, state_name(st[0])) for ref, st in entries]
    return format_table(("Id", "Name", "State"), rows)


def list_json(entries: Sequence[tuple[DomainRef, tuple[int, int]]]) -> list[dict[str, Any]]:
    """
    @return: the C{list --json} document.
    """
    return [
        {
            "id": json_id(ref.id),
            "name": ref.name,
            "uuid": ref.uuid_string,
            "state": state_name(state),
            "state_code": state,
            "reason": reason_name(state, reason),
            "reason_code": reason,
        }
        for ref, (state, reason) in entries
    ]


def sort_domains(
    entries: Sequence[tuple[DomainRef, tuple[int, int]]],
) -> list[tuple[DomainRef, tuple[int, int]]]:
    """
    Order domains as virsh does: running ones by id, then inactive ones by
    name.
    """
    return sorted(entries, key=lambda e: (e[0].id < 0, e[0].id, e[0].name))


@dataclass(frozen=True)
class DomInfo:
    """
    Everything C{dominfo} shows.

    @ivar managed_save: C{None} when the daemon could not say.
    """

    ref: DomainRef
    os_type: str
    info: DomainInfo
    persistent: bool
    autostart: bool
    managed_save: bool | None


def format_dominfo(d: DomInfo) -> str:
    """
    @return: C{virsh dominfo}'s key/value lines.
    """
    lines = [
        ("Id:", format_id(d.ref.id)),
        ("Name:", d.ref.name),
        ("UUID:", d.ref.uuid_string),
        ("OS Type:", d.os_type),
        ("State:", state_name(d.info.state)),
        ("CPU(s):", str(d.info.vcpus)),
    ]
    if d.info.cpu_time:
        lines.append(("CPU time:", f"{d.info.cpu_time / 1e9:.1f}s"))
    lines += [
        ("Max memory:", f"{d.info.max_mem} KiB"),
        ("Used memory:", f"{d.info.memory} KiB"),
        ("Persistent:", "yes" if d.persistent else "no"),
        ("Autostart:", "enable" if d.autostart else "disable"),
        (
            "Managed save:",
            "unknown" if d.managed_save is None else ("yes" if d.managed_save else "no"),
        ),
    ]
    return "".join(f"{k:<15} {v}\n" for k, v in lines)


def dominfo_json(d: DomInfo) -> dict[str, Any]:
    """
    @return: the C{dominfo --json} document.
    """
    return {
        "id": json_id(d.ref.id),
        "name": d.ref.name,
        "uuid": d.ref.uuid_string,
        "os_type": d.os_type,
        "state": state_name(d.info.state),
        "state_code": d.info.state,
        "cpus": d.info.vcpus,
        "cpu_time_ns": d.info.cpu_time,
        "max_memory_kib": d.info.max_mem,
        "used_memory_kib": d.info.memory,
        "persistent": d.persistent,
        "autostart": d.autostart,
        "managed_save": d.managed_save,
    }


def format_domstate(state: int, reason: int, with_reason: bool) -> str:
    """
    @return: C{"running"} or, with C{--reason}, C{"running (booted)"}.
    """
    if with_reason:
        return f"{state_name(state)} ({reason_name(state, reason)})\n"
    return f"{state_name(state)}\n"


def domstate_json(state: int, reason: int) -> dict[str, Any]:
    """
    @return: the C{domstate --json} document.
    """
    return {
        "state": state_name(state),
        "state_code": state,
        "reason": reason_name(state, reason),
        "reason_code": reason,
    }


def format_nodeinfo(n: NodeInfo) -> str:
    """
    @return: C{virsh nodeinfo}'s lines.
    """
    lines = [
        ("CPU model:", n.model),
        ("CPU(s):", str(n.cpus)),
        ("CPU frequency:", f"{n.mhz} MHz"),
        ("CPU socket(s):", str(n.sockets)),
        ("Core(s) per socket:", str(n.cores)),
        ("Thread(s) per core:", str(n.threads)),
        ("NUMA cell(s):", str(n.nodes)),
        ("Memory size:", f"{n.memory} KiB"),
    ]
    return "".join(f"{k:<20} {v}\n" for k, v in lines)


def nodeinfo_json(n: NodeInfo) -> dict[str, Any]:
    """
    @return: the C{nodeinfo --json} document.
    """
    return {
        "cpu_model": n.model,
        "cpus": n.cpus,
        "mhz": n.mhz,
        "sockets": n.sockets,
        "cores_per_socket": n.cores,
        "threads_per_core": n.threads,
        "numa_cells": n.nodes,
        "memory_kib": n.memory,
    }


def format_version(hv_type: str, hv_version: int, daemon_version: int | None) -> str:
    """
    @param daemon_version: the daemon's library version, printed only when
        given (C{version --daemon}).
    @return: C{virsh version}'s lines, naming this client library.
    """
    out = (
        f"Compiled against library: qemudclient {__version__}\n"
        f"Using library: qemudclient {__version__}\n"
        f"Using API: {hv_type} {__version__}\n"
        f"Running hypervisor: {hv_type} {format_version_number(hv_version)}\n"
    )
    if daemon_version is not None:
        out += f"Running against daemon: {format_version_number(daemon_version)}\n"
    return out


def version_json(hv_type: str, hv_version: int, daemon_version: int) -> dict[str, Any]:
    """
    @return: the C{version --json} document.
    """
    return {
        "library": __version__,
        "hypervisor_type": hv_type,
        "hypervisor_version": format_version_number(hv_version),
        "daemon_version": format_version_number(daemon_version),
    }


def format_timestamp(seconds: float) -> str:
    """
    @return: virsh's event timestamp, C{2026-11-26 02:18:33.857+0000}.
    """
    t = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def format_event(event: DomainEvent, timestamp: bool = False) -> str:
    """
    @return: the line C{virsh event} prints for C{event}.
    """
    head = f"event '{event.name}' for domain '{event.domain.name}'"
    d = event.detail
    if event.event_id == 0:
        kind, detail = lifecycle_names(d.get("event", -1), d.get("detail", -1))
        text = f"{head}: {kind} {detail}"
    elif event.event_id == 10:
        tray = "opened" if d.get("reason") == 0 else "closed"
        text = f"{head} disk {d.get('dev_alias', '')}: {tray}"
    elif "dev_alias" in d:
        text = f"{head}: {d['dev_alias']}"
    elif "iteration" in d:
        text = f"{head}: iteration: '{d['iteration']}'"
    else:
        text = head
    if timestamp:
        text = f"{format_timestamp(event.timestamp)}: {text}"
    return text + "\n"


def event_json(event: DomainEvent) -> dict[str, Any]:
    """
    @return: the C{events --json} object for C{event}.
    """
    t = datetime.datetime.fromtimestamp(event.timestamp, datetime.UTC)
    doc: dict[str, Any] = {
        "timestamp": t.isoformat(timespec="milliseconds"),
        "event": event.name,
        "event_id": event.event_id,
        "domain": {
            "id": json_id(event.domain.id),
            "name": event.domain.name,
            "uuid": event.domain.uuid_string,
        },
    }
    if event.event_id == 0:
        code, detail_code = event.detail.get("event", -1), event.detail.get("detail", -1)
        kind, detail = lifecycle_names(code, detail_code)
        doc.update(type=kind, type_code=code, detail=detail, detail_code=detail_code)
    else:
        for k, v in event.detail.items():
            doc[k] = v.hex() if isinstance(v, bytes) else v
    return doc


def format_progress(label: str, job: JobInfo | None) -> str | None:
    """
    @return: a C{"\\rSave: [ 42 %]"} progress line, or C{None} when the job
        carries no figures.
    """
    if job is None or job.data_total <= 0:
        return None
    percent = min(100, job.data_processed * 100 // job.data_total)
    return f"\r{label}: [{percent:3d} %]"


# -- argument parsing --------------------------------------------------------


class UsageError(Exception):
    """Bad command-line usage (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """
    @return: the C{qemuctl} argument parser, with one sub-parser per command.
    """
    p = _Parser(prog="qemuctl", description="Manage QEMU/KVM guests through qemud.")
    p.add_argument("-c", "--connect", metavar="URI", help="the daemon to connect to")
    p.add_argument("-r", "--readonly", action="store_true", help="connect read-only")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def cmd(name: str, help: str, json_out: bool = False) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        if json_out:
            c.add_argument("--json", action="store_true", help="print JSON")
        return c

    c = cmd("list", "list domains", True)
    c.add_argument("--all", action="store_true", help="active and inactive domains")
    c.add_argument("--inactive", action="store_true", help="inactive domains only")
    c = cmd("define", "define (but don't start) a domain from an XML file")
    c.add_argument("file")
    c = cmd("undefine", "undefine a domain")
    c.add_argument("domain")
    c.add_argument("--managed-save", action="store_true", help="remove the managed save image")
    c = cmd("start", "start a (previously defined) inactive domain")
    c.add_argument("domain")
    c.add_argument("--paused", action="store_true", help="leave the guest paused")
    c = cmd("create", "create a transient domain from an XML file")
    c.add_argument("file")
    c.add_argument("--paused", action="store_true", help="leave the guest paused")
    for name, help in [
        ("destroy", "destroy (stop) a domain"),
        ("reboot", "reboot a domain"),
        ("reset", "reset a domain"),
        ("suspend", "suspend a domain"),
        ("resume", "resume a domain"),
        ("managedsave", "save a domain's state to be restored on the next start"),
    ]:
        cmd(name, help).add_argument("domain")
    c = cmd("shutdown", "gracefully shut down a domain")
    c.add_argument("domain")
    c.add_argument("--wait", action="store_true", help="wait until the domain is shut off")
    c.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="with --wait: give up after S seconds")
    c = cmd("dumpxml", "domain information in XML", True)
    c.add_argument("domain")
    c.add_argument("--inactive", action="store_true", help="the persistent configuration")
    c.add_argument("--security-info", action="store_true", help="include secrets")
    cmd("dominfo", "domain information", True).add_argument("domain")
    c = cmd("domstate", "domain state", True)
    c.add_argument("domain")
    c.add_argument("--reason", action="store_true", help="also print the reason")
    cmd("domid", "convert a domain name or UUID to a domain id", True).add_argument("domain")
    cmd("domuuid", "convert a domain name or id to a domain UUID", True).add_argument("domain")
    cmd("domname", "convert a domain id or UUID to a domain name", True).add_argument("domain")
    c = cmd("autostart", "autostart a domain")
    c.add_argument("domain")
    c.add_argument("--disable", action="store_true", help="disable autostarting")
    cmd("nodeinfo", "node information", True)
    cmd("capabilities", "capabilities", True)
    c = cmd("version", "show version", True)
    c.add_argument("--daemon", action="store_true", help="also show the daemon's version")
    cmd("hostname", "print the hypervisor hostname", True)
    cmd("uri", "print the hypervisor canonical URI", True)
    c = cmd("events", "print domain events")
    c.add_argument("--loop", action="store_true", help="keep going until interrupted")
    c.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds")
    c.add_argument("--domain", default=None, help="only events of this domain")
    c.add_argument("--event", default="lifecycle", choices=sorted(EVENT_IDS),
                   help="which event (default lifecycle)")
    c.add_argument("--all", action="store_true", help="every event")
    c.add_argument("--timestamp", action="store_true", help="show a timestamp per event")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c = cmd("save", "save a domain's state to a file")
    c.add_argument("domain")
    c.add_argument("file")
    cmd("restore", "restore a domain from a saved state file").add_argument("file")
    for name, help in [
        ("attach-device", "attach a device from an XML file"),
        ("detach-device", "detach a device described by an XML file"),
        ("update-device", "update a device from an XML file"),
    ]:
        c = cmd(name, help)
        c.add_argument("domain")
        c.add_argument("file")
        c.add_argument("--live", action="store_true", help="affect the running domain")
        c.add_argument("--config", action="store_true", help="affect the persistent config")
        c.add_argument("--current", action="store_true", help="affect the current state")
        c.add_argument("--persistent", action="store_true", help="--live --config if running")
    c = cmd("change-media", "eject, insert or update the medium of a cdrom or floppy")
    c.add_argument("domain")
    c.add_argument("path", help="the drive's target (hdc) or current source")
    c.add_argument("source", nargs="?", help="the new medium (--insert, --update)")
    action = c.add_mutually_exclusive_group(required=True)
    for name in ("--eject", "--insert", "--update"):
        action.add_argument(name, action="store_true")
    for name in ("--live", "--config", "--current", "--persistent"):
        c.add_argument(name, action="store_true")
    return p


# -- running commands --------------------------------------------------------


class CommandFailed(Exception):
    """
    A command failed; each line is printed as C{error: <line>}.
    """

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class Context:
    """
    What a command runs with.

    @ivar conn: the open L{qemudclient.connection.Connection}.
    @ivar reactor: for timers (progress, timeouts).
    @ivar out: standard output.
    @ivar err: standard error.
    @ivar tty: whether progress lines may be drawn on C{err}.
    """

    conn: Any
    reactor: Any
    out: IO[str]
    err: IO[str]
    tty: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def print(self, text: str) -> None:
        """
        Write C{text} to stdout.
        """
        self.out.write(text)
        self.out.flush()

    def print_json(self, doc: Any) -> None:
        """
        Write C{doc} as one line of JSON to stdout.
        """
        self.print(json.dumps(doc, sort_keys=True) + "\n")

    def progress(self, text: str) -> None:
        """
        Draw a progress line on stderr, only on a terminal.
        """
        if self.tty:
            self.err.write(text)
            self.err.flush()


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CommandFailed(f"Failed to open file '{path}': {e.strerror or e}") from e


async def lookup_domain(conn: Any, arg: str) -> Any:
    """
    Find a domain the way virsh does: by id if C{arg} is a number, then by
    UUID if it looks like one, then by name.

    @raise CommandFailed: naming C{arg} and the daemon's message.
    """
    last: QemudClientError | None = None
    if arg.isdigit():
        try:
            return await conn.lookup_by_id(int(arg))
        except NoDomainError as e:
            last = e
    uuid = _parse_uuid(arg)
    if uuid is not None:
        try:
            return await conn.lookup_by_uuid(uuid)
        except NoDomainError as e:
            last = e
    try:
        return await conn.lookup_by_name(arg)
    except QemudClientError as e:
        last = e
    raise CommandFailed(f"failed to get domain '{arg}'", last.message)


def _parse_uuid(text: str) -> bytes | None:
    import uuid

    if len(text.replace("-", "")) != 32:
        return None
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        return None


async def _action(ctx: Context, what: str, call: Awaitable[Any]) -> Any:
    try:
        return await call
    except QemudClientError as e:
        raise CommandFailed(what, e.message) from e


async def cmd_list(ctx: Context, a: argparse.Namespace) -> None:
    flags = 1 | 2 if a.all else (2 if a.inactive else 1)
    domains = await ctx.conn.list_domains(flags)
    states = [await d.state() for d in domains]
    entries = sort_domains([(d.ref, st) for d, st in zip(domains, states, strict=True)])
    if a.json:
        ctx.print_json(list_json(entries))
    else:
        ctx.print(format_list(entries) + "\n")


async def cmd_define(ctx: Context, a: argparse.Namespace) -> None:
    dom = await _action(ctx, f"Failed to define domain from {a.file}",
                        ctx.conn.define_xml(_read_file(a.file)))
    ctx.print(f"Domain '{dom.name}' defined from {a.file}\n\n")


async def cmd_create(ctx: Context, a: argparse.Namespace) -> None:
    dom = await _action(ctx, f"Failed to create domain from {a.file}",
                        ctx.conn.create_xml(_read_file(a.file), 1 if a.paused else 0))
    ctx.print(f"Domain '{dom.name}' created from {a.file}\n\n")


async def cmd_undefine(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    await _action(ctx, f"Failed to undefine domain '{dom.name}'",
                  dom.undefine(1 if a.managed_save else 0))
    ctx.print(f"Domain '{dom.name}' has been undefined\n\n")


async def cmd_start(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    await _action(ctx, f"Failed to start domain '{dom.name}'", dom.start(1 if a.paused else 0))
    ctx.print(f"Domain '{dom.name}' started\n\n")


def _simple(verb: str, done: str) -> Callable[[Context, argparse.Namespace], Awaitable[None]]:
    async def run(ctx: Context, a: argparse.Namespace) -> None:
        dom = await lookup_domain(ctx.conn, a.domain)
        await _action(ctx, f"Failed to {verb} domain '{dom.name}'", getattr(dom, verb)())
        ctx.print(f"Domain '{dom.name}' {done}\n\n")

    return run


async def cmd_shutdown(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    await _action(ctx, f"Failed to shutdown domain '{dom.name}'", dom.shutdown())
    ctx.print(f"Domain '{dom.name}' is being shutdown\n\n")
    if not a.wait:
        return
    start = ctx.reactor.seconds()
    while True:
        state, _ = await dom.state()
        if state == STATE_SHUTOFF:
            break
        waited = ctx.reactor.seconds() - start
        if a.timeout is not None and waited >= a.timeout:
            ctx.progress("\n")
            raise CommandFailed(
                f"Timed out during operation: domain '{dom.name}' did not shut down "
                f"in {a.timeout:g} s"
            )
        ctx.progress(f"\rWaiting for domain '{dom.name}' to shut down: {waited:.0f} s")
        await deferLater(ctx.reactor, 0.5)
    ctx.progress("\n")
    ctx.print(f"Domain '{dom.name}' is shut off\n")


async def _with_job_progress(ctx: Context, dom: Any, label: str, op: Deferred[Any]) -> None:
    """
    Wait for C{op}; on a terminal, poll the domain's job info every half
    second meanwhile and draw a progress line (poll errors are ignored, as
    virsh ignores them).
    """
    if not ctx.tty:
        await op
        return
    ok = False
    try:
        while not op.called:
            await deferLater(ctx.reactor, 0.5)
            if op.called:
                break
            try:
                job = await dom.job_info()
            except QemudClientError:
                continue
            line = format_progress(label, job)
            if line:
                ctx.progress(line)
        await op
        ok = True
    finally:
        ctx.progress(f"\r{label}: [100 %]\n" if ok else "\n")


async def cmd_save(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    try:
        await _with_job_progress(ctx, dom, "Save", dom.save(a.file))
    except QemudClientError as e:
        raise CommandFailed(f"Failed to save domain '{dom.name}' to {a.file}", e.message) from e
    ctx.print(f"\nDomain '{dom.name}' saved to {a.file}\n\n")


async def cmd_managedsave(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    try:
        await _with_job_progress(ctx, dom, "Managedsave", dom.managed_save())
    except QemudClientError as e:
        raise CommandFailed(f"Failed to save domain '{dom.name}' state", e.message) from e
    ctx.print(f"\nDomain '{dom.name}' state saved by libvirt\n\n")


async def cmd_restore(ctx: Context, a: argparse.Namespace) -> None:
    ctx.progress("Restore: in progress")
    try:
        await ctx.conn.restore(a.file)
    except QemudClientError as e:
        ctx.progress("\n")
        raise CommandFailed(f"Failed to restore domain from {a.file}", e.message) from e
    ctx.progress(" done\n")
    ctx.print(f"Domain restored from {a.file}\n\n")


def _device_flags(a: argparse.Namespace) -> int | None:
    if a.current and (a.live or a.config):
        raise UsageError("--current is exclusive with --live and --config")
    flags = 0
    if a.live or a.persistent:
        flags |= 1
    if a.config or a.persistent:
        flags |= 2
    return None if not (a.live or a.config or a.current or a.persistent) else flags


def _device_cmd(verb: str, method: str, done: str) -> Callable[[Context, argparse.Namespace],
                                                             Awaitable[None]]:
    async def run(ctx: Context, a: argparse.Namespace) -> None:
        flags = _device_flags(a)
        xml = _read_file(a.file)
        dom = await lookup_domain(ctx.conn, a.domain)
        await _action(ctx, f"Failed to {verb} device from {a.file}",
                      getattr(dom, method)(xml, flags))
        ctx.print(f"Device {done} successfully\n\n")

    return run


def change_media_xml(domain_xml: str, path: str, source: str | None) -> str:
    """
    @param domain_xml: the domain's XML.
    @param path: the drive's target dev or current source.
    @param source: the new medium, C{None} to eject.
    @return: the drive's C{<disk>} with that medium (as virsh sends it).
    @raise UsageError: no cdrom or floppy matches C{path}.
    """
    import xml.etree.ElementTree as ET

    root = ET.fromstring(domain_xml)
    for disk in root.iter("disk"):
        target = disk.find("target")
        src = disk.find("source")
        names = {target.get("dev") if target is not None else None,
                 src.get("file") if src is not None else None}
        if path in names and disk.get("device") in ("cdrom", "floppy"):
            if src is not None:
                disk.remove(src)
            if source is not None:
                new = ET.Element("source", {"file": source})
                disk.insert(1 if disk.find("driver") is not None else 0, new)
            return ET.tostring(disk, encoding="unicode")
    raise UsageError(f"No disk found whose source path or target is {path}")


async def cmd_change_media(ctx: Context, a: argparse.Namespace) -> None:
    if (a.insert or a.update) and not a.source:
        raise UsageError("No source is specified for inserting/updating media")
    flags = _device_flags(a)
    dom = await lookup_domain(ctx.conn, a.domain)
    xml = await dom.xml_desc(inactive=bool(flags == 2))
    disk = change_media_xml(xml, a.path, None if a.eject else a.source)
    verb, done = (("eject", "ejected") if a.eject else ("insert", "inserted") if a.insert
                  else ("update", "updated"))
    await _action(ctx, f"Failed to complete action {verb} on media",
                  dom.update_device(disk, flags or 0))
    ctx.print(f"Successfully {done} media.\n")


async def cmd_dumpxml(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    xml = await dom.xml_desc(inactive=a.inactive, secure=a.security_info)
    if a.json:
        ctx.print_json({"name": dom.name, "xml": xml})
    else:
        ctx.print(xml if xml.endswith("\n") else xml + "\n")


async def cmd_dominfo(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    os_type = await dom.os_type()
    info = await dom.info()
    persistent = await dom.is_persistent()
    autostart = await dom.autostart()
    managed: bool | None
    try:
        managed = await dom.has_managed_save()
    except QemudClientError:
        managed = None
    d = DomInfo(dom.ref, os_type, info, persistent, autostart, managed)
    if a.json:
        ctx.print_json(dominfo_json(d))
    else:
        ctx.print(format_dominfo(d) + "\n")


async def cmd_domstate(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    state, reason = await dom.state()
    if a.json:
        ctx.print_json(domstate_json(state, reason))
    else:
        ctx.print(format_domstate(state, reason, a.reason) + "\n")


async def cmd_domid(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    if a.json:
        ctx.print_json({"id": json_id(dom.id)})
    else:
        ctx.print(format_id(dom.id) + "\n\n")


async def cmd_domuuid(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    if a.json:
        ctx.print_json({"uuid": dom.ref.uuid_string})
    else:
        ctx.print(dom.ref.uuid_string + "\n\n")


async def cmd_domname(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    if a.json:
        ctx.print_json({"name": dom.name})
    else:
        ctx.print(dom.name + "\n\n")


async def cmd_autostart(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain)
    if a.disable:
        await _action(ctx, f"Failed to unmark domain '{dom.name}' as autostarted",
                      dom.set_autostart(False))
        ctx.print(f"Domain '{dom.name}' unmarked as autostarted\n\n")
    else:
        await _action(ctx, f"Failed to mark domain '{dom.name}' as autostarted",
                      dom.set_autostart(True))
        ctx.print(f"Domain '{dom.name}' marked as autostarted\n\n")


async def cmd_nodeinfo(ctx: Context, a: argparse.Namespace) -> None:
    info = await ctx.conn.node_info()
    if a.json:
        ctx.print_json(nodeinfo_json(info))
    else:
        ctx.print(format_nodeinfo(info) + "\n")


async def cmd_capabilities(ctx: Context, a: argparse.Namespace) -> None:
    caps = await ctx.conn.capabilities()
    if a.json:
        ctx.print_json({"capabilities": caps})
    else:
        ctx.print(caps if caps.endswith("\n") else caps + "\n")


async def cmd_version(ctx: Context, a: argparse.Namespace) -> None:
    hv_type = await ctx.conn.get_type()
    hv_version = await ctx.conn.get_version()
    lib = await ctx.conn.get_lib_version() if (a.daemon or a.json) else None
    if a.json:
        assert lib is not None
        ctx.print_json(version_json(hv_type, hv_version, lib))
    else:
        ctx.print(format_version(hv_type, hv_version, lib) + "\n")


async def cmd_hostname(ctx: Context, a: argparse.Namespace) -> None:
    name = await ctx.conn.get_hostname()
    if a.json:
        ctx.print_json({"hostname": name})
    else:
        ctx.print(name + "\n\n")


async def cmd_uri(ctx: Context, a: argparse.Namespace) -> None:
    uri = ctx.conn.uri
    if a.json:
        ctx.print_json({"uri": uri})
    else:
        ctx.print(uri + "\n\n")


async def cmd_events(ctx: Context, a: argparse.Namespace) -> None:
    dom = await lookup_domain(ctx.conn, a.domain) if a.domain else None
    ids = sorted(EVENT_IDS.values()) if a.all else [EVENT_IDS[a.event]]
    received: list[DomainEvent] = []
    finished: Deferred[str] = Deferred()

    def on_event(event: DomainEvent) -> None:
        received.append(event)
        if a.json:
            ctx.print_json(event_json(event))
        else:
            ctx.print(format_event(event, a.timestamp))
        if not a.loop and not finished.called:
            finished.callback("")

    subs = []
    for i, event_id in enumerate(ids):
        try:
            subs.append(await ctx.conn.subscribe(event_id, on_event, dom))
        except QemudClientError as e:
            if i == 0:  # like virsh, only the first registration must work
                raise CommandFailed("failed to register event", e.message) from e

    def timed_out() -> None:
        if not finished.called:
            finished.callback("event loop timed out\n")

    def lost(reason: BaseException) -> None:
        if not finished.called:
            finished.errback(CommandFailed(f"connection lost: {reason}"))

    timer = None
    if a.timeout is not None:
        timer = ctx.reactor.callLater(a.timeout, timed_out)
    ctx.conn.when_closed().addCallback(lost)
    message = await finished
    if timer is not None and timer.active():
        timer.cancel()
    for s in subs:
        try:
            await s.cancel()
        except QemudClientError:
            pass
    if not a.json:
        ctx.print(f"{message}events received: {len(received)}\n\n")


COMMANDS: dict[str, Callable[[Context, argparse.Namespace], Awaitable[None]]] = {
    "list": cmd_list,
    "define": cmd_define,
    "create": cmd_create,
    "undefine": cmd_undefine,
    "start": cmd_start,
    "destroy": _simple("destroy", "destroyed"),
    "reboot": _simple("reboot", "is being rebooted"),
    "reset": _simple("reset", "was reset"),
    "suspend": _simple("suspend", "suspended"),
    "resume": _simple("resume", "resumed"),
    "shutdown": cmd_shutdown,
    "save": cmd_save,
    "managedsave": cmd_managedsave,
    "restore": cmd_restore,
    "attach-device": _device_cmd("attach", "attach_device", "attached"),
    "detach-device": _device_cmd("detach", "detach_device", "detached"),
    "update-device": _device_cmd("update", "update_device", "updated"),
    "change-media": cmd_change_media,
    "dumpxml": cmd_dumpxml,
    "dominfo": cmd_dominfo,
    "domstate": cmd_domstate,
    "domid": cmd_domid,
    "domuuid": cmd_domuuid,
    "domname": cmd_domname,
    "autostart": cmd_autostart,
    "nodeinfo": cmd_nodeinfo,
    "capabilities": cmd_capabilities,
    "version": cmd_version,
    "hostname": cmd_hostname,
    "uri": cmd_uri,
    "events": cmd_events,
}


ConnectFn = Callable[..., Deferred[Any]]


async def run(
    reactor: Any,
    argv: Sequence[str],
    *,
    out: IO[str],
    err: IO[str],
    environ: dict[str, str] | None = None,
    connect_fn: ConnectFn | None = None,
    tty: bool | None = None,
) -> int:
    """
    Run one C{qemuctl} invocation.

    @param argv: the arguments after the program name.
    @param connect_fn: L{qemudclient.connect} unless a test swaps it.
    @param tty: whether to draw progress lines (default: C{err.isatty()}).
    @return: the exit status: 0 success, 1 failure, 2 usage error.
    """
    env = dict(os.environ if environ is None else environ)
    parser = build_parser()
    try:
        a = parser.parse_args(list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if connect_fn is None:
        from qemudclient.connection import connect

        connect_fn = connect
    uri = a.connect or default_uri(env, os.geteuid())
    conn = None
    try:
        try:
            conn = await connect_fn(uri, reactor, readonly=a.readonly)
        except QemudClientError as e:
            raise CommandFailed("failed to connect to the hypervisor", e.message) from e
        ctx = Context(conn, reactor, out, err, err.isatty() if tty is None else tty)
        await COMMANDS[a.command](ctx, a)
        return 0
    except UsageError as e:
        err.write(f"error: {e}\n")
        return 2
    except CommandFailed as e:
        for line in e.lines:
            err.write(f"error: {line}\n")
        return 1
    except QemudClientError as e:
        err.write(f"error: {e.message}\n")
        return 1
    finally:
        if conn is not None:
            try:
                await conn.close()
            except QemudClientError:
                pass


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """
    The C{qemuctl} console script: run the reactor until the command is done
    and exit with its status.
    """
    args = list(sys.argv[1:] if argv is None else argv)

    async def _main(reactor: Any) -> None:
        code = await run(reactor, args, out=sys.stdout, err=sys.stderr)
        if code:
            raise SystemExit(code)

    react(lambda reactor: ensureDeferred(_main(reactor)))
if __name__ == "__main__":  # pragma: no cover
    main()
