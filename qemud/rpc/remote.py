# -*- test-case-name: tests.rpc.test_remote -*-
"""
libvirt's REMOTE program as data: program numbers, message types, procedure
numbers, the XDR layouts of their arguments, replies and event messages, and
a L{Procedure} table covering every procedure number 1..443 of libvirt 9.0
(C{remote_protocol.x}).

Procedure names and numbers are facts about the wire protocol; layouts are
written here by hand with the combinators of L{qemud.rpc.xdr} for the
procedures qemud implements or is likely to (see C{libvirt-rpc.md} §3.2,
§3.5, §6.1).  Every other procedure has C{args=ret=None}: the daemon answers
it with NO_SUPPORT and never decodes its payload.

This module is pure (standard library only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qemud.rpc.framing import (
    CALL,
    CALL_WITH_FDS,
    CONTINUE,
    ERROR,
    MESSAGE,
    OK,
    REPLY,
    REPLY_WITH_FDS,
    STREAM,
    STREAM_HOLE,
)
from qemud.rpc.xdr import (
    VOID,
    CharArray,
    Double,
    Enum,
    Hyper,
    Int,
    Memo,
    Opaque,
    Optional,
    String,
    Struct,
    UHyper,
    UInt,
    Union,
    VarArray,
    VarCharArray,
    XDRType,
)

__all__ = [
    "REMOTE_PROGRAM", "QEMU_PROGRAM", "LXC_PROGRAM", "KEEPALIVE_PROGRAM", "ADMIN_PROGRAM",
    "PROTOCOL_VERSION", "CALL", "REPLY", "MESSAGE", "STREAM", "CALL_WITH_FDS", "REPLY_WITH_FDS",
    "STREAM_HOLE", "OK", "ERROR", "CONTINUE", "Procedure", "PROCEDURES", "PROC", "PROC_MAX",
    "QEMU_PROCEDURES", "LXC_PROCEDURES", "KEEPALIVE_PING", "KEEPALIVE_PONG", "api_name",
]

REMOTE_PROGRAM = 0x20008086
QEMU_PROGRAM = 0x20008087
LXC_PROGRAM = 0x00068000
KEEPALIVE_PROGRAM = 0x6B656570
ADMIN_PROGRAM = 0x06900690
PROTOCOL_VERSION = 1

KEEPALIVE_PING = 1
KEEPALIVE_PONG = 2

# ---------------------------------------------------------------------------
# limits (remote_protocol.x, libvirt 9.0)

STRING_MAX = 4194304
DOMAIN_LIST_MAX = 16384
DOMAIN_ID_LIST_MAX = 16384
DOMAIN_NAME_LIST_MAX = 16384
AUTH_TYPE_LIST_MAX = 20
SECURITY_MODEL_MAX = 257
SECURITY_LABEL_MAX = 4097
SECURITY_DOI_MAX = 257
DOMAIN_MEMORY_STATS_MAX = 1024
DOMAIN_MESSAGES_MAX = 2048
DOMAIN_JOB_STATS_MAX = 64
CONNECT_GET_ALL_DOMAIN_STATS_MAX = 262144
UUID_BUFLEN = 16
NODE_INFO_MODEL_LEN = 32

# remote_auth_type
AUTH_NONE = 0
AUTH_SASL = 1
AUTH_POLKIT = 2

# virTypedParameterType
TYPED_PARAM_INT = 1
TYPED_PARAM_UINT = 2
TYPED_PARAM_LLONG = 3
TYPED_PARAM_ULLONG = 4
TYPED_PARAM_DOUBLE = 5
TYPED_PARAM_BOOLEAN = 6
TYPED_PARAM_STRING = 7

# virDomainEventID: 27 IDs in libvirt 9.0
EVENT_ID_LIFECYCLE = 0
EVENT_ID_REBOOT = 1
EVENT_ID_TRAY_CHANGE = 10
EVENT_ID_DEVICE_REMOVED = 15
EVENT_ID_DEVICE_ADDED = 19
EVENT_ID_LAST = 27

# VIR_DRV_FEATURE_*
FEATURE_FD_PASSING = 8
FEATURE_TYPED_PARAM_STRING = 9
FEATURE_PROGRAM_KEEPALIVE = 10
FEATURE_REMOTE_EVENT_CALLBACK = 14
FEATURE_REMOTE_CLOSE_CALLBACK = 15

# ---------------------------------------------------------------------------
# shared types

NonnullString = String(STRING_MAX)
RemoteString = Optional(NonnullString)
UUID = Opaque(UUID_BUFLEN)

# Memoized: the same few domains are encoded in every list, lookup and event.
NonnullDomain = Memo(Struct(("name", NonnullString), ("uuid", UUID), ("id", Int),
                            name="remote_nonnull_domain"))
RemoteDomain = Optional(NonnullDomain)
NonnullNetwork = Struct(("name", NonnullString), ("uuid", UUID), name="remote_nonnull_network")
RemoteNetwork = Optional(NonnullNetwork)

TypedParamValue = Union({
    TYPED_PARAM_INT: Int,
    TYPED_PARAM_UINT: UInt,
    TYPED_PARAM_LLONG: Hyper,
    TYPED_PARAM_ULLONG: UHyper,
    TYPED_PARAM_DOUBLE: Double,
    TYPED_PARAM_BOOLEAN: Int,
    TYPED_PARAM_STRING: NonnullString,
}, name="remote_typed_param_value")
TypedParam = Struct(("field", NonnullString), ("value", TypedParamValue),
                    name="remote_typed_param")

RemoteErrorStruct = Struct(
    ("code", Int), ("domain", Int), ("message", RemoteString), ("level", Int),
    ("dom", RemoteDomain), ("str1", RemoteString), ("str2", RemoteString),
    ("str3", RemoteString), ("int1", Int), ("int2", Int), ("net", RemoteNetwork),
    name="remote_error")

AuthType = Enum((AUTH_NONE, AUTH_SASL, AUTH_POLKIT), name="remote_auth_type")


def _s(name: str, *fields: tuple[str, XDRType]) -> Struct:
    return Struct(*fields, name=name)


_dom = ("dom", NonnullDomain)
_flags = ("flags", UInt)


def _dom_args(name: str) -> Struct:
    return _s(name, _dom)


def _dom_flags_args(name: str) -> Struct:
    return _s(name, _dom, _flags)


def _int_ret(name: str, field: str) -> Struct:
    return _s(name, (field, Int))


# ---------------------------------------------------------------------------
# argument / reply layouts: number -> (args, ret); VOID for an empty payload

OpenArgs = _s("remote_connect_open_args", ("name", RemoteString), _flags)
GetTypeRet = _s("remote_connect_get_type_ret", ("type", NonnullString))
GetVersionRet = _s("remote_connect_get_version_ret", ("hv_ver", UHyper))
GetLibVersionRet = _s("remote_connect_get_lib_version_ret", ("lib_ver", UHyper))
GetHostnameRet = _s("remote_connect_get_hostname_ret", ("hostname", NonnullString))
GetURIRet = _s("remote_connect_get_uri_ret", ("uri", NonnullString))
ConnectGetMaxVcpusArgs = _s("remote_connect_get_max_vcpus_args", ("type", RemoteString))
ConnectGetMaxVcpusRet = _int_ret("remote_connect_get_max_vcpus_ret", "max_vcpus")
NodeGetInfoRet = _s("remote_node_get_info_ret", ("model", CharArray(NODE_INFO_MODEL_LEN)),
                    ("memory", UHyper), ("cpus", Int), ("mhz", Int), ("nodes", Int),
                    ("sockets", Int), ("cores", Int), ("threads", Int))
GetCapabilitiesRet = _s("remote_connect_get_capabilities_ret", ("capabilities", NonnullString))
SupportsFeatureArgs = _s("remote_connect_supports_feature_args", ("feature", Int))
SupportsFeatureRet = _int_ret("remote_connect_supports_feature_ret", "supported")
AuthListRet = _s("remote_auth_list_ret", ("types", VarArray(AuthType, AUTH_TYPE_LIST_MAX)))
AuthPolkitRet = _int_ret("remote_auth_polkit_ret", "complete")
IsSecureRet = _int_ret("remote_connect_is_secure_ret", "secure")
NodeGetFreeMemoryRet = _s("remote_node_get_free_memory_ret", ("freeMem", UHyper))
NodeGetSecurityModelRet = _s("remote_node_get_security_model_ret",
                             ("model", VarCharArray(SECURITY_MODEL_MAX)),
                             ("doi", VarCharArray(SECURITY_DOI_MAX)))
DomainGetSecurityLabelRet = _s("remote_domain_get_security_label_ret",
                               ("label", VarCharArray(SECURITY_LABEL_MAX)), ("enforcing", Int))

XMLFlagsArgs = _s("remote_domain_create_xml_args", ("xml_desc", NonnullString), _flags)
DomainRet = _s("remote_domain_ret", _dom)
DefineXMLArgs = _s("remote_domain_define_xml_args", ("xml", NonnullString))
DefineXMLFlagsArgs = _s("remote_domain_define_xml_flags_args", ("xml", NonnullString), _flags)
DomainArgs = _dom_args("remote_domain_args")
DomainFlagsArgs = _dom_flags_args("remote_domain_flags_args")
DomainXMLArgs = _s("remote_domain_attach_device_args", _dom, ("xml", NonnullString))
DomainXMLFlagsArgs = _s("remote_domain_attach_device_flags_args", _dom,
                        ("xml", NonnullString), _flags)
GetXMLDescRet = _s("remote_domain_get_xml_desc_ret", ("xml", NonnullString))
GetAutostartRet = _int_ret("remote_domain_get_autostart_ret", "autostart")
SetAutostartArgs = _s("remote_domain_set_autostart_args", _dom, ("autostart", Int))
GetInfoRet = _s("remote_domain_get_info_ret", ("state", UInt), ("maxMem", UHyper),
                ("memory", UHyper), ("nrVirtCpu", UInt), ("cpuTime", UHyper))
GetMaxMemoryRet = _s("remote_domain_get_max_memory_ret", ("memory", UHyper))
NumRet = _int_ret("remote_num_ret", "num")
GetOSTypeRet = _s("remote_domain_get_os_type_ret", ("type", NonnullString))
LookupByIDArgs = _s("remote_domain_lookup_by_id_args", ("id", Int))
LookupByNameArgs = _s("remote_domain_lookup_by_name_args", ("name", NonnullString))
LookupByUUIDArgs = _s("remote_domain_lookup_by_uuid_args", ("uuid", UUID))
ListDefinedDomainsArgs = _s("remote_connect_list_defined_domains_args", ("maxnames", Int))
ListDefinedDomainsRet = _s("remote_connect_list_defined_domains_ret",
                           ("names", VarArray(NonnullString, DOMAIN_NAME_LIST_MAX)))
ListDomainsArgs = _s("remote_connect_list_domains_args", ("maxids", Int))
ListDomainsRet = _s("remote_connect_list_domains_ret",
                    ("ids", VarArray(Int, DOMAIN_ID_LIST_MAX)))
RestoreArgs = _s("remote_domain_restore_args", ("from_", NonnullString))
SaveArgs = _s("remote_domain_save_args", _dom, ("to", NonnullString))
SaveFlagsArgs = _s("remote_domain_save_flags_args", _dom, ("to", NonnullString),
                   ("dxml", RemoteString), _flags)
RestoreFlagsArgs = _s("remote_domain_restore_flags_args", ("from_", NonnullString),
                      ("dxml", RemoteString), _flags)
CbRegisteredRet = _int_ret("remote_connect_domain_event_register_ret", "cb_registered")
EventRegisterAnyArgs = _s("remote_connect_domain_event_register_any_args", ("eventID", Int))
CallbackRegisterAnyArgs = _s("remote_connect_domain_event_callback_register_any_args",
                             ("eventID", Int), ("dom", RemoteDomain))
CallbackRegisterAnyRet = _int_ret("remote_connect_domain_event_callback_register_any_ret",
                                  "callbackID")
CallbackDeregisterAnyArgs = _s("remote_connect_domain_event_callback_deregister_any_args",
                               ("callbackID", Int))
IsActiveRet = _int_ret("remote_domain_is_active_ret", "active")
IsPersistentRet = _int_ret("remote_domain_is_persistent_ret", "persistent")
IsUpdatedRet = _int_ret("remote_domain_is_updated_ret", "updated")
HasManagedSaveRet = _int_ret("remote_domain_has_managed_save_image_ret", "result")
MemoryStat = _s("remote_domain_memory_stat", ("tag", Int), ("val", UHyper))
MemoryStatsArgs = _s("remote_domain_memory_stats_args", _dom, ("maxStats", UInt), _flags)
MemoryStatsRet = _s("remote_domain_memory_stats_ret",
                    ("stats", VarArray(MemoryStat, DOMAIN_MEMORY_STATS_MAX)))
GetJobInfoRet = _s("remote_domain_get_job_info_ret", ("type", Int),
                   *((f, UHyper) for f in (
                       "timeElapsed", "timeRemaining", "dataTotal", "dataProcessed",
                       "dataRemaining", "memTotal", "memProcessed", "memRemaining",
                       "fileTotal", "fileProcessed", "fileRemaining")))
GetStateRet = _s("remote_domain_get_state_ret", ("state", Int), ("reason", Int))
ListAllDomainsArgs = _s("remote_connect_list_all_domains_args", ("need_results", Int), _flags)
ListAllDomainsRet = _s("remote_connect_list_all_domains_ret",
                       ("domains", VarArray(NonnullDomain, DOMAIN_LIST_MAX)), ("ret", UInt))
DomainStatsRecord = _s("remote_domain_stats_record", _dom,
                       ("params", VarArray(TypedParam, CONNECT_GET_ALL_DOMAIN_STATS_MAX)))
GetAllDomainStatsArgs = _s("remote_connect_get_all_domain_stats_args",
                           ("doms", VarArray(NonnullDomain, DOMAIN_LIST_MAX)),
                           ("stats", UInt), _flags)
GetAllDomainStatsRet = _s("remote_connect_get_all_domain_stats_ret",
                          ("retStats", VarArray(DomainStatsRecord, DOMAIN_LIST_MAX)))
GetMessagesRet = _s("remote_domain_get_messages_ret",
                    ("msgs", VarArray(NonnullString, DOMAIN_MESSAGES_MAX)))

_LAYOUTS: dict[int, tuple[XDRType, XDRType]] = {
    1: (OpenArgs, VOID),
    2: (VOID, VOID),
    3: (VOID, GetTypeRet),
    4: (VOID, GetVersionRet),
    5: (ConnectGetMaxVcpusArgs, ConnectGetMaxVcpusRet),
    6: (VOID, NodeGetInfoRet),
    7: (VOID, GetCapabilitiesRet),
    8: (DomainXMLArgs, VOID),
    9: (DomainArgs, VOID),
    10: (XMLFlagsArgs, DomainRet),
    11: (DefineXMLArgs, DomainRet),
    12: (DomainArgs, VOID),
    13: (DomainXMLArgs, VOID),
    14: (DomainFlagsArgs, GetXMLDescRet),
    15: (DomainArgs, GetAutostartRet),
    16: (DomainArgs, GetInfoRet),
    17: (DomainArgs, GetMaxMemoryRet),
    18: (DomainArgs, NumRet),
    19: (DomainArgs, GetOSTypeRet),
    21: (ListDefinedDomainsArgs, ListDefinedDomainsRet),
    22: (LookupByIDArgs, DomainRet),
    23: (LookupByNameArgs, DomainRet),
    24: (LookupByUUIDArgs, DomainRet),
    25: (VOID, NumRet),
    27: (DomainFlagsArgs, VOID),
    28: (DomainArgs, VOID),
    29: (SetAutostartArgs, VOID),
    33: (DomainArgs, VOID),
    34: (DomainArgs, VOID),
    35: (DomainArgs, VOID),
    37: (ListDomainsArgs, ListDomainsRet),
    51: (VOID, NumRet),
    54: (RestoreArgs, VOID),
    55: (SaveArgs, VOID),
    59: (VOID, GetHostnameRet),
    60: (SupportsFeatureArgs, SupportsFeatureRet),
    66: (VOID, AuthListRet),
    70: (VOID, AuthPolkitRet),
    102: (VOID, NodeGetFreeMemoryRet),
    105: (VOID, CbRegisteredRet),
    106: (VOID, CbRegisteredRet),
    110: (VOID, GetURIRet),
    121: (DomainArgs, DomainGetSecurityLabelRet),
    122: (VOID, NodeGetSecurityModelRet),
    149: (VOID, IsSecureRet),
    150: (DomainArgs, IsActiveRet),
    151: (DomainArgs, IsPersistentRet),
    157: (VOID, GetLibVersionRet),
    159: (MemoryStatsArgs, MemoryStatsRet),
    160: (DomainXMLFlagsArgs, VOID),
    161: (DomainXMLFlagsArgs, VOID),
    163: (DomainArgs, GetJobInfoRet),
    167: (EventRegisterAnyArgs, VOID),
    168: (EventRegisterAnyArgs, VOID),
    174: (DomainXMLFlagsArgs, VOID),
    182: (DomainFlagsArgs, VOID),
    183: (DomainFlagsArgs, HasManagedSaveRet),
    184: (DomainFlagsArgs, VOID),
    187: (DomainFlagsArgs, NumRet),
    196: (DomainFlagsArgs, DomainRet),
    200: (DomainFlagsArgs, NumRet),
    202: (DomainArgs, IsUpdatedRet),
    212: (DomainFlagsArgs, GetStateRet),
    231: (DomainFlagsArgs, VOID),
    232: (SaveFlagsArgs, VOID),
    233: (RestoreFlagsArgs, VOID),
    234: (DomainFlagsArgs, VOID),
    245: (DomainFlagsArgs, VOID),
    258: (DomainFlagsArgs, VOID),
    273: (ListAllDomainsArgs, ListAllDomainsRet),
    316: (CallbackRegisterAnyArgs, CallbackRegisterAnyRet),
    317: (CallbackDeregisterAnyArgs, VOID),
    344: (GetAllDomainStatsArgs, GetAllDomainStatsRet),
    350: (DefineXMLFlagsArgs, DomainRet),
    360: (VOID, VOID),
    361: (VOID, VOID),
    426: (DomainFlagsArgs, GetMessagesRet),
}

# ---------------------------------------------------------------------------
# event messages (server -> client, type MESSAGE, serial 1)

LifecycleMsg = _s("remote_domain_event_lifecycle_msg", _dom, ("event", Int), ("detail", Int))
RebootMsg = _s("remote_domain_event_reboot_msg", _dom)
TrayChangeMsg = _s("remote_domain_event_tray_change_msg", _dom,
                   ("devAlias", NonnullString), ("reason", Int))
DeviceRemovedMsg = _s("remote_domain_event_device_removed_msg", _dom,
                      ("devAlias", NonnullString))
CallbackLifecycleMsg = _s("remote_domain_event_callback_lifecycle_msg",
                          ("callbackID", Int), ("msg", LifecycleMsg))
CallbackRebootMsg = _s("remote_domain_event_callback_reboot_msg",
                       ("callbackID", Int), ("msg", RebootMsg))
CallbackTrayChangeMsg = _s("remote_domain_event_callback_tray_change_msg",
                           ("callbackID", Int), ("msg", TrayChangeMsg))
CallbackDeviceRemovedMsg = _s("remote_domain_event_callback_device_removed_msg",
                              ("callbackID", Int), ("msg", DeviceRemovedMsg))
CallbackDeviceAddedMsg = _s("remote_domain_event_callback_device_added_msg",
                            ("callbackID", Int), _dom, ("devAlias", NonnullString))
CallbackMigrationIterationMsg = _s("remote_domain_event_callback_migration_iteration_msg",
                                   ("callbackID", Int), _dom, ("iteration", Int))
CallbackJobCompletedMsg = _s("remote_domain_event_callback_job_completed_msg",
                             ("callbackID", Int), _dom,
                             ("params", VarArray(TypedParam, DOMAIN_JOB_STATS_MAX)))

MESSAGES: dict[int, Struct] = {
    107: LifecycleMsg,
    169: RebootMsg,
    268: TrayChangeMsg,
    311: DeviceRemovedMsg,
    318: CallbackLifecycleMsg,
    319: CallbackRebootMsg,
    328: CallbackTrayChangeMsg,
    333: CallbackDeviceRemovedMsg,
    354: CallbackDeviceAddedMsg,
    359: CallbackMigrationIterationMsg,
    363: CallbackJobCompletedMsg,
}
"""Event message layouts by procedure number."""

CALLBACK_EVENT_PROCS = {0: 318, 1: 319, 2: 320, 3: 321, 4: 322, 5: 323, 6: 324, 7: 325, 8: 326,
                        9: 327, 10: 328, 11: 329, 12: 330, 13: 331, 14: 332, 15: 333, 16: 339,
                        17: 346, 18: 348, 19: 354, 20: 359, 21: 363, 22: 367, 23: 379, 24: 385,
                        25: 423, 26: 438}
"""Callback-mode event message procedure by event ID."""

LEGACY_EVENT_PROCS = {0: 107, 1: 169, 2: 170, 3: 171, 4: 172, 5: 173, 6: 195, 7: 224, 8: 241,
                      9: 248, 10: 268, 11: 269, 12: 270, 13: 276, 14: 292, 15: 311}
"""Legacy-mode event message procedure by event ID (IDs 0..15 only)."""

# ---------------------------------------------------------------------------
# the procedure table

_NAMES = """
CONNECT_OPEN CONNECT_CLOSE CONNECT_GET_TYPE CONNECT_GET_VERSION CONNECT_GET_MAX_VCPUS
NODE_GET_INFO CONNECT_GET_CAPABILITIES DOMAIN_ATTACH_DEVICE DOMAIN_CREATE DOMAIN_CREATE_XML
DOMAIN_DEFINE_XML DOMAIN_DESTROY DOMAIN_DETACH_DEVICE DOMAIN_GET_XML_DESC DOMAIN_GET_AUTOSTART
DOMAIN_GET_INFO DOMAIN_GET_MAX_MEMORY DOMAIN_GET_MAX_VCPUS DOMAIN_GET_OS_TYPE DOMAIN_GET_VCPUS
CONNECT_LIST_DEFINED_DOMAINS DOMAIN_LOOKUP_BY_ID DOMAIN_LOOKUP_BY_NAME DOMAIN_LOOKUP_BY_UUID
CONNECT_NUM_OF_DEFINED_DOMAINS DOMAIN_PIN_VCPU DOMAIN_REBOOT DOMAIN_RESUME DOMAIN_SET_AUTOSTART
DOMAIN_SET_MAX_MEMORY DOMAIN_SET_MEMORY DOMAIN_SET_VCPUS DOMAIN_SHUTDOWN DOMAIN_SUSPEND
DOMAIN_UNDEFINE CONNECT_LIST_DEFINED_NETWORKS CONNECT_LIST_DOMAINS CONNECT_LIST_NETWORKS
NETWORK_CREATE NETWORK_CREATE_XML NETWORK_DEFINE_XML NETWORK_DESTROY NETWORK_GET_XML_DESC
NETWORK_GET_AUTOSTART NETWORK_GET_BRIDGE_NAME NETWORK_LOOKUP_BY_NAME NETWORK_LOOKUP_BY_UUID
NETWORK_SET_AUTOSTART NETWORK_UNDEFINE CONNECT_NUM_OF_DEFINED_NETWORKS CONNECT_NUM_OF_DOMAINS
CONNECT_NUM_OF_NETWORKS DOMAIN_CORE_DUMP DOMAIN_RESTORE DOMAIN_SAVE DOMAIN_GET_SCHEDULER_TYPE
DOMAIN_GET_SCHEDULER_PARAMETERS DOMAIN_SET_SCHEDULER_PARAMETERS CONNECT_GET_HOSTNAME
CONNECT_SUPPORTS_FEATURE DOMAIN_MIGRATE_PREPARE DOMAIN_MIGRATE_PERFORM DOMAIN_MIGRATE_FINISH
DOMAIN_BLOCK_STATS DOMAIN_INTERFACE_STATS AUTH_LIST AUTH_SASL_INIT AUTH_SASL_START
AUTH_SASL_STEP AUTH_POLKIT CONNECT_NUM_OF_STORAGE_POOLS CONNECT_LIST_STORAGE_POOLS
CONNECT_NUM_OF_DEFINED_STORAGE_POOLS CONNECT_LIST_DEFINED_STORAGE_POOLS
CONNECT_FIND_STORAGE_POOL_SOURCES STORAGE_POOL_CREATE_XML STORAGE_POOL_DEFINE_XML
STORAGE_POOL_CREATE STORAGE_POOL_BUILD STORAGE_POOL_DESTROY STORAGE_POOL_DELETE
STORAGE_POOL_UNDEFINE STORAGE_POOL_REFRESH STORAGE_POOL_LOOKUP_BY_NAME
STORAGE_POOL_LOOKUP_BY_UUID STORAGE_POOL_LOOKUP_BY_VOLUME STORAGE_POOL_GET_INFO
STORAGE_POOL_GET_XML_DESC STORAGE_POOL_GET_AUTOSTART STORAGE_POOL_SET_AUTOSTART
STORAGE_POOL_NUM_OF_VOLUMES STORAGE_POOL_LIST_VOLUMES STORAGE_VOL_CREATE_XML STORAGE_VOL_DELETE
STORAGE_VOL_LOOKUP_BY_NAME STORAGE_VOL_LOOKUP_BY_KEY STORAGE_VOL_LOOKUP_BY_PATH
STORAGE_VOL_GET_INFO STORAGE_VOL_GET_XML_DESC STORAGE_VOL_GET_PATH NODE_GET_CELLS_FREE_MEMORY
NODE_GET_FREE_MEMORY DOMAIN_BLOCK_PEEK DOMAIN_MEMORY_PEEK CONNECT_DOMAIN_EVENT_REGISTER
CONNECT_DOMAIN_EVENT_DEREGISTER DOMAIN_EVENT_LIFECYCLE DOMAIN_MIGRATE_PREPARE2
DOMAIN_MIGRATE_FINISH2 CONNECT_GET_URI NODE_NUM_OF_DEVICES NODE_LIST_DEVICES
NODE_DEVICE_LOOKUP_BY_NAME NODE_DEVICE_GET_XML_DESC NODE_DEVICE_GET_PARENT
NODE_DEVICE_NUM_OF_CAPS NODE_DEVICE_LIST_CAPS NODE_DEVICE_DETTACH NODE_DEVICE_RE_ATTACH
NODE_DEVICE_RESET DOMAIN_GET_SECURITY_LABEL NODE_GET_SECURITY_MODEL NODE_DEVICE_CREATE_XML
NODE_DEVICE_DESTROY STORAGE_VOL_CREATE_XML_FROM CONNECT_NUM_OF_INTERFACES
CONNECT_LIST_INTERFACES INTERFACE_LOOKUP_BY_NAME INTERFACE_LOOKUP_BY_MAC_STRING
INTERFACE_GET_XML_DESC INTERFACE_DEFINE_XML INTERFACE_UNDEFINE INTERFACE_CREATE
INTERFACE_DESTROY CONNECT_DOMAIN_XML_FROM_NATIVE CONNECT_DOMAIN_XML_TO_NATIVE
CONNECT_NUM_OF_DEFINED_INTERFACES CONNECT_LIST_DEFINED_INTERFACES CONNECT_NUM_OF_SECRETS
CONNECT_LIST_SECRETS SECRET_LOOKUP_BY_UUID SECRET_DEFINE_XML SECRET_GET_XML_DESC
SECRET_SET_VALUE SECRET_GET_VALUE SECRET_UNDEFINE SECRET_LOOKUP_BY_USAGE
DOMAIN_MIGRATE_PREPARE_TUNNEL CONNECT_IS_SECURE DOMAIN_IS_ACTIVE DOMAIN_IS_PERSISTENT
NETWORK_IS_ACTIVE NETWORK_IS_PERSISTENT STORAGE_POOL_IS_ACTIVE STORAGE_POOL_IS_PERSISTENT
INTERFACE_IS_ACTIVE CONNECT_GET_LIB_VERSION CONNECT_COMPARE_CPU DOMAIN_MEMORY_STATS
DOMAIN_ATTACH_DEVICE_FLAGS DOMAIN_DETACH_DEVICE_FLAGS CONNECT_BASELINE_CPU DOMAIN_GET_JOB_INFO
DOMAIN_ABORT_JOB STORAGE_VOL_WIPE DOMAIN_MIGRATE_SET_MAX_DOWNTIME
CONNECT_DOMAIN_EVENT_REGISTER_ANY CONNECT_DOMAIN_EVENT_DEREGISTER_ANY DOMAIN_EVENT_REBOOT
DOMAIN_EVENT_RTC_CHANGE DOMAIN_EVENT_WATCHDOG DOMAIN_EVENT_IO_ERROR DOMAIN_EVENT_GRAPHICS
DOMAIN_UPDATE_DEVICE_FLAGS NWFILTER_LOOKUP_BY_NAME NWFILTER_LOOKUP_BY_UUID
NWFILTER_GET_XML_DESC CONNECT_NUM_OF_NWFILTERS CONNECT_LIST_NWFILTERS NWFILTER_DEFINE_XML
NWFILTER_UNDEFINE DOMAIN_MANAGED_SAVE DOMAIN_HAS_MANAGED_SAVE_IMAGE DOMAIN_MANAGED_SAVE_REMOVE
DOMAIN_SNAPSHOT_CREATE_XML DOMAIN_SNAPSHOT_GET_XML_DESC DOMAIN_SNAPSHOT_NUM
DOMAIN_SNAPSHOT_LIST_NAMES DOMAIN_SNAPSHOT_LOOKUP_BY_NAME DOMAIN_HAS_CURRENT_SNAPSHOT
DOMAIN_SNAPSHOT_CURRENT DOMAIN_REVERT_TO_SNAPSHOT DOMAIN_SNAPSHOT_DELETE DOMAIN_GET_BLOCK_INFO
DOMAIN_EVENT_IO_ERROR_REASON DOMAIN_CREATE_WITH_FLAGS DOMAIN_SET_MEMORY_PARAMETERS
DOMAIN_GET_MEMORY_PARAMETERS DOMAIN_SET_VCPUS_FLAGS DOMAIN_GET_VCPUS_FLAGS DOMAIN_OPEN_CONSOLE
DOMAIN_IS_UPDATED CONNECT_GET_SYSINFO DOMAIN_SET_MEMORY_FLAGS DOMAIN_SET_BLKIO_PARAMETERS
DOMAIN_GET_BLKIO_PARAMETERS DOMAIN_MIGRATE_SET_MAX_SPEED STORAGE_VOL_UPLOAD
STORAGE_VOL_DOWNLOAD DOMAIN_INJECT_NMI DOMAIN_SCREENSHOT DOMAIN_GET_STATE
DOMAIN_MIGRATE_BEGIN3 DOMAIN_MIGRATE_PREPARE3 DOMAIN_MIGRATE_PREPARE_TUNNEL3
DOMAIN_MIGRATE_PERFORM3 DOMAIN_MIGRATE_FINISH3 DOMAIN_MIGRATE_CONFIRM3
DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS INTERFACE_CHANGE_BEGIN INTERFACE_CHANGE_COMMIT
INTERFACE_CHANGE_ROLLBACK DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS DOMAIN_EVENT_CONTROL_ERROR
DOMAIN_PIN_VCPU_FLAGS DOMAIN_SEND_KEY NODE_GET_CPU_STATS NODE_GET_MEMORY_STATS
DOMAIN_GET_CONTROL_INFO DOMAIN_GET_VCPU_PIN_INFO DOMAIN_UNDEFINE_FLAGS DOMAIN_SAVE_FLAGS
DOMAIN_RESTORE_FLAGS DOMAIN_DESTROY_FLAGS DOMAIN_SAVE_IMAGE_GET_XML_DESC
DOMAIN_SAVE_IMAGE_DEFINE_XML DOMAIN_BLOCK_JOB_ABORT DOMAIN_GET_BLOCK_JOB_INFO
DOMAIN_BLOCK_JOB_SET_SPEED DOMAIN_BLOCK_PULL DOMAIN_EVENT_BLOCK_JOB DOMAIN_MIGRATE_GET_MAX_SPEED
DOMAIN_BLOCK_STATS_FLAGS DOMAIN_SNAPSHOT_GET_PARENT DOMAIN_RESET DOMAIN_SNAPSHOT_NUM_CHILDREN
DOMAIN_SNAPSHOT_LIST_CHILDREN_NAMES DOMAIN_EVENT_DISK_CHANGE DOMAIN_OPEN_GRAPHICS
NODE_SUSPEND_FOR_DURATION DOMAIN_BLOCK_RESIZE DOMAIN_SET_BLOCK_IO_TUNE DOMAIN_GET_BLOCK_IO_TUNE
DOMAIN_SET_NUMA_PARAMETERS DOMAIN_GET_NUMA_PARAMETERS DOMAIN_SET_INTERFACE_PARAMETERS
DOMAIN_GET_INTERFACE_PARAMETERS DOMAIN_SHUTDOWN_FLAGS STORAGE_VOL_WIPE_PATTERN
STORAGE_VOL_RESIZE DOMAIN_PM_SUSPEND_FOR_DURATION DOMAIN_GET_CPU_STATS DOMAIN_GET_DISK_ERRORS
DOMAIN_SET_METADATA DOMAIN_GET_METADATA DOMAIN_BLOCK_REBASE DOMAIN_PM_WAKEUP
DOMAIN_EVENT_TRAY_CHANGE DOMAIN_EVENT_PMWAKEUP DOMAIN_EVENT_PMSUSPEND DOMAIN_SNAPSHOT_IS_CURRENT
DOMAIN_SNAPSHOT_HAS_METADATA CONNECT_LIST_ALL_DOMAINS DOMAIN_LIST_ALL_SNAPSHOTS
DOMAIN_SNAPSHOT_LIST_ALL_CHILDREN DOMAIN_EVENT_BALLOON_CHANGE DOMAIN_GET_HOSTNAME
DOMAIN_GET_SECURITY_LABEL_LIST DOMAIN_PIN_EMULATOR DOMAIN_GET_EMULATOR_PIN_INFO
CONNECT_LIST_ALL_STORAGE_POOLS STORAGE_POOL_LIST_ALL_VOLUMES CONNECT_LIST_ALL_NETWORKS
CONNECT_LIST_ALL_INTERFACES CONNECT_LIST_ALL_NODE_DEVICES CONNECT_LIST_ALL_NWFILTERS
CONNECT_LIST_ALL_SECRETS NODE_SET_MEMORY_PARAMETERS NODE_GET_MEMORY_PARAMETERS
DOMAIN_BLOCK_COMMIT NETWORK_UPDATE DOMAIN_EVENT_PMSUSPEND_DISK NODE_GET_CPU_MAP DOMAIN_FSTRIM
DOMAIN_SEND_PROCESS_SIGNAL DOMAIN_OPEN_CHANNEL NODE_DEVICE_LOOKUP_SCSI_HOST_BY_WWN
DOMAIN_GET_JOB_STATS DOMAIN_MIGRATE_GET_COMPRESSION_CACHE DOMAIN_MIGRATE_SET_COMPRESSION_CACHE
NODE_DEVICE_DETACH_FLAGS DOMAIN_MIGRATE_BEGIN3_PARAMS DOMAIN_MIGRATE_PREPARE3_PARAMS
DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS DOMAIN_MIGRATE_PERFORM3_PARAMS
DOMAIN_MIGRATE_FINISH3_PARAMS DOMAIN_MIGRATE_CONFIRM3_PARAMS DOMAIN_SET_MEMORY_STATS_PERIOD
DOMAIN_CREATE_XML_WITH_FILES DOMAIN_CREATE_WITH_FILES DOMAIN_EVENT_DEVICE_REMOVED
CONNECT_GET_CPU_MODEL_NAMES CONNECT_NETWORK_EVENT_REGISTER_ANY
CONNECT_NETWORK_EVENT_DEREGISTER_ANY NETWORK_EVENT_LIFECYCLE
CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY
DOMAIN_EVENT_CALLBACK_LIFECYCLE DOMAIN_EVENT_CALLBACK_REBOOT DOMAIN_EVENT_CALLBACK_RTC_CHANGE
DOMAIN_EVENT_CALLBACK_WATCHDOG DOMAIN_EVENT_CALLBACK_IO_ERROR DOMAIN_EVENT_CALLBACK_GRAPHICS
DOMAIN_EVENT_CALLBACK_IO_ERROR_REASON DOMAIN_EVENT_CALLBACK_CONTROL_ERROR
DOMAIN_EVENT_CALLBACK_BLOCK_JOB DOMAIN_EVENT_CALLBACK_DISK_CHANGE
DOMAIN_EVENT_CALLBACK_TRAY_CHANGE DOMAIN_EVENT_CALLBACK_PMWAKEUP DOMAIN_EVENT_CALLBACK_PMSUSPEND
DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE DOMAIN_EVENT_CALLBACK_PMSUSPEND_DISK
DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED DOMAIN_CORE_DUMP_WITH_FORMAT DOMAIN_FSFREEZE DOMAIN_FSTHAW
DOMAIN_GET_TIME DOMAIN_SET_TIME DOMAIN_EVENT_BLOCK_JOB_2 NODE_GET_FREE_PAGES
NETWORK_GET_DHCP_LEASES CONNECT_GET_DOMAIN_CAPABILITIES DOMAIN_OPEN_GRAPHICS_FD
CONNECT_GET_ALL_DOMAIN_STATS DOMAIN_BLOCK_COPY DOMAIN_EVENT_CALLBACK_TUNABLE NODE_ALLOC_PAGES
DOMAIN_EVENT_CALLBACK_AGENT_LIFECYCLE DOMAIN_GET_FSINFO DOMAIN_DEFINE_XML_FLAGS
DOMAIN_GET_IOTHREAD_INFO DOMAIN_PIN_IOTHREAD DOMAIN_INTERFACE_ADDRESSES
DOMAIN_EVENT_CALLBACK_DEVICE_ADDED DOMAIN_ADD_IOTHREAD DOMAIN_DEL_IOTHREAD
DOMAIN_SET_USER_PASSWORD DOMAIN_RENAME DOMAIN_EVENT_CALLBACK_MIGRATION_ITERATION
CONNECT_REGISTER_CLOSE_CALLBACK CONNECT_UNREGISTER_CLOSE_CALLBACK
CONNECT_EVENT_CONNECTION_CLOSED DOMAIN_EVENT_CALLBACK_JOB_COMPLETED
DOMAIN_MIGRATE_START_POST_COPY DOMAIN_GET_PERF_EVENTS DOMAIN_SET_PERF_EVENTS
DOMAIN_EVENT_CALLBACK_DEVICE_REMOVAL_FAILED CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY
CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY STORAGE_POOL_EVENT_LIFECYCLE DOMAIN_GET_GUEST_VCPUS
DOMAIN_SET_GUEST_VCPUS STORAGE_POOL_EVENT_REFRESH CONNECT_NODE_DEVICE_EVENT_REGISTER_ANY
CONNECT_NODE_DEVICE_EVENT_DEREGISTER_ANY NODE_DEVICE_EVENT_LIFECYCLE NODE_DEVICE_EVENT_UPDATE
STORAGE_VOL_GET_INFO_FLAGS DOMAIN_EVENT_CALLBACK_METADATA_CHANGE
CONNECT_SECRET_EVENT_REGISTER_ANY CONNECT_SECRET_EVENT_DEREGISTER_ANY SECRET_EVENT_LIFECYCLE
SECRET_EVENT_VALUE_CHANGED DOMAIN_SET_VCPU DOMAIN_EVENT_BLOCK_THRESHOLD
DOMAIN_SET_BLOCK_THRESHOLD DOMAIN_MIGRATE_GET_MAX_DOWNTIME DOMAIN_MANAGED_SAVE_GET_XML_DESC
DOMAIN_MANAGED_SAVE_DEFINE_XML DOMAIN_SET_LIFECYCLE_ACTION STORAGE_POOL_LOOKUP_BY_TARGET_PATH
DOMAIN_DETACH_DEVICE_ALIAS CONNECT_COMPARE_HYPERVISOR_CPU CONNECT_BASELINE_HYPERVISOR_CPU
NODE_GET_SEV_INFO DOMAIN_GET_LAUNCH_SECURITY_INFO NWFILTER_BINDING_LOOKUP_BY_PORT_DEV
NWFILTER_BINDING_GET_XML_DESC NWFILTER_BINDING_CREATE_XML NWFILTER_BINDING_DELETE
CONNECT_LIST_ALL_NWFILTER_BINDINGS DOMAIN_SET_IOTHREAD_PARAMS
CONNECT_GET_STORAGE_POOL_CAPABILITIES NETWORK_LIST_ALL_PORTS NETWORK_PORT_LOOKUP_BY_UUID
NETWORK_PORT_CREATE_XML NETWORK_PORT_GET_PARAMETERS NETWORK_PORT_SET_PARAMETERS
NETWORK_PORT_GET_XML_DESC NETWORK_PORT_DELETE DOMAIN_CHECKPOINT_CREATE_XML
DOMAIN_CHECKPOINT_GET_XML_DESC DOMAIN_LIST_ALL_CHECKPOINTS DOMAIN_CHECKPOINT_LIST_ALL_CHILDREN
DOMAIN_CHECKPOINT_LOOKUP_BY_NAME DOMAIN_CHECKPOINT_GET_PARENT DOMAIN_CHECKPOINT_DELETE
DOMAIN_GET_GUEST_INFO CONNECT_SET_IDENTITY DOMAIN_AGENT_SET_RESPONSE_TIMEOUT
DOMAIN_BACKUP_BEGIN DOMAIN_BACKUP_GET_XML_DESC DOMAIN_EVENT_MEMORY_FAILURE
DOMAIN_AUTHORIZED_SSH_KEYS_GET DOMAIN_AUTHORIZED_SSH_KEYS_SET DOMAIN_GET_MESSAGES
DOMAIN_START_DIRTY_RATE_CALC NODE_DEVICE_DEFINE_XML NODE_DEVICE_UNDEFINE NODE_DEVICE_CREATE
NWFILTER_DEFINE_XML_FLAGS NETWORK_DEFINE_XML_FLAGS NODE_DEVICE_GET_AUTOSTART
NODE_DEVICE_SET_AUTOSTART NODE_DEVICE_IS_PERSISTENT NODE_DEVICE_IS_ACTIVE
NETWORK_CREATE_XML_FLAGS DOMAIN_EVENT_MEMORY_DEVICE_SIZE_CHANGE
DOMAIN_SET_LAUNCH_SECURITY_STATE DOMAIN_SAVE_PARAMS DOMAIN_RESTORE_PARAMS
DOMAIN_ABORT_JOB_FLAGS DOMAIN_FD_ASSOCIATE
""".split()

PROC_MAX = len(_NAMES)
"""The highest REMOTE procedure number known (443 in libvirt 9.0)."""

# @priority: high in remote_protocol.x
_HIGH = frozenset(int(n) for n in """
1 2 3 4 5 6 11 12 15 17 18 19 20 21 22 23 24 25 29 30 35 36 37 38 41 42 43 44 45 46 47 48 49
50 51 52 59 60 65 66 67 68 69 70 71 72 73 74 77 80 82 84 85 86 87 88 89 90 91 92 95 96 97 98
99 100 101 102 105 106 110 111 112 113 115 116 117 121 122 124 126 127 128 129 131 132 134 137
138 139 140 141 142 143 144 145 146 147 149 150 151 152 153 154 155 156 157 158 167 168 175
176 177 178 179 180 181 186 187 188 189 202 203 212 227 228 229 231 234 235 236 244 246 247
273 274 275 278 281 282 283 284 285 286 287 291 297 313 314 316 317 340 350 360 361 368 369
374 375 378 380 381 391 397 398 399 400 401 404 405 413 414 415 416 429 430 431 432 433 434
435 436 437
""".split())

# Words whose capitalisation in libvirt's public API names is not Title case.
_WORDS = {
    "XML": "XML", "UUID": "UUID", "URI": "URI", "OS": "OS", "CPU": "CPU", "ID": "ID",
    "NMI": "NMI", "DHCP": "DHCP", "SEV": "SEV", "SSH": "SSH", "PM": "PM", "MAC": "MAC",
    "SCSI": "SCSI", "WWN": "WWN", "FD": "FD", "NWFILTER": "NWFilter", "NWFILTERS": "NWFilters",
    "IOTHREAD": "IOThread", "FSTRIM": "FSTrim", "FSFREEZE": "FSFreeze", "FSTHAW": "FSThaw",
    "FSINFO": "FSInfo",
}

# Always allowed on a read-only connection although their names look mutating.
_RO_OK_NAMES = frozenset({
    "CONNECT_OPEN", "CONNECT_CLOSE", "CONNECT_SUPPORTS_FEATURE", "CONNECT_REGISTER_CLOSE_CALLBACK",
    "CONNECT_UNREGISTER_CLOSE_CALLBACK", "DOMAIN_SNAPSHOT_NUM", "DOMAIN_SNAPSHOT_NUM_CHILDREN",
    "DOMAIN_SNAPSHOT_CURRENT", "DOMAIN_BLOCK_STATS", "DOMAIN_BLOCK_STATS_FLAGS",
    "DOMAIN_INTERFACE_STATS", "DOMAIN_MEMORY_STATS", "CONNECT_COMPARE_CPU", "CONNECT_BASELINE_CPU",
    "CONNECT_DOMAIN_XML_FROM_NATIVE", "CONNECT_DOMAIN_XML_TO_NATIVE", "DOMAIN_BLOCK_PEEK",
    "DOMAIN_MEMORY_PEEK",
})
# Denied on a read-only connection although their names look like getters.
_RO_DENIED_NAMES = frozenset({
    "SECRET_GET_VALUE", "DOMAIN_GET_TIME", "DOMAIN_GET_GUEST_VCPUS", "DOMAIN_GET_GUEST_INFO",
    "DOMAIN_AUTHORIZED_SSH_KEYS_GET", "DOMAIN_GET_FSINFO", "DOMAIN_GET_HOSTNAME",
})


def _is_message(name: str) -> bool:
    return name.startswith("DOMAIN_EVENT_") or (
        "_EVENT_" in name and not name.startswith("CONNECT_")) or (
        name == "CONNECT_EVENT_CONNECTION_CLOSED")


def _readonly_ok(name: str) -> bool:
    if name in _RO_OK_NAMES or name.startswith("AUTH_") or "_EVENT_" in name:
        return True
    if name in _RO_DENIED_NAMES:
        return False
    padded = f"_{name}_"
    return any(w in padded for w in ("_GET_", "_LOOKUP_", "_LIST_", "_NUM_OF_", "_IS_", "_HAS_"))


def api_name(name: str) -> str:
    """
    @param name: a procedure name without C{REMOTE_PROC_}, e.g.
        C{DOMAIN_GET_XML_DESC}.
    @return: libvirt's public API name for it, e.g. C{virDomainGetXMLDesc}.
    """
    return "vir" + "".join(_WORDS.get(w, w.capitalize()) for w in name.split("_"))


@dataclass(frozen=True)
class Procedure:
    """
    One procedure of a program.

    @ivar number: its procedure number.
    @ivar name: the C{.x} name without C{REMOTE_PROC_}.
    @ivar args: the argument layout (L{VOID} when empty), C{None} when qemud
        does not know it.
    @ivar ret: the reply layout, likewise.
    @ivar readonly_ok: whether a read-only connection may call it.
    @ivar priority: C{"high"} or C{"low"} (the C{@priority} annotation).
    @ivar api_name: the public API name used in error messages.
    @ivar message: C{True} for an event message (server to client only).
    """

    number: int
    name: str
    args: XDRType | None
    ret: XDRType | None
    readonly_ok: bool
    priority: str
    api_name: str
    message: bool = False


def _build() -> dict[int, Procedure]:
    table: dict[int, Procedure] = {}
    for number, name in enumerate(_NAMES, start=1):
        is_msg = _is_message(name)
        args: XDRType | None
        ret: XDRType | None
        if is_msg:
            args, ret = MESSAGES.get(number), None
        else:
            args, ret = _LAYOUTS.get(number, (None, None))
        table[number] = Procedure(
            number=number, name=name, args=args, ret=ret, readonly_ok=_readonly_ok(name),
            priority="high" if number in _HIGH else "low", api_name=api_name(name),
            message=is_msg)
    return table


PROCEDURES: dict[int, Procedure] = _build()
"""Every REMOTE procedure, by number (1..L{PROC_MAX})."""


class _ProcNumbers:
    """Procedure numbers by name: C{PROC.DOMAIN_CREATE == 9}."""

    def __init__(self, table: dict[int, Procedure]) -> None:
        for number, proc in table.items():
            setattr(self, proc.name, number)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"no REMOTE procedure named {name}")


PROC: Any = _ProcNumbers(PROCEDURES)
"""Procedure numbers by name, e.g. C{PROC.CONNECT_OPEN}."""


def _extra(program: str, names: list[tuple[str, str, bool]]) -> dict[int, Procedure]:
    return {
        i: Procedure(number=i, name=n, args=None, ret=None, readonly_ok=False, priority="low",
                     api_name=api, message=msg)
        for i, (n, api, msg) in enumerate(names, start=1)
    }


QEMU_PROCEDURES = _extra("QEMU", [
    ("DOMAIN_MONITOR_COMMAND", "virDomainQemuMonitorCommand", False),
    ("DOMAIN_ATTACH", "virDomainQemuAttach", False),
    ("DOMAIN_AGENT_COMMAND", "virDomainQemuAgentCommand", False),
    ("CONNECT_DOMAIN_MONITOR_EVENT_REGISTER", "virConnectDomainQemuMonitorEventRegister", False),
    ("CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER", "virConnectDomainQemuMonitorEventDeregister",
     False),
    ("DOMAIN_MONITOR_EVENT", "virConnectDomainQemuMonitorEvent", True),
    ("DOMAIN_MONITOR_COMMAND_WITH_FILES", "virDomainQemuMonitorCommandWithFiles", False),
])
"""The QEMU program's procedures (none implemented)."""

LXC_PROCEDURES = _extra("LXC", [
    ("DOMAIN_OPEN_NAMESPACE", "virDomainLxcOpenNamespace", False),
])
"""The LXC program's procedures (none implemented)."""
