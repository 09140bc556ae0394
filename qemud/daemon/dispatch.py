# -*- test-case-name: tests.daemon.test_dispatch -*-
"""
The REMOTE program's dispatch table: procedure number to handler.

A L{Dispatcher} decodes a call's arguments with the layout from
L{qemud.rpc.remote}, runs the handler against the C{DomainDriver} (see
C{docs/internals.md}) and encodes the reply.  Before that it applies
libvirtd's checks in libvirtd's order: unknown number (RPC error 39),
connection not open (1), read-only connection (29 OPERATION_DENIED),
procedure not implemented (3 NO_SUPPORT, naming the public API).

Per-connection state (open, read-only, URI, event callbacks, keepalive)
lives in the protocol, which the handlers see through L{ClientContext}.

Driver methods used beyond the binding list of C{internals.md}:
C{node_free_memory()}, C{get_max_vcpus(uuid)} (procedure 18),
C{get_vcpus(uuid, flags)} (200) and the second tier C{save}, C{restore}, C{managed_save},
C{managed_save_remove}, C{get_job_info}, C{attach_device},
C{detach_device}, C{update_device}.  A procedure whose driver method is
missing answers NO_SUPPORT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from twisted.internet.defer import Deferred

from qemud.errors import (
    InternalError,
    InvalidArgError,
    NoSupportError,
    OperationDeniedError,
    RPCError,
)
from qemud.rpc import remote
from qemud.rpc.remote import PROC, PROCEDURES, Procedure
from qemud.rpc.xdr import (
    VOID,
    Hyper,
    Int,
    String,
    Struct,
    UHyper,
    UInt,
    VarArray,
    VarOpaque,
    WireError,
    XDRType,
)

__all__ = ["ClientContext", "Dispatcher", "Entry", "LIB_VERSION", "HYPERVISOR_TYPE",
           "PRE_OPEN_PROCEDURES"]

LIB_VERSION = 9_000_000
"""The libvirt version qemud's protocol corresponds to (9.0.0)."""

HYPERVISOR_TYPE = "QEMU"

PRE_OPEN_PROCEDURES = frozenset({
    PROC.CONNECT_OPEN, PROC.CONNECT_CLOSE, PROC.CONNECT_SUPPORTS_FEATURE, PROC.AUTH_LIST,
    PROC.AUTH_SASL_INIT, PROC.AUTH_SASL_START, PROC.AUTH_SASL_STEP, PROC.AUTH_POLKIT,
})
"""Procedures a client may call before C{CONNECT_OPEN}."""

# flag values (libvirt-rpc.md §3.3)
_LIST_ACTIVE = 1
_LIST_INACTIVE = 2
_XML_SECURE = 1
_XML_MIGRATABLE = 8
_AFFECT_LIVE = 1
_CONNECT_RO = 1
_DEFINE_VALIDATE = 1

_SUPPORTED_FEATURES = frozenset({
    remote.FEATURE_PROGRAM_KEEPALIVE, remote.FEATURE_REMOTE_EVENT_CALLBACK,
    remote.FEATURE_REMOTE_CLOSE_CALLBACK,
})


# Layouts qemud adds to L{qemud.rpc.remote}'s table (libvirt 9.0 remote_protocol.x).
_VCPUINFO_MAX = 16384
_CPUMAPS_MAX = 8388608
_NODE_MAX_CELLS = 1024
_Dom = ("dom", remote.NonnullDomain)
_Str = String(remote.STRING_MAX)
VcpuInfoStruct = Struct(("number", UInt), ("state", Int), ("cpu_time", UHyper), ("cpu", Int),
                        name="remote_vcpu_info")
GetVcpusArgs = Struct(_Dom, ("maxinfo", Int), ("maplen", Int),
                      name="remote_domain_get_vcpus_args")
GetVcpusRet = Struct(("info", VarArray(VcpuInfoStruct, _VCPUINFO_MAX)),
                     ("cpumaps", VarOpaque(_CPUMAPS_MAX)), name="remote_domain_get_vcpus_ret")
BlockStatsArgs = Struct(_Dom, ("path", _Str), name="remote_domain_block_stats_args")
BlockStatsRet = Struct(*((f, Hyper) for f in ("rd_req", "rd_bytes", "wr_req", "wr_bytes",
                                              "errs")), name="remote_domain_block_stats_ret")
InterfaceStatsArgs = Struct(_Dom, ("device", _Str), name="remote_domain_interface_stats_args")
InterfaceStatsRet = Struct(*((f, Hyper) for f in (
    "rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets", "tx_errs",
    "tx_drop")), name="remote_domain_interface_stats_ret")
CellsFreeMemoryArgs = Struct(("startCell", Int), ("maxcells", Int),
                             name="remote_node_get_cells_free_memory_args")
CellsFreeMemoryRet = Struct(("cells", VarArray(UHyper, _NODE_MAX_CELLS)),
                            name="remote_node_get_cells_free_memory_ret")
NodeMemoryStatsArgs = Struct(("nparams", Int), ("cellNum", Int), ("flags", UInt),
                             name="remote_node_get_memory_stats_args")
NodeMemoryStat = Struct(("field", _Str), ("value", UHyper), name="remote_node_get_memory_stats")
NodeMemoryStatsRet = Struct(("params", VarArray(NodeMemoryStat, 16)), ("nparams", Int),
                            name="remote_node_get_memory_stats_ret")

EXTRA_LAYOUTS: dict[int, tuple[XDRType, XDRType]] = {
    PROC.NODE_GET_MEMORY_STATS: (NodeMemoryStatsArgs, NodeMemoryStatsRet),
    PROC.DOMAIN_GET_VCPUS: (GetVcpusArgs, GetVcpusRet),
    PROC.DOMAIN_BLOCK_STATS: (BlockStatsArgs, BlockStatsRet),
    PROC.DOMAIN_INTERFACE_STATS: (InterfaceStatsArgs, InterfaceStatsRet),
    PROC.NODE_GET_CELLS_FREE_MEMORY: (CellsFreeMemoryArgs, CellsFreeMemoryRet),
}
"""Argument and reply layouts of procedures L{qemud.rpc.remote} leaves undescribed."""


class ClientContext(Protocol):
    """
    What a handler may see and change of the calling connection.

    @ivar readonly: whether mutating procedures are refused.
    @ivar is_open: whether C{CONNECT_OPEN} succeeded (and no CLOSE since).
    @ivar uri: the URI the client opened, C{None} before open.
    @ivar close_callback: whether the client registered a close callback.
    """

    readonly: bool
    is_open: bool
    uri: str | None
    close_callback: bool

    def enable_keepalive(self) -> None:
        """The client asked for the keepalive feature: start pinging it."""

    def connection_closed(self) -> None:
        """C{CONNECT_CLOSE}: drop event registrations."""

    def register_callback(self, event_id: int, uuid: bytes | None) -> int:
        """Callback-mode registration; returns the new callback id."""

    def deregister_callback(self, callback_id: int) -> None:
        """Callback-mode deregistration."""

    def register_legacy(self, event_id: int) -> None:
        """Legacy registration of one event id."""

    def deregister_legacy(self, event_id: int) -> None:
        """Legacy deregistration of one event id."""


Handler = Callable[[ClientContext, Any], Any]


class Entry(NamedTuple):
    """
    One implemented procedure.

    @ivar proc: its L{Procedure} row.
    @ivar handler: C{handler(client, args) -> ret value or Deferred}.
    @ivar args: the argument layout, C{None} when void (nothing decoded).
    @ivar ret: the reply layout.
    @ivar needs_open: whether C{CONNECT_OPEN} must have happened.
    """

    proc: Procedure
    handler: Handler
    args: XDRType | None
    ret: XDRType
    needs_open: bool


def _check_flags(flags: int, allowed: int, function: str) -> None:
    if flags & ~allowed:
        raise InvalidArgError(f"unsupported flags (0x{flags & ~allowed:x}) in function {function}")


def _dom(ref: Any) -> tuple[str, bytes, int]:
    return (ref.name, ref.uuid, ref.id)


def _fields(obj: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    if isinstance(obj, tuple):
        return tuple(obj)
    return tuple(getattr(obj, n) for n in names)


def _c_chars(text: str | bytes, size: int) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return data[:size - 1].ljust(size, b"\0")


_DOMAIN_INFO_FIELDS = ("state", "max_mem_kib", "memory_kib", "vcpus", "cpu_time_ns")
_NODE_INFO_FIELDS = ("model", "memory_kib", "cpus", "mhz", "nodes", "sockets", "cores",
                     "threads")
_JOB_INFO_FIELDS = ("type", "time_elapsed", "time_remaining", "data_total", "data_processed",
                    "data_remaining", "mem_total", "mem_processed", "mem_remaining",
                    "file_total", "file_processed", "file_remaining")


class Dispatcher:
    """
    The REMOTE program's procedure table bound to one driver.

    @ivar driver: the C{DomainDriver}.
    @ivar secure: whether the listener is UNIX or TLS (C{CONNECT_IS_SECURE}).
    @ivar default_uri: the URI reported to clients that opened without one.
    @ivar entries: implemented procedures by number.
    """

    def __init__(self, driver: Any, *, secure: bool, default_uri: str) -> None:
        self.driver = driver
        self.secure = secure
        self.default_uri = default_uri
        self.entries: dict[int, Entry] = {}
        for number, (method, needs) in self._handlers().items():
            if all(callable(getattr(driver, n, None)) for n in needs):
                proc = PROCEDURES[number]
                if number in EXTRA_LAYOUTS and proc.args is None:
                    args_t, ret_t = EXTRA_LAYOUTS[number]
                    proc = dataclasses.replace(proc, args=args_t, ret=ret_t)
                assert proc.args is not None and proc.ret is not None, proc
                self.entries[number] = Entry(
                    proc, method, None if proc.args is VOID else proc.args, proc.ret,
                    number not in PRE_OPEN_PROCEDURES)

    def call(self, client: ClientContext, number: int, payload: bytes) -> Any:
        """
        Run one REMOTE call.

        @param client: the calling connection.
        @param number: the procedure number.
        @param payload: the XDR arguments.
        @return: the encoded reply payload (C{bytes}), or a C{Deferred}
            firing with it.
        @raise qemud.errors.QemudError: for every refusal and failure the
            client should see (also as the Deferred's failure).
        """
        entry = self.entries.get(number)
        if entry is None:
            proc = PROCEDURES.get(number)
            if proc is None:
                raise RPCError(f"unknown procedure: {number}")
            self._check_access(client, proc, number not in PRE_OPEN_PROCEDURES)
            raise NoSupportError(proc.api_name)
        if (entry.needs_open and not client.is_open) or (
                client.readonly and not entry.proc.readonly_ok):
            self._check_access(client, entry.proc, entry.needs_open)
        if entry.args is None:
            args = None
        else:
            try:
                args, _ = entry.args.decode(payload, 0)
            except WireError as e:
                raise RPCError("Unable to decode message payload") from e
        result = entry.handler(client, args)
        if isinstance(result, Deferred):
            return result.addCallback(entry.ret.encode)
        return entry.ret.encode(result)

    @staticmethod
    def _check_access(client: ClientContext, proc: Procedure, needs_open: bool) -> None:
        if needs_open and not client.is_open:
            raise InternalError("connection not open")
        if client.readonly and not proc.readonly_ok:
            raise OperationDeniedError(f"read only access prevents {proc.api_name}")

    def _handlers(self) -> dict[int, tuple[Handler, tuple[str, ...]]]:
        """
        @return: procedure number to (handler, driver methods it needs).
        """
        return {
            PROC.CONNECT_OPEN: (self._open, ()),
            PROC.CONNECT_CLOSE: (self._close, ()),
            PROC.AUTH_LIST: (lambda c, a: ([remote.AUTH_NONE],), ()),
            PROC.CONNECT_SUPPORTS_FEATURE: (self._supports_feature, ()),
            PROC.CONNECT_REGISTER_CLOSE_CALLBACK: (self._register_close_cb, ()),
            PROC.CONNECT_UNREGISTER_CLOSE_CALLBACK: (self._unregister_close_cb, ()),
            PROC.CONNECT_GET_URI: (self._get_uri, ()),
            PROC.CONNECT_IS_SECURE: (lambda c, a: (1 if self.secure else 0,), ()),
            PROC.CONNECT_GET_TYPE: (lambda c, a: (HYPERVISOR_TYPE,), ()),
            PROC.CONNECT_GET_VERSION: (self._get_version, ("hypervisor_version",)),
            PROC.CONNECT_GET_LIB_VERSION: (lambda c, a: (LIB_VERSION,), ()),
            PROC.CONNECT_GET_HOSTNAME: (lambda c, a: (self.driver.hostname(),), ("hostname",)),
            PROC.NODE_GET_INFO: (self._node_info, ("node_info",)),
            PROC.CONNECT_GET_CAPABILITIES: (
                lambda c, a: self.driver.capabilities_xml().addCallback(lambda xml: (xml,)),
                ("capabilities_xml",)),
            PROC.NODE_GET_FREE_MEMORY: (
                lambda c, a: (self.driver.node_free_memory(),), ("node_free_memory",)),
            # No security driver: libvirtd reports model "none", DOI "0".
            PROC.NODE_GET_SECURITY_MODEL: (lambda c, a: (b"none\0", b"0\0"), ()),
            PROC.CONNECT_LIST_ALL_DOMAINS: (self._list_all, ("list_domains",)),
            PROC.CONNECT_NUM_OF_DOMAINS: (self._num_of_domains, ("list_domains",)),
            PROC.CONNECT_LIST_DOMAINS: (self._list_domains, ("list_domains",)),
            PROC.CONNECT_NUM_OF_DEFINED_DOMAINS: (self._num_of_defined, ("list_domains",)),
            PROC.CONNECT_LIST_DEFINED_DOMAINS: (self._list_defined, ("list_domains",)),
            PROC.DOMAIN_LOOKUP_BY_NAME: (
                lambda c, a: (_dom(self.driver.lookup_by_name(a.name)),), ("lookup_by_name",)),
            PROC.DOMAIN_LOOKUP_BY_UUID: (
                lambda c, a: (_dom(self.driver.lookup_by_uuid(a.uuid)),), ("lookup_by_uuid",)),
            PROC.DOMAIN_LOOKUP_BY_ID: (
                lambda c, a: (_dom(self.driver.lookup_by_id(a.id)),), ("lookup_by_id",)),
            PROC.DOMAIN_DEFINE_XML: (
                lambda c, a: (_dom(self.driver.define_xml(a.xml)),), ("define_xml",)),
            PROC.DOMAIN_DEFINE_XML_FLAGS: (self._define_xml_flags, ("define_xml",)),
            PROC.DOMAIN_UNDEFINE: (
                lambda c, a: self.driver.undefine(a.dom.uuid, 0), ("undefine",)),
            PROC.DOMAIN_UNDEFINE_FLAGS: (
                lambda c, a: self.driver.undefine(a.dom.uuid, a.flags), ("undefine",)),
            PROC.DOMAIN_CREATE: (self._create, ("create",)),
            PROC.DOMAIN_CREATE_WITH_FLAGS: (self._create_with_flags, ("create",)),
            PROC.DOMAIN_CREATE_XML: (self._create_xml, ("create_xml",)),
            PROC.DOMAIN_DESTROY: (lambda c, a: self._void(self.driver.destroy(a.dom.uuid, 0)),
                                  ("destroy",)),
            PROC.DOMAIN_DESTROY_FLAGS: (
                lambda c, a: self._void(self.driver.destroy(a.dom.uuid, a.flags)), ("destroy",)),
            PROC.DOMAIN_SHUTDOWN: (
                lambda c, a: self._void(self.driver.shutdown(a.dom.uuid, 0)), ("shutdown",)),
            PROC.DOMAIN_SHUTDOWN_FLAGS: (
                lambda c, a: self._void(self.driver.shutdown(a.dom.uuid, a.flags)),
                ("shutdown",)),
            PROC.DOMAIN_REBOOT: (
                lambda c, a: self._void(self.driver.reboot(a.dom.uuid, a.flags)), ("reboot",)),
            PROC.DOMAIN_RESET: (self._reset, ("reset",)),
            PROC.DOMAIN_SUSPEND: (
                lambda c, a: self._void(self.driver.suspend(a.dom.uuid)), ("suspend",)),
            PROC.DOMAIN_RESUME: (
                lambda c, a: self._void(self.driver.resume(a.dom.uuid)), ("resume",)),
            PROC.DOMAIN_GET_XML_DESC: (self._get_xml_desc, ("get_xml_desc",)),
            PROC.DOMAIN_GET_INFO: (self._get_info, ("get_info",)),
            PROC.DOMAIN_GET_STATE: (self._get_state, ("get_state",)),
            PROC.DOMAIN_GET_OS_TYPE: (
                lambda c, a: (self.driver.get_os_type(a.dom.uuid),), ("get_os_type",)),
            PROC.DOMAIN_IS_ACTIVE: (
                lambda c, a: (int(bool(self.driver.is_active(a.dom.uuid))),), ("is_active",)),
            PROC.DOMAIN_IS_PERSISTENT: (
                lambda c, a: (int(bool(self.driver.is_persistent(a.dom.uuid))),),
                ("is_persistent",)),
            PROC.DOMAIN_GET_AUTOSTART: (
                lambda c, a: (int(bool(self.driver.get_autostart(a.dom.uuid))),),
                ("get_autostart",)),
            PROC.DOMAIN_SET_AUTOSTART: (
                lambda c, a: self.driver.set_autostart(a.dom.uuid, bool(a.autostart)),
                ("set_autostart",)),
            PROC.DOMAIN_HAS_MANAGED_SAVE_IMAGE: (self._has_managed_save, ("has_managed_save",)),
            PROC.DOMAIN_SNAPSHOT_NUM: (self._snapshot_num, ("lookup_by_uuid",)),
            PROC.DOMAIN_GET_MESSAGES: (self._get_messages, ("lookup_by_uuid",)),
            PROC.DOMAIN_IS_UPDATED: (self._is_updated, ("lookup_by_uuid",)),
            PROC.DOMAIN_GET_SECURITY_LABEL: (self._security_label, ("lookup_by_uuid",)),
            PROC.DOMAIN_GET_MAX_VCPUS: (
                lambda c, a: (self.driver.get_max_vcpus(a.dom.uuid),), ("get_max_vcpus",)),
            PROC.DOMAIN_GET_VCPUS_FLAGS: (
                lambda c, a: (self.driver.get_vcpus(a.dom.uuid, a.flags),), ("get_vcpus",)),
            # events
            PROC.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: (self._cb_register, ()),
            PROC.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: (
                lambda c, a: c.deregister_callback(a.callbackID), ()),
            PROC.CONNECT_DOMAIN_EVENT_REGISTER_ANY: (
                lambda c, a: c.register_legacy(a.eventID), ()),
            PROC.CONNECT_DOMAIN_EVENT_DEREGISTER_ANY: (
                lambda c, a: c.deregister_legacy(a.eventID), ()),
            PROC.CONNECT_DOMAIN_EVENT_REGISTER: (self._legacy_register, ()),
            PROC.CONNECT_DOMAIN_EVENT_DEREGISTER: (self._legacy_deregister, ()),
            # second tier
            PROC.DOMAIN_SAVE: (
                lambda c, a: self._void(self.driver.save(a.dom.uuid, a.to, None, 0)), ("save",)),
            PROC.DOMAIN_SAVE_FLAGS: (
                lambda c, a: self._void(self.driver.save(a.dom.uuid, a.to, a.dxml, a.flags)),
                ("save",)),
            PROC.DOMAIN_RESTORE: (
                lambda c, a: self._void(self.driver.restore(a.from_, None, 0)), ("restore",)),
            PROC.DOMAIN_RESTORE_FLAGS: (
                lambda c, a: self._void(self.driver.restore(a.from_, a.dxml, a.flags)),
                ("restore",)),
            PROC.DOMAIN_MANAGED_SAVE: (
                lambda c, a: self._void(self.driver.managed_save(a.dom.uuid, a.flags)),
                ("managed_save",)),
            PROC.DOMAIN_MANAGED_SAVE_REMOVE: (
                lambda c, a: self._void(self.driver.managed_save_remove(a.dom.uuid, a.flags)),
                ("managed_save_remove",)),
            PROC.DOMAIN_GET_JOB_INFO: (self._get_job_info, ("get_job_info",)),
            PROC.DOMAIN_ATTACH_DEVICE: (
                lambda c, a: self._void(self.driver.attach_device(a.dom.uuid, a.xml,
                                                                  _AFFECT_LIVE)),
                ("attach_device",)),
            PROC.DOMAIN_ATTACH_DEVICE_FLAGS: (
                lambda c, a: self._void(self.driver.attach_device(a.dom.uuid, a.xml, a.flags)),
                ("attach_device",)),
            PROC.DOMAIN_DETACH_DEVICE: (
                lambda c, a: self._void(self.driver.detach_device(a.dom.uuid, a.xml,
                                                                  _AFFECT_LIVE)),
                ("detach_device",)),
            PROC.DOMAIN_DETACH_DEVICE_FLAGS: (
                lambda c, a: self._void(self.driver.detach_device(a.dom.uuid, a.xml, a.flags)),
                ("detach_device",)),
            PROC.DOMAIN_GET_VCPUS: (self._get_vcpu_info, ("get_vcpu_info",)),
            PROC.DOMAIN_MEMORY_STATS: (self._memory_stats, ("memory_stats",)),
            PROC.DOMAIN_BLOCK_STATS: (
                lambda c, a: self.driver.block_stats(a.dom.uuid, a.path), ("block_stats",)),
            PROC.DOMAIN_INTERFACE_STATS: (
                lambda c, a: self.driver.interface_stats(a.dom.uuid, a.device),
                ("interface_stats",)),
            PROC.CONNECT_GET_ALL_DOMAIN_STATS: (self._all_domain_stats,
                                                ("get_all_domain_stats",)),
            PROC.NODE_GET_CELLS_FREE_MEMORY: (self._cells_free_memory, ("node_free_memory",)),
            PROC.NODE_GET_MEMORY_STATS: (self._node_memory_stats, ("node_memory_stats",)),
            PROC.DOMAIN_UPDATE_DEVICE_FLAGS: (
                lambda c, a: self._void(self.driver.update_device(a.dom.uuid, a.xml, a.flags)),
                ("update_device",)),
        }

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _void(result: Any) -> Any:
        """Discard a driver result (sync or Deferred) for a void reply."""
        if isinstance(result, Deferred):
            return result.addCallback(lambda _: None)
        return None

    # -- connection ----------------------------------------------------------

    def _open(self, client: ClientContext, args: Any) -> None:
        if client.is_open:
            raise InternalError("connection already open")
        if args.flags & _CONNECT_RO:
            client.readonly = True
        name = args.name
        client.uri = name if name not in (None, "", "qemu:///", "qemud:///") else self.default_uri
        client.is_open = True

    def _close(self, client: ClientContext, args: Any) -> None:
        client.connection_closed()
        client.is_open = False
        client.close_callback = False

    def _supports_feature(self, client: ClientContext, args: Any) -> tuple[int]:
        feature = args.feature
        if feature == remote.FEATURE_PROGRAM_KEEPALIVE:
            client.enable_keepalive()
        return (1 if feature in _SUPPORTED_FEATURES else 0,)

    def _register_close_cb(self, client: ClientContext, args: Any) -> None:
        client.close_callback = True

    def _unregister_close_cb(self, client: ClientContext, args: Any) -> None:
        client.close_callback = False

    def _get_uri(self, client: ClientContext, args: Any) -> tuple[str]:
        return (client.uri or self.default_uri,)

    def _get_version(self, client: ClientContext, args: Any) -> tuple[int]:
        return (self.driver.hypervisor_version(),)

    def _node_info(self, client: ClientContext, args: Any) -> tuple[Any, ...]:
        model, *rest = _fields(self.driver.node_info(), _NODE_INFO_FIELDS)
        return (_c_chars(model, remote.NODE_INFO_MODEL_LEN), *rest)

    # -- listing -------------------------------------------------------------

    def _list_all(self, client: ClientContext, args: Any) -> tuple[list[Any], int]:
        refs = self.driver.list_domains(args.flags)
        return ([_dom(r) for r in refs] if args.need_results else [], len(refs))

    def _num_of_domains(self, client: ClientContext, args: Any) -> tuple[int]:
        return (len(self.driver.list_domains(_LIST_ACTIVE)),)

    def _list_domains(self, client: ClientContext, args: Any) -> tuple[list[int]]:
        if args.maxids > remote.DOMAIN_ID_LIST_MAX:
            raise RPCError("maxids > REMOTE_DOMAIN_ID_LIST_MAX")
        ids = [r.id for r in self.driver.list_domains(_LIST_ACTIVE)]
        return (ids[:max(args.maxids, 0)],)

    def _num_of_defined(self, client: ClientContext, args: Any) -> tuple[int]:
        return (len(self.driver.list_domains(_LIST_INACTIVE)),)

    def _list_defined(self, client: ClientContext, args: Any) -> tuple[list[str]]:
        if args.maxnames > remote.DOMAIN_NAME_LIST_MAX:
            raise RPCError("maxnames > REMOTE_DOMAIN_NAME_LIST_MAX")
        names = [r.name for r in self.driver.list_domains(_LIST_INACTIVE)]
        return (names[:max(args.maxnames, 0)],)

    # -- define / lifecycle --------------------------------------------------

    def _define_xml_flags(self, client: ClientContext, args: Any) -> tuple[Any]:
        _check_flags(args.flags, _DEFINE_VALIDATE, "qemuDomainDefineXMLFlags")
        return (_dom(self.driver.define_xml(args.xml)),)

    def _create(self, client: ClientContext, args: Any) -> Any:
        return self._void(self.driver.create(args.dom.uuid, 0))

    def _create_with_flags(self, client: ClientContext, args: Any) -> Any:
        return self._dom_result(self.driver.create(args.dom.uuid, args.flags))

    def _create_xml(self, client: ClientContext, args: Any) -> Any:
        return self._dom_result(self.driver.create_xml(args.xml_desc, args.flags))

    @staticmethod
    def _dom_result(result: Any) -> Any:
        if isinstance(result, Deferred):
            return result.addCallback(lambda ref: (_dom(ref),))
        return (_dom(result),)

    def _reset(self, client: ClientContext, args: Any) -> Any:
        _check_flags(args.flags, 0, "qemuDomainReset")
        return self._void(self.driver.reset(args.dom.uuid))

    # -- queries -------------------------------------------------------------

    def _get_xml_desc(self, client: ClientContext, args: Any) -> tuple[str]:
        if client.readonly and args.flags & (_XML_SECURE | _XML_MIGRATABLE):
            raise OperationDeniedError("read only access prevents virDomainGetXMLDesc")
        return (self.driver.get_xml_desc(args.dom.uuid, args.flags),)

    def _get_info(self, client: ClientContext, args: Any) -> tuple[Any, ...]:
        return _fields(self.driver.get_info(args.dom.uuid), _DOMAIN_INFO_FIELDS)

    def _get_state(self, client: ClientContext, args: Any) -> tuple[int, int]:
        _check_flags(args.flags, 0, "qemuDomainGetState")
        state, reason = self.driver.get_state(args.dom.uuid)
        return (state, reason)

    def _has_managed_save(self, client: ClientContext, args: Any) -> tuple[int]:
        _check_flags(args.flags, 0, "qemuDomainHasManagedSaveImage")
        return (int(bool(self.driver.has_managed_save(args.dom.uuid))),)

    def _snapshot_num(self, client: ClientContext, args: Any) -> tuple[int]:
        self.driver.lookup_by_uuid(args.dom.uuid)
        return (0,)

    def _get_messages(self, client: ClientContext, args: Any) -> tuple[list[str]]:
        _check_flags(args.flags, 1 | 2, "qemuDomainGetMessages")
        self.driver.lookup_by_uuid(args.dom.uuid)
        return ([],)

    def _is_updated(self, client: ClientContext, args: Any) -> tuple[int]:
        self.driver.lookup_by_uuid(args.dom.uuid)
        return (0,)

    def _security_label(self, client: ClientContext, args: Any) -> tuple[bytes, int]:
        self.driver.lookup_by_uuid(args.dom.uuid)
        return (b"\0", 0)

    def _get_job_info(self, client: ClientContext, args: Any) -> Any:
        result = self.driver.get_job_info(args.dom.uuid)
        if isinstance(result, Deferred):
            return result.addCallback(_fields, _JOB_INFO_FIELDS)
        return _fields(result, _JOB_INFO_FIELDS)

    def _get_vcpu_info(self, client: ClientContext, args: Any) -> Any:
        if args.maxinfo > _VCPUINFO_MAX or args.maxinfo * args.maplen > _CPUMAPS_MAX:
            raise RPCError("maxinfo * maplen > REMOTE_CPUMAPS_MAX")
        if client.readonly and args.maplen > 0:
            raise OperationDeniedError("read only access prevents virDomainGetVcpus")

        def encode(result: Any) -> tuple[list[Any], bytes]:
            infos, maps = result
            return ([(i.number, i.state, i.cpu_time_ns, i.cpu) for i in infos], maps)

        return self.driver.get_vcpu_info(args.dom.uuid, args.maxinfo,
                                         args.maplen).addCallback(encode)

    def _memory_stats(self, client: ClientContext, args: Any) -> Any:
        _check_flags(args.flags, 0, "qemuDomainMemoryStats")
        if args.maxStats > remote.DOMAIN_MEMORY_STATS_MAX:
            raise RPCError("maxStats > REMOTE_DOMAIN_MEMORY_STATS_MAX")
        return self.driver.memory_stats(args.dom.uuid, args.maxStats).addCallback(
            lambda stats: (list(stats),))

    def _all_domain_stats(self, client: ClientContext, args: Any) -> Any:
        uuids = [d.uuid for d in args.doms]
        d = self.driver.get_all_domain_stats(uuids, args.stats, args.flags)
        return d.addCallback(lambda records: ([(_dom(ref), params) for ref, params in records],))

    def _cells_free_memory(self, client: ClientContext, args: Any) -> tuple[list[int]]:
        if args.maxcells > _NODE_MAX_CELLS:
            raise RPCError("maxCells > REMOTE_NODE_MAX_CELLS")
        if args.startCell != 0 or args.maxcells < 1:
            raise InvalidArgError(f"start cell {args.startCell} out of range (0-0)")
        return ([self.driver.node_free_memory()],)

    def _node_memory_stats(self, client: ClientContext, args: Any) -> Any:
        _check_flags(args.flags, 0, "nodeGetMemoryStats")
        if args.cellNum not in (-1, 0):
            raise InvalidArgError(f"Invalid cell number {args.cellNum}")
        stats = list(self.driver.node_memory_stats())
        if args.nparams == 0:
            return ([], len(stats))
        if args.nparams < len(stats):
            raise InvalidArgError("nparams too small")
        return (stats, len(stats))

    # -- events --------------------------------------------------------------

    def _cb_register(self, client: ClientContext, args: Any) -> tuple[int]:
        uuid = args.dom.uuid if args.dom is not None else None
        return (client.register_callback(args.eventID, uuid),)

    def _legacy_register(self, client: ClientContext, args: Any) -> tuple[int]:
        client.register_legacy(remote.EVENT_ID_LIFECYCLE)
        return (1,)

    def _legacy_deregister(self, client: ClientContext, args: Any) -> tuple[int]:
        client.deregister_legacy(remote.EVENT_ID_LIFECYCLE)
        return (0,)
